"""PairViewer: the reconstruction of a single symmetrised pair, read directly from the predictions (nothing is
optimised).

For each image i of the pair (i, k): the focal comes from its camera-frame pointmap ``pred_i[(i, k)]``
(Weiszfeld), and its pose in camera k's frame from the similarity between that pointmap and the same points
predicted in camera k's frame, ``pred_j[(k, i)]`` (weighted Procrustes on the confident pixels). The scene is
expressed in the frame of the camera whose pair is the more confident one.
"""
from __future__ import annotations

import logging
from typing import List

import torch
import torch.nn as nn

from ..utils.geometry import weighted_procrustes, xy_grid
from .base_opt import BasePCOptimizer
from .commons import edge_str
from .init_im_poses import estimate_focal
from .optimizer import image_centres, pointmap_from_depth
from .pair_inputs import pad_last

logger = logging.getLogger(__name__)

__all__ = ["PairViewer"]


class PairViewer(BasePCOptimizer):
    """Two images, both pair directions ((0, 1) and (1, 0)); see :class:`BasePCOptimizer` for the arguments.

    Args:
        same_focals: use the mean of both focal estimates for both cameras.
    """

    def __init__(self, *args, same_focals: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not (self.is_symmetrized and self.n_edges == 2):
            raise ValueError(f"PairViewer needs exactly one symmetrised pair of images (edges (0, 1) and (1, 0)), "
                             f"got edges {self.edges}; use make_pairs(..., symmetrize=True) on 2 images or "
                             "GlobalAlignerMode.PointCloudOptimizer")
        self.has_im_poses = True
        self.same_focals = same_focals
        self._init_known_buffers(focal_dim=1)

        pred_i, pred_j, conf_i, conf_j = self.pred_i, self.pred_j, self.conf_i, self.conf_j
        masks = self.get_masks()
        pp = image_centres(self.imshapes).to(self.device)
        focals, rel_poses, confs, scales = [], [], [], []
        for i in range(2):
            other = 1 - i
            own, seen = edge_str(i, other), edge_str(other, i)
            confs.append(float(conf_i[own].mean() * conf_j[own].mean()))
            focals.append(estimate_focal(pred_i[own], pp[i]))
            # camera i in the frame of camera `other`: pred_i[own] (camera-i frame) -> pred_j[seen] (other frame)
            weights = self.conf_trf(conf_i[own]).clip(min=0) * self.conf_trf(conf_j[seen]).clip(min=0)
            if bool(masks[i].any()):
                weights = weights * masks[i]
            s, R, T = weighted_procrustes(pred_i[own].reshape(-1, 3), pred_j[seen].reshape(-1, 3),
                                          weights.reshape(-1))
            pose = torch.eye(4, dtype=torch.float64, device=self.device)
            pose[:3, :3], pose[:3, 3] = R, T
            rel_poses.append(pose.float())
            scales.append(float(s))
            if self.verbose:
                logger.info("  - conf=%.3g for edge %d-%d", confs[-1], i, other)

        eye = torch.eye(4, device=self.device)
        if confs[0] > confs[1]:  # scene in camera 0's frame
            poses = [eye, rel_poses[1]]
            depth = [pred_i["0_1"][..., 2], self._depth_in(rel_poses[1], pred_j["0_1"])]
        else:  # scene in camera 1's frame
            poses = [rel_poses[0], eye]
            depth = [self._depth_in(rel_poses[0], pred_j["1_0"]), pred_i["1_0"][..., 2]]

        focal_values = torch.tensor(focals)
        if same_focals:
            focal_values = focal_values.mean().expand(2).clone()
        self.im_poses = nn.Parameter(torch.stack(poses), requires_grad=False)
        self.focals = nn.Parameter(focal_values[:, None].float(), requires_grad=False)
        self.pp = nn.Parameter(pp.float(), requires_grad=False)
        self.depth = nn.ParameterList(nn.Parameter(d.clone().float(), requires_grad=False) for d in depth)
        for n, (h, w) in enumerate(self.imshapes):
            self.register_buffer(f"_grid_{n}", xy_grid(w, h, device="cpu").float(), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _depth_in(cam2world: torch.Tensor, pts_world: torch.Tensor) -> torch.Tensor:
        world2cam = torch.linalg.inv(cam2world.double())
        return (pts_world.double() @ world2cam[:3, :3].T + world2cam[:3, 3])[..., 2].float()

    # -------------------------------------------------------------------------------- fixed outputs
    def _raw_im_poses(self) -> torch.Tensor:
        return self.im_poses

    def _raw_focals(self) -> torch.Tensor:
        return self.focals

    def _raw_principal_points(self) -> torch.Tensor:
        return self.pp

    def get_depthmaps(self, raw: bool = False) -> List[torch.Tensor]:
        return [d for d in self.depth]

    def _set_depthmap(self, idx, depth, force=False):
        logger.info("_set_depthmap is ignored by PairViewer")

    def _world_points_cf(self) -> torch.Tensor:
        cam2world, focals, pp = self.get_im_poses(), self.get_focals(), self.get_principal_points()
        rows = []
        for n, depth in enumerate(self.depth):
            grid = getattr(self, f"_grid_{n}").reshape(-1, 2).T[None]  # (1, 2, HW)
            pts_cam = pointmap_from_depth(depth.reshape(1, -1), grid, focals[n:n + 1], pp[n:n + 1])[0]  # (3, HW)
            pts = cam2world[n, :3, :3] @ pts_cam + cam2world[n, :3, 3:]
            rows.append(pad_last(pts, self.max_area))
        return torch.stack(rows)

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("PairViewer reads its cameras directly from the pair predictions; to use known "
                                  "poses or intrinsics, use GlobalAlignerMode.PointCloudOptimizer")

    preset_pose = preset_focal = preset_principal_point = preset_intrinsics = _unsupported

    def forward(self, ret_details: bool = False):
        return float("nan")

    def compute_global_alignment(self, *args, **kwargs) -> float:
        """Nothing to optimise for a PairViewer: returns NaN."""
        logger.info("PairViewer has nothing to optimise; compute_global_alignment does nothing")
        return float("nan")
