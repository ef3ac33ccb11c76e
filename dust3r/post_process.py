"""Interpreting DUSt3R pointmaps: the focal length of a camera whose pointmap (camera frame) is known.

A pointmap ``X`` (B, H, W, 3) expressed in the frame of the camera that took the image satisfies, for an ideal
pinhole camera with square pixels and principal point ``pp``::

    pixel(x, y) - pp  ==  f * (X_x, X_y) / X_z

:func:`estimate_focal_knowing_depth` fits ``f`` to every pixel at once, either from the median of per-pixel
votes (``'median'``) or as the minimiser of the summed reprojection distance, solved by iteratively re-weighted
least squares (Weiszfeld's algorithm, ``'weiszfeld'``, :func:`dust3r.utils.geometry.weiszfeld_focal`), then
clips it to a plausible range.
"""
from __future__ import annotations

import math

import torch

from .utils.geometry import WEISZFELD_ITERS, weiszfeld_focal, xy_grid

__all__ = ["estimate_focal_knowing_depth", "focal_base_of_size", "WEISZFELD_ITERS"]


def focal_base_of_size(H: int, W: int) -> float:
    """Focal (pixels) of a camera with a 60 degree field of view along the long side of an (H, W) image."""
    return max(H, W) / (2 * math.tan(math.radians(60) / 2))


def _centred_pixels(H: int, W: int, pp: torch.Tensor, device) -> torch.Tensor:
    """(B, H*W, 2) pixel coordinates (x, y) minus each batch element's principal point."""
    grid = xy_grid(W, H, device=device).reshape(1, -1, 2).to(pp.dtype)
    return grid - pp.reshape(-1, 1, 2)


def _median_focal(pixels: torch.Tensor, pts3d: torch.Tensor) -> torch.Tensor:
    """Median of the x and y focal votes ``u * z / x`` and ``v * z / y`` (NaN votes ignored). Returns (B,)."""
    B = pts3d.shape[0]
    votes_x = pixels[..., 0] * pts3d[..., 2] / pts3d[..., 0]
    votes_y = pixels[..., 1] * pts3d[..., 2] / pts3d[..., 1]
    votes = torch.cat((votes_x.reshape(B, -1), votes_y.reshape(B, -1)), dim=-1)
    return torch.nanmedian(votes, dim=-1).values


def estimate_focal_knowing_depth(pts3d: torch.Tensor, pp: torch.Tensor, focal_mode: str = "median",
                                 min_focal: float = 0.5, max_focal: float = 3.5) -> torch.Tensor:
    """Focal length of the camera that sees the camera-frame pointmap ``pts3d``.

    Args:
        pts3d: (B, H, W, 3) points in the frame of the camera of the image (OpenCV axes).
        pp: (B, 2) or (2,) principal points (x, y) in pixels (integer coordinates at pixel centres).
        focal_mode: ``'median'`` (median of per-pixel votes, no gradient) or ``'weiszfeld'`` (robust L1 fit).
        min_focal, max_focal: the result is clipped to ``[min_focal, max_focal] * focal_base`` where
            ``focal_base = max(H, W) / (2 tan(30 deg))`` (60 degree field of view).

    Returns:
        (B,) focal lengths in pixels.
    """
    if not isinstance(pts3d, torch.Tensor) or pts3d.ndim != 4 or pts3d.shape[-1] != 3:
        raise ValueError(f"pts3d must be a (B, H, W, 3) tensor, got "
                         f"{tuple(pts3d.shape) if isinstance(pts3d, torch.Tensor) else type(pts3d).__name__}")
    B, H, W, _ = pts3d.shape
    pp = torch.as_tensor(pp, device=pts3d.device)
    pp = pp.to(pts3d.dtype if pts3d.is_floating_point() else torch.float32)
    if pp.numel() not in (2, 2 * B):
        raise ValueError(f"pp must hold (2,) or (B={B}, 2) values, got shape {tuple(pp.shape)}")
    pixels = _centred_pixels(H, W, pp, pts3d.device)  # (B or 1, HW, 2)
    flat = pts3d.reshape(B, H * W, 3).to(pixels.dtype)
    pixels = pixels.expand(B, -1, -1)

    if focal_mode == "median":
        with torch.no_grad():
            focal = _median_focal(pixels, flat)
    elif focal_mode == "weiszfeld":
        focal = weiszfeld_focal(pixels, flat[..., :2] / flat[..., 2:3])
    else:
        raise ValueError(f"bad focal_mode={focal_mode!r}: expected 'median' or 'weiszfeld'")

    base = focal_base_of_size(H, W)
    return focal.clip(min=min_focal * base, max=max_focal * base)
