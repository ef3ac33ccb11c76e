"""Per-image depth / confidence maps, optionally brought back to the ORIGINAL image size.

:func:`export_depthmaps` writes, for image ``i`` with stem ``s`` (its name without extension):

* ``s_depth.npy``: float32 (H0, W0) z-depth in the camera frame, in scene units (metres for metric MASt3R,
  arbitrary for DUSt3R), NaN where unknown: pixels masked out (low confidence), pixels the network never saw
  (cropped away by ``load_images``) and, with ``interpolation='bilinear'``, pixels with no valid neighbour;
* ``s_depth.png``: the same as 16-bit PNG in millimetres (``round(depth * 1000)``), 0 where unknown or beyond
  65.535 scene units;
* ``s_conf.npy``: float32 (H0, W0) confidence, NaN outside the crop (only when the scene has confidences).

Resampling: the network image is the original resized by ``(W1/W0, H1/H0)`` then cropped at ``crop_offset``;
an original pixel centre ``(u, v)`` is mapped to network coordinates with
:func:`dust3r.utils.image.original_to_pixels` and sampled (nearest by default, which keeps depth edges sharp;
bilinear interpolates among valid neighbours). The map is separable (x and y independent), so memory is that
of the output only. Without a resize record (or ``original_resolution=False``) maps are written at network size.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ._checks import unique_stems
from ._common import atomic_file, check_out_dir, staged_dir
from .scene_data import SceneData, require_scene_data

logger = logging.getLogger(__name__)

_FORMATS = ("npy", "png")


def _axis_map(n_out: int, meta: Dict[str, Any], axis: int) -> np.ndarray:
    """Network coordinate (float64, length ``n_out``) of every original pixel centre along ``axis`` (0=x, 1=y)."""
    from dust3r.utils.image import original_to_pixels
    xy = np.zeros((n_out, 2))
    xy[:, axis] = np.arange(n_out)
    return np.asarray(original_to_pixels(xy, meta))[:, axis]


def resample_to_original(values: np.ndarray, meta: Dict[str, Any], valid: Optional[np.ndarray] = None,
                         interpolation: str = "nearest") -> np.ndarray:
    """Bring a network-resolution map back to the original image grid.

    Args:
        values: (H, W) map at network resolution.
        meta: resize record of the image (``orig_shape``, ``resized_shape``, ``crop_offset``).
        valid: optional (H, W) bool; invalid pixels are never sampled.
        interpolation: 'nearest' or 'bilinear' (weights renormalised over valid neighbours).

    Returns:
        (H0, W0) float32, NaN where the original pixel falls outside the network crop or has no valid sample.
    """
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (H, W), got {values.shape}")
    H, W = values.shape
    ok = np.isfinite(values) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(values))
    if ok.shape != values.shape:
        raise ValueError(f"valid must have shape {values.shape}, got {ok.shape}")
    h0, w0 = (int(v) for v in np.asarray(meta["orig_shape"]).reshape(-1)[:2])
    x = _axis_map(w0, meta, 0)
    y = _axis_map(h0, meta, 1)
    in_x = (x >= -0.5) & (x < W - 0.5)
    in_y = (y >= -0.5) & (y < H - 0.5)
    inside = in_y[:, None] & in_x[None, :]

    if interpolation == "nearest":
        ix = np.clip(np.floor(x + 0.5).astype(np.int64), 0, W - 1)
        iy = np.clip(np.floor(y + 0.5).astype(np.int64), 0, H - 1)
        out = values[iy[:, None], ix[None, :]]
        good = inside & ok[iy[:, None], ix[None, :]]
        return np.where(good, out, np.float32(np.nan)).astype(np.float32)

    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    acc = np.zeros((h0, w0), np.float32)
    wsum = np.zeros((h0, w0), np.float32)
    safe_values = np.where(ok, values, 0).astype(np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        iy = np.clip(y0 + dy, 0, H - 1)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            ix = np.clip(x0 + dx, 0, W - 1)
            w = wy[:, None] * wx[None, :] * ok[iy[:, None], ix[None, :]]
            acc += w * safe_values[iy[:, None], ix[None, :]]
            wsum += w
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc / wsum
    return np.where(inside & (wsum > 1e-6), out, np.float32(np.nan)).astype(np.float32)


def depth_map(data: SceneData, i: int, original_resolution: bool = True, apply_mask: bool = True,
              interpolation: str = "nearest") -> np.ndarray:
    """Depth of image ``i``: (H0, W0) (original, when known and requested) or (H, W), float32, NaN unknown."""
    depth = data.depths[i]
    valid = data.masks[i] if apply_mask else np.isfinite(depth)
    valid = valid & (depth > 0)
    if original_resolution and data.has_original(i):
        return resample_to_original(depth, data.views_meta[i], valid, interpolation)
    return np.where(valid, depth, np.float32(np.nan)).astype(np.float32)


def conf_map(data: SceneData, i: int, original_resolution: bool = True,
             interpolation: str = "nearest") -> Optional[np.ndarray]:
    """Confidence of image ``i`` at the same resolution as :func:`depth_map` (None if the scene has none)."""
    if data.confs is None:
        return None
    conf = data.confs[i]
    if original_resolution and data.has_original(i):
        return resample_to_original(conf, data.views_meta[i], None, interpolation)
    return conf.astype(np.float32)


def depth_to_png16(depth: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """float depth -> uint16 ``round(depth * scale)``, 0 where NaN, <= 0 or beyond the 16-bit range."""
    with np.errstate(invalid="ignore"):
        q = np.round(np.asarray(depth, dtype=np.float64) * scale)
        ok = np.isfinite(q) & (q > 0) & (q <= 65535)
    n_over = int(np.count_nonzero(np.isfinite(q) & (q > 65535)))
    if n_over:
        logger.warning("%d depth value(s) beyond %.3f scene units cannot be stored in a 16-bit PNG "
                       "(scale %g); written as 0", n_over, 65535 / scale, scale)
    return np.where(ok, q, 0).astype(np.uint16)


def write_png16(path: str, arr: np.ndarray) -> None:
    """Write a (H, W) uint16 array as a 16-bit grayscale PNG (atomic)."""
    import PIL.Image
    img = PIL.Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint16))
    with atomic_file(path) as f:
        img.save(f, format="PNG")


def write_npy(path: str, arr: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, arr)


def export_depthmaps(data: SceneData, out_dir: Any, original_resolution: bool = True,
                     depth_formats: Sequence[str] = _FORMATS, apply_mask: bool = True, interpolation: str = "nearest",
                     depth_scale: float = 1000.0, with_conf: bool = True) -> Dict[str, List[str]]:
    """Write per-image depth (and confidence) maps; see the module docstring for layout and units.

    Args:
        data: the scene snapshot.
        out_dir: output folder (created).
        original_resolution: upsample to the original image size when ``views_meta`` has the resize record.
        depth_formats: subset of ("npy", "png").
        apply_mask: NaN / 0 where ``data.masks`` is False (else only non-finite / non-positive depths).
        interpolation: 'nearest' (default) or 'bilinear'.
        depth_scale: PNG value per scene unit (1000: millimetres for metres).
        with_conf: also write ``*_conf.npy`` when the scene has confidences.

    Returns:
        dict with lists of written paths: ``depth_npy``, ``depth_png``, ``conf_npy`` (one per image or empty).
    """
    data = require_scene_data(data, "export_depthmaps")
    formats = (depth_formats,) if isinstance(depth_formats, str) else tuple(depth_formats)
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise ValueError(f"depth_formats must be a non-empty subset of {_FORMATS}, got {depth_formats!r}")
    if not (np.isfinite(depth_scale) and depth_scale > 0):
        raise ValueError(f"depth_scale must be a positive number, got {depth_scale}")
    out_dir = check_out_dir(out_dir)
    stems = unique_stems(data.names)
    out: Dict[str, List[str]] = {"depth_npy": [], "depth_png": [], "conf_npy": []}
    with staged_dir(out_dir) as tmp:
        for i, stem in enumerate(stems):
            depth = depth_map(data, i, original_resolution, apply_mask, interpolation)
            if "npy" in formats:
                write_npy(os.path.join(tmp, f"{stem}_depth.npy"), depth)
                out["depth_npy"].append(os.path.join(out_dir, f"{stem}_depth.npy"))
            if "png" in formats:
                write_png16(os.path.join(tmp, f"{stem}_depth.png"), depth_to_png16(depth, depth_scale))
                out["depth_png"].append(os.path.join(out_dir, f"{stem}_depth.png"))
            conf = conf_map(data, i, original_resolution, interpolation) if with_conf else None
            if conf is not None:
                write_npy(os.path.join(tmp, f"{stem}_conf.npy"), conf)
                out["conf_npy"].append(os.path.join(out_dir, f"{stem}_conf.npy"))
    return out
