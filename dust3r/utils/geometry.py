"""Geometry helpers on numpy arrays and torch tensors.

Conventions: cameras are ``cam2world`` 4x4 matrices with OpenCV axes (x right, y down, z forward); pixels are
(x, y) with integer coordinates at pixel centres; intrinsics K map camera coordinates to those pixels.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from .device import to_numpy
from .misc import invalid_to_nans, invalid_to_zeros

Array = Union[np.ndarray, torch.Tensor]


def xy_grid(W: int, H: int, device=None, origin=(0, 0), unsqueeze=None, cat_dim=-1, homogeneous: bool = False,
            **arange_kw):
    """Pixel coordinate grid: ``out[j, i] = (i + origin[0], j + origin[1])`` (numpy if device is None).

    Returns (H, W, 2) (or (H, W, 3) with ``homogeneous``) stacked along ``cat_dim``, or the tuple of planes when
    ``cat_dim`` is None.
    """
    if device is None:
        xs = np.arange(origin[0], origin[0] + W, **arange_kw)
        ys = np.arange(origin[1], origin[1] + H, **arange_kw)
        planes = tuple(np.meshgrid(xs, ys, indexing="xy"))
        if homogeneous:
            planes = planes + (np.ones((H, W)),)
        if unsqueeze is not None:
            planes = tuple(np.expand_dims(p, unsqueeze) for p in planes)
        return planes if cat_dim is None else np.stack(planes, cat_dim)
    xs = torch.arange(origin[0], origin[0] + W, device=device, **arange_kw)
    ys = torch.arange(origin[1], origin[1] + H, device=device, **arange_kw)
    planes = tuple(torch.meshgrid(xs, ys, indexing="xy"))
    if homogeneous:
        planes = planes + (torch.ones((H, W), device=device),)
    if unsqueeze is not None:
        planes = tuple(p.unsqueeze(unsqueeze) for p in planes)
    return planes if cat_dim is None else torch.stack(planes, cat_dim)


def geotrf(Trf: Array, pts: Array, ncol: Optional[int] = None, norm: float = 0):
    """Apply a transform to points (..., d): a (d+1)-column matrix acts on homogeneous points (rigid 4x4, 3x4,
    projective), a d-column matrix linearly (rotation, intrinsics).

    ``Trf`` may be batched (B, r, c) with points (B, ..., d). With ``norm`` the result is divided by its last
    coordinate (perspective division) and multiplied by ``norm``. Keeps the first ``ncol`` columns (default d).
    """
    if Trf.ndim < 2:
        raise ValueError(f"geotrf needs a matrix, got shape {tuple(Trf.shape)}")
    if isinstance(Trf, np.ndarray):
        pts = np.asarray(pts)
    else:
        pts = torch.as_tensor(pts, dtype=Trf.dtype, device=Trf.device)
    out_shape, d = pts.shape[:-1], pts.shape[-1]
    ncol = ncol or d
    if Trf.ndim >= 3:
        nb = Trf.ndim - 2
        if tuple(Trf.shape[:nb]) != tuple(pts.shape[:nb]):
            raise ValueError(f"batch of transforms {tuple(Trf.shape)} does not match points {tuple(pts.shape)}")
        Trf = Trf.reshape(-1, *Trf.shape[-2:])
        pts = pts.reshape(Trf.shape[0], -1, d)
    if Trf.shape[-1] not in (d, d + 1):
        raise ValueError(f"cannot apply a {tuple(Trf.shape[-2:])} transform to {d}-d points")
    res = pts @ Trf[..., :, :d].swapaxes(-1, -2)
    if Trf.shape[-1] == d + 1:
        res = res + Trf[..., None, :, d] if Trf.ndim == 3 else res + Trf[:, d]
    if norm:
        res = res / res[..., -1:]
        if norm != 1:
            res = res * norm
    return res[..., :ncol].reshape(*out_shape, ncol)


def inv(mat: Array) -> Array:
    """Inverse of a (batch of) square matrix, numpy or torch."""
    if isinstance(mat, torch.Tensor):
        return torch.linalg.inv(mat)
    if isinstance(mat, np.ndarray):
        return np.linalg.inv(mat)
    raise ValueError(f"inv() expects a numpy array or torch tensor, got {type(mat).__name__}")


def depthmap_to_pts3d(depth: torch.Tensor, pseudo_focal: torch.Tensor, pp: Optional[torch.Tensor] = None, **_):
    """Camera-frame pointmaps (B, H, W, 3) from depths (B, H, W) and per-pixel focals (B, H, W) or (B, 1|2, H, W).

    ``pp``: (B, 2) principal points; default the image centre ((W-1)/2, (H-1)/2).
    """
    B, H, W = depth.shape[:3]
    if pseudo_focal.ndim == 3:
        fx = fy = pseudo_focal
    elif pseudo_focal.ndim == 4:
        fx = pseudo_focal[:, 0]
        fy = pseudo_focal[:, 1] if pseudo_focal.shape[1] == 2 else fx
    else:
        raise ValueError(f"pseudo_focal must be (B,H,W) or (B,1|2,H,W), got {tuple(pseudo_focal.shape)}")
    gx, gy = xy_grid(W, H, cat_dim=0, device=depth.device)[:, None].to(depth.dtype)
    if pp is None:
        gx, gy = gx - (W - 1) / 2, gy - (H - 1) / 2
    else:
        gx = gx.expand(B, -1, -1) - pp[:, 0, None, None]
        gy = gy.expand(B, -1, -1) - pp[:, 1, None, None]
    if depth.ndim == 4:  # several depth hypotheses per pixel
        return torch.stack(((gx / fx)[..., None] * depth, (gy / fy)[..., None] * depth, depth), dim=3)
    return torch.stack((depth * gx / fx, depth * gy / fy, depth), dim=-1)


def depthmap_to_camera_coordinates(depthmap: np.ndarray, camera_intrinsics: np.ndarray, pseudo_focal=None):
    """Camera-frame pointmap (H, W, 3) float32 of a depth map (H, W), and the mask of valid (depth > 0) pixels."""
    K = np.float32(camera_intrinsics)
    if K[0, 1] != 0 or K[1, 0] != 0:
        raise ValueError("depthmap_to_camera_coordinates does not support skewed intrinsics")
    H, W = depthmap.shape
    fu, fv = (K[0, 0], K[1, 1]) if pseudo_focal is None else (pseudo_focal, pseudo_focal)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    pts = np.stack(((u - K[0, 2]) * depthmap / fu, (v - K[1, 2]) * depthmap / fv, depthmap), -1).astype(np.float32)
    return pts, depthmap > 0.0


def depthmap_to_absolute_camera_coordinates(depthmap, camera_intrinsics, camera_pose=None, **kw):
    """World pointmap (H, W, 3) of a depth map given K and a 4x4 (or 3x4) cam2world pose, and the valid mask."""
    pts, valid = depthmap_to_camera_coordinates(depthmap, camera_intrinsics)
    if camera_pose is not None:
        pts = pts @ np.asarray(camera_pose)[:3, :3].T + np.asarray(camera_pose)[:3, 3]
    return pts, valid


def colmap_to_opencv_intrinsics(K: np.ndarray) -> np.ndarray:
    """COLMAP puts the top-left pixel centre at (0.5, 0.5), OpenCV at (0, 0): shift the principal point."""
    K = K.copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def opencv_to_colmap_intrinsics(K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`colmap_to_opencv_intrinsics`."""
    K = K.copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def normalize_pointcloud(pts1, pts2, norm_mode: str = "avg_dis", valid1=None, valid2=None, ret_factor=False):
    """Divide pointmaps (B, H, W, 3) by a joint scale: mean ('avg'), median or squared-mean-sqrt distance to
    the origin, with 'dis', 'log1p' or 'warp-log1p' distances ('avg' only)."""
    norm, dis_mode = norm_mode.split("_", 1)
    if norm == "avg":
        p1, n1 = invalid_to_zeros(pts1, valid1, ndim=3)
        p2, n2 = invalid_to_zeros(pts2, valid2, ndim=3) if pts2 is not None else (None, 0)
        dist = (torch.cat((p1, p2), 1) if pts2 is not None else p1).norm(dim=-1)
        if dis_mode == "log1p":
            dist = torch.log1p(dist)
        elif dis_mode == "warp-log1p":
            log_d = torch.log1p(dist)
            warp = log_d / dist.clip(min=1e-8)
            H1, W1 = pts1.shape[1:-1]
            pts1 = pts1 * warp[:, :H1 * W1].view(-1, H1, W1, 1)
            if pts2 is not None:
                H2, W2 = pts2.shape[1:-1]
                pts2 = pts2 * warp[:, H1 * W1:].view(-1, H2, W2, 1)
            dist = log_d
        elif dis_mode != "dis":
            raise ValueError(f"unknown distance mode {dis_mode!r} in norm_mode {norm_mode!r}")
        factor = dist.sum(dim=1) / (n1 + n2 + 1e-8)
    else:
        p1 = invalid_to_nans(pts1, valid1, ndim=3)
        p2 = invalid_to_nans(pts2, valid2, ndim=3) if pts2 is not None else None
        dist = (torch.cat((p1, p2), 1) if pts2 is not None else p1).norm(dim=-1)
        if norm == "median":
            factor = dist.nanmedian(dim=1).values.detach()
        elif norm == "sqrt":
            factor = dist.sqrt().nanmean(dim=1) ** 2
        else:
            raise ValueError(f"unknown norm mode {norm!r} in norm_mode {norm_mode!r}")
    factor = factor.clip(min=1e-8)
    while factor.ndim < pts1.ndim:
        factor = factor.unsqueeze(-1)
    res = pts1 / factor
    if pts2 is not None:
        res = (res, pts2 / factor)
    if ret_factor:
        res = (res if isinstance(res, tuple) else (res,)) + (factor,)
    return res


@torch.no_grad()
def get_joint_pointcloud_depth(z1, z2, valid_mask1, valid_mask2=None, quantile: float = 0.5):
    """Per-sample quantile (median by default) of the valid depths of one or two depth maps. Returns (B,)."""
    z = invalid_to_nans(z1, valid_mask1).reshape(len(z1), -1)
    if z2 is not None:
        z = torch.cat((z, invalid_to_nans(z2, valid_mask2).reshape(len(z2), -1)), dim=-1)
    return torch.nanmedian(z, dim=-1).values if quantile == 0.5 else torch.nanquantile(z, quantile, dim=-1)


@torch.no_grad()
def get_joint_pointcloud_center_scale(pts1, pts2, valid_mask1=None, valid_mask2=None, z_only=False, center=True):
    """Median centre (B, 1, 1, 3) and median distance to it (B, 1, 1, 1) of the valid points of 1-2 pointmaps."""
    pts = invalid_to_nans(pts1, valid_mask1).reshape(len(pts1), -1, 3)
    if pts2 is not None:
        pts = torch.cat((pts, invalid_to_nans(pts2, valid_mask2).reshape(len(pts2), -1, 3)), dim=1)
    ctr = torch.nanmedian(pts, dim=1, keepdim=True).values
    if z_only:
        ctr[..., :2] = 0
    scale = torch.nanmedian(((pts - ctr) if center else pts).norm(dim=-1), dim=1).values
    return ctr[:, None], scale[:, None, None, None]


def find_reciprocal_matches(P1: np.ndarray, P2: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """Mutual nearest neighbours between point sets (N1, d) and (N2, d).

    Returns (mask over P2 of points whose NN in P1 has them as NN, index of each P2 point's NN in P1, count).
    """
    from scipy.spatial import cKDTree
    nn12 = cKDTree(P2).query(P1)[1]
    nn21 = cKDTree(P1).query(P2)[1]
    reciprocal = nn12[nn21] == np.arange(len(nn21))
    return reciprocal, nn21, int(reciprocal.sum())


def get_med_dist_between_poses(poses) -> float:
    """Median pairwise distance between camera centres of a list of 4x4 poses."""
    from scipy.spatial.distance import pdist
    return float(np.median(pdist([to_numpy(p[:3, 3]) for p in poses])))
