"""Linear (DLT) triangulation of matches, batched, and pairwise match -> depth aggregation."""
from __future__ import annotations

import math
from typing import Tuple

import torch

__all__ = ["batched_triangulate", "matches_to_depths"]


def batched_triangulate(pts2d: torch.Tensor, proj_mats: torch.Tensor) -> torch.Tensor:
    """Least-squares DLT triangulation.

    Args:
        pts2d: (B, C, P, 2) pixels of P points seen by C cameras.
        proj_mats: (B, C, 3, 4) projection matrices ``K @ world2cam[:3]``.
    Returns:
        (B, P, 3) world points (NaN where the system is singular).
    """
    if pts2d.ndim != 4 or pts2d.shape[-1] != 2:
        raise ValueError(f"pts2d must be (B, C, P, 2), got {tuple(pts2d.shape)}")
    B, C, P, _ = pts2d.shape
    if proj_mats.shape != (B, C, 3, 4):
        raise ValueError(f"proj_mats must be ({B}, {C}, 3, 4), got {tuple(proj_mats.shape)}")
    # each view gives two equations  (P_0 - x P_2) X = 0  and  (P_1 - y P_2) X = 0
    rows_x = proj_mats[:, :, None, 0, :] - pts2d[..., 0:1] * proj_mats[:, :, None, 2, :]   # (B, C, P, 4)
    rows_y = proj_mats[:, :, None, 1, :] - pts2d[..., 1:2] * proj_mats[:, :, None, 2, :]
    eq = torch.cat((rows_x, rows_y), dim=1).transpose(1, 2)                              # (B, P, 2C, 4)
    return torch.linalg.lstsq(eq[..., :3], -eq[..., 3]).solution


def matches_to_depths(intrinsics: torch.Tensor, extrinsics: torch.Tensor, matches: torch.Tensor,
                      batchsize: int = 16, min_num_valids_ratio: float = 0.3
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triangulate, for each reference image, its dense matches with Nv other images and fuse them.

    Args:
        intrinsics: (B, Nv + 1, 3, 3); extrinsics: (B, Nv + 1, 3|4, 4) world2cam, camera 0 = the reference.
        matches: (B, Nv, H, W, 5): per pixel of the reference, ``(x_ref, y_ref, x_other, y_other, conf)``.
        batchsize: references processed at once.
        min_num_valids_ratio: a pixel needs valid triangulations from more than this fraction of the Nv pairs.
    Returns:
        ``(points (B, H, W, 3) world, depths (B, H, W) in the reference camera, confs (B, H, W))``; NaN where
        too few pairs agree.
    """
    B, Nv, H, W, five = matches.shape
    if five != 5:
        raise ValueError(f"matches must be (B, Nv, H, W, 5), got {tuple(matches.shape)}")
    min_valid = math.floor(Nv * min_num_valids_ratio)
    out_pts, out_depth, out_conf = [], [], []
    for start in range(0, B, batchsize):
        sl = slice(start, min(B, start + batchsize))
        b = sl.stop - sl.start
        m = matches[sl]
        p_ref, p_other, conf = m[..., :2], m[..., 2:4], m[..., 4].clone()
        pts2d = torch.stack((p_ref.reshape(b * Nv, H * W, 2), p_other.reshape(b * Nv, H * W, 2)), dim=1)
        P = intrinsics[sl] @ extrinsics[sl, :, :3, :]                                       # (b, Nv+1, 3, 4)
        P_pairs = torch.stack((P[:, :1].expand(b, Nv, 3, 4), P[:, 1:]), dim=2).reshape(b * Nv, 2, 3, 4)
        X = batched_triangulate(pts2d, P_pairs).reshape(b, Nv, H, W, 3)
        valid = torch.isfinite(X).all(-1)
        conf = torch.where(valid, conf, torch.zeros_like(conf))
        X = torch.where(valid[..., None], X, torch.zeros_like(X))
        norm = conf.sum(1)
        fused = (X * conf[..., None]).sum(1) / torch.where(norm > 1e-5, norm, torch.ones_like(norm))[..., None]
        fused[valid.sum(1) <= min_valid] = float("nan")
        E = extrinsics[sl, 0]
        cam = fused.reshape(b, -1, 3) @ E[:, :3, :3].transpose(1, 2) + E[:, None, :3, 3]
        out_pts.append(fused.cpu())
        out_depth.append(cam[..., 2].reshape(b, H, W).cpu())
        out_conf.append(norm.cpu())
    return torch.cat(out_pts), torch.cat(out_depth), torch.cat(out_conf)
