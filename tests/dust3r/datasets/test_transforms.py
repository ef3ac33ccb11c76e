"""ImgNorm / ColorJitter without torchvision: colour operations checked on images with known answers."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from dust3r.datasets.utils.transforms import (ColorJitter, ColorJitterNorm, ImgNorm, adjust_brightness,
                                              adjust_contrast, adjust_hue, adjust_saturation, rgb_to_grayscale)


def _img(seed=0, h=12, w=16):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_imgnorm_is_totensor_normalize():
    a = _img()
    out = ImgNorm(PIL.Image.fromarray(a))
    assert out.shape == (3, 12, 16) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), (a.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_colour_operations():
    x = torch.from_numpy(_img(1)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(adjust_brightness(x, 0.5), x * 0.5)
    assert adjust_brightness(x, 3.0).max() == 1.0
    grey = adjust_saturation(x, 0.0)
    torch.testing.assert_close(grey, rgb_to_grayscale(x).expand(3, -1, -1))
    flat = adjust_contrast(x, 0.0)
    torch.testing.assert_close(flat, rgb_to_grayscale(x).mean().expand_as(x))
    torch.testing.assert_close(adjust_contrast(x, 1.0), x)  # identity factors
    torch.testing.assert_close(adjust_saturation(x, 1.0), x)
    torch.testing.assert_close(adjust_hue(x, 0.0), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(adjust_hue(adjust_hue(x, 0.3), -0.3), x, atol=1e-5, rtol=0)


def test_hue_rotation_of_primaries():
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1), atol=1e-6,
                               rtol=0)
    greyish = torch.full((3, 2, 2), 0.4)
    torch.testing.assert_close(adjust_hue(greyish, 0.25), greyish)
    with pytest.raises(ValueError, match="hue factor"):
        adjust_hue(red, 0.7)


def test_color_jitter_is_seeded_and_bounded():
    a = _img(2)
    out1 = ColorJitter(a, rng=np.random.default_rng(4))
    out2 = ColorJitter(PIL.Image.fromarray(a), rng=np.random.default_rng(4))
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    assert out1.shape == (3, 12, 16) and -1 <= out1.min() and out1.max() <= 1
    assert not torch.equal(out1, ColorJitter(a, rng=np.random.default_rng(5)))
    order, factors = ColorJitter.draw(np.random.default_rng(0))
    assert sorted(order) == [0, 1, 2, 3]
    assert all(0.5 <= f <= 1.5 for f in factors[:3]) and -0.1 <= factors[3] <= 0.1
    torch.manual_seed(0)
    assert ColorJitter(a).shape == (3, 12, 16)  # torch's global generator without rng


def test_identity_jitter_is_imgnorm():
    a = _img(3)
    torch.testing.assert_close(ColorJitterNorm()(a, rng=np.random.default_rng(0)), ImgNorm(a), atol=1e-6, rtol=0)
    assert "brightness=0.5" in repr(ColorJitter) and "ImgNorm" in repr(ColorJitter)
    with pytest.raises(ValueError, match="non-negative"):
        ColorJitterNorm(brightness=-1)
    with pytest.raises(ValueError, match="hue"):
        ColorJitterNorm(hue=0.8)
