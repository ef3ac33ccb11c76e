"""MASt3R training losses: metric-aware 3D regression with a sky penalty, and descriptor matching losses.

On top of :mod:`dust3r.losses`: :class:`Regr3D` (``norm_mode='?avg_dis'`` keeps metric items unnormalised,
``sky_loss_value`` for sky pixels), its shift / scale invariant variants, :class:`MatchingLoss` (descriptors
gathered at the ground-truth correspondences, optional extra negatives, blockwise for many correspondences) with
:class:`InfoNCE` or :class:`APLoss`, and :class:`ConfMatchingLoss`. :func:`parse_criterion` reads criterion strings
in the namespace of the original ``train.py`` (where ``Regr3D`` etc. are these classes).
"""
from __future__ import annotations

import numpy as np
import torch

from dust3r.inference import get_pred_pts3d
from dust3r.losses import (L21, BaseCriterion, ConfLoss, Criterion, L21Loss, LLoss, MultiLoss, Sum,
                           evaluate_criterion, match_scale, shift_depth_to_median)
from dust3r.losses import Regr3D as Regr3D_dust3r
from dust3r.utils.geometry import normalize_pointcloud

__all__ = ["apply_log_to_norm", "Regr3D", "Regr3D_ShiftInv", "Regr3D_ScaleInv", "Regr3D_ScaleShiftInv",
           "get_similarities", "MatchingCriterion", "InfoNCE", "APLoss", "MatchingLoss", "ConfMatchingLoss",
           "ConfLoss", "BaseCriterion", "Criterion", "MultiLoss", "Sum", "L21", "L21Loss", "LLoss",
           "parse_criterion"]


def apply_log_to_norm(xyz: torch.Tensor) -> torch.Tensor:
    """Points (..., 3) with their norm d replaced by log(1 + d), direction kept."""
    d = xyz.norm(dim=-1, keepdim=True)
    return xyz / d.clip(min=1e-8) * torch.log1p(d)


class Regr3D(Regr3D_dust3r):
    """DUSt3R's :class:`~dust3r.losses.Regr3D` plus metric data and sky.

    * ``norm_mode='?avg_dis'``: items with ``gt1['is_metric_scale']`` keep their predictions unnormalised; their
      GT is normalised by its own factor and their prediction divided by that same **GT** factor. Other items (and
      every item without the '?') are normalised by their own factors. ``max_metric_scale`` drops the metric flag of
      items whose GT reaches that distance from camera 1.
    * ``sky_loss_value > 0``: sky pixels (``gt['sky_mask'] & ~valid``) count as valid with that pixel loss; needs a
      per-pixel loss (``reduction='none'``, as set by :class:`ConfLoss`).
    * ``loss_in_log``: 'before' (GT points, before normalisation) or True (both, after masking) log-norm warp.
    """

    def __init__(self, criterion, norm_mode="avg_dis", gt_scale=False, opt_fit_gt=False, sky_loss_value=2,
                 max_metric_scale=False, loss_in_log=False):
        self.norm_all = not (isinstance(norm_mode, str) and norm_mode.startswith("?"))
        super().__init__(criterion, norm_mode if self.norm_all else norm_mode[1:], gt_scale)
        self.opt_fit_gt = opt_fit_gt
        self.sky_loss_value = sky_loss_value
        self.max_metric_scale = max_metric_scale
        self.loss_in_log = loss_in_log

    def _metric_items(self, gt1, gt_pts1, gt_pts2, valid1, valid2) -> torch.Tensor:
        """(B,) bool: items whose prediction keeps its metric scale."""
        if self.norm_all:
            return torch.zeros(len(gt_pts1), dtype=torch.bool, device=gt_pts1.device)
        metric = gt1["is_metric_scale"].to(gt_pts1.device).bool()
        if self.max_metric_scale:
            far1 = torch.where(valid1, gt_pts1.norm(dim=-1), 0).flatten(1).amax(dim=1)
            far2 = torch.where(valid2, gt_pts2.norm(dim=-1), 0).flatten(1).amax(dim=1)
            metric = metric & (far1 < self.max_metric_scale) & (far2 < self.max_metric_scale)
        return metric

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, dist_clip=None):
        """(gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2, sky1, sky2, monitoring); (B, H, W, ...)."""
        gt_pts1, gt_pts2, valid1, valid2 = self._gt_in_camera1(gt1, gt2, dist_clip)
        if self.loss_in_log == "before":
            gt_pts1, gt_pts2 = apply_log_to_norm(gt_pts1), apply_log_to_norm(gt_pts2)
        pr_pts1 = get_pred_pts3d(gt1, pred1, use_pose=False)
        pr_pts2 = get_pred_pts3d(gt2, pred2, use_pose=True)

        if self.norm_mode:
            metric = self._metric_items(gt1, gt_pts1, gt_pts2, valid1, valid2)[:, None, None, None]
            if not bool(metric.all()):
                own1, own2 = normalize_pointcloud(pr_pts1, pr_pts2, self.norm_mode, valid1, valid2)
                pr_pts1, pr_pts2 = torch.where(metric, pr_pts1, own1), torch.where(metric, pr_pts2, own2)
            if not self.gt_scale:
                gt_pts1, gt_pts2, factor = normalize_pointcloud(gt_pts1, gt_pts2, self.norm_mode, valid1, valid2,
                                                                ret_factor=True)
                pr_pts1 = torch.where(metric, pr_pts1 / factor, pr_pts1)
                pr_pts2 = torch.where(metric, pr_pts2 / factor, pr_pts2)

        sky1 = gt1["sky_mask"] & ~valid1
        sky2 = gt2["sky_mask"] & ~valid2
        return gt_pts1, gt_pts2, pr_pts1, pr_pts2, valid1, valid2, sky1, sky2, {}

    def _pixel_loss(self, pr_pts, gt_pts, mask, sky):
        pr_pts, gt_pts = pr_pts[mask], gt_pts[mask]
        if self.loss_in_log and self.loss_in_log != "before":
            pr_pts, gt_pts = apply_log_to_norm(pr_pts), apply_log_to_norm(gt_pts)
        loss = self.criterion(pr_pts, gt_pts)
        if self.sky_loss_value > 0:
            loss = torch.where(sky[mask], torch.as_tensor(self.sky_loss_value, dtype=loss.dtype), loss)
        return loss

    def compute_loss(self, gt1, gt2, pred1, pred2, **kw):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, sky1, sky2, monitoring = self.get_all_pts3d(
            gt1, gt2, pred1, pred2, **kw)
        if self.sky_loss_value > 0:
            if self.criterion.reduction != "none":
                raise ValueError("sky_loss_value should be 0 if no conf loss: a sky penalty needs a per-pixel loss "
                                 "(wrap Regr3D in ConfLoss, or pass sky_loss_value=0)")
            mask1, mask2 = mask1 | sky1, mask2 | sky2
        l1 = self._pixel_loss(pr_pts1, gt_pts1, mask1, sky1)
        l2 = self._pixel_loss(pr_pts2, gt_pts2, mask2, sky2)
        return Sum((l1, mask1), (l2, mask2)), {**self._details(l1, l2), **monitoring}


class Regr3D_ShiftInv(Regr3D):
    """MASt3R :class:`Regr3D` invariant to a depth shift (z minus the joint median depth, GT and prediction)."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, **kw):
        *pts, mask1, mask2, sky1, sky2, monitoring = super().get_all_pts3d(gt1, gt2, pred1, pred2, **kw)
        return (*shift_depth_to_median(*pts, mask1, mask2), mask1, mask2, sky1, sky2, monitoring)


class Regr3D_ScaleInv(Regr3D):
    """MASt3R :class:`Regr3D` invariant to scale (``gt_scale``: the prediction takes the GT's scale)."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, **kw):
        *pts, mask1, mask2, sky1, sky2, monitoring = super().get_all_pts3d(gt1, gt2, pred1, pred2, **kw)
        return (*match_scale(*pts, mask1, mask2, self.gt_scale), mask1, mask2, sky1, sky2, monitoring)


class Regr3D_ScaleShiftInv(Regr3D_ScaleInv, Regr3D_ShiftInv):
    """Shift-invariant first, then scale-invariant (MRO: ScaleInv -> ShiftInv -> Regr3D)."""


def get_similarities(desc1: torch.Tensor, desc2: torch.Tensor, euc: bool = False) -> torch.Tensor:
    """(B, N, D) x (B, M, D) -> (B, N, M): dot products, or ``1 / (1 + euclidean distance)`` with ``euc``."""
    if euc:
        return 1 / (1 + torch.cdist(desc1, desc2))
    return desc1 @ desc2.transpose(-2, -1)


class MatchingCriterion(BaseCriterion):
    """A criterion on descriptor sets (B, N, D) vs (B, M, D) whose first N of M are the positives, computed in
    precision ``fp``; reductions 'mean', 'sum', '1-mean', 'none'."""

    def __init__(self, reduction="mean", fp=torch.float32):
        super().__init__(reduction)
        self.fp = fp

    def forward(self, a, b, valid_matches=None, euc=False):
        if a.ndim < 2 or a.shape[-1] < 1:
            raise ValueError(f"{type(self).__name__}: bad descriptor shape {tuple(a.shape)}")
        dist = self.loss(a.to(self.fp), b.to(self.fp), valid_matches, euc=euc)
        if self.reduction == "1-mean":
            return 1.0 - dist.mean() if dist.numel() else dist.new_ones(())
        return self._reduce(dist)

    def loss(self, a, b, valid_matches=None, euc=False):
        raise NotImplementedError


def _check_pairs(desc1, desc2, valid_matches):
    B, N, D = desc1.shape
    if desc2.shape[0] != B or desc2.shape[2] != D:
        raise ValueError(f"descriptor sets {tuple(desc1.shape)} and {tuple(desc2.shape)} do not pair up")
    if valid_matches is None:
        valid_matches = torch.ones((B, N), dtype=torch.bool, device=desc1.device)
    if tuple(valid_matches.shape) != (B, N) or not bool(valid_matches.any()):
        raise ValueError(f"valid_matches must be (B, N) = {(B, N)} with at least one True, "
                         f"got {tuple(valid_matches.shape)}")
    return valid_matches


class InfoNCE(MatchingCriterion):
    """Contrastive loss with positives on the diagonal of the (B, N, M) similarity: ``mode='all'`` (softmax over
    every pair of the item), 'proper' (row and column softmax, needs M == N, i.e. no padded negatives) or 'dual'."""

    def __init__(self, temperature=0.07, eps=1e-8, mode="all", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("all", "proper", "dual"):
            raise ValueError(f"InfoNCE: unknown mode {mode!r} (expected 'all', 'proper' or 'dual')")
        self.temperature = temperature
        self.eps = eps
        self.mode = mode

    def loss(self, desc1, desc2, valid_matches=None, euc=False):
        valid_matches = _check_pairs(desc1, desc2, valid_matches)
        if self.mode != "all" and desc1.shape[1] != desc2.shape[1]:
            raise ValueError(f"InfoNCE(mode={self.mode!r}) needs as many candidates as queries "
                             f"({desc2.shape[1]} != {desc1.shape[1]}): use negatives_padding=0 or mode='all'")
        sim = get_similarities(desc1, desc2, euc) / self.temperature
        sim = sim.masked_fill(sim.isnan(), -torch.inf).exp()
        pos = sim.diagonal(dim1=-2, dim2=-1)
        if self.mode == "all":
            loss = -torch.log((pos / sim.sum(dim=(-2, -1))[:, None]).clip(self.eps))
        elif self.mode == "proper":
            loss = -(torch.log((pos / sim.sum(dim=-2)).clip(self.eps))
                     + torch.log((pos / sim.sum(dim=-1)).clip(self.eps)))
        else:
            loss = -torch.log((pos ** 2 / sim.sum(dim=-1) / sim.sum(dim=-2)).clip(self.eps))
        return loss[valid_matches]


class APLoss(MatchingCriterion):
    """Average precision of each query's positive (the diagonal) among all candidates (not differentiable).

    ``nq='torch'``: ranks from a stable sort (ties: the earlier candidate first); ``nq='sklearn'`` (or 0): tied
    scores share their rank, as ``sklearn.metrics.average_precision_score`` counts them (no sklearn needed).
    """

    def __init__(self, nq="torch", min=0, max=1, euc=False, **kw):
        super().__init__(**kw)
        nq = "sklearn" if nq == 0 else nq
        modes = {"torch": self.compute_true_AP_torch, "sklearn": self.compute_true_AP_sklearn}
        if nq not in modes:
            raise ValueError(f"Unknown mode {nq!r} for AP loss (expected 'torch' or 'sklearn')")
        self.nq = nq
        self.compute_AP = modes[nq]

    @staticmethod
    @torch.no_grad()
    def compute_true_AP_torch(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N, M) scores and 0/1 labels (the same number of positives per query) -> (B, N) float32 AP."""
        if scores.shape != labels.shape:
            raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ")
        order = scores.sort(dim=-1, descending=True, stable=True).indices
        ranked = labels.gather(-1, order).float()
        npos = ranked.sum(dim=-1)
        if not bool((npos == npos.flatten()[0]).all()):
            raise ValueError("APLoss(nq='torch') needs the same number of positives for every query")
        precision = ranked.cumsum(dim=-1) / torch.arange(1, ranked.shape[-1] + 1, device=scores.device)
        return (precision * ranked).sum(dim=-1) / npos.clip(min=1)

    @staticmethod
    @torch.no_grad()
    def compute_true_AP_sklearn(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Tie-aware AP per query (B, N), 0 for a query without positives: the mean over positives p of
        #positives scoring >= s_p / #candidates scoring >= s_p."""
        desc, order = scores.sort(dim=-1, descending=True, stable=True)
        ranked = labels.gather(-1, order).float()
        neg_sorted = (-desc).contiguous()  # ascending
        n_ge = torch.searchsorted(neg_sorted, neg_sorted, right=True)  # candidates scoring >= each one
        pos_ge = ranked.cumsum(dim=-1).gather(-1, n_ge - 1)
        npos = ranked.sum(dim=-1)
        ap = (ranked * pos_ge / n_ge).sum(dim=-1) / npos.clip(min=1)
        return torch.where(npos > 0, ap, torch.zeros_like(ap)).float()

    def loss(self, desc1, desc2, valid_matches=None, euc=False):
        _check_pairs(desc1, desc2, valid_matches)
        scores = get_similarities(desc1, desc2, euc)
        B, N, M = scores.shape
        labels = torch.zeros((B, N, M), dtype=scores.dtype, device=scores.device)
        labels.diagonal(dim1=-2, dim2=-1).fill_(1)
        ap = self.compute_AP(scores, labels)
        return ap[valid_matches] if valid_matches is not None else ap


class MatchingLoss(Criterion, MultiLoss):
    """Matching loss within each image pair: descriptors (``pred['desc']``, or the points with ``use_pts3d``) at
    the ground-truth correspondences ``gt['corres']`` (B, N, 2) (x, y), positives ``gt1['valid_corres']`` (B, N).

    ``negatives_padding``: view 2's first pixels (raster order) that no correspondence uses are appended as extra
    negatives (at most that many; the count must be the same for every item). When N > ``blocksize`` the criterion
    runs on blocks of ``blocksize`` correspondences after a per-item shuffle (``rng``, numpy's global legacy RNG
    by default); N must then be a multiple of ``blocksize``. Detail ``MatchingLoss``: the mean loss.
    """

    def __init__(self, criterion, withconf=False, use_pts3d=False, negatives_padding=0, blocksize=4096):
        super().__init__(criterion)
        self.withconf = withconf
        self.use_pts3d = use_pts3d
        self.negatives_padding = negatives_padding
        self.blocksize = blocksize

    def add_negatives(self, outdesc2, desc2, batchid, x2, y2):
        """Append to ``outdesc2`` (B, N, D) the first ``negatives_padding`` unused pixels of ``desc2`` (B, H, W, D)."""
        if not self.negatives_padding:
            return outdesc2
        B, H, W, D = desc2.shape
        free = torch.ones((B, H, W), dtype=torch.bool, device=desc2.device)
        free[batchid, y2, x2] = False
        take = free & (free.view(B, -1).cumsum(dim=-1).view(B, H, W) <= self.negatives_padding)
        counts = take.view(B, -1).sum(dim=-1)
        if not bool((counts == counts[0]).all()):
            raise ValueError(f"negatives_padding={self.negatives_padding}: the items have different numbers of "
                             f"unused pixels {counts.tolist()}; use a smaller padding")
        return torch.cat((outdesc2, desc2[take].view(B, -1, D)), dim=1)

    def get_confs(self, pred1, pred2, sel1, sel2):
        if not self.withconf:
            return None, None
        key1, key2 = ("conf", "conf") if self.use_pts3d else ("desc_conf", "desc_conf")
        return pred1[key1][sel1], pred2[key2][sel2]

    def get_descs(self, pred1, pred2):
        if self.use_pts3d:
            return pred1["pts3d"], pred2["pts3d_in_other_view"]
        return pred1["desc"], pred2["desc"]

    def get_matching_descs(self, gt1, gt2, pred1, pred2, **kw):
        """(descs1 (B, N, D), descs2 (B, N + negatives, D), confs1, confs2 (B, N) or None, valid (B, N), info)."""
        desc1, desc2 = self.get_descs(pred1, pred2)
        x1, y1 = gt1["corres"].unbind(-1)
        x2, y2 = gt2["corres"].unbind(-1)
        B, N = x1.shape
        batchid = torch.arange(B, device=x1.device)[:, None].expand(B, N)
        descs1, descs2 = desc1[batchid, y1, x1], desc2[batchid, y2, x2]
        descs2 = self.add_negatives(descs2, desc2, batchid, x2, y2)
        confs1, confs2 = self.get_confs(pred1, pred2, (batchid, y1, x1), (batchid, y2, x2))
        return descs1, descs2, confs1, confs2, gt1["valid_corres"], {"use_euclidean_dist": self.use_pts3d}

    def blockwise_criterion(self, descs1, descs2, confs1, confs2, valid_matches, euc, rng=np.random, shuffle=True):
        B, N, D = descs1.shape
        details = {}
        if N <= self.blocksize:
            loss = self.criterion(descs1, descs2, valid_matches, euc=euc)
        else:
            if N % self.blocksize:
                raise ValueError(f"MatchingLoss: {N} correspondences do not split into blocks of {self.blocksize}")
            if descs2.shape[1] != N:
                raise ValueError("MatchingLoss: negatives_padding is not supported with blocks "
                                 f"({N} correspondences > blocksize {self.blocksize})")
            if shuffle:
                perm = torch.as_tensor(np.stack([rng.choice(N, size=N, replace=False) for _ in range(B)]),
                                       device=descs1.device)
                rows = torch.arange(B, device=descs1.device)[:, None]
                descs1, descs2, valid_matches = descs1[rows, perm], descs2[rows, perm], valid_matches[rows, perm]
                if self.withconf:
                    confs1, confs2 = confs1[rows, perm], confs2[rows, perm]
            blocks = (B * (N // self.blocksize), self.blocksize)
            loss = self.criterion(descs1.reshape(*blocks, D), descs2.reshape(*blocks, D),
                                  valid_matches.reshape(blocks), euc=euc)
        if self.withconf:
            valid = valid_matches.reshape(B, -1)
            details["conf_pos"] = (confs1[valid], confs2[valid])
            details["conf_neg"] = (confs1[~valid], confs2[~valid])
            details["Conf1_std"] = confs1.std()
            details["Conf2_std"] = confs2.std()
        return loss, details

    def compute_loss(self, gt1, gt2, pred1, pred2, **kw):
        descs1, descs2, confs1, confs2, valid, info = self.get_matching_descs(gt1, gt2, pred1, pred2, **kw)
        loss, details = self.blockwise_criterion(descs1, descs2, confs1, confs2, valid,
                                                 euc=info.pop("use_euclidean_dist", False))
        details[type(self).__name__] = float(loss.detach().mean())
        return loss, {**details, **info}


class ConfMatchingLoss(ConfLoss):
    """:class:`ConfLoss` for a match-level loss: positives weighted by the confidence of the two descriptors
    (``confmode`` 'prod' or 'mean'); ``neg_conf_loss_quantile`` also supervises the negatives' confidences with that
    quantile of the loss. Detail ``matching_conf_loss`` plus the matching loss's own."""

    def __init__(self, pixel_loss, alpha=1.0, confmode="prod", neg_conf_loss_quantile=False):
        super().__init__(pixel_loss, alpha)
        if confmode not in ("prod", "mean"):
            raise ValueError(f"Unknown conf mode {confmode!r} (expected 'prod' or 'mean')")
        self.pixel_loss.withconf = True
        self.confmode = confmode
        self.neg_conf_loss_quantile = neg_conf_loss_quantile

    def aggregate_confs(self, confs1, confs2):
        if confs1 is None or confs2 is None:
            return 1.0
        return confs1 * confs2 if self.confmode == "prod" else 0.5 * (confs1 + confs2)

    def compute_loss(self, gt1, gt2, pred1, pred2, **kw):
        loss, details = self.pixel_loss(gt1, gt2, pred1, pred2, **kw)
        conf1_pos, conf2_pos = details.pop("conf_pos")
        conf1_neg, conf2_neg = details.pop("conf_neg")
        conf_loss = self._weighted(loss, self.aggregate_confs(conf1_pos, conf2_pos))
        if self.neg_conf_loss_quantile:
            neg_value = torch.quantile(loss, self.neg_conf_loss_quantile).detach()
            conf_loss = conf_loss + self._weighted(neg_value, torch.cat((conf1_neg, conf2_neg)))
        return conf_loss, dict(matching_conf_loss=float(conf_loss.detach()), **details)


#: the names of a ``--train_criterion`` / ``--test_criterion`` string (the original train.py's namespace)
CRITERION_NAMES = ("L21", "L21Loss", "Regr3D", "ConfLoss", "Regr3D_ShiftInv", "Regr3D_ScaleInv",
                   "Regr3D_ScaleShiftInv", "MatchingLoss", "ConfMatchingLoss", "InfoNCE", "APLoss")


def parse_criterion(text: str):
    """MASt3R criterion from a ``train.py`` string, e.g.
    ``"ConfLoss(Regr3D(L21, norm_mode='?avg_dis'), alpha=0.2) + 0.075*ConfMatchingLoss(MatchingLoss(InfoNCE(
    mode='proper', temperature=0.05), negatives_padding=0, blocksize=8192), alpha=10.0, confmode='mean')"``.

    Read with :mod:`ast` against :data:`CRITERION_NAMES` (plus ``torch.float16`` etc.), never evaluated.
    """
    return evaluate_criterion(text, {name: globals()[name] for name in CRITERION_NAMES})
