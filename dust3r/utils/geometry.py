"""Geometry helpers on numpy arrays and torch tensors: the one home of every geometry primitive of the project.

Conventions: cameras are ``cam2world`` 4x4 matrices with OpenCV axes (x right, y down, z forward); pixels are
(x, y) with integer coordinates at pixel centres; intrinsics K map camera coordinates to those pixels. Unit
quaternions are stored ``(x, y, z, w)`` (scalar last, identity ``(0, 0, 0, 1)``, as ``roma``); rotations act on
column vectors.

Contents:

* grids, transforms, depth maps <-> pointmaps, intrinsics conventions, pointmap normalisation (the original's);
* rotations: :func:`quat_to_rotmat`, :func:`rotmat_to_quat`, :func:`project_to_so3`;
* similarities: :func:`weighted_procrustes` (weighted Umeyama on points), :func:`sim3_to_4x4`,
  :func:`align_camera_poses` / :func:`apply_sim3_to_poses` (one set of cameras onto another);
* intrinsics from a pointmap: :func:`weiszfeld_focal` (robust focal fit, used by
  :func:`dust3r.post_process.estimate_focal_knowing_depth` and :func:`mast3r.relpose.estimate_focal_weiszfeld`).

The tensor functions are pure (no argument is modified), document their shapes and check their inputs.
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
    """World pointmap (H, W, 3) of a depth map (H, W) given K (3, 3) and a 4x4 (or 3x4) cam2world pose, and the
    valid mask (depth > 0). The points take the pose's dtype (a float64 pose gives float64 points); the rotation
    is applied with ``einsum``, whose rounding the training fixtures pin."""
    pts, valid = depthmap_to_camera_coordinates(depthmap, camera_intrinsics)
    if camera_pose is not None:
        pose = np.asarray(camera_pose)
        pts = np.einsum("ik,vuk->vui", pose[:3, :3], pts) + pose[None, None, :3, 3]
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


# ================================================================================================ rotations
def _check_shape(x: torch.Tensor, tail: Tuple[int, ...], name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(tail):]) != tail or x.ndim < len(tail):
        shape = ", ".join(["..."] + [str(d) for d in tail])
        raise ValueError(f"{name} must have shape ({shape}), got {tuple(x.shape)}")


def quat_to_rotmat(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions.

    Args:
        quat: (..., 4) quaternions ``(x, y, z, w)``, normalised here (any non-zero norm).
    Returns:
        (..., 3, 3) rotation matrices, same dtype (differentiable).
    """
    _check_shape(quat, (4,), "quat")
    x, y, z, w = (quat / quat.norm(dim=-1, keepdim=True).clip(min=1e-12)).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def rotmat_to_quat(rotmat: torch.Tensor) -> torch.Tensor:
    """Unit quaternions of rotation matrices.

    Computed in float64 with the numerically stable branch (the largest of ``|x|, |y|, |z|, |w|``) for every
    matrix, vectorised over the batch.

    Args:
        rotmat: (..., 3, 3) rotation matrices.
    Returns:
        (..., 4) unit quaternions ``(x, y, z, w)`` with ``w >= 0``, in the dtype of ``rotmat`` (float64 for
        non-floating input).
    """
    _check_shape(rotmat, (3, 3), "rotmat")
    out_dtype = rotmat.dtype if rotmat.is_floating_point() else torch.float64
    m = rotmat.to(torch.float64).reshape(-1, 3, 3)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # 4 q_k^2 for k = x, y, z, w
    diag = torch.stack((1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace,
                        1 + 2 * m[:, 2, 2] - trace, 1 + trace), dim=-1)
    best = diag.argmax(dim=-1)
    # candidate k: 4 q_k (x, y, z, w)
    cand_x = torch.stack((diag[:, 0], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]), -1)
    cand_y = torch.stack((m[:, 0, 1] + m[:, 1, 0], diag[:, 1], m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]), -1)
    cand_z = torch.stack((m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], diag[:, 2], m[:, 1, 0] - m[:, 0, 1]), -1)
    cand_w = torch.stack((m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], diag[:, 3]), -1)
    q = torch.stack((cand_x, cand_y, cand_z, cand_w), dim=1)[torch.arange(len(m)), best]  # (B, 4)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:4] < 0, -q, q)
    return q.reshape(*rotmat.shape[:-2], 4).to(out_dtype)


def project_to_so3(mat: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius norm) of each (..., 3, 3) matrix: ``U diag(1, 1, det(U V^T)) V^T``."""
    _check_shape(mat, (3, 3), "mat")
    U, _, Vh = torch.linalg.svd(mat)
    D = torch.ones(*mat.shape[:-1], dtype=mat.dtype, device=mat.device)
    sign = torch.sign(torch.linalg.det(U @ Vh))
    D[..., 2] = torch.where(sign == 0, torch.ones_like(sign), sign)
    return U @ torch.diag_embed(D) @ Vh


# ================================================================================================ similarities
def weighted_procrustes(src: torch.Tensor, dst: torch.Tensor, weights: Optional[torch.Tensor] = None,
                        with_scale: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched weighted similarity registration (Umeyama 1991): ``dst ~ s * R @ src + t``.

    Args:
        src, dst: (B, N, 3) or (N, 3) corresponding points.
        weights: (B, N) or (N,) non-negative weights; a batch element whose weights sum to ~0 falls back to
            uniform weights. Non-finite points get weight 0.
        with_scale: estimate ``s`` (else s = 1).

    Returns:
        ``s`` (B,), ``R`` (B, 3, 3), ``t`` (B, 3) (no batch dimension for unbatched input), float64.
    """
    _check_shape(src, (3,), "src")
    if src.ndim not in (2, 3) or dst.shape != src.shape:
        raise ValueError(f"src and dst must both be (N, 3) or (B, N, 3), got {tuple(src.shape)} and "
                         f"{tuple(dst.shape)}")
    if weights is not None and tuple(weights.shape) != tuple(src.shape[:-1]):
        raise ValueError(f"weights must have shape {tuple(src.shape[:-1])}, got {tuple(weights.shape)}")
    unbatched = src.ndim == 2
    if unbatched:
        src, dst = src[None], dst[None]
        weights = None if weights is None else weights[None]
    src64, dst64 = src.to(torch.float64), dst.to(torch.float64)
    w = torch.ones(src.shape[:2], dtype=torch.float64, device=src.device) if weights is None \
        else weights.to(torch.float64).clip(min=0)
    finite = torch.isfinite(src64).all(-1) & torch.isfinite(dst64).all(-1)
    w = torch.where(finite, w.nan_to_num(0.0), torch.zeros_like(w))
    src64, dst64 = src64.nan_to_num(0.0), dst64.nan_to_num(0.0)
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 1e-12, w, finite.to(w.dtype))
    w = w / w.sum(dim=1, keepdim=True).clip(min=1e-12)

    mu_src = (w[..., None] * src64).sum(1)  # (B, 3)
    mu_dst = (w[..., None] * dst64).sum(1)
    src_c, dst_c = src64 - mu_src[:, None], dst64 - mu_dst[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, dst_c, src_c)  # (B, 3, 3)
    U, S, Vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(U @ Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    D = torch.ones_like(S)
    D[:, 2] = sign
    R = U @ torch.diag_embed(D) @ Vh
    if with_scale:
        var_src = (w * src_c.square().sum(-1)).sum(1)
        s = (S * D).sum(-1) / var_src.clip(min=1e-30)
        s = torch.where(var_src > 1e-24, s, torch.ones_like(s))  # all source points equal: no scale info
    else:
        s = torch.ones_like(S[:, 0])
    t = mu_dst - s[:, None] * (R @ mu_src[..., None])[..., 0]
    if unbatched:
        return s[0], R[0], t[0]
    return s, R, t


def sim3_to_4x4(scale, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) matrix of ``x -> scale * R x + t``.

    Args:
        scale: scalar or (...,); R: (..., 3, 3); t: (..., 3). The output has R's dtype and device.
    """
    _check_shape(R, (3, 3), "R")
    out = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    scale = torch.as_tensor(scale, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R * scale[..., None, None]
    out[..., :3, 3] = torch.as_tensor(t, dtype=R.dtype, device=R.device).reshape(*R.shape[:-2], 3)
    out[..., 3, 3] = 1
    return out


def align_camera_poses(cam2world_src: torch.Tensor, cam2world_dst: torch.Tensor,
                       mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity ``(s, R, t)`` that best maps one set of cameras onto another: ``X_dst ~ s * R @ X_src + t``.

    With >= 3 camera centres that are not collinear, (s, R, t) is the Umeyama least-squares fit of the centres;
    otherwise (1-2 cameras, collinear centres) R is the chordal mean of ``R_dst_i R_src_i^T`` (from the camera
    orientations), ``s`` the ratio of the centre spreads (1 when either set has a single distinct centre) and
    ``t`` maps the mean centre onto the mean centre.

    Args:
        cam2world_src, cam2world_dst: (N, 4, 4) (or (N, 3, 4)) cam2world matrices, any gauge for ``src``.
        mask: optional (N,) bool of the cameras to use (at least one).
    Returns:
        ``s`` () , ``R`` (3, 3), ``t`` (3,), float64 tensors on the device of ``cam2world_src``.
    """
    for name, poses in (("cam2world_src", cam2world_src), ("cam2world_dst", cam2world_dst)):
        if not isinstance(poses, torch.Tensor) or poses.ndim != 3 or tuple(poses.shape[1:]) not in ((4, 4), (3, 4)):
            raise ValueError(f"{name} must be an (N, 4, 4) or (N, 3, 4) tensor, got "
                             f"{tuple(poses.shape) if isinstance(poses, torch.Tensor) else type(poses).__name__}")
    if len(cam2world_src) != len(cam2world_dst):
        raise ValueError(f"cam2world_src and cam2world_dst hold {len(cam2world_src)} and {len(cam2world_dst)} "
                         "cameras")
    src = cam2world_src.to(torch.float64)
    dst = cam2world_dst.to(src)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=src.device)
        src, dst = src[mask], dst[mask]
    if len(src) == 0:
        raise ValueError("align_camera_poses needs at least one camera")
    c_src, c_dst = src[:, :3, 3], dst[:, :3, 3]
    d_src, d_dst = c_src - c_src.mean(0), c_dst - c_dst.mean(0)
    var_src = float(d_src.square().sum())
    sv = torch.linalg.svdvals(d_dst.T @ d_src / len(src))
    if len(src) >= 3 and var_src > 1e-12 and float(sv[1]) > 1e-6 * max(float(sv[0]), 1e-300):
        return weighted_procrustes(c_src, c_dst)
    R = project_to_so3(torch.einsum("nij,nkj->ik", dst[:, :3, :3], src[:, :3, :3]))
    var_dst = float(d_dst.square().sum())
    s = (var_dst / var_src) ** 0.5 if var_src > 1e-24 and var_dst > 1e-24 else 1.0
    s = torch.tensor(s, dtype=torch.float64, device=src.device)
    return s, R, c_dst.mean(0) - s * R @ c_src.mean(0)


def apply_sim3_to_poses(scale, R: torch.Tensor, t: torch.Tensor, cam2world: torch.Tensor) -> torch.Tensor:
    """Move cameras by the similarity ``X -> scale * R @ X + t``: rotations become ``R @ R_i``, centres
    ``scale * R @ c_i + t`` (the cameras stay rigid: no scale enters their rotation block).

    Args:
        scale: scalar; R: (3, 3); t: (3,); cam2world: (N, 4, 4).
    Returns:
        (N, 4, 4) new cam2world matrices in the dtype of ``cam2world``.
    """
    _check_shape(cam2world, (4, 4), "cam2world")
    R = torch.as_tensor(R).to(cam2world)
    out = cam2world.clone()
    out[..., :3, :3] = R @ cam2world[..., :3, :3]
    out[..., :3, 3] = float(scale) * cam2world[..., :3, 3] @ R.T + torch.as_tensor(t).to(cam2world)
    return out


# ================================================================================================ intrinsics
#: number of re-weighting steps of the Weiszfeld focal solver (as the original implementation)
WEISZFELD_ITERS = 10


def weiszfeld_focal(pixels: torch.Tensor, rays: torch.Tensor, valid: Optional[torch.Tensor] = None,
                    n_iter: int = WEISZFELD_ITERS) -> torch.Tensor:
    """Robust focal fit ``argmin_f sum_p |pixel_p - f * ray_p|`` (Weiszfeld / IRLS from the least-squares fit).

    For a pinhole camera with square pixels, ``pixel - pp = f * (X / Z, Y / Z)``: ``pixels`` are the pixel
    coordinates minus the principal point and ``rays`` the normalised coordinates ``(X / Z, Y / Z)`` of the
    camera-frame points seen there.

    Args:
        pixels: (B, N, 2) or (1, N, 2) centred pixel coordinates (x, y).
        rays: (B, N, 2) normalised camera coordinates; non-finite entries are ignored (treated as 0).
        valid: optional (B, N) bool of the points to use (the others are ignored).
        n_iter: re-weighting iterations.
    Returns:
        (B,) focals in pixels (differentiable w.r.t. ``rays``).
    """
    _check_shape(rays, (2,), "rays")
    _check_shape(pixels, (2,), "pixels")
    if rays.ndim != 3 or pixels.ndim != 3 or pixels.shape[1] != rays.shape[1]:
        raise ValueError(f"pixels and rays must be (B, N, 2), got {tuple(pixels.shape)} and {tuple(rays.shape)}")
    rays = rays.nan_to_num(posinf=0, neginf=0)
    if valid is not None:
        rays = torch.where(valid[..., None], rays, torch.zeros_like(rays))
    ray_dot_px = (rays * pixels).sum(dim=-1)  # (B, N)
    ray_dot_ray = rays.square().sum(dim=-1)
    focal = ray_dot_px.mean(dim=1) / ray_dot_ray.mean(dim=1).clip(min=1e-30)  # closed-form L2 solution
    for _ in range(int(n_iter)):
        residual = (pixels - focal[:, None, None] * rays).norm(dim=-1)
        weight = residual.clip(min=1e-8).reciprocal()
        focal = (weight * ray_dot_px).mean(dim=1) / (weight * ray_dot_ray).mean(dim=1).clip(min=1e-30)
    return focal
