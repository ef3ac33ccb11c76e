"""Base class of DUSt3R's dense global alignment.

The scene is a graph: nodes are images, edges are the pairwise predictions of the network. Edge ``e = (i, j)``
gives two pointmaps expressed in the frame of camera ``i``: ``pred_i[e]`` (pixels of image i) and
``pred_j[e]`` (pixels of image j). The optimiser looks for one world pointmap per image (from a depth map, the
camera intrinsics and a cam2world pose) and one similarity per edge (``pw_poses``: pair frame -> world) that
minimise the confidence-weighted distance between the world pointmaps and the aligned pairwise pointmaps::

    loss = sum_e sum_p w_i[e, p] * d(X_i[p], S_e * pred_i[e, p]) / area_i + (same for j)

All pairwise tensors are stacked over edges, with every image flattened and zero-padded to the largest image
area (padding has weight 0), so the loss is a few batched tensor operations whatever the number of pairs.

Parameters that the user knows (camera poses, focals, principal points) are "preset": their values are kept in
buffers that the getters return instead of the optimised parameters, so they hold exactly during optimisation
(those rows receive no gradient) in every subclass.
"""
from __future__ import annotations

import logging
import math
from copy import deepcopy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..utils.geometry import quat_to_rotmat, rotmat_to_quat
from ..utils.image import rgb
from ..utils.schedules import get_schedule
from .commons import ALL_DISTS, connected_components, edge_str, get_conf_trf, signed_expm1, signed_log1p
from .known_values import KnownCamerasMixin
from .pair_inputs import as_index_list, check_finite, view_meta_of, ravel_pad, pair_rows

logger = logging.getLogger(__name__)

__all__ = ["BasePCOptimizer", "global_alignment_loop", "global_alignment_iter"]


# ================================================================================================ base class
class BasePCOptimizer(KnownCamerasMixin, nn.Module):
    """Global alignment of pairwise pointmaps (abstract; see PointCloudOptimizer / ModularPointCloudOptimizer).

    Args:
        view1, view2: collated views of the pairs (``dust3r.inference.inference`` output); need ``idx`` (and
            ``img`` for colours, the resize metadata for ``views_meta``).
        pred1, pred2: predictions; ``pred1['pts3d']`` (P, H, W, 3), ``pred2['pts3d_in_other_view']``, both
            confs (P, H, W); stacked tensors or lists of per-pair tensors. Other keys (desc...) are ignored.
        dist: ``'l1'`` or ``'l2'`` distance between pointmaps.
        conf: confidence -> weight transform (``'log'``, ``'sqrt'``, ``'m1'``, ``'id'``).
        min_conf_thr: confidence threshold of ``get_masks()``.
        base_scale: geometric mean of the pairwise scales when they are normalised (no known poses).
        allow_pw_adaptors: also optimise a small per-pair anisotropic (xy / z) rescaling.
        pw_break: damping of the adaptors.
        rand_pose: ``f(shape) -> tensor`` used to initialise poses (before any ``init``).
        iterationsCount: accepted and ignored (argument of the original API).
        verbose: log / show progress bars.
    """

    POSE_DIM = 7  # quaternion (x, y, z, w) + signed-log translation

    def __init__(self, view1: Dict[str, Any], view2: Dict[str, Any], pred1: Dict[str, Any], pred2: Dict[str, Any],
                 dist: str = "l1", conf: str = "log", min_conf_thr: float = 3, base_scale: float = 0.5,
                 allow_pw_adaptors: bool = False, pw_break: float = 20, rand_pose=torch.randn,
                 iterationsCount=None, verbose: bool = True):
        super().__init__()
        if dist not in ALL_DISTS:
            raise ValueError(f"bad dist={dist!r}: expected one of {sorted(ALL_DISTS)}")
        self.verbose = verbose
        self.dist = ALL_DISTS[dist]
        self.conf_trf = get_conf_trf(conf)
        self.min_conf_thr = min_conf_thr
        self.base_scale = base_scale
        self.norm_pw_scale = True
        self.pw_break = pw_break
        self.rand_pose = rand_pose
        self.has_im_poses = False

        self._parse_edges(view1, view2)
        pts_i, pts_j, conf_i, conf_j = self._parse_predictions(pred1, pred2)
        self.imshapes = self._image_shapes(pts_i, pts_j)
        self._check_graph()
        self.max_area = max(h * w for h, w in self.imshapes)
        self._store_pairwise(pts_i, pts_j, conf_i, conf_j)

        # pairwise similarity (pair frame -> world) per edge: quaternion, signed-log translation, log scale
        self.pw_poses = nn.Parameter(rand_pose((self.n_edges, 1 + self.POSE_DIM)).float())
        self.pw_adaptors = nn.Parameter(torch.zeros((self.n_edges, 2)))
        self.pw_adaptors.requires_grad_(allow_pw_adaptors)

        self.imgs = self._collect_images(view1, view2)
        self.views_meta = self._collect_meta(view1, view2)

    # ------------------------------------------------------------------------------------------ construction
    def _parse_edges(self, view1, view2) -> None:
        for name, view in (("view1", view1), ("view2", view2)):
            if not isinstance(view, dict) or "idx" not in view:
                raise ValueError(f"{name} must be a dict of collated views with an 'idx' entry "
                                 "(use the output of dust3r.inference.inference)")
        idx1 = as_index_list(view1["idx"], "view1['idx']")
        idx2 = as_index_list(view2["idx"], "view2['idx']")
        if len(idx1) != len(idx2) or not idx1:
            raise ValueError(f"view1 and view2 must describe the same (non-zero) number of pairs, got "
                             f"{len(idx1)} and {len(idx2)}")
        self.edges: List[Tuple[int, int]] = list(zip(idx1, idx2))
        loops = [e for e in self.edges if e[0] == e[1]]
        if loops:
            raise ValueError(f"pairs of an image with itself are not supported: {loops}")
        negative = [e for e in self.edges if min(e) < 0]
        if negative:
            raise ValueError(f"negative image indices in pairs {negative}")
        self.is_symmetrized = set(self.edges) == {(j, i) for i, j in self.edges}
        indices = sorted({i for e in self.edges for i in e})
        if indices != list(range(len(indices))):
            missing = sorted(set(range(indices[-1] + 1)) - set(indices))
            raise ValueError(f"image indices of the pairs must be 0..N-1 without gaps; images {missing} appear in "
                             "no pair (re-index the views or add pairs for them)")
        self.n_imgs = len(indices)

    def _parse_predictions(self, pred1, pred2):
        if "pts3d" not in pred1:
            raise ValueError("pred1 has no 'pts3d' entry")
        if "pts3d_in_other_view" not in pred2:
            raise ValueError("pred2 has no 'pts3d_in_other_view' entry (expected the output of "
                             "dust3r.inference.inference, where the second view's points are in camera-1 frame)")
        for name, pred in (("pred1", pred1), ("pred2", pred2)):
            if "conf" not in pred:
                raise ValueError(f"{name} has no 'conf' entry: global alignment needs confidence maps "
                                 "(the model must be trained with a confidence output)")
        n = self.n_edges
        pts_i = pair_rows(pred1["pts3d"], "pred1['pts3d']", n, 3)
        pts_j = pair_rows(pred2["pts3d_in_other_view"], "pred2['pts3d_in_other_view']", n, 3)
        conf_i = pair_rows(pred1["conf"], "pred1['conf']", n, 2)
        conf_j = pair_rows(pred2["conf"], "pred2['conf']", n, 2)
        for name, rows in (("pred1['pts3d']", pts_i), ("pred2['pts3d_in_other_view']", pts_j)):
            bad = [e for e, r in enumerate(rows) if r.ndim != 3 or r.shape[-1] != 3]
            if bad:
                raise ValueError(f"{name} of pair #{bad[0]} has shape {tuple(rows[bad[0]].shape)}, expected (H, W, 3)")
        for name, rows, ref in (("pred1['conf']", conf_i, pts_i), ("pred2['conf']", conf_j, pts_j)):
            bad = [e for e, (r, p) in enumerate(zip(rows, ref)) if tuple(r.shape) != tuple(p.shape[:2])]
            if bad:
                raise ValueError(f"{name} of pair #{bad[0]} has shape {tuple(rows[bad[0]].shape)}, expected "
                                 f"{tuple(ref[bad[0]].shape[:2])}")
        check_finite(pts_i, "pred1['pts3d']", self.edges)
        check_finite(pts_j, "pred2['pts3d_in_other_view']", self.edges)
        check_finite(conf_i, "pred1['conf']", self.edges)
        check_finite(conf_j, "pred2['conf']", self.edges)
        return pts_i, pts_j, conf_i, conf_j

    def _image_shapes(self, pts_i, pts_j) -> List[Tuple[int, int]]:
        shapes: List[Optional[Tuple[int, int]]] = [None] * self.n_imgs
        for e, (i, j) in enumerate(self.edges):
            for img, pts in ((i, pts_i[e]), (j, pts_j[e])):
                shape = tuple(int(s) for s in pts.shape[:2])
                if shapes[img] is not None and shapes[img] != shape:
                    raise ValueError(f"image {img} has pointmaps of different sizes {shapes[img]} and {shape} "
                                     f"(pair #{e}: {i} -> {j})")
                shapes[img] = shape
        return shapes

    def _check_graph(self) -> None:
        components = connected_components(self.n_imgs, self.edges)
        if len(components) > 1:
            raise ValueError(f"the pair graph is not connected: {len(components)} components {components}; "
                             "add pairs linking them (e.g. scene_graph='complete') or align each part separately")

    def _store_pairwise(self, pts_i, pts_j, conf_i, conf_j) -> None:
        A = self.max_area
        # pointmaps stored channels-first (E, 3, A): (3x3) @ (3xA) batched products are much faster than (Ax3)@(3x3)
        self.register_buffer("_pred_i_cf", torch.stack([ravel_pad(p, A).T for p in pts_i]).contiguous())
        self.register_buffer("_pred_j_cf", torch.stack([ravel_pad(p, A).T for p in pts_j]).contiguous())
        self.register_buffer("_stacked_conf_i", torch.stack([ravel_pad(c, A) for c in conf_i]))  # (E, A)
        self.register_buffer("_stacked_conf_j", torch.stack([ravel_pad(c, A) for c in conf_j]))
        self.register_buffer("_ei", torch.tensor([i for i, _ in self.edges], dtype=torch.long))
        self.register_buffer("_ej", torch.tensor([j for _, j in self.edges], dtype=torch.long))
        areas = torch.tensor([h * w for h, w in self.imshapes], dtype=torch.long)
        self.register_buffer("_weight_i", self._pixel_weights(conf_i, "pred1['conf']"))
        self.register_buffer("_weight_j", self._pixel_weights(conf_j, "pred2['conf']"))
        self.total_area_i = int(areas[self._ei].sum())
        self.total_area_j = int(areas[self._ej].sum())
        im_conf = [torch.zeros(hw) for hw in self.imshapes]
        for e, (i, j) in enumerate(self.edges):
            im_conf[i] = torch.maximum(im_conf[i], conf_i[e])
            im_conf[j] = torch.maximum(im_conf[j], conf_j[e])
        self.im_conf = nn.ParameterList([nn.Parameter(c, requires_grad=False) for c in im_conf])

    def _pixel_weights(self, confs: Sequence[torch.Tensor], name: str) -> torch.Tensor:
        """(E, A) loss weights ``conf_trf(conf)``; negative -> 0, an all-zero pair -> uniform (with a warning)."""
        rows = []
        for e, conf in enumerate(confs):
            w = self.conf_trf(conf.clip(min=0))
            if bool((conf <= 0).any()):  # e.g. log(0) = -inf: such pixels simply get no weight
                logger.warning("%s of pair #%d %s: %d confidences <= 0 get weight 0", name, e, self.edges[e],
                               int((conf <= 0).sum()))
                w = torch.where(conf > 0, w, torch.zeros_like(w))
            if not bool(torch.isfinite(w).all()):
                raise ValueError(f"{name} of pair #{e} (images {self.edges[e]}) gives non-finite weights with this "
                                 "confidence transform; use conf='id' or fix the input")
            if bool((w < 0).any()):
                logger.warning("%s of pair #%d %s: confidences below the transform's zero; negative weights "
                               "clipped to 0", name, e, self.edges[e])
                w = w.clip(min=0)
            if float(w.sum()) <= 0:
                logger.warning("%s of pair #%d %s: all pixel weights are zero (degenerate confidence); using "
                               "uniform weights for this pair", name, e, self.edges[e])
                w = torch.ones_like(w)
            rows.append(ravel_pad(w, self.max_area))
        return torch.stack(rows)

    def _collect_images(self, view1, view2) -> Optional[List[np.ndarray]]:
        if "img" not in view1 or "img" not in view2:
            return None
        imgs: List[Optional[torch.Tensor]] = [None] * self.n_imgs
        for view in (view1, view2):
            side = 0 if view is view1 else 1
            for e, edge in enumerate(self.edges):
                idx = edge[side]
                if imgs[idx] is None:
                    img = torch.as_tensor(view["img"][e])
                    imgs[idx] = img[0] if img.ndim == 4 else img
        out = []
        for n, img in enumerate(imgs):
            if img is None or tuple(img.shape[-2:]) != tuple(self.imshapes[n]):
                img = torch.zeros((3, *self.imshapes[n]))
            out.append(np.ascontiguousarray(rgb(img).astype(np.float32)))
        return out

    def _collect_meta(self, view1, view2) -> List[Optional[Dict[str, Any]]]:
        metas: List[Optional[Dict[str, Any]]] = [None] * self.n_imgs
        for side, view in ((0, view1), (1, view2)):
            for e, edge in enumerate(self.edges):
                if metas[edge[side]] is None:
                    try:
                        metas[edge[side]] = view_meta_of(view, e)
                    except (IndexError, TypeError):
                        metas[edge[side]] = None
        return metas

    # ------------------------------------------------------------------------------------------ properties
    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def str_edges(self) -> List[str]:
        return [edge_str(i, j) for i, j in self.edges]

    @property
    def imsizes(self) -> List[Tuple[int, int]]:
        return [(w, h) for h, w in self.imshapes]

    @property
    def device(self) -> torch.device:
        return self._pred_i_cf.device

    @property
    def _stacked_pred_i(self) -> torch.Tensor:
        """(E, A, 3) first pointmap of every pair (camera-i frame), flattened and zero-padded (a view)."""
        return self._pred_i_cf.transpose(1, 2)

    @property
    def _stacked_pred_j(self) -> torch.Tensor:
        """(E, A, 3) second pointmap of every pair (camera-i frame), flattened and zero-padded (a view)."""
        return self._pred_j_cf.transpose(1, 2)

    def _unstack(self, stacked: torch.Tensor, shape_of) -> Dict[str, torch.Tensor]:
        return {name: row[:h * w].view(h, w, *row.shape[1:])
                for name, row, (h, w) in zip(self.str_edges, stacked, shape_of)}

    @property
    def pred_i(self) -> Dict[str, torch.Tensor]:
        """``{'i_j': (H_i, W_i, 3)}`` first pointmap of each pair (camera-i frame)."""
        return self._unstack(self._stacked_pred_i, [self.imshapes[i] for i, _ in self.edges])

    @property
    def pred_j(self) -> Dict[str, torch.Tensor]:
        """``{'i_j': (H_j, W_j, 3)}`` second pointmap of each pair (camera-i frame)."""
        return self._unstack(self._stacked_pred_j, [self.imshapes[j] for _, j in self.edges])

    @property
    def conf_i(self) -> Dict[str, torch.Tensor]:
        return self._unstack(self._stacked_conf_i, [self.imshapes[i] for i, _ in self.edges])

    @property
    def conf_j(self) -> Dict[str, torch.Tensor]:
        return self._unstack(self._stacked_conf_j, [self.imshapes[j] for _, j in self.edges])

    def edge_scores(self) -> torch.Tensor:
        """(E,) mean confidence of pred_i times mean confidence of pred_j of every edge."""
        areas = torch.tensor([h * w for h, w in self.imshapes], device=self.device, dtype=torch.float32)
        mean_i = self._stacked_conf_i.sum(1) / areas[self._ei]
        mean_j = self._stacked_conf_j.sum(1) / areas[self._ej]
        return mean_i * mean_j


    # ------------------------------------------------------------------------------------------ scene
    def _world_points_cf(self) -> torch.Tensor:
        """(N, 3, A) world pointmaps, channels first, flattened and zero-padded to the largest area."""
        raise NotImplementedError

    def _stacked_pts3d(self) -> torch.Tensor:
        """(N, A, 3) world pointmaps, flattened and zero-padded to the largest area."""
        return self._world_points_cf().transpose(1, 2)

    def _set_depthmap(self, idx: int, depth: torch.Tensor, force: bool = False):
        raise NotImplementedError

    def get_depthmaps(self, raw: bool = False):
        raise NotImplementedError

    def get_pts3d(self, raw: bool = False):
        """World pointmaps: list of N (H, W, 3) (``raw``: the stacked (N, A, 3) tensor)."""
        res = self._stacked_pts3d()
        if raw:
            return res
        return [row[:h * w].view(h, w, 3) for row, (h, w) in zip(res, self.imshapes)]

    def depth_to_pts3d(self):
        return self._stacked_pts3d()

    def get_masks(self) -> List[torch.Tensor]:
        """Per image (H, W) bool: confidence above ``min_conf_thr``."""
        return [conf > self.min_conf_thr for conf in self.im_conf]

    def get_conf(self, mode: Optional[str] = None) -> List[torch.Tensor]:
        """Per image (H, W) best confidence over the pairs, transformed by ``mode`` (default: the loss one)."""
        trf = self.conf_trf if mode is None else get_conf_trf(mode)
        return [trf(c) for c in self.im_conf]

    # ------------------------------------------------------------------------------------------ pairwise poses
    @staticmethod
    def _pose_params_to_4x4(params: torch.Tensor) -> torch.Tensor:
        """(..., >=7) quaternion + signed-log translation -> (..., 4, 4) rigid transforms."""
        R = quat_to_rotmat(params[..., :4])
        T = signed_expm1(params[..., 4:7])
        out = torch.zeros(*params.shape[:-1], 4, 4, dtype=params.dtype, device=params.device)
        out[..., :3, :3] = R
        out[..., :3, 3] = T
        out[..., 3, 3] = 1
        return out

    @staticmethod
    def _pose_to_params(R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """(..., 3, 3), (..., 3) -> (..., 7) parameters."""
        return torch.cat((rotmat_to_quat(R).to(T.dtype), signed_log1p(T)), dim=-1)

    def get_adaptors(self) -> torch.Tensor:
        """(E, 3) per-pair (x, y, z) scale factors (product 1 when scales are normalised)."""
        adapt = torch.cat((self.pw_adaptors[:, 0:1], self.pw_adaptors), dim=-1)
        if self.norm_pw_scale:
            adapt = adapt - adapt.mean(dim=1, keepdim=True)
        return (adapt / self.pw_break).exp()

    def get_pw_norm_scale_factor(self) -> torch.Tensor:
        if self.norm_pw_scale:
            return (math.log(self.base_scale) - self.pw_poses[:, -1].mean()).exp()
        return torch.ones((), device=self.pw_poses.device)

    def get_pw_scale(self) -> torch.Tensor:
        """(E,) scale of each pair -> world similarity."""
        return self.pw_poses[:, -1].exp() * self.get_pw_norm_scale_factor()

    def get_pw_poses(self) -> torch.Tensor:
        """(E, 4, 4) pair-frame -> world similarities (rotation and translation rows scaled)."""
        RT = self._pose_params_to_4x4(self.pw_poses[:, :7])
        scale = self.get_pw_scale()
        return torch.cat((RT[:, :3] * scale[:, None, None], RT[:, 3:]), dim=1)

    @torch.no_grad()
    def set_pw_poses(self, scale: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> None:
        """Set every pair's similarity to ``x -> scale * R x + T`` (world frame), (E,), (E, 3, 3), (E, 3)."""
        log_s = scale.to(torch.float64).clip(min=1e-30).log()
        if self.norm_pw_scale:
            factor = math.exp(math.log(self.base_scale) - float(log_s.mean()))
        else:
            factor = 1.0
        scale = scale.to(torch.float64)
        params = self._pose_to_params(R.to(torch.float64), T.to(torch.float64) / (scale * factor)[:, None])
        self.pw_poses.data[:, :7] = params.to(self.pw_poses)
        self.pw_poses.data[:, 7] = log_s.to(self.pw_poses)

    # ------------------------------------------------------------------------------------------ loss
    def forward(self, ret_details: bool = False):
        """Confidence-weighted distance between world pointmaps and aligned pairwise predictions (scalar)."""
        pw_poses = self.get_pw_poses()  # (E, 4, 4)
        pts3d = self._world_points_cf()  # (N, 3, A) world frame
        rot, trans = pw_poses[:, :3, :3], pw_poses[:, :3, 3:]
        pred_i, pred_j = self._pred_i_cf, self._pred_j_cf
        if self.pw_adaptors.requires_grad or bool(self.pw_adaptors.any()):
            adapt = self.get_adaptors()[:, :, None]  # (E, 3, 1)
            pred_i, pred_j = adapt * pred_i, adapt * pred_j
        aligned_i = torch.baddbmm(trans, rot, pred_i)  # (E, 3, A) world frame
        aligned_j = torch.baddbmm(trans, rot, pred_j)
        li = self.dist(pts3d[self._ei], aligned_i, weight=self._weight_i, dim=1)  # (E, A)
        lj = self.dist(pts3d[self._ej], aligned_j, weight=self._weight_j, dim=1)
        loss = li.sum() / self.total_area_i + lj.sum() / self.total_area_j
        if not ret_details:
            return loss
        areas = torch.tensor([h * w for h, w in self.imshapes], device=li.device, dtype=li.dtype)
        details = -torch.ones((self.n_imgs, self.n_imgs), device=li.device, dtype=li.dtype)
        per_edge = li.sum(1) / areas[self._ei] + lj.sum(1) / areas[self._ej]
        details[self._ei, self._ej] = per_edge.detach()
        return loss, details

    def compute_global_alignment(self, init: Optional[str] = "mst", niter_PnP: int = 10, **kw) -> float:
        """Initialise (``init``: 'mst'/'msp', 'known_poses', None/'none') then optimise; returns the final loss.

        Keyword arguments go to :func:`global_alignment_loop` (lr=0.01, niter=300, schedule='cosine',
        lr_min=1e-6, verbose).
        """
        from . import init_im_poses

        device_type = self.device.type if self.device.type in ("cuda", "cpu") else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            if init is None or init == "none":
                pass
            elif init in ("msp", "mst"):
                init_im_poses.init_minimum_spanning_tree(self, niter_PnP=niter_PnP)
            elif init == "known_poses":
                init_im_poses.init_from_known_poses(self, min_conf_thr=self.min_conf_thr, niter_PnP=niter_PnP)
            else:
                raise ValueError(f"bad value for init={init!r}: expected 'mst', 'msp', 'known_poses' or None")
            kw.setdefault("verbose", self.verbose)
            return global_alignment_loop(self, **kw)

    # ------------------------------------------------------------------------------------------ post-processing
    @torch.no_grad()
    def clean_pointcloud(self, tol: float = 0.001, max_bad_conf: float = 0):
        """Copy of the scene where points hidden behind a more confident depth of another view lose confidence.

        Every point of image i is projected into every other camera j; if it lies in front of j's depth map
        (by more than ``tol`` relative) and is less confident than j's pixel, its confidence is clipped to
        ``max_bad_conf``.
        """
        if not 0 <= tol < 1:
            raise ValueError(f"tol must lie in [0, 1), got {tol}")
        world2cam = torch.linalg.inv(self.get_im_poses())
        K = self.get_intrinsics()
        depthmaps = self.get_depthmaps()
        pts_all = self._stacked_pts3d()
        res = deepcopy(self)
        for i in range(self.n_imgs):
            Hi, Wi = self.imshapes[i]
            pts = pts_all[i, :Hi * Wi]  # (HW, 3) world
            others = [j for j in range(self.n_imgs) if j != i]
            if not others:
                continue
            cams = world2cam[others]  # (M, 4, 4)
            proj = pts[None] @ cams[:, :3, :3].transpose(1, 2) + cams[:, None, :3, 3]  # (M, HW, 3)
            depth = proj[..., 2]
            uvw = proj @ K[others].transpose(1, 2)
            uv = (uvw[..., :2] / uvw[..., 2:3]).round()
            uv = torch.nan_to_num(uv, nan=-1.0, posinf=-1.0, neginf=-1.0).clamp(-1, 1e6).long()
            conf_i = res.im_conf[i].reshape(-1)
            bad_total = torch.zeros(Hi * Wi, dtype=torch.bool, device=pts.device)
            for m, j in enumerate(others):
                Hj, Wj = self.imshapes[j]
                u, v = uv[m].unbind(-1)
                inside = (depth[m] > 0) & (u >= 0) & (u < Wj) & (v >= 0) & (v < Hj)
                uj, vj = u.clamp(0, Wj - 1), v.clamp(0, Hj - 1)
                bad = inside & (depth[m] < (1 - tol) * depthmaps[j][vj, uj]) & (conf_i < res.im_conf[j][vj, uj])
                bad_total |= bad
            conf_i[bad_total] = conf_i[bad_total].clip(max=max_bad_conf)
        return res

    @torch.no_grad()
    def mask_sky(self):
        """Copy of the scene with zero confidence on sky pixels (``dust3r.viz.segment_sky``); self is unchanged."""
        from ..viz import segment_sky
        if self.imgs is None:
            raise ValueError("mask_sky needs the images (the views had no 'img')")
        res = deepcopy(self)
        for i in range(self.n_imgs):
            sky = segment_sky(self.imgs[i]).to(res.im_conf[i].device)
            res.im_conf[i].data[sky] = 0
        return res

    @torch.no_grad()
    def to_trimesh(self, cam_size: Optional[float] = None):
        """``trimesh.Scene`` with the confident points (image colours) and one small axis marker per camera."""
        try:
            import trimesh
        except ImportError as exc:
            raise NotImplementedError("show() / to_trimesh() need the optional package trimesh "
                                      "(pip install trimesh)") from exc
        pts = self.get_pts3d()
        masks = self.get_masks()
        pts_all = torch.cat([p[m] for p, m in zip(pts, masks)]).detach().cpu().numpy()
        if self.imgs is not None:
            colors = np.concatenate([img[m.cpu().numpy()] for img, m in zip(self.imgs, masks)])
        else:
            palette = np.random.default_rng(0).integers(0, 256, size=(self.n_imgs, 3)) / 255.0
            colors = np.concatenate([np.tile(palette[n], (int(m.sum()), 1)) for n, m in enumerate(masks)])
        scene = trimesh.Scene()
        scene.add_geometry(trimesh.PointCloud(pts_all, colors=(colors * 255).astype(np.uint8)))
        poses = self.get_im_poses().detach().cpu().numpy()
        if cam_size is None:
            centres = poses[:, :3, 3]
            spread = np.linalg.norm(centres - centres.mean(0), axis=1).max() if len(centres) > 1 else 1.0
            cam_size = max(float(spread) * 0.1, 1e-3)
        for pose in poses:
            scene.add_geometry(trimesh.creation.axis(origin_size=cam_size * 0.1, axis_length=cam_size),
                               transform=pose)
        return scene

    def show(self, cam_size: Optional[float] = None, **kw):
        """Open an interactive trimesh viewer of the scene (needs trimesh and a display)."""
        scene = self.to_trimesh(cam_size=cam_size)
        scene.show(**kw)
        return scene


# ================================================================================================ optimisation loop
def global_alignment_loop(net: BasePCOptimizer, lr: float = 0.01, niter: int = 300, schedule: str = "cosine",
                          lr_min: float = 1e-6, verbose: bool = False) -> float:
    """Adam on every trainable parameter of ``net`` with a learning-rate decay from ``lr`` to ``lr_min``
    (``schedule``: a name of :data:`dust3r.utils.schedules.SCHEDULES`, 'cosine' or 'linear', or a callable).

    Returns:
        the loss of the last iteration (or of the current state when nothing is trainable / niter == 0).
    """
    get_schedule(schedule)  # raises ValueError naming the known schedules
    if niter < 0:
        raise ValueError(f"niter must be >= 0, got {niter}")
    params = [p for p in net.parameters() if p.requires_grad]
    if not params or niter == 0:
        with torch.no_grad():
            return float(net())
    if verbose:
        logger.info("optimising %s", [name for name, p in net.named_parameters() if p.requires_grad])
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
    loss = float("nan")
    with tqdm(total=niter, disable=not verbose, desc="global alignment") as bar:
        for it in range(niter):
            loss = global_alignment_iter(net, it, niter, lr, lr_min, optimizer, schedule)
            bar.set_postfix_str(f"loss={loss:g}")
            bar.update()
    return loss


def global_alignment_iter(net, cur_iter: int, niter: int, lr_base: float, lr_min: float, optimizer,
                          schedule: str) -> float:
    """One Adam step at the scheduled learning rate; returns the loss before the step."""
    lr = get_schedule(schedule)(cur_iter / niter, lr_base, lr_min)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss = net()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"global alignment diverged at iteration {cur_iter} (loss={float(loss)}); "
                                 "try a smaller lr or init='mst'")
    loss.backward()
    optimizer.step()
    return float(loss.detach())
