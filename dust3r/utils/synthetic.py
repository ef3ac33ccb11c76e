"""Synthetic textured scenes with exact ground truth, an "oracle" model that answers from it, and pose metrics.

This module gives the tests (and anyone debugging the pipeline) image sets whose geometry is known exactly,
without any network weights or download:

* :func:`make_scene` builds a :class:`SyntheticScene`: a closed room (floor, ceiling, four walls: the
  enclosing background box, so every pixel ray hits a surface) holding a few oriented boxes, every surface
  carrying a deterministic, colourful procedural texture defined in world coordinates (so all views agree on
  every point), ray cast (vectorised numpy, one ray through each pixel centre) into ``n_views`` pinhole
  cameras with known intrinsics and poses.
* :class:`OracleModel` is a ``torch.nn.Module`` with the forward interface of ``AsymmetricMASt3R``
  (``model(view1, view2) -> (pred1, pred2)``, batched). It recognises each input view by its image
  content and returns the ground-truth pointmaps in camera-1 frame, high confidences, and dense unit
  descriptors computed from the world point seen at each pixel, so that matching, pose estimation, global
  alignment and export can be tested end to end against known answers.
* Pose metrics for tests: :func:`rotation_angle_deg`, :func:`translation_direction_error_deg`,
  :func:`align_poses` (Sim(3) Umeyama), :func:`pose_errors` (gauge-free, relative poses over all pairs)
  and :func:`focal_rel_error`.

Conventions (as everywhere in this code base)
---------------------------------------------
* World frame: metres, z up; the floor is the plane ``z = 0``; the objects stand around the origin.
* Cameras: ``cam2world`` 4x4 with OpenCV axes (x right, y down, z forward); ``X_world = cam2world @ X_cam``.
* Pixels: ``(x, y)`` = (column, row), integer values at pixel centres; pixel ``[r, c]`` is the ray through
  ``(c, r)``. ``K`` maps camera coordinates to those pixels; principal point ``((W - 1) / 2, (H - 1) / 2)``.
* ``depth`` is the z coordinate of the hit point in the camera frame (not the ray length).
"""
from __future__ import annotations

import logging
import numbers
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "SceneBox",
    "SyntheticScene",
    "make_scene",
    "look_at",
    "OracleModel",
    "rotation_angle_deg",
    "translation_direction_error_deg",
    "align_poses",
    "pose_errors",
    "focal_rel_error",
]

_LAYOUTS = ("orbit", "forward")
_EPS = 1e-9
_ROOM_HALF = np.array([4.0, 4.0, 1.5])  # 8 x 8 x 3 m room, floor at z = 0


def _apply(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``pts @ mat.T`` for (..., k) points and an (m, k) matrix (einsum: no BLAS threads for skinny products)."""
    return np.einsum("ji,...i->...j", mat, pts)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__}") from None


# ============================================================================================
# pose metrics (numpy, accept torch tensors)
# ============================================================================================
def rotation_angle_deg(Ra: Any, Rb: Any) -> np.ndarray:
    """Angle (degrees) of the rotation taking ``Ra`` to ``Rb``: ``angle(Ra^T Rb)``.

    Args:
        Ra, Rb: (..., 3, 3) rotation matrices (or (..., 4, 4) poses: the rotation block is used), broadcast.

    Returns:
        (...) float64 angles in [0, 180]; a 0-d array for single matrices (``float()`` it).
    """
    Ra, Rb = _to_numpy(Ra, "Ra"), _to_numpy(Rb, "Rb")
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
    ta, tb = _to_numpy(ta, "ta"), _to_numpy(tb, "tb")
    if ta.shape[-1:] != (3,) or tb.shape[-1:] != (3,):
        raise ValueError(f"ta and tb must have shape (..., 3), got {ta.shape} and {tb.shape}")
    na, nb = np.linalg.norm(ta, axis=-1), np.linalg.norm(tb, axis=-1)
    cos = (ta * tb).sum(-1) / np.maximum(na * nb, 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _check_poses(poses: Any, name: str) -> np.ndarray:
    arr = _to_numpy(poses, name)
    if arr.ndim != 3 or arr.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{name} must be an (N, 4, 4) stack of cam2world poses, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    if arr.shape[1] == 3:
        arr = np.concatenate([arr, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (arr.shape[0], 1, 1))], axis=1)
    return arr


def _project_to_so3(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def align_poses(cam2world_est: Any, cam2world_gt: Any) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) that best maps the estimated cameras onto the ground truth.

    ``X_gt ~ s * R @ X_est + t``. With >= 3 camera centres that are not collinear, (s, R, t) is the Umeyama
    least-squares fit of the centres; otherwise (2 cameras, collinear centres) R is the chordal mean of
    ``R_gt_i R_est_i^T`` (from the camera orientations), s the ratio of the centre spreads and t from the means.

    Args:
        cam2world_est: (N, 4, 4) estimated cam2world (any gauge: scale, rotation, translation).
        cam2world_gt: (N, 4, 4) ground-truth cam2world.

    Returns:
        ``(s, R, t, aligned)``: scale (float), (3, 3) rotation, (3,) translation and the (N, 4, 4) estimated
        poses mapped into the ground-truth frame (rotation ``R @ R_est``, centre ``s R c_est + t``).
    """
    est, gt = _check_poses(cam2world_est, "cam2world_est"), _check_poses(cam2world_gt, "cam2world_gt")
    if est.shape != gt.shape:
        raise ValueError(f"cam2world_est and cam2world_gt must have the same shape, got {est.shape} and {gt.shape}")
    c_est, c_gt = est[:, :3, 3], gt[:, :3, 3]
    mu_est, mu_gt = c_est.mean(0), c_gt.mean(0)
    d_est, d_gt = c_est - mu_est, c_gt - mu_gt
    var_est = float((d_est ** 2).sum())
    cov = d_gt.T @ d_est / len(est)
    sv = np.linalg.svd(cov, compute_uv=False)
    non_degenerate = len(est) >= 3 and var_est > 1e-12 and sv[1] > 1e-6 * max(sv[0], 1e-300)
    if non_degenerate:  # Umeyama 1991
        U, S, Vt = np.linalg.svd(cov)
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
        R = U @ D @ Vt
        s = float(np.trace(np.diag(S) @ D) / (var_est / len(est)))
    else:
        R = _project_to_so3(np.einsum("nij,nkj->ik", gt[:, :3, :3], est[:, :3, :3]))
        s = float(np.sqrt((d_gt ** 2).sum() / var_est)) if var_est > 1e-24 else 1.0
    t = mu_gt - s * R @ mu_est
    aligned = est.copy()
    aligned[:, :3, :3] = R @ est[:, :3, :3]
    aligned[:, :3, 3] = s * c_est @ R.T + t
    return s, R, t, aligned


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
        arr = _to_numpy(x, name)
        if arr.ndim >= 2 and arr.shape[-2:] == (3, 3):
            return 0.5 * (arr[..., 0, 0] + arr[..., 1, 1])
        return arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim == 2 else arr

    f_est, f_gt = _focals(est, "est"), _focals(gt, "gt")
    if np.any(f_gt <= 0):
        raise ValueError("gt focals must be positive")
    return float(np.max(np.abs(f_est - f_gt) / f_gt))


# ============================================================================================
# scene description
# ============================================================================================
@dataclass(frozen=True)
class SceneBox:
    """An oriented box (rotated about the vertical world axis only).

    Attributes:
        center: (3,) world coordinates of the box centre, metres.
        half_size: (3,) half extents along the box's own x, y, z axes, metres.
        yaw: rotation about world z, radians (box frame -> world frame).
        inside: True for the room (the cameras are inside; the visible faces are the inner ones).
        name: label used in logs.
    """

    center: np.ndarray
    half_size: np.ndarray
    yaw: float = 0.0
    inside: bool = False
    name: str = "box"

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) rotation box frame -> world frame."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class SyntheticScene:
    """N rendered views of a synthetic scene with exact ground truth.

    Attributes:
        images: (N, H, W, 3) uint8 RGB renderings.
        K: (N, 3, 3) float64 intrinsics in pixels of ``images`` (pixel-centre convention).
        cam2world: (N, 4, 4) float64 camera-to-world poses (OpenCV axes).
        depth: (N, H, W) float32 z-depth of the hit point in each camera frame (metres, > 0 everywhere).
        pts3d: (N, H, W, 3) float32 world coordinates of the surface point seen at each pixel.
        surface_id: (N, H, W) int16 index into ``objects`` of the surface seen (0 = the room).
        normals: (N, H, W, 3) float32 unit world normals of the surface, facing the camera.
        objects: the boxes of the scene; ``objects[0]`` is the enclosing room.
        seed, layout: how the scene was made.
        render_time_s: seconds spent ray casting and texturing.
    """

    images: np.ndarray
    K: np.ndarray
    cam2world: np.ndarray
    depth: np.ndarray
    pts3d: np.ndarray
    surface_id: Optional[np.ndarray] = field(default=None, repr=False)
    normals: Optional[np.ndarray] = field(default=None, repr=False)
    objects: List[SceneBox] = field(default_factory=list, repr=False)
    seed: int = 0
    layout: str = "orbit"
    render_time_s: float = 0.0

    # ---------------------------------------------------------------- basic properties
    @property
    def n_views(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.n_views

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def world2cam(self) -> np.ndarray:
        """(N, 4, 4) inverse of :attr:`cam2world`."""
        return np.linalg.inv(self.cam2world)

    @property
    def focals(self) -> np.ndarray:
        """(N,) focal lengths in pixels (fx == fy)."""
        return self.K[:, 0, 0].copy()

    def _check_index(self, i: Any, name: str = "i") -> int:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"{name} must be an integer view index, got {i!r}")
        if not 0 <= int(i) < self.n_views:
            raise ValueError(f"{name}={i} is out of range for a scene of {self.n_views} views")
        return int(i)

    # ---------------------------------------------------------------- geometry helpers
    def pts3d_cam(self, i: int, frame: Optional[int] = None) -> np.ndarray:
        """(H, W, 3) float64 points of view ``i`` in the camera frame of view ``frame`` (default: ``i``)."""
        i = self._check_index(i)
        frame = i if frame is None else self._check_index(frame, "frame")
        world2cam = np.linalg.inv(self.cam2world[frame])
        return _apply(world2cam[:3, :3], self.pts3d[i].astype(np.float64)) + world2cam[:3, 3]

    def relative_pose(self, i: int, j: int) -> np.ndarray:
        """(4, 4) pose of camera ``j`` in camera ``i``'s frame: ``X_cam_i = T @ X_cam_j``."""
        i, j = self._check_index(i, "i"), self._check_index(j, "j")
        return np.linalg.inv(self.cam2world[i]) @ self.cam2world[j]

    def project(self, i: int, pts_world: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Project world points into view ``i``.

        Args:
            i: view index.
            pts_world: (..., 3) world points.

        Returns:
            ``(xy, z)``: (..., 2) pixel coordinates (x, y) and (...) depth in camera ``i``.
        """
        i = self._check_index(i)
        pts = _to_numpy(pts_world, "pts_world")
        if pts.shape[-1:] != (3,):
            raise ValueError(f"pts_world must have shape (..., 3), got {pts.shape}")
        world2cam = np.linalg.inv(self.cam2world[i])
        pts_cam = _apply(world2cam[:3, :3], pts) + world2cam[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = _apply(self.K[i], pts_cam)
            xy = uvw[..., :2] / uvw[..., 2:3]
        return xy, pts_cam[..., 2]

    def correspondences(self, i: int, j: int, max_depth_err: float = 0.01) -> Tuple[np.ndarray, np.ndarray]:
        """True correspondence of every pixel of view ``i`` in view ``j``.

        Args:
            i, j: view indices.
            max_depth_err: relative depth tolerance of the visibility test (the projected point must be the
                surface view ``j`` sees at the nearest pixel).

        Returns:
            ``(xy_j, visible)``: (H, W, 2) float64 sub-pixel position in view ``j`` of the point seen at each
            pixel of view ``i``, and (H, W) bool, True where that point is inside view ``j`` and not occluded.
        """
        xy, z = self.project(j, self.pts3d[i])
        H, W = self.height, self.width
        inside = (z > 0) & (xy[..., 0] > -0.5) & (xy[..., 0] < W - 0.5) & (xy[..., 1] > -0.5) & (xy[..., 1] < H - 0.5)
        c = np.clip(np.rint(xy[..., 0]), 0, W - 1).astype(np.int64)
        r = np.clip(np.rint(xy[..., 1]), 0, H - 1).astype(np.int64)
        depth_j = self.depth[j][r, c]
        visible = inside & (np.abs(depth_j - z) <= max_depth_err * np.maximum(z, _EPS) + 0.02)
        return xy, visible

    # ---------------------------------------------------------------- image outputs
    def views(self, indices: Optional[Sequence[int]] = None, with_gt: bool = False) -> List[Dict[str, Any]]:
        """View dicts like :func:`dust3r.utils.image.load_images` returns for these images at native size.

        Args:
            indices: views to return (default: all, in order). ``idx`` / ``instance`` are the positions in the
                returned list (as load_images numbers them), not scene indices: the oracle identifies views by
                their image content anyway.
            with_gt: also add DUSt3R-dataset-style ground truth (float32 tensors): ``pts3d`` (1, H, W, 3) world
                points, ``depthmap`` (1, H, W), ``valid_mask`` (1, H, W) bool (all True), ``camera_pose``
                (1, 4, 4) cam2world, ``camera_intrinsics`` (1, 3, 3).

        Returns:
            list of dicts with ``img`` float32 (1, 3, H, W) in [-1, 1], ``true_shape`` int32 [[H, W]], ``idx``,
            ``instance`` (``str(idx)``), identity resize metadata (``orig_shape`` = ``resized_shape`` = [[H, W]],
            ``crop_offset`` [[0, 0]], ``resize_scale`` [[1, 1]]), ``filepath`` None.
        """
        from dust3r.utils.image import _normalise  # the exact normalisation of load_images

        import PIL.Image

        indices = range(self.n_views) if indices is None else [self._check_index(i, "indices[...]") for i in indices]
        H, W = self.height, self.width
        out = []
        for k, i in enumerate(indices):
            out.append({
                "img": _normalise(PIL.Image.fromarray(self.images[i])),
                "true_shape": np.array([[H, W]], dtype=np.int32),
                "idx": k,
                "instance": str(k),
                "orig_shape": np.array([[H, W]], dtype=np.int32),
                "resized_shape": np.array([[H, W]], dtype=np.int32),
                "crop_offset": np.array([[0, 0]], dtype=np.int32),
                "resize_scale": np.array([[1.0, 1.0]], dtype=np.float32),
                "filepath": None,
            })
            if with_gt:
                out[-1].update({
                    "pts3d": torch.from_numpy(self.pts3d[i][None].astype(np.float32)),
                    "depthmap": torch.from_numpy(self.depth[i][None].astype(np.float32)),
                    "valid_mask": torch.ones((1, H, W), dtype=torch.bool),
                    "camera_pose": torch.from_numpy(self.cam2world[i][None].astype(np.float32)),
                    "camera_intrinsics": torch.from_numpy(self.K[i][None].astype(np.float32)),
                })
        return out

    @property
    def names(self) -> List[str]:
        """File names :meth:`save_images` writes: ``img_000.png``..."""
        return [f"img_{i:03d}.png" for i in range(self.n_views)]

    def save_images(self, folder: Union[str, "os.PathLike[str]"]) -> List[str]:
        """Write every view as lossless PNG ``img_000.png``, ``img_001.png``... in ``folder`` (created if needed).

        Names sort in view order: ``load_images(folder, size=W)`` (W a multiple of 16, W >= H) gives the views
        unresized and uncropped, in scene order.

        Returns:
            the written paths, in view order.
        """
        import PIL.Image

        folder = os.fspath(folder)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"save_images: {folder!r} exists and is not a directory")
        os.makedirs(folder, exist_ok=True)
        paths = []
        for i, name in enumerate(self.names):
            path = os.path.join(folder, name)
            PIL.Image.fromarray(self.images[i]).save(path)
            paths.append(path)
        return paths


# ============================================================================================
# cameras
# ============================================================================================
def look_at(position: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) cam2world of a camera at ``position`` looking at ``target`` (OpenCV axes: image y points
    opposite to ``up`` projected on the image plane)."""
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    norm = np.linalg.norm(forward)
    if norm < _EPS:
        raise ValueError("look_at: position and target coincide")
    forward = forward / norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-6:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2], cam2world[:3, 3] = right, down, forward, position
    return cam2world


def _camera_poses(n_views: int, layout: str, rng: np.random.Generator, baseline: float) -> np.ndarray:
    """(N, 4, 4) cam2world; consecutive camera centres ~``baseline`` metres apart."""
    poses = []
    if layout == "orbit":
        radius = 2.8
        step = 2.0 * np.arcsin(min(baseline / (2.0 * radius), 1.0))
        start = rng.uniform(0.0, 2.0 * np.pi)
        for k in range(n_views):
            angle = start + step * (k - (n_views - 1) / 2.0)
            r = radius + rng.uniform(-0.1, 0.1)
            position = np.array([r * np.cos(angle), r * np.sin(angle), 1.5 + rng.uniform(-0.15, 0.15)])
            target = np.array([0.0, 0.0, 0.5]) + rng.uniform(-0.1, 0.1, size=3)
            poses.append(look_at(position, target))
    else:  # forward: a camera sliding sideways (and a little forward), looking roughly at the objects
        heading = rng.uniform(0.0, 2.0 * np.pi)
        ahead = np.array([np.cos(heading), np.sin(heading), 0.0])
        side = np.array([-ahead[1], ahead[0], 0.0])
        start = -2.9 * ahead + np.array([0.0, 0.0, 1.4]) - side * baseline * (n_views - 1) / 2.0
        for k in range(n_views):
            position = start + k * baseline * (side + 0.3 * ahead) + rng.uniform(-0.02, 0.02, size=3)
            target = position + 3.0 * ahead + rng.uniform(-0.15, 0.15, size=3) - np.array([0.0, 0.0, 0.9])
            poses.append(look_at(position, target))
    return np.stack(poses)


# ============================================================================================
# procedural texture
# ============================================================================================
def _fbm(p: np.ndarray, salt: int, octaves: int, base_freq: float, waves: int = 6) -> np.ndarray:
    """Smooth multi-scale pseudo-random field in [0, 1] at points (P, 3): per octave a sum of ``waves`` plane
    waves of random directions and phases (frequency doubling, amplitude halving), deterministic from ``salt``."""
    rng = np.random.default_rng([salt & 0xFFFFFFFF, 77])
    total = np.zeros(p.shape[0])
    p32 = p.astype(np.float32)
    amp, norm, freq = 1.0, 0.0, base_freq
    for _ in range(octaves):
        dirs = rng.normal(size=(waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        mags = 2.0 * np.pi * freq * rng.uniform(0.7, 1.3, size=waves)
        phases = rng.uniform(0, 2 * np.pi, size=waves)
        arg = _apply((dirs * mags[:, None]).astype(np.float32), p32) + phases.astype(np.float32)
        total += amp * np.sin(arg).sum(axis=1, dtype=np.float64) / np.sqrt(waves)
        norm += amp
        amp *= 0.5
        freq *= 2.03
    return 0.5 + 0.5 * np.tanh(1.6 * total / norm)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) -> RGB (..., 3) in [0, 1]."""
    h6 = (h % 1.0) * 6.0
    sector = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, sector[None, ..., None].repeat(3, -1), 0)[0]


def _texture(pts_world: np.ndarray, normals: np.ndarray, surface: np.ndarray, objects: List[SceneBox],
             palette: np.ndarray, salt: int) -> np.ndarray:
    """Colour (P, 3) in [0, 1] of surface points: per-surface hue, multi-scale noise, tiles / grids, and
    view-independent shading from a fixed light, so all views agree on every point."""
    P = pts_world.shape[0]
    noise_a = _fbm(pts_world, salt + 11, octaves=4, base_freq=1.5)
    noise_b = _fbm(pts_world, salt + 23, octaves=2, base_freq=4.0)
    noise_c = _fbm(pts_world, salt + 37, octaves=2, base_freq=0.5)
    axis = np.abs(normals).argmax(axis=1)
    face = 2 * axis + (normals[np.arange(P), axis] > 0)
    face_shift = np.where(surface == 0, 0.19 * face, 0.035 * face)  # floor, walls, ceiling differ clearly
    hue = palette[surface, 0] + face_shift + 0.25 * (noise_c - 0.5) + 0.12 * (noise_b - 0.5)
    sat = np.clip(palette[surface, 1] * (0.65 + 0.7 * (noise_a - 0.5)), 0.05, 1.0)
    val = 0.45 + 0.45 * noise_a + 0.25 * (noise_b - 0.5)

    pattern = np.zeros(P)
    for k, obj in enumerate(objects):  # a handful of objects; per-pixel work is vectorised
        sel = surface == k
        if not np.any(sel):
            continue
        local = _apply(obj.rotation.T, pts_world[sel] - obj.center)
        if k == 0:
            checker = (np.floor(local[:, 0] / 0.5) + np.floor(local[:, 1] / 0.5)) % 2
            stripes = np.floor(local[:, 2] / 0.3 + 0.15 * np.sin(local[:, 0] * 2.1 + local[:, 1] * 1.7)) % 2
            pattern[sel] = np.where(np.abs(normals[sel, 2]) > 0.5, checker, stripes)
        else:
            pattern[sel] = np.floor(local / (0.15 + 0.05 * (k % 3))).sum(axis=1) % 2
    val = val * (0.8 + 0.2 * pattern)
    hue = hue + 0.08 * pattern

    rgb = _hsv_to_rgb(hue, sat, np.clip(val, 0.0, 1.0))
    light = np.array([0.35, -0.45, 0.82])
    light /= np.linalg.norm(light)
    shade = 0.6 + 0.4 * np.abs(normals @ light)
    return np.clip(rgb * shade[:, None], 0.0, 1.0)


# ============================================================================================
# ray casting
# ============================================================================================
def _intersect_box(origin: np.ndarray, dirs: np.ndarray, box: SceneBox) -> Tuple[np.ndarray, np.ndarray]:
    """Ray / oriented box intersection (slab method).

    Args:
        origin: (3,) ray origin (world).
        dirs: (P, 3) ray directions (world, need not be unit).
        box: the box; ``box.inside`` selects the exit point (camera inside the box).

    Returns:
        ``(t, normal_world)``: (P,) ray parameter of the visible hit (``inf`` for no hit) and (P, 3) unit
        normals at the hit, facing the ray origin.
    """
    rot = box.rotation
    o_local = rot.T @ (origin - box.center)
    d_local = _apply(rot.T, dirs)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = 1.0 / d_local
        t1 = (-box.half_size - o_local) * inv_d
        t2 = (box.half_size - o_local) * inv_d
    t_lo = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
    t_hi = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
    t_enter, axis_enter = t_lo.max(axis=1), t_lo.argmax(axis=1)
    t_exit, axis_exit = t_hi.min(axis=1), t_hi.argmin(axis=1)
    hit = t_exit >= np.maximum(t_enter, 0.0)
    if box.inside:
        t, axis = np.where(hit & (t_exit > _EPS), t_exit, np.inf), axis_exit
    else:
        t, axis = np.where(hit & (t_enter > _EPS), t_enter, np.inf), axis_enter
    rows = np.arange(dirs.shape[0])
    n_local = np.zeros_like(d_local)
    n_local[rows, axis] = -np.sign(d_local[rows, axis])
    return t, _apply(rot, n_local)


def _cast(K: np.ndarray, cam2world: np.ndarray, W: int, H: int, objects: List[SceneBox]):
    """Cast one ray per pixel centre of a (W, H) image.

    Returns:
        depth (H, W) float64, world points (H, W, 3) float64, surface ids (H, W) int16, normals (H, W, 3).
    """
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64), indexing="xy")
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3)
    rays_cam = _apply(np.linalg.inv(K), pix)
    rays_cam /= rays_cam[:, 2:3]  # z == 1: the ray parameter is the depth
    dirs_world = _apply(cam2world[:3, :3], rays_cam)
    origin = cam2world[:3, 3]
    best_t = np.full(pix.shape[0], np.inf)
    best_id = np.full(pix.shape[0], -1, dtype=np.int16)
    best_n = np.zeros((pix.shape[0], 3))
    for k, obj in enumerate(objects):
        t, n = _intersect_box(origin, dirs_world, obj)
        closer = t < best_t
        best_t = np.where(closer, t, best_t)
        best_id[closer] = k
        best_n[closer] = n[closer]
    if not np.isfinite(best_t).all():
        raise RuntimeError(f"synthetic scene: {int((~np.isfinite(best_t)).sum())} rays hit nothing "
                           "(a camera outside the room?)")
    pts_world = origin + dirs_world * best_t[:, None]
    return best_t.reshape(H, W), pts_world.reshape(H, W, 3), best_id.reshape(H, W), best_n.reshape(H, W, 3)


def _make_objects(rng: np.random.Generator, n_boxes: int) -> List[SceneBox]:
    """The room (8 x 8 x 3 m, floor at z = 0) and ``n_boxes`` non-overlapping boxes within ~1.2 m of the origin."""
    objects = [SceneBox(center=np.array([0.0, 0.0, _ROOM_HALF[2]]), half_size=_ROOM_HALF.copy(), inside=True,
                        name="room")]
    placed: List[Tuple[np.ndarray, float]] = []
    for k in range(n_boxes):
        for _ in range(200):
            half_xy = rng.uniform(0.18, 0.45, size=2)
            height = rng.uniform(0.3, 1.1)
            radius = float(np.hypot(*half_xy))
            angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.1)
            center_xy = dist * np.array([np.cos(angle), np.sin(angle)])
            if all(np.linalg.norm(center_xy - c) > radius + r + 0.1 for c, r in placed):
                break
        placed.append((center_xy, radius))
        objects.append(SceneBox(center=np.array([center_xy[0], center_xy[1], height / 2]),
                                half_size=np.array([half_xy[0], half_xy[1], height / 2]),
                                yaw=float(rng.uniform(0, np.pi)), name=f"box{k}"))
    return objects


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}")
    return float(value)


def make_scene(n_views: int = 5, height: int = 48, width: int = 64, *, seed: int = 0, layout: str = "orbit",
               focal: Optional[float] = None, baseline: Optional[float] = None, n_boxes: int = 3,
               noise: float = 0.0) -> SyntheticScene:
    """Render a deterministic synthetic scene into ``n_views`` views with exact ground truth.

    The scene is a closed 8 x 8 x 3 m room (floor ``z = 0``) holding ``n_boxes`` textured boxes within ~1.2 m
    of the origin; depths range over ~1.5-7 m. Geometry, texture and cameras depend only on ``seed``,
    ``layout``, ``n_views``, ``baseline`` and ``n_boxes``, not on the image size: rendering at twice the size
    with twice the focal gives the same views at twice the resolution.

    Args:
        n_views: number of views (>= 1).
        height, width: image size in pixels (multiples of 16 recommended: ``load_images`` crops to them).
        seed: seed of the scene (objects, texture, cameras, image noise).
        layout: ``'orbit'``: cameras ~2.8 m from the centre at ~1.5 m height on a circular arc, looking at the
            objects; ``'forward'``: cameras sliding sideways (plus a little forward) looking at the objects.
        focal: focal length in pixels (default ``0.9 * width``, a ~58 degree horizontal field of view).
        baseline: distance between consecutive camera centres, metres (default 0.8 for orbit, i.e. ~16 degrees
            of arc, and 0.25 for forward).
        n_boxes: number of boxes (0 to 6).
        noise: standard deviation of Gaussian pixel noise in [0, 1] intensity units (images only).

    Returns:
        a :class:`SyntheticScene`.
    """
    n_views = _check_int(n_views, "n_views", 1)
    H, W = _check_int(height, "height", 1), _check_int(width, "width", 1)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    focal = 0.9 * W if focal is None else _check_positive(focal, "focal")
    baseline = (0.8 if layout == "orbit" else 0.25) if baseline is None else _check_positive(baseline, "baseline")
    if layout == "orbit" and baseline > 5.0:
        raise ValueError(f"baseline={baseline} m is too large for the orbit of radius 2.8 m (max 5)")
    if layout == "forward" and baseline * (n_views - 1) > 5.0:
        raise ValueError(f"forward layout: n_views * baseline spans {baseline * (n_views - 1):.2f} m, more than "
                         "the room allows (5 m)")
    if _check_int(n_boxes, "n_boxes", 0) > 6:
        raise ValueError(f"n_boxes must be in [0, 6], got {n_boxes}")
    noise = _check_positive(noise, "noise", allow_zero=True)

    start = time.perf_counter()
    seed = int(seed)
    rng_objects = np.random.default_rng([seed, 1])
    objects = _make_objects(rng_objects, int(n_boxes))
    palette = np.stack([rng_objects.uniform(0, 1, len(objects)), rng_objects.uniform(0.45, 0.95, len(objects))], -1)
    salt = zlib.crc32(f"synthetic-texture-{seed}".encode())
    cam2world = _camera_poses(n_views, layout, np.random.default_rng([seed, 2, _LAYOUTS.index(layout)]), baseline)
    K = np.array([[focal, 0.0, (W - 1) / 2.0], [0.0, focal, (H - 1) / 2.0], [0.0, 0.0, 1.0]])

    renders = [_cast(K, cam2world[i], W, H, objects) for i in range(n_views)]
    depth, pts, ids, normals = (np.stack([r[k] for r in renders]) for k in range(4))
    colour = _texture(pts.reshape(-1, 3), normals.reshape(-1, 3), ids.reshape(-1).astype(np.int64), objects,
                      palette, salt).reshape(n_views, H, W, 3)
    if noise > 0:
        colour = colour + np.random.default_rng([seed, 3]).normal(0.0, noise, size=colour.shape)
    images = np.rint(np.clip(colour, 0.0, 1.0) * 255.0).astype(np.uint8)
    elapsed = time.perf_counter() - start
    logger.debug("rendered %d synthetic views of %dx%d in %.3f s", n_views, W, H, elapsed)
    return SyntheticScene(images=images, K=np.repeat(K[None], n_views, axis=0), cam2world=cam2world,
                          depth=depth.astype(np.float32), pts3d=pts.astype(np.float32), surface_id=ids,
                          normals=normals.astype(np.float32), objects=objects, seed=seed, layout=layout,
                          render_time_s=elapsed)


# ============================================================================================
# oracle model
# ============================================================================================
class _PatchEmbedShim:
    """Stands in for ``model.patch_embed`` where callers only read ``patch_size``."""

    def __init__(self, patch_size: Tuple[int, int] = (16, 16)):
        self.patch_size = patch_size


def _resize(imgs: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) -> (B, 3, *size), antialiased bilinear (identity when the size matches)."""
    if tuple(imgs.shape[-2:]) == tuple(size):
        return imgs
    return F.interpolate(imgs, size=size, mode="bilinear", antialias=True, align_corners=False)


def _thumb_size(h: int, w: int, side: int = 32) -> Tuple[int, int]:
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _pair_seed(seed: int, i: int, j: int) -> int:
    return zlib.crc32(f"oracle-noise:{seed}:{i}:{j}".encode())


class OracleModel(torch.nn.Module):
    """A stand-in for ``AsymmetricMASt3R`` that returns ground truth.

    ``model(view1, view2)`` identifies the scene view shown in each input image by its content (mean absolute
    difference to the scene's renderings, resized to the input size if needed) and returns, for each batch
    element b with views (i, j):

    * ``pred1['pts3d']`` (B, h, w, 3): points of view i in camera i's frame;
    * ``pred2['pts3d_in_other_view']`` (B, h, w, 3): points of view j in camera i's frame;
    * ``conf`` (B, h, w) > 1 (``conf`` argument, lowered when ``noise_std > 0``); ``desc_conf`` likewise;
    * ``desc`` (B, h, w, D): unit-norm random Fourier features of the pixel's *world* point,
      ``[cos(w_k . X), sin(w_k . X)]_k / sqrt(D/2)`` with D/2 frequency vectors of random directions and
      wavelengths log-spaced from ``~5`` pixel footprints up to the scene size. The dot product of two
      descriptors is ``mean_k cos(w_k . (X - Y))``: 1 for the same 3D point and decreasing away from it, so the
      same surface point seen in two views has the same descriptor and reciprocal nearest neighbours
      (``fast_reciprocal_NNs(dist='dot')``) land on true correspondences.

    Inputs at a resolution (h, w) other than the render's (H, W) (e.g. ``load_images`` resized the PNGs) are
    answered by re-casting the rays of the network pixels through the scene (exact ground truth for
    ``K_net = diag(w/W, h/H) K`` in the pixel-centre convention), when the scene holds its ``objects``; for a
    scene object without them, the stored maps are resized with nearest neighbour (error up to half a render
    pixel). Cropped inputs are not supported (the image match fails with a ValueError).

    Args:
        scene: a :class:`SyntheticScene`.
        noise_std: Gaussian noise on the returned points, std ``noise_std * depth`` (relative, e.g. 0.01 = 1 %),
            drawn from a generator seeded by ``(seed, i, j)``: the same pair always gets the same noise.
        desc_dim: descriptor dimension D (even, >= 2; 24 like MASt3R).
        seed: seed of the descriptor frequencies and the noise.
        two_confs: also return ``desc_conf`` (as MASt3R with two confidence channels).
        conf: confidence of noise-free outputs (> 1); with noise it becomes ``1 + (conf - 1) / (1 + 100 noise_std)``.
        match_tol: mean absolute image difference (images in [-1, 1]) under which an input is taken to be a
            rendering (exact copies; see :meth:`identify`).
        thumb_tol: the same at thumbnail size, for resampled / compressed copies.
        lookup: ``'image'`` (default, by content) or ``'idx'`` (trust ``view['idx']`` as the scene index).
        scale_per_pair: multiply both pointmaps of each pair by a scale drawn log-uniformly in [0.5, 2] from
            ``(seed, i, j)``, mimicking the per-pair scale ambiguity of DUSt3R (default False: metric, like MASt3R).
        hidden_desc_conf: ``desc_conf`` of the pixels whose surface point the other view of the pair does not see
            (out of view or occluded), as a trained MASt3R reports low descriptor confidence there (its
            ``desc_conf`` is ``exp(x)``, so it may be below 1). ``None`` keeps a uniform ``desc_conf``. Without
            it, matches between parts of two views that do not overlap come with full confidence and mislead the
            sparse alignment of large, wide-baseline scenes.

    Attributes mirroring AsymmetricMASt3R: ``patch_embed.patch_size == (16, 16)``, ``patch_size = 16``,
    ``desc_mode='norm'``, ``two_confs``, ``output_mode='pts3d+desc{D}'``, ``head_type='oracle'``. It has no
    ``_encode_image`` / ``_decoder`` / ``_downstream_head``, so ``dust3r.inference.inference`` calls its
    plain forward.
    """

    def __init__(self, scene: SyntheticScene, noise_std: float = 0.0, desc_dim: int = 24, seed: int = 0,
                 two_confs: bool = True, conf: float = 10.0, match_tol: float = 0.02, thumb_tol: float = 0.04,
                 lookup: str = "image", scale_per_pair: bool = False,
                 hidden_desc_conf: Optional[float] = 0.1) -> None:
        super().__init__()
        for name in ("images", "pts3d", "cam2world", "K"):
            if not hasattr(scene, name):
                raise ValueError(f"OracleModel needs a SyntheticScene (missing {name!r} on {type(scene).__name__})")
        pts_world = np.asarray(scene.pts3d, dtype=np.float64)
        if pts_world.ndim != 4 or pts_world.shape[-1] != 3 or not np.isfinite(pts_world).all():
            raise ValueError(f"scene.pts3d must be a finite (N, H, W, 3) array, got shape {pts_world.shape}")
        N, H, W = pts_world.shape[:3]
        if np.asarray(scene.images).shape != (N, H, W, 3):
            raise ValueError(f"scene.images must have shape {(N, H, W, 3)}, got {np.asarray(scene.images).shape}")
        desc_dim = _check_int(desc_dim, "desc_dim", 2)
        if desc_dim % 2:
            raise ValueError(f"desc_dim must be even (cos/sin pairs), got {desc_dim}")
        self.noise_std = _check_positive(noise_std, "noise_std", allow_zero=True)
        conf = _check_positive(conf, "conf")
        if conf <= 1:
            raise ValueError(f"conf must be > 1 (MASt3R confidences are 1 + exp(x)), got {conf}")
        self.match_tol = _check_positive(match_tol, "match_tol")
        self.thumb_tol = _check_positive(thumb_tol, "thumb_tol")
        if lookup not in ("image", "idx"):
            raise ValueError(f"lookup must be 'image' or 'idx', got {lookup!r}")

        self.scene = scene
        self.n_views, self.height, self.width = N, H, W
        self.desc_dim, self.seed, self.two_confs, self.lookup = desc_dim, int(seed), bool(two_confs), lookup
        self.scale_per_pair = bool(scale_per_pair)
        if hidden_desc_conf is not None:
            hidden_desc_conf = _check_positive(hidden_desc_conf, "hidden_desc_conf")
        self.hidden_desc_conf = hidden_desc_conf
        self._covisible_cache: Dict[Tuple[int, int, int, int], torch.Tensor] = {}
        self.conf_value = 1.0 + (conf - 1.0) / (1.0 + 100.0 * self.noise_std)
        # attributes pipelines may read on a real model
        self.patch_embed = _PatchEmbedShim((16, 16))
        self.patch_size = 16
        self.desc_mode = "norm"
        self.output_mode = f"pts3d+desc{desc_dim}"
        self.head_type = "oracle"

        cam2world = np.asarray(scene.cam2world, dtype=np.float64)
        self.frequencies = self._frequencies(pts_world, cam2world, np.asarray(scene.K, dtype=np.float64))
        from dust3r.utils.image import _normalise

        import PIL.Image

        imgs = torch.cat([_normalise(PIL.Image.fromarray(np.asarray(im, dtype=np.uint8))) for im in scene.images])
        self.register_buffer("images", imgs, persistent=False)  # (N, 3, H, W) in [-1, 1]
        self.register_buffer("world2cam", torch.from_numpy(np.linalg.inv(cam2world)), persistent=False)
        # per-resolution ground truth: {(h, w): world points (N, h, w, 3) float64}; the render size is exact
        self._gt_cache: Dict[Tuple[int, int], torch.Tensor] = {(H, W): torch.from_numpy(pts_world)}
        self._img_cache: Dict[Tuple[int, int], torch.Tensor] = {}
        # so that next(model.parameters()) works for callers that read the device / dtype from it
        self._device_anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    # ---------------------------------------------------------------- descriptors
    def _frequencies(self, pts_world: np.ndarray, cam2world: np.ndarray, K: np.ndarray) -> np.ndarray:
        """(D/2, 3) frequency vectors, radians per metre."""
        n_freq = self.desc_dim // 2
        world2cam = np.linalg.inv(cam2world)
        depth = np.einsum("nj,nhwj->nhw", world2cam[:, 2, :3], pts_world) + world2cam[:, None, None, 2, 3]
        footprint = float(np.median(depth)) / float(np.median(K[:, 0, 0]))
        extent = float(np.ptp(pts_world.reshape(-1, 3), axis=0).max())
        lam_min, lam_max = 5.0 * footprint, max(extent, 20.0 * footprint)
        rng = np.random.default_rng([self.seed, 4242])
        dirs = rng.normal(size=(n_freq, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wavelengths = np.geomspace(lam_min, lam_max, n_freq) if n_freq > 1 else np.array([lam_min])
        return dirs * (2.0 * np.pi / wavelengths)[:, None]

    def descriptors(self, pts_world: torch.Tensor) -> torch.Tensor:
        """(..., D) float32 unit descriptors of world points (..., 3)."""
        freqs = torch.as_tensor(self.frequencies, dtype=torch.float32, device=pts_world.device)
        pts = pts_world.to(torch.float32)
        # three broadcast products instead of a (P, 3) @ (3, D/2) matmul (faster for this skinny shape)
        phase = pts[..., 0:1] * freqs[:, 0] + pts[..., 1:2] * freqs[:, 1] + pts[..., 2:3] * freqs[:, 2]
        return torch.cat([phase.cos(), phase.sin()], dim=-1) * float(1.0 / np.sqrt(self.desc_dim // 2))

    # ---------------------------------------------------------------- per-resolution ground truth
    def _gt_world(self, h: int, w: int) -> torch.Tensor:
        """(N, h, w, 3) float64 world points seen through the pixel centres of an (h, w) image of each view."""
        key = (h, w)
        if key not in self._gt_cache:
            objects = getattr(self.scene, "objects", None)
            H, W = self.height, self.width
            if objects:
                sx, sy = w / W, h / H
                # pixel centres: x_net + 0.5 = sx * (x + 0.5)
                scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
                pts = [_cast(scale @ np.asarray(self.scene.K[n], np.float64), np.asarray(self.scene.cam2world[n]),
                             w, h, objects)[1] for n in range(self.n_views)]
                self._gt_cache[key] = torch.from_numpy(np.stack(pts))
            else:
                # nearest render pixel of each network pixel centre (ties rounded up)
                cols = np.clip(np.floor((np.arange(w) + 0.5) * W / w), 0, W - 1).astype(np.int64)
                rows = np.clip(np.floor((np.arange(h) + 0.5) * H / h), 0, H - 1).astype(np.int64)
                self._gt_cache[key] = self._gt_cache[(H, W)][:, rows][:, :, cols]
        return self._gt_cache[key]

    def _stored_images(self, h: int, w: int) -> torch.Tensor:
        """(N, 3, h, w) renderings resized (antialiased bilinear) to an input size."""
        if (h, w) == (self.height, self.width):
            return self.images
        if (h, w) not in self._img_cache:
            self._img_cache[(h, w)] = _resize(self.images, (h, w))
        return self._img_cache[(h, w)]

    # ---------------------------------------------------------------- view lookup
    def identify(self, img: torch.Tensor, name: str = "img") -> torch.Tensor:
        """(B,) long scene indices of a batch of images (B, 3, h, w) in [-1, 1].

        The candidate is the rendering (resized to (h, w)) with the smallest mean absolute difference; it is
        accepted when that difference is below ``match_tol`` (exact copies, PNG round trips) or when the two
        images agree within ``thumb_tol`` at thumbnail size (32 px long side; resampled or JPEG-compressed
        copies, whose fine texture differs). Raises ValueError otherwise.
        """
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{name} must be a (B, 3, h, w) image tensor, got "
                             f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
        h, w = img.shape[-2:]
        if abs(w * self.height - h * self.width) > max(self.height, self.width):
            raise ValueError(f"OracleModel: {name} is {w}x{h}, not a uniform resize of the {self.width}x"
                             f"{self.height} renderings (cropped inputs are not supported: load the saved images "
                             "with a size that keeps their aspect ratio, e.g. size=W with W, H multiples of 16)")
        stored = self._stored_images(h, w)
        img = img.detach().to(stored.device, torch.float32)
        thumb_size = _thumb_size(h, w)
        thumbs = self._stored_images(*thumb_size)
        # shortlist by thumbnail (cheap, memory B x N x 3 x 32 x 32), decide at full resolution
        thumb_all = (_resize(img, thumb_size)[:, None] - thumbs[None]).abs().mean(dim=(2, 3, 4))  # (B, N)
        cand = thumb_all.topk(min(4, self.n_views), dim=1, largest=False).indices  # (B, k)
        full = torch.stack([(img - stored[cand[:, k]]).abs().mean(dim=(1, 2, 3)) for k in range(cand.shape[1])], 1)
        best, pick = full.min(dim=1)
        idx = cand.gather(1, pick[:, None])[:, 0]
        thumb_diff = thumb_all.gather(1, idx[:, None])[:, 0]
        bad = torch.nonzero((best > self.match_tol) & (thumb_diff > self.thumb_tol)).flatten().tolist()
        if bad:
            raise ValueError(f"OracleModel: {name} image(s) {bad} match none of the scene's {self.n_views} renderings "
                             f"(mean abs difference {best[bad].tolist()} > match_tol={self.match_tol}, at thumbnail "
                             f"size {thumb_diff[bad].tolist()} > thumb_tol={self.thumb_tol}); the oracle only "
                             "answers for images of its own scene, unresized or uniformly resized, not cropped")
        return idx.cpu()

    def _indices(self, view: Dict[str, Any], B: int, name: str) -> torch.Tensor:
        if self.lookup == "image":
            return self.identify(view["img"], f"{name}['img']")
        value = view.get("idx")
        values = value.reshape(-1).tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else (
            list(value) if isinstance(value, (list, tuple)) else [value])
        try:
            ints = [int(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{name}['idx'] = {value!r} is not a (list of) integer view indices") from None
        if len(ints) != B or any(not 0 <= k < self.n_views for k in ints):
            raise ValueError(f"{name}['idx'] = {ints} is not {B} view indices in [0, {self.n_views})")
        return torch.tensor(ints, dtype=torch.long)

    def covisible(self, i: int, j: int, h: int, w: int) -> torch.Tensor:
        """(h, w) bool: pixels of view ``i`` (at input size h x w) whose surface point view ``j`` sees.

        Computed at the render size with :meth:`SyntheticScene.correspondences` and resized with nearest
        neighbour; cached per (i, j, h, w).
        """
        key = (i, j, h, w)
        if key not in self._covisible_cache:
            seen = torch.from_numpy(np.asarray(self.scene.correspondences(i, j)[1], dtype=bool))
            if tuple(seen.shape) != (h, w):
                seen = torch.nn.functional.interpolate(seen[None, None].float(), size=(h, w))[0, 0] > 0.5
            self._covisible_cache[key] = seen
        return self._covisible_cache[key]

    # ---------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, view1: Dict[str, Any], view2: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor],
                                                                             Dict[str, torch.Tensor]]:
        """Ground-truth predictions for a batch of pairs.

        Args:
            view1, view2: batched view dicts with ``img`` (B, 3, h, w) images of the scene (any of its views, in
                any order, at the render size or uniformly resized).

        Returns:
            ``(pred1, pred2)`` float32 on the device of ``view1['img']``: pred1 = {pts3d (B, h, w, 3) view-1
            points in camera-1 frame, conf (B, h, w), desc (B, h, w, D), desc_conf (B, h, w)}; pred2 =
            {pts3d_in_other_view (B, h, w, 3) view-2 points in camera-1 frame, conf, desc, desc_conf}.
        """
        for name, view in (("view1", view1), ("view2", view2)):
            if not isinstance(view, dict) or "img" not in view:
                raise ValueError(f"{name} must be a view dict with an 'img' tensor")
        B = view1["img"].shape[0]
        if view2["img"].shape[0] != B:
            raise ValueError(f"view1 and view2 have different batch sizes: {B} != {view2['img'].shape[0]}")
        device = view1["img"].device
        i, j = self._indices(view1, B, "view1"), self._indices(view2, B, "view2")
        world1 = self._gt_world(*view1["img"].shape[-2:])[i]  # (B, h1, w1, 3)
        world2 = self._gt_world(*view2["img"].shape[-2:])[j]
        world2cam1 = self.world2cam[i].to(torch.float64).cpu()
        rot, trans = world2cam1[:, :3, :3], world2cam1[:, None, None, :3, 3]
        pts1_cam1 = torch.einsum("bij,bhwj->bhwi", rot, world1) + trans
        pts2_cam1 = torch.einsum("bij,bhwj->bhwi", rot, world2) + trans
        if self.noise_std > 0 or self.scale_per_pair:
            for b in range(B):  # a few pairs per batch; the per-pixel work stays vectorised
                gen = torch.Generator().manual_seed(_pair_seed(self.seed, int(i[b]), int(j[b])))
                log_scale = torch.empty((), dtype=torch.float64).uniform_(np.log(0.5), np.log(2.0), generator=gen)
                scale = float(log_scale.exp())
                for pts in (pts1_cam1, pts2_cam1):
                    if self.noise_std > 0:
                        eps = torch.randn(pts.shape[1:], generator=gen, dtype=torch.float64)
                        pts[b] += eps * self.noise_std * pts[b, ..., 2:3].abs()
                    if self.scale_per_pair:
                        pts[b] *= scale

        def _heads(pts: torch.Tensor, world: torch.Tensor, own: torch.Tensor, other: torch.Tensor
                   ) -> Dict[str, torch.Tensor]:
            conf = torch.full(pts.shape[:3], self.conf_value, dtype=torch.float32)
            out = {"conf": conf, "desc": self.descriptors(world)}
            if self.two_confs:
                desc_conf = conf.clone()
                if self.hidden_desc_conf is not None:
                    seen = torch.stack([self.covisible(int(a), int(b), *pts.shape[1:3]) for a, b in zip(own, other)])
                    desc_conf[~seen] = self.hidden_desc_conf
                out["desc_conf"] = desc_conf
            return out

        pred1 = {"pts3d": pts1_cam1.to(torch.float32), **_heads(pts1_cam1, world1, i, j)}
        pred2 = {"pts3d_in_other_view": pts2_cam1.to(torch.float32), **_heads(pts2_cam1, world2, j, i)}
        return ({k: v.to(device) for k, v in pred1.items()}, {k: v.to(device) for k, v in pred2.items()})
