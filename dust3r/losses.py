"""DUSt3R training losses: combinable criteria (``A + 0.1 * B``) with per-term detail dicts.

Every criterion is called as ``criterion(gt1, gt2, pred1, pred2) -> (loss, details)`` where ``gt1``/``gt2`` are
the (symmetrised) batch views and ``pred1``/``pred2`` the model outputs; ``details`` maps a name to a float (or a
tensor) per term, not scaled by the term's weight. Criterion strings such as
``"ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"`` are read by :func:`parse_criterion` with :mod:`ast`
against an allow-list, never evaluated.
"""
from __future__ import annotations

import ast
import logging
from copy import copy, deepcopy
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn

from dust3r.inference import get_pred_pts3d
from dust3r.utils.checkpoint.constructor import source_fragment
from dust3r.utils.geometry import (geotrf, get_joint_pointcloud_center_scale, get_joint_pointcloud_depth, inv,
                                   normalize_pointcloud)

logger = logging.getLogger(__name__)

__all__ = ["Sum", "BaseCriterion", "LLoss", "L21Loss", "L21", "Criterion", "MultiLoss", "Regr3D", "ConfLoss",
           "Regr3D_ShiftInv", "Regr3D_ScaleInv", "Regr3D_ScaleShiftInv", "parse_criterion", "CRITERION_NAMES"]


def Sum(*losses_and_masks):
    """Pixel losses ``(loss, mask), ...``: returned as they are when per-pixel (``reduction='none'``), else the sum
    of the scalar losses."""
    first = losses_and_masks[0][0]
    if first.ndim > 0:
        return losses_and_masks
    return sum((loss for loss, _ in losses_and_masks[1:]), first)


class BaseCriterion(nn.Module):
    """A pointwise criterion with a ``reduction`` ('mean', 'sum' or 'none')."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def _reduce(self, dist: torch.Tensor) -> torch.Tensor:
        if self.reduction == "none":
            return dist
        if self.reduction == "sum":
            return dist.sum()
        if self.reduction == "mean":
            return dist.mean() if dist.numel() else dist.new_zeros(())
        raise ValueError(f"unknown reduction {self.reduction!r} (expected 'mean', 'sum' or 'none')")


class LLoss(BaseCriterion):
    """Distance between point sets ``a``, ``b`` of shape (..., d), 1 <= d <= 3, reduced over the leading dims."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim < 2 or not 1 <= a.shape[-1] <= 3:
            raise ValueError(f"{type(self).__name__}: bad shapes {tuple(a.shape)} vs {tuple(b.shape)}")
        return self._reduce(self.distance(a, b))

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class L21Loss(LLoss):
    """Euclidean distance between 3D points (L2 over the last dim, then the reduction)."""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a - b, dim=-1)


L21 = L21Loss()


class MultiLoss(nn.Module):
    """A term of a weighted sum of losses: ``A + 0.1 * B`` chains terms, each keeping its own ``details``.

    Subclasses implement :meth:`compute_loss` (a loss tensor, or ``(loss, details)``) and :meth:`get_name`.
    """

    def __init__(self):
        super().__init__()
        self._alpha = 1
        self._set_next(None)

    def _set_next(self, loss2: Optional["MultiLoss"]) -> None:
        # kept out of nn.Module's registry: shallow copies (``k * A``, ``A + B``) share that registry
        self.__dict__["_loss2"] = loss2

    def compute_loss(self, *args, **kwargs):
        raise NotImplementedError

    def get_name(self) -> str:
        raise NotImplementedError

    def __mul__(self, alpha):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            return NotImplemented
        if self._loss2 is not None:  # upstream would scale the first term only
            raise ValueError(f"cannot scale the sum {self!r} as a whole: scale each term (k*A + k*B)")
        scaled = copy(self)
        scaled._alpha = self._alpha * alpha  # k * (m * A) == (k m) * A
        return scaled

    __rmul__ = __mul__

    def __add__(self, other):
        if not isinstance(other, MultiLoss):
            return NotImplemented
        head = copy(self)
        node = head
        while node._loss2 is not None:  # copy the chain so that the operands stay unchanged
            node._set_next(copy(node._loss2))
            node = node._loss2
        node._set_next(other)
        return head

    def __repr__(self) -> str:
        text = self.get_name()
        if self._alpha != 1:
            text = f"{self._alpha:g}*{text}"
        if self._loss2 is not None:
            text = f"{text} + {self._loss2!r}"
        return text

    def forward(self, *args, **kwargs):
        out = self.compute_loss(*args, **kwargs)
        if isinstance(out, tuple):
            loss, details = out
        else:
            loss, details = out, ({self.get_name(): float(out.detach())} if out.ndim == 0 else {})
        loss = loss * self._alpha
        if self._loss2 is not None:
            loss2, details2 = self._loss2(*args, **kwargs)
            loss = loss + loss2
            details = {**details, **details2}
        return loss, details


class Criterion(nn.Module):
    """Wraps a pointwise :class:`BaseCriterion` (copied, so that its reduction can be changed per wrapper)."""

    def __init__(self, criterion: Optional[BaseCriterion] = None):
        super().__init__()
        if not isinstance(criterion, BaseCriterion):
            raise TypeError(f"{criterion!r} is not a pointwise criterion (BaseCriterion)")
        self.criterion = copy(criterion)

    def get_name(self) -> str:
        return f"{type(self).__name__}({self.criterion})"

    def with_reduction(self, mode: str = "none"):
        """A deep copy whose pointwise criteria (along the whole ``+`` chain) use reduction ``mode``."""
        res = deepcopy(self)
        node = res
        while node is not None:
            if not isinstance(node, Criterion):
                raise TypeError(f"with_reduction: {type(node).__name__} is not a Criterion")
            node.criterion.reduction = mode
            node = node._loss2
        return res


class Regr3D(Criterion, MultiLoss):
    """Regression of both pointmaps in the frame of camera 1 (view 1 is the anchor).

    GT points of both views are moved into camera 1 with ``inv(gt1['camera_pose'])``; prediction 1 is read in its
    own frame, prediction 2 in camera 1 (``pts3d_in_other_view``). With ``norm_mode`` (e.g. 'avg_dis') both sides
    are divided by their own joint scale (the GT is left as is when ``gt_scale``). Loss: ``criterion`` on the
    valid pixels (``gt['valid_mask']``) of each view; details ``<Class>_pts3d_1``, ``<Class>_pts3d_2``.
    """

    def __init__(self, criterion, norm_mode="avg_dis", gt_scale=False):
        super().__init__(criterion)
        self.norm_mode = norm_mode
        self.gt_scale = gt_scale

    @staticmethod
    def _gt_in_camera1(gt1, gt2, dist_clip=None):
        """GT points (B, H, W, 3) of both views in camera 1 and their validity masks (B, H, W)."""
        world2cam1 = inv(gt1["camera_pose"])
        gt_pts1 = geotrf(world2cam1, gt1["pts3d"])
        gt_pts2 = geotrf(world2cam1, gt2["pts3d"])
        valid1, valid2 = gt1["valid_mask"].clone(), gt2["valid_mask"].clone()
        if dist_clip is not None:
            valid1 &= gt_pts1.norm(dim=-1) <= dist_clip
            valid2 &= gt_pts2.norm(dim=-1) <= dist_clip
        return gt_pts1, gt_pts2, valid1, valid2

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, dist_clip=None):
        """(gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2, monitoring), points (B, H, W, 3) in camera 1."""
        gt_pts1, gt_pts2, valid1, valid2 = self._gt_in_camera1(gt1, gt2, dist_clip)
        pr_pts1 = get_pred_pts3d(gt1, pred1, use_pose=False)
        pr_pts2 = get_pred_pts3d(gt2, pred2, use_pose=True)
        if self.norm_mode:
            pr_pts1, pr_pts2 = normalize_pointcloud(pr_pts1, pr_pts2, self.norm_mode, valid1, valid2)
            if not self.gt_scale:
                gt_pts1, gt_pts2 = normalize_pointcloud(gt_pts1, gt_pts2, self.norm_mode, valid1, valid2)
        return gt_pts1, gt_pts2, pr_pts1, pr_pts2, valid1, valid2, {}

    def _details(self, l1, l2) -> dict:
        name = type(self).__name__
        return {f"{name}_pts3d_1": float(l1.detach().mean()), f"{name}_pts3d_2": float(l2.detach().mean())}

    def compute_loss(self, gt1, gt2, pred1, pred2, **kw):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, monitoring = self.get_all_pts3d(gt1, gt2, pred1, pred2,
                                                                                          **kw)
        l1 = self.criterion(pr_pts1[mask1], gt_pts1[mask1])
        l2 = self.criterion(pr_pts2[mask2], gt_pts2[mask2])
        return Sum((l1, mask1), (l2, mask2)), {**self._details(l1, l2), **monitoring}


def shift_depth_to_median(gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2):
    """Subtract from z the joint median valid depth, per sample, separately for GT and prediction (B, H, W, 3)."""
    def shifted(pts1, pts2):
        shift = get_joint_pointcloud_depth(pts1[..., 2], pts2[..., 2], mask1, mask2)
        offset = torch.zeros_like(pts1[:1, :1, :1])
        offset = offset.expand(len(shift), 1, 1, 3).clone()
        offset[..., 2] = shift[:, None, None]
        return pts1 - offset, pts2 - offset
    return (*shifted(gt_pts1, gt_pts2), *shifted(pr_pts1, pr_pts2))


def match_scale(gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, gt_scale: bool):
    """Scale by the median distance to the median centre (prediction scale clipped to [1e-3, 1e3]): the prediction
    is brought to the GT scale (``gt_scale``) or both are divided by their own scale."""
    _, scale_gt = get_joint_pointcloud_center_scale(gt_pts1, gt_pts2, mask1, mask2)
    _, scale_pr = get_joint_pointcloud_center_scale(pr_pts1, pr_pts2, mask1, mask2)
    scale_pr = scale_pr.clip(min=1e-3, max=1e3)
    if gt_scale:
        ratio = scale_gt / scale_pr
        return gt_pts1, gt_pts2, pr_pts1 * ratio, pr_pts2 * ratio
    return gt_pts1 / scale_gt, gt_pts2 / scale_gt, pr_pts1 / scale_pr, pr_pts2 / scale_pr


class Regr3D_ShiftInv(Regr3D):
    """:class:`Regr3D` invariant to a depth shift: GT and prediction z each minus their joint median depth."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, **kw):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, monitoring = super().get_all_pts3d(gt1, gt2, pred1,
                                                                                             pred2, **kw)
        pts = shift_depth_to_median(gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2)
        return (*pts, mask1, mask2, monitoring)


class Regr3D_ScaleInv(Regr3D):
    """:class:`Regr3D` invariant to scale (see :func:`match_scale`; ``gt_scale`` keeps the GT's scale)."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2, **kw):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, monitoring = super().get_all_pts3d(gt1, gt2, pred1,
                                                                                             pred2, **kw)
        pts = match_scale(gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, self.gt_scale)
        return (*pts, mask1, mask2, monitoring)


class Regr3D_ScaleShiftInv(Regr3D_ScaleInv, Regr3D_ShiftInv):
    """Shift-invariant first (:class:`Regr3D_ShiftInv`), then scale-invariant (:class:`Regr3D_ScaleInv`)."""


class ConfLoss(MultiLoss):
    """Pixel loss weighted by the predicted confidence: ``loss * conf - alpha * log(conf)``, averaged per view.

    ``pixel_loss`` is copied with ``reduction='none'``; details ``conf_loss_1``, ``conf_loss2`` (the original's
    spelling) plus the pixel loss's own.
    """

    def __init__(self, pixel_loss, alpha=1):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"ConfLoss: alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.pixel_loss = pixel_loss.with_reduction("none")

    def get_name(self) -> str:
        return f"ConfLoss({self.pixel_loss})"

    def get_conf_log(self, x):
        return x, torch.log(x)

    def _weighted(self, loss, conf, what: str = ""):
        if what and not loss.numel():
            logger.warning("ConfLoss: no valid pixel in %s (its loss counts as 0)", what)
        conf, log_conf = self.get_conf_log(conf)
        weighted = loss * conf - self.alpha * log_conf
        return weighted.mean() if weighted.numel() else loss.new_zeros(())

    def compute_loss(self, gt1, gt2, pred1, pred2, **kw):
        ((loss1, msk1), (loss2, msk2)), details = self.pixel_loss(gt1, gt2, pred1, pred2, **kw)
        conf_loss1 = self._weighted(loss1, pred1["conf"][msk1], "view 1")
        conf_loss2 = self._weighted(loss2, pred2["conf"][msk2], "view 2")
        details = dict(conf_loss_1=float(conf_loss1.detach()), conf_loss2=float(conf_loss2.detach()), **details)
        return conf_loss1 + conf_loss2, details


# ----------------------------------------------------------------------------------------------------------------
# criterion strings


#: the names a DUSt3R criterion string may use
CRITERION_NAMES = ("L21", "L21Loss", "Regr3D", "ConfLoss", "Regr3D_ShiftInv", "Regr3D_ScaleInv",
                   "Regr3D_ScaleShiftInv")
_TORCH_DTYPES = {f"torch.{n}": getattr(torch, n) for n in ("float16", "half", "bfloat16", "float32", "float",
                                                           "float64", "double")}
_MAX_CRITERION_CHARS = 10_000


def _evaluate(node: ast.AST, text: str, names: Mapping[str, Any]):
    """Value of one node of a criterion expression: literals, allow-listed names and calls, ``+ - *``."""
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return node.value
        raise ValueError(f"unsupported constant {source_fragment(text, node)} in criterion {text!r}")
    if isinstance(node, (ast.Name, ast.Attribute)):
        dotted = _dotted(node)
        if dotted in names:
            return names[dotted]
        raise ValueError(f"name {source_fragment(text, node)!r} is not allowed in a criterion string; allowed: "
                         f"{sorted(names)}")
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(e, text, names) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, text, names)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"unary +/- applies to numbers only: {source_fragment(text, node)}")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult, ast.Sub)):
        left, right = _evaluate(node.left, text, names), _evaluate(node.right, text, names)
        if isinstance(node.op, ast.Sub):  # A - B == A + -1 * B
            right = -1 * right if isinstance(right, MultiLoss) else -right
        numbers = (int, float)
        if not (isinstance(left, (MultiLoss,) + numbers) and isinstance(right, (MultiLoss,) + numbers)) \
                or (isinstance(node.op, ast.Add) and isinstance(left, MultiLoss) != isinstance(right, MultiLoss)):
            raise ValueError(f"operators combine losses and numbers only (loss + loss, number * loss): "
                             f"{source_fragment(text, node)}")
        try:
            return left * right if isinstance(node.op, ast.Mult) else left + right
        except TypeError:
            raise ValueError(f"unsupported combination {source_fragment(text, node)}") from None
    if isinstance(node, ast.Call):
        if not isinstance(node.func, (ast.Name, ast.Attribute)) or _dotted(node.func) not in names \
                or not callable(names[_dotted(node.func)]) or isinstance(names[_dotted(node.func)], nn.Module):
            raise ValueError(f"call {source_fragment(text, node)!r} is not allowed in a criterion string; callable "
                             f"names: {sorted(k for k, v in names.items() if isinstance(v, type))}")
        args = [_evaluate(a, text, names) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"keyword unpacking is not allowed: {source_fragment(text, kw.value)}")
            kwargs[kw.arg] = _evaluate(kw.value, text, names)
        return names[_dotted(node.func)](*args, **kwargs)
    raise ValueError(f"unsupported expression {source_fragment(text, node)!r} in criterion {text!r}")


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def evaluate_criterion(text: str, names: Mapping[str, Any]):
    """Build the criterion a string describes, with :mod:`ast` against ``names`` (name -> class or object).

    Allowed: calls of the listed classes with literal / nested arguments, the listed objects (``L21``),
    ``torch.<float dtype>``, numbers, ``+``, ``-`` and ``*``. Anything else raises ValueError before any call runs
    (the whole tree is checked first).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("criterion string is empty")
    if len(text) > _MAX_CRITERION_CHARS:
        raise ValueError(f"criterion string is too long ({len(text)} characters)")
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"criterion string is not valid Python syntax ({e.msg}): {text!r}") from None
    namespace = {**_TORCH_DTYPES, **names}
    allowed_nodes = (ast.Expression, ast.Constant, ast.Name, ast.Attribute, ast.Tuple, ast.List, ast.UnaryOp,
                     ast.BinOp, ast.Call, ast.keyword, ast.Load, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult)
    for node in ast.walk(tree):  # refuse before building anything
        if not isinstance(node, allowed_nodes):
            raise ValueError(f"unsupported syntax {type(node).__name__} in criterion {text!r}")
        if isinstance(node, (ast.Name, ast.Attribute)) and not isinstance(getattr(node, "ctx", None), ast.Load):
            raise ValueError(f"unsupported syntax in criterion {text!r}")
        if isinstance(node, ast.Call) and _dotted(node.func) not in namespace:
            raise ValueError(f"call {source_fragment(text, node)!r} is not allowed in a criterion string; allowed "
                             f"classes: {sorted(k for k, v in namespace.items() if isinstance(v, type))}")
    try:
        return _evaluate(tree.body, text, namespace)
    except RecursionError:
        raise ValueError("criterion string is too deeply nested") from None


def parse_criterion(text: str):
    """DUSt3R criterion from a string such as ``"ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"``.

    Returns a callable ``criterion(view1, view2, pred1, pred2) -> (loss, details)``; see
    :func:`evaluate_criterion` for what a string may contain.
    """
    return evaluate_criterion(text, {name: globals()[name] for name in CRITERION_NAMES})
