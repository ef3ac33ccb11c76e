"""Coloured point cloud as a binary little-endian PLY (x y z float32, red green blue uchar), written with numpy."""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from ._common import atomic_file, check_out_path
from .scene_data import SceneData, require_scene_data

logger = logging.getLogger(__name__)

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: Any, points: np.ndarray, colors: np.ndarray) -> str:
    """Write (M, 3) points with (M, 3) uint8 colours (float colours in [0, 1] are scaled) to ``path`` (atomic).

    Returns:
        the absolute path written.
    """
    path = check_out_path(path)
    pts = np.asarray(points, dtype=np.float32)
    cols = np.asarray(colors)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (M, 3), got {pts.shape}")
    if cols.shape != pts.shape:
        raise ValueError(f"colors must have shape {pts.shape} like points, got {cols.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contains non-finite values")
    if cols.dtype != np.uint8:
        cols = np.round(np.clip(cols.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    rec = np.empty(len(pts), dtype=_VERTEX)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["red"], rec["green"], rec["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by dust3r.export\n"
              f"element vertex {len(pts)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with atomic_file(path) as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return path


def export_ply(data: SceneData, path: Any, max_points: Optional[int] = None, seed: int = 0) -> str:
    """Write the valid points of ``data`` (world frame, OpenCV world axes) with their pixel colours.

    Args:
        data: the scene snapshot (points where ``data.masks`` is True).
        path: output ``.ply`` file (parent folders created).
        max_points: optional random (seeded) subsample size.
        seed: subsampling seed.

    Returns:
        the absolute path written.
    """
    data = require_scene_data(data, "export_ply")
    pts, cols = data.points_and_colors()
    if max_points is not None:
        if not isinstance(max_points, (int, np.integer)) or max_points < 0:
            raise ValueError(f"max_points must be a non-negative int or None, got {max_points!r}")
        if len(pts) > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(len(pts), size=max_points, replace=False))
            pts, cols = pts[keep], cols[keep]
    if len(pts) == 0:
        logger.warning("export_ply: no valid point (all masked out); writing an empty cloud")
    return write_ply(path, pts, cols)
