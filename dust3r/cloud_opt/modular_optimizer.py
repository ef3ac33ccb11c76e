"""ModularPointCloudOptimizer: one parameter per image and quantity, so that any of them can be frozen
(``requires_grad``) individually, and optional separate (fx, fy) focals.

Slower than :class:`~dust3r.cloud_opt.optimizer.PointCloudOptimizer` (the world pointmaps are built image by
image before being stacked for the batched loss) but with the same results for the same settings.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..utils.geometry import xy_grid
from .base_opt import BasePCOptimizer
from .optimizer import image_centres
from .pair_inputs import pad_last, ravel_pad

__all__ = ["ModularPointCloudOptimizer"]


class ModularPointCloudOptimizer(BasePCOptimizer):
    """Dense global alignment with per-image parameters (see :class:`BasePCOptimizer` for the arguments).

    Args:
        optimize_pp: also optimise the principal points.
        fx_and_fy: one focal per axis instead of a single focal.
        focal_brake: focal parametrisation ``focal_brake * log(f)``.
    """

    def __init__(self, *args, optimize_pp: bool = False, fx_and_fy: bool = False, focal_brake: float = 20,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.has_im_poses = True
        self.focal_brake = focal_brake
        self.optimize_pp = optimize_pp
        self.fx_and_fy = fx_and_fy
        self._init_known_buffers(focal_dim=2 if fx_and_fy else 1)

        self.im_depthmaps = nn.ParameterList(torch.randn(h, w) / 10 - 3 for h, w in self.imshapes)
        self.im_poses = nn.ParameterList(self.rand_pose(self.POSE_DIM).float() for _ in range(self.n_imgs))
        focal_params = [focal_brake * math.log(max(h, w)) for h, w in self.imshapes]
        self.im_focals = nn.ParameterList(torch.tensor([f, f] if fx_and_fy else [f]) for f in focal_params)
        self.im_pp = nn.ParameterList(torch.zeros((2,)) for _ in range(self.n_imgs))
        self.im_pp.requires_grad_(optimize_pp)
        self.register_buffer("_pp", image_centres(self.imshapes))
        for n, (h, w) in enumerate(self.imshapes):
            self.register_buffer(f"_grid_{n}", xy_grid(w, h, device="cpu").float(), persistent=False)

    # -------------------------------------------------------------------------------- parameters <-> values
    def _raw_im_poses(self) -> torch.Tensor:
        return self._pose_params_to_4x4(torch.stack(list(self.im_poses)))

    def _raw_focals(self) -> torch.Tensor:
        return (torch.stack(list(self.im_focals)) / self.focal_brake).exp()

    def _raw_principal_points(self) -> torch.Tensor:
        return self._pp + 10 * torch.stack(list(self.im_pp))

    @torch.no_grad()
    def _write_pose(self, idx: int, cam2world: torch.Tensor) -> None:
        params = self._pose_to_params(cam2world[:3, :3].double(), cam2world[:3, 3].double())
        self.im_poses[idx].data[:] = params.to(self.im_poses[idx])

    @torch.no_grad()
    def _write_focal(self, idx: int, focal: torch.Tensor) -> None:
        f = torch.as_tensor(focal, dtype=torch.float64).reshape(-1)
        if f.numel() != self.im_focals[idx].numel():
            f = f.mean().expand(self.im_focals[idx].numel())
        self.im_focals[idx].data[:] = (self.focal_brake * f.log()).to(self.im_focals[idx])

    @torch.no_grad()
    def _write_pp(self, idx: int, pp: torch.Tensor) -> None:
        self.im_pp[idx].data[:] = (torch.as_tensor(pp).to(self._pp) - self._pp[idx]) / 10

    def _update_trainable(self) -> None:
        for n in range(self.n_imgs):
            self.im_poses[n].requires_grad_(not bool(self._known_pose_msk[n]))
            self.im_focals[n].requires_grad_(not bool(self._known_focal_msk[n]))
            self.im_pp[n].requires_grad_(self.optimize_pp and not bool(self._known_pp_msk[n]))

    @torch.no_grad()
    def _set_depthmap(self, idx: int, depth: torch.Tensor, force: bool = False):
        param = self.im_depthmaps[idx]
        param.data[:] = depth.to(param).log().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        return param

    # -------------------------------------------------------------------------------- outputs
    def get_depthmaps(self, raw: bool = False):
        """Per image (H, W) depth maps (``raw``: stacked and padded (N, A))."""
        depth = [d.exp() for d in self.im_depthmaps]
        if raw:
            return torch.stack([ravel_pad(d, self.max_area) for d in depth])
        return depth

    def _world_points_cf(self) -> torch.Tensor:
        cam2world = self.get_im_poses()
        focals = self.get_focals()
        pp = self.get_principal_points()
        rows = []
        for n, log_depth in enumerate(self.im_depthmaps):
            z = log_depth.exp().reshape(1, -1)  # (1, HW)
            grid = getattr(self, f"_grid_{n}").reshape(-1, 2).T  # (2, HW)
            pts_cam = torch.cat((z * (grid - pp[n, :, None]) / focals[n, :, None], z))  # (3, HW)
            pts_world = cam2world[n, :3, :3] @ pts_cam + cam2world[n, :3, 3:]
            rows.append(pad_last(pts_world, self.max_area))
        return torch.stack(rows)
