"""Small geometry helpers of the sparse global alignment (torch, batched, differentiable).

Conventions: cameras are ``cam2world`` 4x4 with OpenCV axes; pixels are ``(x, y)`` with integer coordinates at
pixel centres. The quaternion conversions (``(x, y, z, w)``) live in :mod:`dust3r.utils.geometry` and are
re-exported here.
"""
from __future__ import annotations

from typing import List, Sequence

import torch

from dust3r.utils.geometry import quat_to_rotmat, rotmat_to_quat

__all__ = ["quat_to_rotmat", "rotmat_to_quat", "backproject", "project", "clean_pointcloud"]


def backproject(pixels: torch.Tensor, depth: torch.Tensor, focal: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """Camera-frame points from pixels and z-depths.

    Args:
        pixels: (P, 2) pixel coordinates (x, y).
        depth: (P,) z-depths.
        focal: (P,) focal lengths (pixels), one per point (gathered from its camera).
        pp: (P, 2) principal points.
    Returns:
        (P, 3) points in the camera frame.
    """
    xy = (pixels - pp) / focal[:, None] * depth[:, None]
    return torch.cat((xy, depth[:, None]), dim=-1)


def project(pts_cam: torch.Tensor, focal: torch.Tensor, pp: torch.Tensor, min_z: float = 1e-3) -> torch.Tensor:
    """Camera-frame points (P, 3) -> pixels (P, 2); z is clipped to ``min_z`` and pixels to [-1000, 2000]
    (as the original, so that points behind a camera give large but finite errors)."""
    z = pts_cam[:, 2:3].clip(min=min_z)
    uv = pts_cam[:, :2] / z * focal[:, None] + pp
    return uv.clip(min=-1000, max=2000)


@torch.no_grad()
def clean_pointcloud(confs: Sequence[torch.Tensor], K: torch.Tensor, world2cam: torch.Tensor,
                     depthmaps: Sequence[torch.Tensor], pts3d: Sequence[torch.Tensor], tol: float = 0.001,
                     bad_conf: float = 0.0) -> List[torch.Tensor]:
    """Lower the confidence of points seen *in front of* another view's surface (occlusion test).

    For each pair of views (i, j), the points of view i are projected into view j; a point lying closer to
    camera j than j's own depth at that pixel (by more than ``tol`` relative) while being less confident than
    j's pixel is an artefact (a floating point) and gets confidence ``bad_conf``.

    Args:
        confs: N confidence maps (H_i, W_i).
        K: (N, 3, 3) intrinsics; world2cam: (N, 4, 4).
        depthmaps: N z-depth maps, (H_i * W_i,) or (H_i, W_i).
        pts3d: N world point maps, (H_i * W_i, 3) or (H_i, W_i, 3).
    Returns:
        N new confidence maps (H_i, W_i) (inputs untouched).
    """
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol}")
    out = [c.clone() for c in confs]
    depths = [d.reshape(c.shape) for d, c in zip(depthmaps, confs)]
    points = [p.reshape(*c.shape, 3) for p, c in zip(pts3d, confs)]
    for i, pts in enumerate(points):
        for j in range(len(points)):
            if i == j:
                continue
            cam = pts @ world2cam[j, :3, :3].T + world2cam[j, :3, 3]
            z = cam[..., 2]
            uv = (cam @ K[j].T)
            u = (uv[..., 0] / uv[..., 2]).round()
            v = (uv[..., 1] / uv[..., 2]).round()
            H, W = confs[j].shape
            visible = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & torch.isfinite(u) & torch.isfinite(v)
            vi, ui = v[visible].long(), u[visible].long()
            bad = (z[visible] < (1 - tol) * depths[j][vi, ui]) & (out[i][visible] < out[j][vi, ui])
            mask = visible.clone()
            mask[visible] = bad
            out[i][mask] = out[i][mask].clip(max=bad_conf)
    return out
