"""Activations that turn raw head channels into 3D points and confidences."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

_INF = float("inf")


def postprocess(out: torch.Tensor, depth_mode: Sequence, conf_mode: Optional[Sequence]) -> dict:
    """Raw head output (B, 3 [+1], H, W) -> ``{'pts3d': (B, H, W, 3), 'conf': (B, H, W)}``."""
    fmap = out.permute(0, 2, 3, 1)
    res = {"pts3d": reg_dense_depth(fmap[..., 0:3], mode=depth_mode)}
    if conf_mode is not None:
        res["conf"] = reg_dense_conf(fmap[..., 3], mode=conf_mode)
    return res


def reg_dense_depth(xyz: torch.Tensor, mode: Sequence) -> torch.Tensor:
    """Map raw (..., 3) vectors to 3D points, keeping their direction and regularising their length.

    ``mode = (kind, vmin, vmax)``: ``'linear'`` (identity, clipped to [vmin, vmax] when bounded), ``'square'``
    (length d -> d^2) or ``'exp'`` (length d -> exp(d) - 1). Only ``'linear'`` supports finite bounds.
    """
    kind, vmin, vmax = mode
    bounded = not (vmin == -_INF and vmax == _INF)
    if kind == "linear":
        return xyz.clip(min=vmin, max=vmax) if bounded else xyz
    if bounded:
        raise ValueError(f"depth_mode {tuple(mode)!r}: bounds are only supported with 'linear'")
    d = xyz.norm(dim=-1, keepdim=True)
    direction = xyz / d.clip(min=1e-8)
    if kind == "square":
        return direction * d.square()
    if kind == "exp":
        return direction * torch.expm1(d)
    raise ValueError(f"unknown depth_mode {kind!r}: expected 'linear', 'square' or 'exp'")


def reg_dense_conf(x: torch.Tensor, mode: Sequence) -> torch.Tensor:
    """Map raw logits to confidences: ``'exp'`` -> vmin + exp(x) (capped at vmax); ``'sigmoid'`` -> in [vmin, vmax]."""
    kind, vmin, vmax = mode
    if kind == "exp":
        return vmin + x.exp().clip(max=vmax - vmin)
    if kind == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unknown conf_mode {kind!r}: expected 'exp' or 'sigmoid'")
