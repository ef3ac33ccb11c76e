"""Synthetic scenes with exact ground truth: :func:`make_scene`, :class:`SyntheticScene`, :func:`look_at`.

:func:`make_scene` builds a closed room (floor, ceiling, four walls, so every pixel ray hits a surface) holding a
few oriented boxes, every surface carrying a deterministic procedural texture defined in world coordinates, and
ray casts it (:mod:`dust3r.synthetic.render`) into ``n_views`` pinhole cameras with known intrinsics and poses.
The result holds the images and, per pixel, the exact depth, world point, surface and normal; it gives view
dicts shaped like :func:`dust3r.utils.image.load_images`'s, writes PNG files, and computes true
correspondences between views.

Example::

    from dust3r.synthetic import make_scene
    scene = make_scene(n_views=4, height=48, width=64, seed=1)
    views = scene.views()                    # like load_images(...) at the render size
    xy_1, visible = scene.correspondences(0, 1)   # where each pixel of view 0 lands in view 1
    scene.save_images("/tmp/synth")          # img_000.png ... for pipelines that read files

Conventions (as everywhere in this code base):

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

from dust3r.utils.pose_metrics import as_float64

from .render import _EPS, SceneBox, _apply, cast_rays, texture

logger = logging.getLogger(__name__)

__all__ = ["SceneBox", "SyntheticScene", "make_scene", "look_at"]

_LAYOUTS = ("orbit", "forward")
_ROOM_HALF = np.array([4.0, 4.0, 1.5])  # 8 x 8 x 3 m room, floor at z = 0


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
        pts = as_float64(pts_world, "pts_world")
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
        from dust3r.utils.image import ImgNorm  # the exact normalisation of load_images

        import PIL.Image

        indices = range(self.n_views) if indices is None else [self._check_index(i, "indices[...]") for i in indices]
        H, W = self.height, self.width
        out = []
        for k, i in enumerate(indices):
            out.append({
                "img": ImgNorm(PIL.Image.fromarray(self.images[i]))[None],
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


# ----------------------------------------------------------------------------------------------
# cameras
# ----------------------------------------------------------------------------------------------
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

    renders = [cast_rays(K, cam2world[i], W, H, objects) for i in range(n_views)]
    depth, pts, ids, normals = (np.stack([r[k] for r in renders]) for k in range(4))
    colour = texture(pts.reshape(-1, 3), normals.reshape(-1, 3), ids.reshape(-1).astype(np.int64), objects,
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
