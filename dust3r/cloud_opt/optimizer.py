"""PointCloudOptimizer: the fast dense global aligner, every per-image parameter stacked in one tensor.

Per image n (N images, A = largest H*W):
    im_depthmaps (N, A)  log depth, flattened row-major and zero-padded;
    im_poses     (N, 7)  cam2world: quaternion (x, y, z, w) + signed-log translation;
    im_focals    (N, 1)  focal_break * log(focal);
    im_pp        (N, 2)  (principal point - image centre) / 10, optimised only with ``optimize_pp``.
Preset values (``preset_pose`` / ``preset_focal`` / ``preset_principal_point``) may cover any subset of the
images: the getters return the preset value for those rows, which therefore receive no gradient.

Principal point convention: pixel (x, y) has integer coordinates at pixel centres, so a centred camera has
``pp = ((W - 1) / 2, (H - 1) / 2)``, the default here (the original implementation used ``(W / 2, H / 2)``, half a
pixel off in this convention; intrinsics exported through ``intrinsics_to_original`` rely on the former).
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..utils.geometry import xy_grid
from .base_opt import BasePCOptimizer
from .pair_inputs import ravel_pad

__all__ = ["PointCloudOptimizer", "image_centres", "acceptable_focal_range", "pointmap_from_depth"]


def image_centres(imshapes: List[Tuple[int, int]]) -> torch.Tensor:
    """(N, 2) principal point of a centred camera, ((W-1)/2, (H-1)/2) (integer coordinates at pixel centres)."""
    return torch.tensor([((w - 1) / 2, (h - 1) / 2) for h, w in imshapes], dtype=torch.float32)


def acceptable_focal_range(H: int, W: int, minf: float = 0.5, maxf: float = 3.5) -> Tuple[float, float]:
    """Plausible focal range around the focal of a 60 degree field of view."""
    focal_base = max(H, W) / (2 * np.tan(np.deg2rad(60) / 2))
    return minf * focal_base, maxf * focal_base


def pointmap_from_depth(depth: torch.Tensor, grid: torch.Tensor, focals: torch.Tensor,
                        pp: torch.Tensor) -> torch.Tensor:
    """Camera-frame points from depths, channels first.

    Args:
        depth: (N, A) z-depths; grid: (N, 2, A) pixel coordinates (x, y); focals: (N, 1) or (N, 2) (fx, fy);
        pp: (N, 2) principal points.
    Returns:
        (N, 3, A) points in each camera's frame.
    """
    xy = depth[:, None] * (grid - pp[:, :, None]) / focals[:, :, None]
    return torch.cat((xy, depth[:, None]), dim=1)


class PointCloudOptimizer(BasePCOptimizer):
    """Dense global alignment with stacked parameters (see :class:`BasePCOptimizer` for the arguments).

    Args:
        optimize_pp: also optimise the principal points.
        focal_break: focal parametrisation ``focal_break * log(f)`` (larger = slower focal updates).
    """

    def __init__(self, *args, optimize_pp: bool = False, focal_break: float = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.has_im_poses = True
        self.focal_break = focal_break
        self.optimize_pp = optimize_pp
        N, A = self.n_imgs, self.max_area
        self._init_known_buffers(focal_dim=1)

        depth = [torch.randn(h, w) / 10 - 3 for h, w in self.imshapes]
        self.im_depthmaps = nn.Parameter(torch.stack([ravel_pad(d, A) for d in depth]))
        self.im_poses = nn.Parameter(torch.stack([self.rand_pose(self.POSE_DIM).float() for _ in range(N)]))
        self.im_focals = nn.Parameter(torch.tensor([[focal_break * math.log(max(h, w))] for h, w in self.imshapes]))
        self.im_pp = nn.Parameter(torch.zeros((N, 2)))
        self.im_pp.requires_grad_(optimize_pp)

        self.imshape = self.imshapes[0]
        self.register_buffer("_pp", image_centres(self.imshapes))
        grids = [xy_grid(w, h, device="cpu").float() for h, w in self.imshapes]
        self.register_buffer("_grid", torch.stack([ravel_pad(g, A).T for g in grids]).contiguous())  # (N, 2, A)

    # -------------------------------------------------------------------------------- parameters <-> values
    def _raw_im_poses(self) -> torch.Tensor:
        return self._pose_params_to_4x4(self.im_poses)

    def _raw_focals(self) -> torch.Tensor:
        return (self.im_focals / self.focal_break).exp()

    def _raw_principal_points(self) -> torch.Tensor:
        return self._pp + 10 * self.im_pp

    @torch.no_grad()
    def _write_pose(self, idx: int, cam2world: torch.Tensor) -> None:
        params = self._pose_to_params(cam2world[:3, :3].double(), cam2world[:3, 3].double())
        self.im_poses.data[idx] = params.to(self.im_poses)

    @torch.no_grad()
    def _write_focal(self, idx: int, focal: torch.Tensor) -> None:
        f = float(torch.as_tensor(focal).double().mean())
        self.im_focals.data[idx] = self.focal_break * math.log(f)

    @torch.no_grad()
    def _write_pp(self, idx: int, pp: torch.Tensor) -> None:
        self.im_pp.data[idx] = (torch.as_tensor(pp).to(self._pp) - self._pp[idx]) / 10

    def _update_trainable(self) -> None:
        self.im_poses.requires_grad_(not bool(self._known_pose_msk.all()))
        self.im_focals.requires_grad_(not bool(self._known_focal_msk.all()))
        self.im_pp.requires_grad_(self.optimize_pp and not bool(self._known_pp_msk.all()))

    # original-style setters (used by the initialisation) -----------------------------------------------
    def _set_pose(self, poses, idx, R, T=None, scale=None, force=False):
        """Write cam2world ``R`` (4x4 or 3x3 with ``T``) into row ``idx`` of a pose parameter."""
        if R.shape == (4, 4):
            R, T = R[:3, :3], R[:3, 3]
        T = torch.zeros(3, dtype=R.dtype, device=R.device) if T is None else T
        if scale is not None:
            T = T / scale
        with torch.no_grad():
            poses.data[idx, :7] = self._pose_to_params(R.double(), T.double()).to(poses)
            if scale is not None:
                poses.data[idx, 7] = math.log(float(scale))
        return poses[idx]

    @torch.no_grad()
    def _set_depthmap(self, idx: int, depth: torch.Tensor, force: bool = False):
        """Write a (H, W) depth map of image ``idx`` (non-positive / non-finite depths give log-depth 0)."""
        log_depth = depth.to(self.im_depthmaps).log().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        self.im_depthmaps.data[idx] = ravel_pad(log_depth, self.max_area)
        return self.im_depthmaps[idx]

    # -------------------------------------------------------------------------------- outputs
    def get_depthmaps(self, raw: bool = False):
        """Per image (H, W) depth maps (``raw``: the stacked (N, A) tensor)."""
        res = self.im_depthmaps.exp()
        if raw:
            return res
        return [row[:h * w].view(h, w) for row, (h, w) in zip(res, self.imshapes)]

    def _world_points_cf(self) -> torch.Tensor:
        cam2world = self.get_im_poses()
        pts_cam = pointmap_from_depth(self.get_depthmaps(raw=True), self._grid, self.get_focals(),
                                      self.get_principal_points())  # (N, 3, A)
        return torch.baddbmm(cam2world[:, :3, 3:], cam2world[:, :3, :3], pts_cam)
