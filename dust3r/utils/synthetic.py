"""Synthetic textured scenes with exact ground truth, and an "oracle" model that answers from it.

This module gives the tests (and anyone debugging the pipeline) image sets whose geometry is known
*exactly*, without any network or download:

* :func:`make_synthetic_scene` builds a :class:`SyntheticScene`: a closed room (floor, ceiling, four
  walls) holding a few boxes, every surface carrying a deterministic, colourful procedural texture,
  ray-cast (vectorised numpy, one ray through each pixel centre) into ``n_views`` pinhole cameras with
  known intrinsics and poses. Because the room is closed, every pixel hits a surface: depth, world
  points and masks are defined everywhere.
* :class:`OracleModel` is a ``torch.nn.Module`` with the forward interface of ``AsymmetricMASt3R``
  (``model(view1, view2) -> (pred1, pred2)``) whose outputs are the ground-truth pointmaps of the
  scene, plus dense descriptors computed from the world coordinates of each pixel, so that matching,
  pose estimation and global alignment can be tested end to end with known answers.

Conventions (as everywhere in this code base)
---------------------------------------------
* World frame: metres, z up; the floor is the plane ``z = 0``, the scene centre is near the origin.
* Cameras: ``cam2world`` 4x4 matrices with OpenCV axes (x right, y down, z forward);
  ``X_world = cam2world @ X_cam``.
* Pixels: ``(x, y)`` = (column, row), integer values at pixel centres; pixel ``[r, c]`` is the ray
  through ``(c, r)``. Intrinsics ``K`` map camera coordinates to those pixels; the principal point is
  the image centre ``((W - 1) / 2, (H - 1) / 2)``.
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

logger = logging.getLogger(__name__)

__all__ = [
    "SyntheticScene",
    "SceneBox",
    "make_synthetic_scene",
    "look_at",
    "OracleModel",
]

_LAYOUTS = ("orbit", "forward")
_EPS = 1e-9


def _apply(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``pts @ mat.T`` for (..., k) points and an (m, k) matrix, without BLAS (whose threads only
    slow these skinny products down)."""
    return np.einsum("ji,...i->...j", mat, pts)


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
        inside: True for the room (the camera is inside, the visible faces are the inner ones).
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
        depths: (N, H, W) float32, z of the hit point in each camera frame (metres, > 0).
        pts3d_world: (N, H, W, 3) float32 world coordinates of the surface point seen at each pixel.
        valid: (N, H, W) bool, True where the pixel ray hit a surface (all True for these scenes).
        intrinsics: (N, 3, 3) float64 pinhole K of each view, in pixels of the (W, H) images.
        cam2world: (N, 4, 4) float64 camera-to-world poses (OpenCV camera axes).
        surface_id: (N, H, W) int16 index into ``objects`` of the surface seen at each pixel.
        normals_world: (N, H, W, 3) float32 unit normals (world frame) of the surface at each pixel,
            pointing towards the camera.
        objects: the boxes of the scene; ``objects[0]`` is the room.
        seed: the seed the scene was generated from.
        layout: ``'orbit'`` or ``'forward'``.
        render_time_s: seconds spent ray casting and texturing.
    """

    images: np.ndarray
    depths: np.ndarray
    pts3d_world: np.ndarray
    valid: np.ndarray
    intrinsics: np.ndarray
    cam2world: np.ndarray
    surface_id: np.ndarray
    normals_world: np.ndarray
    objects: List[SceneBox] = field(default_factory=list)
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
    def size(self) -> Tuple[int, int]:
        """``(W, H)`` of every view."""
        return self.width, self.height

    @property
    def world2cam(self) -> np.ndarray:
        """(N, 4, 4) inverse of :attr:`cam2world`."""
        return np.linalg.inv(self.cam2world)

    @property
    def scene_extent(self) -> float:
        """Largest side of the room (metres); a natural length scale of the scene."""
        return float(2.0 * np.max(self.objects[0].half_size)) if self.objects else \
            float(np.ptp(self.pts3d_world.reshape(-1, 3), axis=0).max())

    def _check_index(self, i: Any, name: str = "i") -> int:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"{name} must be an integer view index, got {i!r}")
        if not 0 <= int(i) < self.n_views:
            raise ValueError(f"{name}={i} is out of range for a scene of {self.n_views} views")
        return int(i)

    # ---------------------------------------------------------------- geometry helpers
    def pts3d_cam(self, i: int) -> np.ndarray:
        """(H, W, 3) float64 points of view ``i`` in its own camera frame."""
        i = self._check_index(i)
        world2cam = np.linalg.inv(self.cam2world[i])
        return _apply(world2cam[:3, :3], self.pts3d_world[i].astype(np.float64)) + world2cam[:3, 3]

    def relative_pose(self, i: int, j: int) -> np.ndarray:
        """(4, 4) pose of camera ``j`` in camera ``i``'s frame: ``X_cam_i = T @ X_cam_j``."""
        i, j = self._check_index(i, "i"), self._check_index(j, "j")
        return np.linalg.inv(self.cam2world[i]) @ self.cam2world[j]

    def project(self, i: int, pts_world: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Project world points into view ``i``.

        Args:
            i: view index.
            pts_world: (..., 3) world points.

        Returns:
            ``(xy, z)``: (..., 2) pixel coordinates (x, y) and (...) depth in camera ``i``.
        """
        i = self._check_index(i)
        pts = np.asarray(pts_world, dtype=np.float64)
        if pts.shape[-1:] != (3,):
            raise ValueError(f"pts_world must have shape (..., 3), got {pts.shape}")
        world2cam = np.linalg.inv(self.cam2world[i])
        pts_cam = _apply(world2cam[:3, :3], pts) + world2cam[:3, 3]
        z = pts_cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = _apply(self.intrinsics[i], pts_cam)
            xy = uvw[..., :2] / uvw[..., 2:3]
        return xy, z

    # ---------------------------------------------------------------- image outputs
    def views(self, indices: Optional[Sequence[int]] = None, with_gt: bool = False) -> List[Dict[str, Any]]:
        """View dicts exactly like :func:`dust3r.utils.image.load_images` returns for these images
        loaded at their own size (no resize, no crop).

        Args:
            indices: views to return (default: all, in order). ``idx`` / ``instance`` of the returned
                dicts are the *scene* view indices, so an :class:`OracleModel` looks them up directly.
            with_gt: also add DUSt3R-dataset-style ground truth: ``pts3d`` (1, H, W, 3) world points,
                ``depthmap`` (1, H, W), ``valid_mask`` (1, H, W) bool, ``camera_pose`` (1, 4, 4)
                cam2world and ``camera_intrinsics`` (1, 3, 3) (float32 tensors).

        Returns:
            list of dicts with ``img`` float32 (1, 3, H, W) in [-1, 1], ``true_shape`` int32 [[H, W]],
            ``idx``, ``instance`` (``str(idx)``), ``orig_shape`` = ``resized_shape`` = [[H, W]],
            ``crop_offset`` [[0, 0]], ``resize_scale`` [[1, 1]], ``filepath`` None.
        """
        from dust3r.utils.image import _normalise  # the exact normalisation load_images applies
        import PIL.Image

        if indices is None:
            indices = range(self.n_views)
        H, W = self.height, self.width
        out = []
        for i in indices:
            i = self._check_index(i, "indices[...]")
            view: Dict[str, Any] = {
                "img": _normalise(PIL.Image.fromarray(self.images[i])),
                "true_shape": np.array([[H, W]], dtype=np.int32),
                "idx": i,
                "instance": str(i),
                "orig_shape": np.array([[H, W]], dtype=np.int32),
                "resized_shape": np.array([[H, W]], dtype=np.int32),
                "crop_offset": np.array([[0, 0]], dtype=np.int32),
                "resize_scale": np.array([[1.0, 1.0]], dtype=np.float32),
                "filepath": None,
            }
            if with_gt:
                view.update({
                    "pts3d": torch.from_numpy(self.pts3d_world[i][None].astype(np.float32)),
                    "depthmap": torch.from_numpy(self.depths[i][None].astype(np.float32)),
                    "valid_mask": torch.from_numpy(self.valid[i][None].copy()),
                    "camera_pose": torch.from_numpy(self.cam2world[i][None].astype(np.float32)),
                    "camera_intrinsics": torch.from_numpy(self.intrinsics[i][None].astype(np.float32)),
                })
            out.append(view)
        return out

    def save_images(self, directory: Union[str, "os.PathLike[str]"], prefix: str = "view",
                    ext: str = "png") -> List[str]:
        """Write every view as ``{prefix}{i:03d}.{ext}`` in ``directory`` (created if needed).

        Names sort in view order, so ``load_images(directory, size=max(W, H), square_ok=True)`` gives
        the views with ``idx`` equal to the scene view index. Use a lossless ``ext`` (png, bmp, tif)
        when the pixels must round-trip exactly.

        Returns:
            the written paths, in view order.
        """
        import PIL.Image

        ext = ext.lstrip(".").lower()
        if ext not in ("png", "bmp", "tif", "tiff", "jpg", "jpeg", "webp"):
            raise ValueError(f"unsupported image extension ext={ext!r}")
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        paths = []
        for i in range(self.n_views):
            path = os.path.join(directory, f"{prefix}{i:03d}.{ext}")
            PIL.Image.fromarray(self.images[i]).save(path)
            paths.append(path)
        return paths


# ============================================================================================
# cameras
# ============================================================================================
def look_at(position: Sequence[float], target: Sequence[float],
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) cam2world of a camera at ``position`` looking at ``target`` (OpenCV axes: y points
    down in the image, i.e. opposite to ``up`` projected on the image plane)."""
    position = np.asarray(position, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    forward = target - position
    norm = np.linalg.norm(forward)
    if norm < _EPS:
        raise ValueError("look_at: position and target coincide")
    forward /= norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2], cam2world[:3, 3] = right, down, forward, position
    return cam2world


def _camera_poses(n_views: int, layout: str, rng: np.random.Generator, step_deg: float) -> np.ndarray:
    """(N, 4, 4) cam2world for the chosen layout (world z up, objects around the origin)."""
    poses = []
    if layout == "orbit":
        start = rng.uniform(0.0, 2.0 * np.pi)
        for k in range(n_views):
            angle = start + np.deg2rad(step_deg) * (k - (n_views - 1) / 2.0)
            radius = 3.6 + rng.uniform(-0.2, 0.2)
            height = 1.7 + rng.uniform(-0.2, 0.2)
            position = np.array([radius * np.cos(angle), radius * np.sin(angle), height])
            target = np.array([0.0, 0.0, 0.45]) + rng.uniform(-0.1, 0.1, size=3)
            poses.append(look_at(position, target))
    else:  # forward: a camera moving forward and slightly sideways, looking roughly ahead
        heading = rng.uniform(0.0, 2.0 * np.pi)
        ahead = np.array([np.cos(heading), np.sin(heading), 0.0])
        side = np.array([-ahead[1], ahead[0], 0.0])
        start = -4.4 * ahead + np.array([0.0, 0.0, 1.5])
        step = np.deg2rad(step_deg) / np.deg2rad(20.0)  # 20 deg -> 0.3 m forward per view
        for k in range(n_views):
            position = start + k * step * (0.3 * ahead + 0.12 * side) + rng.uniform(-0.03, 0.03, size=3)
            target = position + 4.0 * ahead + rng.uniform(-0.25, 0.25, size=3) - np.array([0.0, 0.0, 1.0])
            poses.append(look_at(position, target))
    return np.stack(poses)


# ============================================================================================
# procedural texture
# ============================================================================================
def _fbm(p: np.ndarray, salt: int, octaves: int = 4, base_freq: float = 1.0, waves: int = 6) -> np.ndarray:
    """Smooth multi-scale pseudo-random field in [0, 1] at points p (P, 3).

    A sum of ``waves`` plane waves of random directions and phases per octave (frequency doubling,
    amplitude halving), deterministic from ``salt``; a cheap stand-in for fractal value noise.
    """
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
    # roughly N(0, 0.5^2 * sum amp^2 / norm^2) -> squash into [0, 1]
    return 0.5 + 0.5 * np.tanh(1.6 * total / norm)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) -> RGB (..., 3) in [0, 1]."""
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _texture(pts_world: np.ndarray, normals: np.ndarray, surface: np.ndarray, objects: List[SceneBox],
             palette: np.ndarray, salt: int) -> np.ndarray:
    """Colour (P, 3) in [0, 1] of surface points: per-surface hue, multi-scale noise, tiles / stripes,
    Lambertian shading from a fixed light. View-independent, so all views agree on every point."""
    P = pts_world.shape[0]
    noise_a = _fbm(pts_world, salt + 11, octaves=4, base_freq=1.3)
    noise_b = _fbm(pts_world, salt + 23, octaves=3, base_freq=4.1)
    noise_c = _fbm(pts_world, salt + 37, octaves=2, base_freq=0.45)
    # each face of each box gets its own hue shift (large for the room: floor, walls, ceiling differ)
    axis = np.abs(normals).argmax(axis=1)
    face = 2 * axis + (normals[np.arange(P), axis] > 0)
    face_shift = np.where(surface == 0, 0.19 * face, 0.035 * face)
    hue = palette[surface, 0] + face_shift + 0.22 * (noise_c - 0.5) + 0.10 * (noise_b - 0.5)
    sat = np.clip(palette[surface, 1] * (0.65 + 0.7 * (noise_a - 0.5)), 0.05, 1.0)
    val = 0.45 + 0.45 * noise_a + 0.25 * (noise_b - 0.5)

    # geometric patterns in box-local coordinates (tiles on the floor, stripes on walls, grids on boxes)
    pattern = np.zeros(P)
    for k, obj in enumerate(objects):
        sel = surface == k
        if not np.any(sel):
            continue
        local = _apply(obj.rotation.T, pts_world[sel] - obj.center)
        if k == 0:
            tile = 0.5
            checker = (np.floor(local[:, 0] / tile) + np.floor(local[:, 1] / tile)) % 2
            stripes = (np.floor(local[:, 2] / 0.35 + 0.15 * np.sin(local[:, 0] * 2.1 + local[:, 1] * 1.7)) % 2)
            on_floor = np.abs(normals[sel, 2]) > 0.5
            pattern[sel] = np.where(on_floor, checker, stripes)
        else:
            cells = 0.12 + 0.06 * (k % 3)
            grid = ((np.floor(local / cells).sum(axis=1)) % 2)
            pattern[sel] = grid
    val = val * (0.8 + 0.2 * pattern)
    hue = hue + 0.08 * pattern

    rgb = _hsv_to_rgb(hue, sat, np.clip(val, 0.0, 1.0))
    light = np.array([0.35, -0.45, 0.82])
    light /= np.linalg.norm(light)
    shade = 0.6 + 0.4 * np.abs(_apply(light[None], normals)[:, 0])  # |n.l|: the inner room faces are lit too
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
        ``(t, normal_world)``: (P,) ray parameter of the visible hit (``inf`` for no hit) and
        (P, 3) unit normals at the hit, facing the ray origin.
    """
    rot = box.rotation
    o_local = rot.T @ (origin - box.center)
    d_local = _apply(rot.T, dirs)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = 1.0 / d_local
        t1 = (-box.half_size - o_local) * inv_d
        t2 = (box.half_size - o_local) * inv_d
    t_lo, t_hi = np.minimum(t1, t2), np.maximum(t1, t2)
    t_lo = np.nan_to_num(t_lo, nan=-np.inf)
    t_hi = np.nan_to_num(t_hi, nan=np.inf)
    t_enter, axis_enter = t_lo.max(axis=1), t_lo.argmax(axis=1)
    t_exit, axis_exit = t_hi.min(axis=1), t_hi.argmin(axis=1)
    hit = t_exit >= np.maximum(t_enter, 0.0)
    if box.inside:
        t, axis = np.where(hit & (t_exit > _EPS), t_exit, np.inf), axis_exit
    else:
        t, axis = np.where(hit & (t_enter > _EPS), t_enter, np.inf), axis_enter
    rows = np.arange(dirs.shape[0])
    n_local = np.zeros_like(d_local)
    n_local[rows, axis] = -np.sign(d_local[rows, axis])  # faces the incoming ray
    return t, _apply(rot, n_local)


def _render_view(K: np.ndarray, cam2world: np.ndarray, W: int, H: int, objects: List[SceneBox]):
    """Cast one ray per pixel centre; return depth (H, W), world points (H, W, 3), surface ids
    (H, W), normals (H, W, 3) and the hit mask (H, W)."""
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64), indexing="xy")
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3)
    rays_cam = _apply(np.linalg.inv(K), pix)  # z component == 1: t along these rays is the depth
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
    valid = np.isfinite(best_t)
    depth = np.where(valid, best_t, 0.0)
    pts_world = origin + dirs_world * depth[:, None]
    return (depth.reshape(H, W), pts_world.reshape(H, W, 3), best_id.reshape(H, W),
            best_n.reshape(H, W, 3), valid.reshape(H, W))


def _make_objects(rng: np.random.Generator, n_boxes: int) -> List[SceneBox]:
    """The room (12 x 12 x 4 m, floor at z = 0) and ``n_boxes`` non-overlapping boxes near the centre."""
    objects = [SceneBox(center=np.array([0.0, 0.0, 2.0]), half_size=np.array([6.0, 6.0, 2.0]),
                        inside=True, name="room")]
    placed: List[Tuple[np.ndarray, float]] = []
    for k in range(n_boxes):
        for _ in range(200):
            half_xy = rng.uniform(0.22, 0.55, size=2)
            height = rng.uniform(0.35, 1.25)
            radius = float(np.hypot(*half_xy))
            angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.35)
            center_xy = dist * np.array([np.cos(angle), np.sin(angle)])
            if all(np.linalg.norm(center_xy - c) > radius + r + 0.1 for c, r in placed):
                break
        placed.append((center_xy, radius))
        objects.append(SceneBox(center=np.array([center_xy[0], center_xy[1], height / 2]),
                                half_size=np.array([half_xy[0], half_xy[1], height / 2]),
                                yaw=float(rng.uniform(0, np.pi)), name=f"box{k}"))
    return objects


def _check_size(size: Any) -> Tuple[int, int]:
    try:
        W, H = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a (W, H) pair of integers, got {size!r}") from None
    if W <= 0 or H <= 0 or W % 16 or H % 16:
        raise ValueError(f"size=(W, H)={size!r}: both sides must be positive multiples of 16 (the patch size)")
    return W, H


def make_synthetic_scene(n_views: int = 4, size: Tuple[int, int] = (128, 96), seed: int = 0,
                         layout: str = "orbit", focal: Optional[float] = None, noise: float = 0.0,
                         n_boxes: int = 3, step_deg: float = 20.0) -> SyntheticScene:
    """Render a deterministic synthetic scene into ``n_views`` views with exact ground truth.

    The scene is a closed 12 x 12 x 4 m room (floor ``z = 0``) with ``n_boxes`` textured boxes
    within ~1.5 m of the origin. Geometry, texture and cameras depend only on ``seed``, ``layout``,
    ``n_views`` and ``step_deg`` (not on ``size``): rendering the same seed at (256, 192) with twice
    the focal gives the same views at twice the resolution.

    Args:
        n_views: number of views (>= 1).
        size: ``(W, H)`` of every view, multiples of 16.
        seed: seed of the scene (objects, texture, cameras, image noise).
        layout: ``'orbit'``: cameras ~3.6 m from the centre at ~1.7 m height, looking at the objects,
            ``step_deg`` apart along a circle; ``'forward'``: a camera moving forward (0.3 m per view
            at the default step) and slightly sideways through the room, looking ahead and down.
        focal: focal length in pixels (default ``0.9 * W``, i.e. a ~70 degree horizontal field of view).
        noise: standard deviation of additive Gaussian pixel noise, in [0, 1] intensity units
            (0.02 = 2 % of the range); only the images are affected, not the geometry.
        n_boxes: number of boxes (0 to 6).
        step_deg: angular step between neighbouring orbit views (degrees); scales the forward step.

    Returns:
        a :class:`SyntheticScene`.
    """
    if isinstance(n_views, bool) or not isinstance(n_views, numbers.Integral) or n_views < 1:
        raise ValueError(f"n_views must be a positive integer, got {n_views!r}")
    W, H = _check_size(size)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if focal is None:
        focal = 0.9 * W
    if not (isinstance(focal, numbers.Real) and np.isfinite(focal) and focal > 0):
        raise ValueError(f"focal must be a positive number of pixels, got {focal!r}")
    if not (isinstance(noise, numbers.Real) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    if isinstance(n_boxes, bool) or not isinstance(n_boxes, numbers.Integral) or not 0 <= n_boxes <= 6:
        raise ValueError(f"n_boxes must be an integer in [0, 6], got {n_boxes!r}")
    if not (isinstance(step_deg, numbers.Real) and np.isfinite(step_deg)):
        raise ValueError(f"step_deg must be a finite number of degrees, got {step_deg!r}")

    start = time.perf_counter()
    seed = int(seed)
    rng_objects = np.random.default_rng([seed, 1])
    rng_cams = np.random.default_rng([seed, 2, 0 if layout == "orbit" else 1])
    objects = _make_objects(rng_objects, int(n_boxes))
    palette = np.stack([rng_objects.uniform(0, 1, len(objects)),          # hue
                        rng_objects.uniform(0.45, 0.95, len(objects))], -1)  # saturation
    salt = zlib.crc32(f"synthetic-texture-{seed}".encode())

    K = np.array([[focal, 0.0, (W - 1) / 2.0], [0.0, focal, (H - 1) / 2.0], [0.0, 0.0, 1.0]])
    cam2world = _camera_poses(int(n_views), layout, rng_cams, float(step_deg))

    depths, pts, ids, normals, valids = [], [], [], [], []
    for i in range(n_views):
        d, p, s, n, v = _render_view(K, cam2world[i], W, H, objects)
        depths.append(d), pts.append(p), ids.append(s), normals.append(n), valids.append(v)
    depths_a, pts_a, ids_a = np.stack(depths), np.stack(pts), np.stack(ids)
    normals_a, valid_a = np.stack(normals), np.stack(valids)

    colour = _texture(pts_a.reshape(-1, 3), normals_a.reshape(-1, 3), ids_a.reshape(-1).astype(np.int64),
                      objects, palette, salt).reshape(n_views, H, W, 3)
    if noise > 0:
        rng_noise = np.random.default_rng([seed, 3])
        colour = colour + rng_noise.normal(0.0, noise, size=colour.shape)
    images = np.rint(np.clip(colour, 0.0, 1.0) * 255.0).astype(np.uint8)
    elapsed = time.perf_counter() - start
    if not valid_a.all():  # cannot happen with the closed room, but never hide it
        logger.warning("synthetic scene: %d pixel rays hit nothing", int((~valid_a).sum()))
    logger.debug("rendered %d synthetic views of %dx%d in %.3f s", n_views, W, H, elapsed)

    return SyntheticScene(
        images=images, depths=depths_a.astype(np.float32), pts3d_world=pts_a.astype(np.float32),
        valid=valid_a, intrinsics=np.repeat(K[None], n_views, axis=0), cam2world=cam2world,
        surface_id=ids_a, normals_world=normals_a.astype(np.float32), objects=objects, seed=seed,
        layout=layout, render_time_s=elapsed)


# ============================================================================================
# oracle model
# ============================================================================================
class _PatchEmbedShim:
    """Stands in for ``model.patch_embed`` where callers only read ``patch_size``."""

    def __init__(self, patch_size: Tuple[int, int] = (16, 16)):
        self.patch_size = patch_size


def _pair_seed(seed: int, i: int, j: int, tag: str) -> int:
    return zlib.crc32(f"{tag}:{seed}:{i}:{j}".encode())


class OracleModel(torch.nn.Module):
    """A stand-in for ``AsymmetricMASt3R`` that returns ground-truth pointmaps and descriptors.

    ``model(view1, view2)`` looks up the scene views named by the inputs and returns, for each
    batch element b with views (i, j):

    * ``pred1['pts3d']`` (B, H, W, 3): points of view i in camera i's frame;
    * ``pred2['pts3d_in_other_view']`` (B, H, W, 3): points of view j in camera i's frame;
    * ``conf`` (B, H, W): ``conf`` where valid, 1 elsewhere; ``desc_conf`` likewise;
    * ``desc`` (B, H, W, D): unit-norm random Fourier features of the pixel's *world* point,
      ``[cos(w_k . X), sin(w_k . X)]_k / sqrt(D/2)``, with frequency vectors ``w_k`` of random
      directions and magnitudes log-spaced between ``2 pi / extent`` and ``2 pi / (8 px)``
      (``extent``: the scene size, ``px``: the median pixel footprint). The descriptor dot
      product is the kernel ``mean_k cos(w_k . (X - Y))``: 1 for the same point, decreasing with
      distance near it and low between distant points, so the same surface point seen in two views
      has (nearly) the same descriptor and reciprocal nearest neighbours are true correspondences.

    Args:
        scene: a :class:`SyntheticScene`, or any object with ``pts3d_world`` (N, H, W, 3),
            ``cam2world`` (N, 4, 4) and optionally ``valid`` (N, H, W) (and ``images`` (N, H, W, 3)
            uint8 for ``lookup='image'``).
        desc_dim: descriptor dimension D (>= 2; 24 like MASt3R).
        conf: confidence of valid pixels (>= 1).
        desc_conf: descriptor confidence of valid pixels (default: ``conf``).
        noise: Gaussian noise added to the returned points, standard deviation ``noise * depth``
            (depth in camera i), drawn from a generator seeded by ``(seed, i, j)``: the same pair
            always gets the same noise.
        scale_per_pair: multiply each pair's points by a scale drawn log-uniformly in [0.5, 2]
            from ``(seed, i, j)``, mimicking the per-pair scale ambiguity of DUSt3R. Default False:
            metric outputs (like MASt3R's).
        seed: seed of the descriptor frequencies, the noise and the scales.
        lookup: how the views are identified: ``'idx'`` (``view['idx']``, int / list / tensor),
            ``'instance'`` (``int(view['instance'])``), or ``'image'`` (the input image is compared with
            the scene's renderings; needs ``scene.images`` and unresized inputs).
        view_indices: optional map from the looked-up index k to the scene view ``view_indices[k]``
            (e.g. ``[2, 3]`` when images 2 and 3 of the scene were loaded as a list of two).
        freq_range: optional ``(min_wavelength, max_wavelength)`` in world units overriding the
            automatic frequency range of the descriptors.

    Attributes mirroring AsymmetricMASt3R: ``patch_embed.patch_size == (16, 16)``, ``desc_mode='norm'``,
    ``two_confs=True``, ``output_mode='pts3d+desc{D}'``, ``head_type='oracle'``.
    """

    def __init__(self, scene: Any, desc_dim: int = 24, conf: float = 10.0, desc_conf: Optional[float] = None,
                 noise: float = 0.0, scale_per_pair: bool = False, seed: int = 0, lookup: str = "idx",
                 view_indices: Optional[Sequence[int]] = None,
                 freq_range: Optional[Tuple[float, float]] = None) -> None:
        super().__init__()
        for name in ("pts3d_world", "cam2world"):
            if not hasattr(scene, name):
                raise ValueError(f"OracleModel needs a scene with a {name!r} attribute "
                                 f"(got {type(scene).__name__})")
        pts_world = np.asarray(scene.pts3d_world, dtype=np.float64)
        cam2world = np.asarray(scene.cam2world, dtype=np.float64)
        if pts_world.ndim != 4 or pts_world.shape[-1] != 3:
            raise ValueError(f"scene.pts3d_world must have shape (N, H, W, 3), got {pts_world.shape}")
        N, H, W = pts_world.shape[:3]
        if cam2world.shape != (N, 4, 4):
            raise ValueError(f"scene.cam2world must have shape ({N}, 4, 4), got {cam2world.shape}")
        valid = getattr(scene, "valid", None)
        valid = np.ones((N, H, W), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        if valid.shape != (N, H, W):
            raise ValueError(f"scene.valid must have shape ({N}, {H}, {W}), got {valid.shape}")
        if isinstance(desc_dim, bool) or not isinstance(desc_dim, numbers.Integral) or desc_dim < 2:
            raise ValueError(f"desc_dim must be an integer >= 2, got {desc_dim!r}")
        if not (isinstance(conf, numbers.Real) and conf >= 1):
            raise ValueError(f"conf must be a number >= 1, got {conf!r}")
        desc_conf = conf if desc_conf is None else desc_conf
        if not (isinstance(desc_conf, numbers.Real) and desc_conf >= 1):
            raise ValueError(f"desc_conf must be a number >= 1, got {desc_conf!r}")
        if not (isinstance(noise, numbers.Real) and noise >= 0):
            raise ValueError(f"noise must be a non-negative number, got {noise!r}")
        if lookup not in ("idx", "instance", "image"):
            raise ValueError(f"lookup must be 'idx', 'instance' or 'image', got {lookup!r}")
        if lookup == "image" and getattr(scene, "images", None) is None:
            raise ValueError("lookup='image' needs a scene with an 'images' (N, H, W, 3) attribute")
        if view_indices is not None:
            view_indices = [int(v) for v in view_indices]
            bad = [v for v in view_indices if not 0 <= v < N]
            if bad:
                raise ValueError(f"view_indices {bad} out of range for a scene of {N} views")

        self.n_views, self.height, self.width = N, H, W
        self.desc_dim = int(desc_dim)
        self.conf_value, self.desc_conf_value = float(conf), float(desc_conf)
        self.noise, self.scale_per_pair, self.seed = float(noise), bool(scale_per_pair), int(seed)
        self.lookup, self.view_indices = lookup, view_indices
        # attributes the pipeline may read on a real model
        self.patch_embed = _PatchEmbedShim((16, 16))
        self.desc_mode = "norm"
        self.two_confs = True
        self.output_mode = f"pts3d+desc{self.desc_dim}"
        self.head_type = "oracle"
        self.conf_mode = ("exp", 1, float("inf"))
        self.depth_mode = ("exp", -float("inf"), float("inf"))

        finite = np.isfinite(pts_world).all(-1) & valid
        pts_clean = np.where(finite[..., None], pts_world, 0.0)
        world2cam = np.linalg.inv(cam2world)
        freqs = self._frequencies(pts_clean, finite, world2cam, scene, freq_range)
        phase = _apply(freqs, pts_clean.reshape(-1, 3))  # (N*H*W, D//2)
        desc = np.concatenate([np.cos(phase), np.sin(phase)], axis=-1)
        if self.desc_dim % 2:
            desc = np.concatenate([desc, np.ones((desc.shape[0], 1))], axis=-1)
        desc /= np.linalg.norm(desc, axis=-1, keepdims=True)
        self.frequencies = freqs

        self.register_buffer("pts_world", torch.from_numpy(pts_clean.astype(np.float32)), persistent=False)
        self.register_buffer("world2cam", torch.from_numpy(world2cam.astype(np.float32)), persistent=False)
        self.register_buffer("valid", torch.from_numpy(finite), persistent=False)
        self.register_buffer("desc", torch.from_numpy(desc.reshape(N, H, W, -1).astype(np.float32)),
                             persistent=False)
        if lookup == "image":
            from dust3r.utils.image import _normalise
            import PIL.Image
            imgs = torch.cat([_normalise(PIL.Image.fromarray(np.asarray(im, dtype=np.uint8)))
                              for im in scene.images])
            self.register_buffer("images", imgs, persistent=False)
        # so that next(model.parameters()) works for callers that read the device from it
        self._device_anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    # ---------------------------------------------------------------- descriptors
    def _frequencies(self, pts_world: np.ndarray, finite: np.ndarray, world2cam: np.ndarray, scene: Any,
                     freq_range: Optional[Tuple[float, float]]) -> np.ndarray:
        """(D//2, 3) frequency vectors (radians per world unit)."""
        n_freq = self.desc_dim // 2
        if freq_range is not None:
            lam_min, lam_max = (float(v) for v in freq_range)
            if not 0 < lam_min <= lam_max:
                raise ValueError(f"freq_range must be 0 < min_wavelength <= max_wavelength, got {freq_range!r}")
        else:
            pts = pts_world[finite]
            extent = float(np.ptp(pts, axis=0).max()) if pts.size else 1.0
            # median pixel footprint: depth / focal, focal from the intrinsics if known
            depth = (np.einsum("nij,nhwj->nhwi", world2cam[:, :3, :3], pts_world) + world2cam[:, None, None, :3, 3])[..., 2]
            K = getattr(scene, "intrinsics", None)
            focal = float(np.median(np.asarray(K)[:, 0, 0])) if K is not None else 0.9 * self.width
            footprint = float(np.median(np.abs(depth[finite]))) / focal if pts.size else 1e-2
            lam_min, lam_max = 8.0 * footprint, max(extent, 16.0 * footprint)
        rng = np.random.default_rng([self.seed, 4242])
        dirs = rng.normal(size=(n_freq, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wavelengths = np.geomspace(lam_max, lam_min, n_freq) if n_freq > 1 else np.array([lam_min])
        return dirs * (2.0 * np.pi / wavelengths)[:, None]

    # ---------------------------------------------------------------- view lookup
    def _indices(self, view: Dict[str, Any], B: int, name: str) -> torch.Tensor:
        """(B,) long tensor of scene view indices of a (batched) view dict."""
        if self.lookup == "image":
            img = view["img"].detach().to(self.images.device, torch.float32)
            diff = (img[:, None] - self.images[None]).abs().flatten(2).mean(-1)  # (B, N)
            best, idx = diff.min(dim=1)
            if (best > 1e-3).any():
                raise ValueError(f"{name}: input image(s) {torch.nonzero(best > 1e-3).flatten().tolist()} "
                                 "match none of the scene's renderings (lookup='image')")
            return idx.cpu()
        key = self.lookup
        if key not in view:
            raise ValueError(f"{name} has no {key!r} entry to identify the scene view (lookup={key!r})")
        value = view[key]
        if isinstance(value, torch.Tensor):
            values = value.reshape(-1).tolist()
        elif isinstance(value, np.ndarray):
            values = value.reshape(-1).tolist()
        elif isinstance(value, (list, tuple)):
            values = list(value)
        else:
            values = [value]
        try:
            ints = [int(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{key!r}] = {value!r} is not a (list of) integer view indices") from None
        if len(ints) != B:
            raise ValueError(f"{name}[{key!r}] has {len(ints)} entries for a batch of {B} images")
        if self.view_indices is not None:
            bad = [k for k in ints if not 0 <= k < len(self.view_indices)]
            if bad:
                raise ValueError(f"{name}[{key!r}] = {bad} out of range for view_indices of length "
                                 f"{len(self.view_indices)}")
            ints = [self.view_indices[k] for k in ints]
        bad = [k for k in ints if not 0 <= k < self.n_views]
        if bad:
            raise ValueError(f"{name}[{key!r}] = {bad} out of range for a scene of {self.n_views} views")
        return torch.tensor(ints, dtype=torch.long)

    # ---------------------------------------------------------------- forward
    def _pair_randomness(self, i: int, j: int, device: torch.device) -> Tuple[float, Optional[torch.Tensor]]:
        scale = 1.0
        if self.scale_per_pair:
            rng = np.random.default_rng(_pair_seed(self.seed, i, j, "scale"))
            scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        eps = None
        if self.noise > 0:
            gen = torch.Generator().manual_seed(_pair_seed(self.seed, i, j, "noise"))
            eps = torch.randn((2, self.height, self.width, 3), generator=gen).to(device)
        return scale, eps

    @torch.no_grad()
    def forward(self, view1: Dict[str, Any], view2: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor],
                                                                             Dict[str, torch.Tensor]]:
        """Ground-truth predictions for a batch of pairs.

        Args:
            view1, view2: batched view dicts with ``img`` (B, 3, H, W) (H, W = the scene's size) and
                the lookup key (``idx`` by default).

        Returns:
            ``(pred1, pred2)``: pred1 = {pts3d (B, H, W, 3) in camera-1 frame, conf (B, H, W),
            desc (B, H, W, D), desc_conf (B, H, W)}; pred2 = {pts3d_in_other_view (B, H, W, 3) view 2's
            points in camera-1 frame, conf, desc, desc_conf}.
        """
        for name, view in (("view1", view1), ("view2", view2)):
            if not isinstance(view, dict) or "img" not in view:
                raise ValueError(f"{name} must be a view dict with an 'img' tensor")
            shape = tuple(view["img"].shape)
            if len(shape) != 4 or shape[-2:] != (self.height, self.width):
                raise ValueError(f"{name}['img'] has shape {shape}; the oracle only answers for (B, 3, "
                                 f"{self.height}, {self.width}) images of its scene (no resize)")
        B = view1["img"].shape[0]
        if view2["img"].shape[0] != B:
            raise ValueError(f"view1 and view2 have different batch sizes: {B} != {view2['img'].shape[0]}")
        device = view1["img"].device
        i = self._indices(view1, B, "view1").to(self.pts_world.device)
        j = self._indices(view2, B, "view2").to(self.pts_world.device)

        world2cam1 = self.world2cam[i]  # (B, 4, 4)
        rot, trans = world2cam1[:, :3, :3], world2cam1[:, None, None, :3, 3]
        pts1_cam1 = torch.einsum("bij,bhwj->bhwi", rot, self.pts_world[i]) + trans
        pts2_cam1 = torch.einsum("bij,bhwj->bhwi", rot, self.pts_world[j]) + trans
        if self.noise > 0 or self.scale_per_pair:
            for b in range(B):  # a handful of pairs per batch; the per-pixel work stays vectorised
                scale, eps = self._pair_randomness(int(i[b]), int(j[b]), pts1_cam1.device)
                if eps is not None:
                    pts1_cam1[b] += eps[0] * self.noise * pts1_cam1[b, ..., 2:3].abs()
                    pts2_cam1[b] += eps[1] * self.noise * pts2_cam1[b, ..., 2:3].abs()
                pts1_cam1[b] *= scale
                pts2_cam1[b] *= scale

        def _confs(idx: torch.Tensor, value: float) -> torch.Tensor:
            return torch.where(self.valid[idx], torch.tensor(value, device=idx.device), torch.tensor(1.0, device=idx.device))

        pred1 = {"pts3d": pts1_cam1, "conf": _confs(i, self.conf_value), "desc": self.desc[i].clone(),
                 "desc_conf": _confs(i, self.desc_conf_value)}
        pred2 = {"pts3d_in_other_view": pts2_cam1, "conf": _confs(j, self.conf_value),
                 "desc": self.desc[j].clone(), "desc_conf": _confs(j, self.desc_conf_value)}
        pred1 = {k: v.to(device, torch.float32) for k, v in pred1.items()}
        pred2 = {k: v.to(device, torch.float32) for k, v in pred2.items()}
        return pred1, pred2
