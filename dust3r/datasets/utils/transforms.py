"""Image transforms of the training datasets, without torchvision.

* :data:`ImgNorm`: RGB ``PIL.Image`` -> float32 ``(3, H, W)`` tensor in [-1, 1] (``ToTensor`` + ``Normalize(0.5, 0.5)``,
  bit-identical to torchvision's).
* :data:`ColorJitter`: the original's ``Compose([ColorJitter(0.5, 0.5, 0.5, 0.1), ImgNorm])``: brightness,
  contrast, saturation and hue jitter in a random order with random factors, then the normalisation.
  :class:`ColorJitterNorm` draws its factors from a numpy ``Generator`` when one is passed (the datasets pass the
  view's rng, so a seeded dataset gives the same jitter every time), else from torch's global generator like
  torchvision. The colour operations follow torchvision's tensor implementation.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import PIL.Image
import torch

from dust3r.utils.image import ImgNorm

__all__ = ["ImgNorm", "ColorJitter", "ColorJitterNorm", "adjust_brightness", "adjust_contrast",
           "adjust_saturation", "adjust_hue", "rgb_to_grayscale"]


def rgb_to_grayscale(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> (..., 1, H, W) luma (ITU-R 601-2, torchvision's weights)."""
    r, g, b = img.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _blend(img1: torch.Tensor, img2: torch.Tensor, ratio: float) -> torch.Tensor:
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0.0, 1.0)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply intensities by ``factor`` (0 = black, 1 = unchanged); clamped to [0, 1]."""
    return _blend(img, torch.zeros_like(img), factor)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean grey level (0 = uniform grey, 1 = unchanged)."""
    mean = rgb_to_grayscale(img).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, factor)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey-level image (0 = greyscale, 1 = unchanged)."""
    return _blend(img, rgb_to_grayscale(img), factor)


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(dim=-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # sector i -> (r, g, b) picked among (v, q, p, t)
    table = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=img.device)
    choices = torch.stack((v, q, p, t), dim=-3)  # (..., 4, H, W)
    idx = table[i].movedim(-1, -3)  # (..., 3, H, W)
    return torch.gather(choices, -3, idx)


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the hue by ``factor`` turns (``factor`` in [-0.5, 0.5])."""
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    hsv = _rgb_to_hsv(img)
    h = torch.remainder(hsv[..., 0, :, :] + factor, 1.0)
    return _hsv_to_rgb(torch.cat((h.unsqueeze(-3), hsv[..., 1:, :, :]), dim=-3))


def _range(value: Union[float, Tuple[float, float]], name: str, center: float = 1.0,
           bound: Tuple[float, float] = (0, float("inf"))) -> Optional[Tuple[float, float]]:
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} jitter must be non-negative, got {value}")
        lo, hi = center - value, center + value
        if center == 1.0:
            lo = max(lo, 0.0)
    else:
        lo, hi = (float(v) for v in value)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name} jitter range ({lo}, {hi}) must lie within {bound}")
    return None if lo == hi == center else (lo, hi)


class ColorJitterNorm:
    """Random brightness / contrast / saturation / hue jitter of an RGB image, then :data:`ImgNorm`.

    Args:
        brightness, contrast, saturation: jitter ``j`` draws a factor in ``[max(0, 1 - j), 1 + j]``.
        hue: jitter ``j`` (<= 0.5) draws a hue shift in ``[-j, j]``.

    ``transform(img, rng=None)``: ``img`` an RGB ``PIL.Image`` or (H, W, 3) uint8 array; returns float32
    ``(3, H, W)`` in [-1, 1]. The four operations are applied in a random order, each with a factor drawn
    uniformly in its range; ``rng`` (numpy Generator) draws them when given, torch's global generator otherwise.
    """

    #: the datasets pass their per-item numpy Generator as ``rng=`` to transforms that set this
    uses_rng = True

    def __init__(self, brightness: float = 0, contrast: float = 0, saturation: float = 0, hue: float = 0):
        self.params = (brightness, contrast, saturation, hue)
        self.ranges = (_range(brightness, "brightness"), _range(contrast, "contrast"),
                       _range(saturation, "saturation"), _range(hue, "hue", center=0.0, bound=(-0.5, 0.5)))

    def draw(self, rng: Optional[np.random.Generator] = None):
        """``(order, factors)``: a permutation of the 4 operations and one factor (or None) per operation."""
        if rng is None:
            order = torch.randperm(4).tolist()
            factors = [None if r is None else float(torch.empty(1).uniform_(r[0], r[1])) for r in self.ranges]
        else:
            order = rng.permutation(4).tolist()
            factors = [None if r is None else float(rng.uniform(r[0], r[1])) for r in self.ranges]
        return order, factors

    def jitter(self, img01: torch.Tensor, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        """Jitter a float (3, H, W) image in [0, 1]; returns the same layout."""
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        order, factors = self.draw(rng)
        for k in order:
            if factors[k] is not None:
                img01 = ops[k](img01, factors[k])
        return img01

    def __call__(self, img: Union[PIL.Image.Image, np.ndarray], rng: Optional[np.random.Generator] = None):
        normed = ImgNorm(img)  # validates the input; (3, H, W) in [-1, 1]
        img01 = self.jitter(normed * 0.5 + 0.5, rng)
        return (img01 - 0.5) / 0.5

    def __repr__(self) -> str:
        b, c, s, h = self.params
        return f"ColorJitter(brightness={b}, contrast={c}, saturation={s}, hue={h}) + ImgNorm"


#: the original's training-time colour augmentation (``transform=ColorJitter`` in the dataset strings)
ColorJitter = ColorJitterNorm(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1)
