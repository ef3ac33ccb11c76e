"""Pose-accuracy metrics: rotation and translation-direction angles, Sim(3) pose alignment, gauge-free errors.

They compare estimated cameras with ground truth (e.g. :mod:`dust3r.synthetic` scenes) whatever the gauge of the
estimate (DUSt3R / MASt3R reconstructions are defined up to a similarity). Inputs are numpy arrays or torch
tensors; outputs are numpy / Python floats.

Conventions: ``cam2world`` 4x4 with OpenCV axes (x right, y down, z forward), ``X_world = cam2world @ X_cam``.

Example::

    from dust3r.utils.pose_metrics import pose_errors
    err = pose_errors(scene.get_im_poses(), gt_cam2world)   # (N, 4, 4) each
    assert err["rot_deg"] < 1.0 and err["trans_dir_deg"] < 2.0
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import torch

from .geometry import align_camera_poses, apply_sim3_to_poses

__all__ = ["rotation_angle_deg", "translation_direction_error_deg", "align_poses", "pose_errors", "focal_rel_error"]


def as_float64(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy, torch, nested lists) as a float64 numpy array; ValueError naming ``name`` otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__}") from None


def rotation_angle_deg(Ra: Any, Rb: Any) -> np.ndarray:
    """Angle (degrees) of the rotation taking ``Ra`` to ``Rb``: ``angle(Ra^T Rb)``.

    Args:
        Ra, Rb: (..., 3, 3) rotation matrices (or (..., 4, 4) poses: the rotation block is used), broadcast.

    Returns:
        (...) float64 angles in [0, 180]; a 0-d array for single matrices (``float()`` it).
    """
    Ra, Rb = as_float64(Ra, "Ra"), as_float64(Rb, "Rb")
    for name, R in (("Ra", Ra), ("Rb", Rb)):
        if R.ndim < 2 or R.shape[-2:] not in ((3, 3), (4, 4)):
            raise ValueError(f"{name} must have shape (..., 3, 3) or (..., 4, 4), got {R.shape}")
    Ra, Rb = Ra[..., :3, :3], Rb[..., :3, :3]
    rel = np.einsum("...ji,...jk->...ik", Ra, Rb)  # Ra^T Rb
    cos = (np.einsum("...ii->...", rel) - 1.0) / 2.0
    axis = np.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                     rel[..., 1, 0] - rel[..., 0, 1]], axis=-1)
    sin = np.linalg.norm(axis, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))  # accurate near 0 and 180, unlike arccos alone


def translation_direction_error_deg(ta: Any, tb: Any) -> np.ndarray:
    """Angle (degrees) between translation vectors ``ta`` and ``tb`` (scale-free).

    Args:
        ta, tb: (..., 3) vectors, broadcast. A zero vector gives an angle of 90 (undefined direction).

    Returns:
        (...) float64 angles in [0, 180].
    """
    ta, tb = as_float64(ta, "ta"), as_float64(tb, "tb")
    if ta.shape[-1:] != (3,) or tb.shape[-1:] != (3,):
        raise ValueError(f"ta and tb must have shape (..., 3), got {ta.shape} and {tb.shape}")
    na, nb = np.linalg.norm(ta, axis=-1), np.linalg.norm(tb, axis=-1)
    cos = (ta * tb).sum(-1) / np.maximum(na * nb, 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _check_poses(poses: Any, name: str) -> np.ndarray:
    arr = as_float64(poses, name)
    if arr.ndim != 3 or arr.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{name} must be an (N, 4, 4) stack of cam2world poses, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    if arr.shape[1] == 3:
        arr = np.concatenate([arr, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (arr.shape[0], 1, 1))], axis=1)
    return arr


def align_poses(cam2world_est: Any, cam2world_gt: Any) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) that best maps the estimated cameras onto the ground truth.

    ``X_gt ~ s * R @ X_est + t``, fitted by :func:`dust3r.utils.geometry.align_camera_poses`: with >= 3 camera
    centres that are not collinear, the Umeyama least-squares fit of the centres; otherwise (2 cameras, collinear
    centres) R is the chordal mean of ``R_gt_i R_est_i^T`` (from the camera orientations), s the ratio of the
    centre spreads and t from the means.

    Args:
        cam2world_est: (N, 4, 4) estimated cam2world (any gauge: scale, rotation, translation).
        cam2world_gt: (N, 4, 4) ground-truth cam2world.

    Returns:
        ``(s, R, t, aligned)``: scale (float), (3, 3) rotation, (3,) translation and the (N, 4, 4) estimated
        poses mapped into the ground-truth frame (rotation ``R @ R_est``, centre ``s R c_est + t``), float64.
    """
    est, gt = _check_poses(cam2world_est, "cam2world_est"), _check_poses(cam2world_gt, "cam2world_gt")
    if est.shape != gt.shape:
        raise ValueError(f"cam2world_est and cam2world_gt must have the same shape, got {est.shape} and {gt.shape}")
    est_t = torch.from_numpy(est)
    s, R, t = align_camera_poses(est_t, torch.from_numpy(gt))
    aligned = apply_sim3_to_poses(s, R, t, est_t)
    return float(s), R.numpy(), t.numpy(), aligned.numpy()


def pose_errors(est: Any, gt: Any) -> Dict[str, float]:
    """Gauge-free pose errors from the relative poses of all pairs (i < j).

    For each pair, the relative pose of camera j in camera i's frame, ``inv(c2w_i) @ c2w_j``, is compared:
    rotation angle of the difference, and angle between the translation directions (scale-free). After a
    Sim(3) :func:`align_poses`, the camera-centre error is also reported relative to the ground-truth extent.

    Args:
        est, gt: (N, 4, 4) cam2world (numpy or torch), N >= 2.

    Returns:
        dict with ``rot_deg`` (max), ``rot_deg_median``, ``trans_dir_deg`` (max), ``trans_dir_deg_median``,
        ``n_pairs``, ``scale`` (of the Sim(3) alignment), ``center_err_rel`` (max centre error after alignment
        / max distance between gt centres).
    """
    est, gt = _check_poses(est, "est"), _check_poses(gt, "gt")
    if est.shape != gt.shape:
        raise ValueError(f"est and gt must have the same shape, got {est.shape} and {gt.shape}")
    if len(est) < 2:
        raise ValueError(f"pose_errors needs at least 2 cameras, got {len(est)}")
    i, j = np.triu_indices(len(est), k=1)
    rel_est = np.linalg.inv(est[i]) @ est[j]
    rel_gt = np.linalg.inv(gt[i]) @ gt[j]
    rot = rotation_angle_deg(rel_est, rel_gt)
    trans = translation_direction_error_deg(rel_est[:, :3, 3], rel_gt[:, :3, 3])
    s, _, _, aligned = align_poses(est, gt)
    c_gt = gt[:, :3, 3]
    extent = float(np.linalg.norm(c_gt[i] - c_gt[j], axis=1).max())
    center_err = float(np.linalg.norm(aligned[:, :3, 3] - c_gt, axis=1).max())
    return dict(rot_deg=float(rot.max()), rot_deg_median=float(np.median(rot)),
                trans_dir_deg=float(trans.max()), trans_dir_deg_median=float(np.median(trans)),
                n_pairs=int(len(i)), scale=float(s), center_err_rel=center_err / max(extent, 1e-300))


def focal_rel_error(est: Any, gt: Any) -> float:
    """Largest relative focal error ``max |f_est - f_gt| / f_gt``.

    Args:
        est, gt: focals of shape (N,) or (N, 1), or intrinsics (N, 3, 3) (mean of fx and fy is used);
            broadcast against each other (a scalar gt is fine).
    """
    def _focals(x: Any, name: str) -> np.ndarray:
        arr = as_float64(x, name)
        if arr.ndim >= 2 and arr.shape[-2:] == (3, 3):
            return 0.5 * (arr[..., 0, 0] + arr[..., 1, 1])
        return arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim == 2 else arr

    f_est, f_gt = _focals(est, "est"), _focals(gt, "gt")
    if np.any(f_gt <= 0):
        raise ValueError("gt focals must be positive")
    return float(np.max(np.abs(f_est - f_gt) / f_gt))
