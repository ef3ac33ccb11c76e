"""Small geometry helpers of the sparse global alignment (torch, batched, differentiable).

Conventions: unit quaternions are stored ``(x, y, z, w)`` (identity ``(0, 0, 0, 1)``, as roma's); cameras are
``cam2world`` 4x4 with OpenCV axes; pixels are ``(x, y)`` with integer coordinates at pixel centres.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F

__all__ = ["quat_to_rotmat", "rotmat_to_quat", "backproject", "project", "clean_pointcloud"]


def quat_to_rotmat(quat: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions ``(x, y, z, w)`` (normalised here) -> (..., 3, 3) rotation matrices."""
    x, y, z, w = F.normalize(quat, dim=-1).unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    rows = (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy))
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def rotmat_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions ``(x, y, z, w)`` with ``w >= 0``.

    Uses the numerically stable branch (largest diagonal term) per matrix; vectorised over the batch.
    """
    m = rot.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # four candidate (unnormalised) quaternions, 4 * q * q_k, pick the best conditioned one
    cands = torch.stack([
        torch.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], 1 + tr], -1),
        torch.stack([1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0],
                     m[:, 2, 1] - m[:, 1, 2]], -1),
        torch.stack([m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1],
                     m[:, 0, 2] - m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
                     m[:, 1, 0] - m[:, 0, 1]], -1),
    ], dim=1)  # (B, 4 candidates, 4)
    diag = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], dim=-1)
    best = diag.argmax(dim=-1)
    quat = F.normalize(cands[torch.arange(len(m)), best], dim=-1)
    quat = torch.where(quat[:, 3:4] < 0, -quat, quat)
    return quat.reshape(*rot.shape[:-2], 4)


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
