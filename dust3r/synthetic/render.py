"""The ray caster and the procedural textures behind :mod:`dust3r.synthetic` scenes.

A scene is a list of :class:`SceneBox` (oriented boxes; the first, with ``inside=True``, is the room enclosing the
cameras). :func:`cast_rays` shoots one ray through each pixel centre of a pinhole camera and returns the exact
depth, world point, surface index and normal of the first hit (vectorised numpy, slab intersection);
:func:`texture` colours world points with a deterministic, view-independent procedural texture, so every view
agrees on the colour of every 3D point.

Conventions: ``cam2world`` 4x4 with OpenCV axes (x right, y down, z forward); pixels ``(x, y)`` with integer
values at pixel centres; ``depth`` is the z coordinate of the hit in the camera frame (not the ray length).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

__all__ = ["SceneBox", "cast_rays", "texture"]

_EPS = 1e-9


def _apply(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``pts @ mat.T`` for (..., k) points and an (m, k) matrix (einsum: no BLAS threads for skinny products)."""
    return np.einsum("ji,...i->...j", mat, pts)


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


# ----------------------------------------------------------------------------------------------
# procedural texture
# ----------------------------------------------------------------------------------------------
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


def texture(pts_world: np.ndarray, normals: np.ndarray, surface: np.ndarray, objects: List[SceneBox],
             palette: np.ndarray, salt: int) -> np.ndarray:
    """Colour of surface points: per-surface hue, multi-scale noise, tiles / grids, and view-independent shading
    from a fixed light, so all views agree on every point.

    Args:
        pts_world: (P, 3) world points; normals: (P, 3) their unit normals; surface: (P,) int index into
            ``objects`` of the surface each point lies on.
        objects: the scene's boxes (index 0: the room, textured with a floor checker and wall stripes).
        palette: (len(objects), 2) base hue and saturation of each object, in [0, 1].
        salt: integer seed of the noise fields.

    Returns:
        (P, 3) float64 RGB in [0, 1].
    """
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


# ----------------------------------------------------------------------------------------------
# ray casting
# ----------------------------------------------------------------------------------------------
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


def cast_rays(K: np.ndarray, cam2world: np.ndarray, W: int, H: int, objects: List[SceneBox]
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cast one ray per pixel centre of a (W, H) image and keep the nearest hit over ``objects``.

    Args:
        K: (3, 3) intrinsics (pixel-centre convention); cam2world: (4, 4) OpenCV camera-to-world.
        W, H: image size in pixels.
        objects: boxes to intersect; every ray must hit one (RuntimeError otherwise: keep cameras in the room).

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
