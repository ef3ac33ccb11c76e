"""Small visualisation helpers (no GUI needed)."""
from __future__ import annotations

import colorsys
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw


def side_by_side(img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    """Two (H_i, W_i, 3) images in [0, 1] or uint8 side by side, zero-padded to the taller one."""
    imgs = [np.asarray(i) for i in (img0, img1)]
    imgs = [(np.clip(i, 0, 1) * 255).round().astype(np.uint8) if i.dtype != np.uint8 else i for i in imgs]
    H = max(i.shape[0] for i in imgs)
    imgs = [np.pad(i, ((0, H - i.shape[0]), (0, 0), (0, 0))) for i in imgs]
    return np.concatenate(imgs, axis=1)


def draw_matches(img0: np.ndarray, img1: np.ndarray, xy0: np.ndarray, xy1: np.ndarray, n_viz: Optional[int] = 20,
                 width: int = 1) -> np.ndarray:
    """Draw matches between two images placed side by side.

    Args:
        img0, img1: (H_i, W_i, 3) images, float in [0, 1] or uint8.
        xy0, xy1: (N, 2) matching pixel coordinates (x, y) in each image.
        n_viz: number of matches drawn, evenly spread over the list (None: all).
        width: line width in pixels.
    Returns:
        (max(H0, H1), W0 + W1, 3) uint8 image.
    """
    xy0, xy1 = np.asarray(xy0, dtype=np.float64), np.asarray(xy1, dtype=np.float64)
    if xy0.shape != xy1.shape or (xy0.ndim != 2 or xy0.shape[-1] != 2):
        raise ValueError(f"matches must be two (N, 2) arrays, got {xy0.shape} and {xy1.shape}")
    canvas = Image.fromarray(side_by_side(img0, img1))
    W0 = np.asarray(img0).shape[1]
    n = len(xy0)
    if n == 0:
        return np.asarray(canvas)
    sel = np.arange(n) if n_viz is None or n <= n_viz else np.round(np.linspace(0, n - 1, n_viz)).astype(int)
    draw = ImageDraw.Draw(canvas)
    for rank, k in enumerate(sel):
        r, g, b = colorsys.hsv_to_rgb(rank / max(len(sel), 1), 1.0, 1.0)
        color = (int(255 * r), int(255 * g), int(255 * b))
        (x0, y0), (x1, y1) = xy0[k], xy1[k]
        draw.line([(x0, y0), (x1 + W0, y1)], fill=color, width=width)
        for x, y in ((x0, y0), (x1 + W0, y1)):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=color)
    return np.asarray(canvas)
