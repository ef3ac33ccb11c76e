"""The resize + crop geometry of :func:`dust3r.utils.image.load_images`, and the pixel maps it induces.

:func:`compute_resize_crop` plans how an image is resized and cropped (step 2 and 3 of the loader, see
:mod:`dust3r.utils.image`). The loader records the plan in each view (``orig_shape``, ``resized_shape``,
``crop_offset``); the other functions turn that record into the affine map between the network's pixel
grid and the original image's. Everything here is re-exported by :mod:`dust3r.utils.image`.

Coordinate convention
---------------------
Pixel coordinates are ``(x, y)`` = (column, row) with **integer values at pixel centres**
(OpenCV convention): pixel ``[r, c]`` is the point ``(c, r)``; the image covers
``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. Pillow's resampling maps the continuous edge-based
coordinate ``u + 0.5`` linearly (factor ``W1 / W0``), and the crop is a pure shift, so a point
``(x, y)`` of the network input corresponds to the original-image point::

    x_orig = (x + x0 + 0.5) * W0 / W1 - 0.5
    y_orig = (y + y0 + 0.5) * H0 / H1 - 0.5

:func:`pixels_to_original` / :func:`original_to_pixels` apply this map and its inverse to
``(..., 2)`` arrays. Intrinsics ``K`` (3x3, OpenCV convention, i.e. the one DUSt3R / MASt3R
use for their focal / principal-point estimates) transform with the same affine map ``A``:
``K_orig = A @ K`` (:func:`intrinsics_to_original`) and ``K = A^-1 @ K_orig``
(:func:`intrinsics_from_original`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
import PIL.Image
import torch

from .views import GEOMETRY_KEYS

__all__ = ["ResizeCropPlan", "compute_resize_crop", "pixels_to_original", "original_to_pixels",
           "intrinsics_to_original", "intrinsics_from_original"]


# --------------------------------------------------------------------------------------------
# geometry of the resize + crop
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResizeCropPlan:
    """How one image of size ``orig_size`` is resized and cropped.

    Attributes:
        orig_size: ``(W0, H0)`` of the source (after EXIF transposition).
        resized_size: ``(W1, H1)`` after the resize.
        box: integer crop box ``(x0, y0, x1, y1)`` in resized pixels (right/bottom exclusive).
        resample: Pillow filter used for the resize (LANCZOS or BICUBIC).
    """

    orig_size: Tuple[int, int]
    resized_size: Tuple[int, int]
    box: Tuple[int, int, int, int]
    resample: int

    @property
    def final_size(self) -> Tuple[int, int]:
        """``(W, H)`` of the network input."""
        x0, y0, x1, y1 = self.box
        return x1 - x0, y1 - y0


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _long_edge_resize(width: int, height: int, long_edge_size: int) -> Tuple[Tuple[int, int], int]:
    """``((W1, H1), filter)`` of the resize that brings the long side to ``long_edge_size``.

    Each side is ``round(side * long_edge_size / long_side)``; LANCZOS when shrinking, BICUBIC otherwise.
    """
    long_side = max(width, height)
    resample = PIL.Image.Resampling.LANCZOS if long_side > long_edge_size else PIL.Image.Resampling.BICUBIC
    new_size = (int(round(width * long_edge_size / long_side)), int(round(height * long_edge_size / long_side)))
    return new_size, int(resample)


def compute_resize_crop(width: int, height: int, size: int, square_ok: bool = False,
                        patch_size: int = 16) -> ResizeCropPlan:
    """Resize/crop parameters :func:`load_images` applies to a ``width`` x ``height`` image.

    Args:
        width, height: source size in pixels (after EXIF transposition), both > 0.
        size: target size (224: short side, otherwise long side; see :mod:`dust3r.utils.image`).
        square_ok: keep square images square (otherwise 3/4 height), ignored at 224.
        patch_size: crop sides to multiples of this (not used by the 224 square crop).

    Returns:
        a :class:`ResizeCropPlan`.
    """
    width = _check_positive_int(width, "width")
    height = _check_positive_int(height, "height")
    size = _check_positive_int(size, "size")
    patch_size = _check_positive_int(patch_size, "patch_size")

    if size == 224:
        # short side -> 224, i.e. long side -> 224 * aspect ratio (rounded)
        target_long = round(size * max(width / height, height / width))
    else:
        target_long = size
    (new_w, new_h), resample = _long_edge_resize(width, height, target_long)

    cx, cy = new_w // 2, new_h // 2
    if size == 224:
        half = min(cx, cy)
        box = (cx - half, cy - half, cx + half, cy + half)
    else:
        half_w = ((2 * cx) // patch_size) * patch_size / 2
        half_h = ((2 * cy) // patch_size) * patch_size / 2
        if new_w == new_h and not square_ok:
            half_h = 0.75 * half_w
        # PIL.Image.crop rounds float boxes with round() (half to even): do the same up front
        box = tuple(int(round(v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    return ResizeCropPlan(orig_size=(width, height), resized_size=(new_w, new_h), box=box, resample=resample)


# --------------------------------------------------------------------------------------------
# maps between network pixels and original pixels
# --------------------------------------------------------------------------------------------
def _geometry(view: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-axis ``(a, b)`` of the map processed -> original: ``u_orig = a * u + b`` (x, y order)."""
    missing = [k for k in GEOMETRY_KEYS if k not in view]
    if missing:
        raise ValueError(f"view has no {', '.join(missing)}: only views from "
                         "dust3r.utils.image.load_images carry the resize/crop record")

    def _pair(key: str) -> np.ndarray:
        value = view[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.shape != (2,):
            raise ValueError(f"view[{key!r}] must hold exactly 2 numbers (one view, not a batch), "
                             f"got shape {np.shape(view[key])}")
        return value

    h0, w0 = _pair("orig_shape")
    h1, w1 = _pair("resized_shape")
    offset = _pair("crop_offset")  # (x0, y0)
    a = np.array([w0 / w1, h0 / h1])
    b = (offset + 0.5) * a - 0.5
    return a, b


def _apply_affine(xy: Any, a: np.ndarray, b: np.ndarray) -> Any:
    if isinstance(xy, torch.Tensor):
        if not xy.is_floating_point():
            xy = xy.to(torch.float64)
        if xy.shape[-1:] != (2,):
            raise ValueError(f"points must have shape (..., 2) as (x, y), got {tuple(xy.shape)}")
        return xy * torch.as_tensor(a, dtype=xy.dtype, device=xy.device) + \
            torch.as_tensor(b, dtype=xy.dtype, device=xy.device)
    arr = np.asarray(xy, dtype=np.float64)
    if arr.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2) as (x, y), got {arr.shape}")
    return arr * a + b


def pixels_to_original(xy: Any, view: Dict[str, Any]) -> Any:
    """Network-input pixel coordinates -> coordinates in the original image.

    Args:
        xy: (..., 2) array or tensor of (x, y), integers at pixel centres.
        view: a view dict from :func:`load_images`.

    Returns:
        (..., 2) float64 numpy array (float tensor for tensor input) of original (x, y).
    """
    a, b = _geometry(view)
    return _apply_affine(xy, a, b)


def original_to_pixels(xy: Any, view: Dict[str, Any]) -> Any:
    """Original-image coordinates -> network-input pixel coordinates (inverse of
    :func:`pixels_to_original`); points outside the crop map outside ``[-0.5, W - 0.5]``.

    Args:
        xy: (..., 2) array or tensor of (x, y), integers at pixel centres.
        view: a view dict from :func:`load_images`.

    Returns:
        (..., 2) float64 numpy array (float tensor for tensor input).
    """
    a, b = _geometry(view)
    return _apply_affine(xy, 1.0 / a, -b / a)


def _affine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[a[0], 0.0, b[0]], [0.0, a[1], b[1]], [0.0, 0.0, 1.0]])


def _left_multiply(mat: np.ndarray, K: Any) -> Any:
    if isinstance(K, torch.Tensor):
        if K.shape[-2:] != (3, 3):
            raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")
        dtype = K.dtype if K.is_floating_point() else torch.float64
        return torch.as_tensor(mat, dtype=dtype, device=K.device) @ K.to(dtype)
    arr = np.asarray(K, dtype=np.float64)
    if arr.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {arr.shape}")
    return mat @ arr


def intrinsics_to_original(K: Any, view: Dict[str, Any]) -> Any:
    """Intrinsics of the network input -> intrinsics of the original image (``A @ K``).

    Args:
        K: (..., 3, 3) array or tensor, OpenCV convention (integer pixel centres).
        view: a view dict from :func:`load_images`.

    Returns:
        (..., 3, 3) float64 array (float tensor for tensor input).
    """
    a, b = _geometry(view)
    return _left_multiply(_affine_matrix(a, b), K)


def intrinsics_from_original(K: Any, view: Dict[str, Any]) -> Any:
    """Intrinsics of the original image -> intrinsics of the network input (``A^-1 @ K``), the inverse of
    :func:`intrinsics_to_original`, with the same arguments and shapes."""
    a, b = _geometry(view)
    return _left_multiply(_affine_matrix(1.0 / a, -b / a), K)
