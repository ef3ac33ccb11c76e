"""Robust per-correspondence losses of the sparse global alignment.

Every loss maps two (..., D) point sets to a (...) tensor of per-point costs, computed from the Euclidean
distance ``d = |x - y|``. ``gamma_loss(g)`` is ``(d + o)^g - o^g`` with the offset ``o`` chosen so that the slope
at ``d = 0`` is 1 (for ``g != 1``): ``g > 1`` is smooth near 0 (like L2), ``g < 1`` is robust to outliers.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

PointLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["l05_loss", "l1_loss", "gamma_loss", "meta_gamma_loss", "MetaLoss"]


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distance along the last axis: (..., D), (..., D) -> (...)."""
    return torch.linalg.norm(x - y, dim=-1)


def l05_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Square root of the Euclidean distance (very robust)."""
    return l1_loss(x, y).sqrt()


class _GammaLoss:
    """``(mul * min(d, clip) + offset) ** gamma - offset ** gamma`` (a picklable callable with a readable repr)."""

    def __init__(self, gamma: float, mul: float, offset: float, clip: float) -> None:
        self.gamma, self.mul, self.offset, self.clip = float(gamma), float(mul), float(offset), float(clip)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dist = l1_loss(x, y).clip(max=self.clip)
        return (self.mul * dist + self.offset) ** self.gamma - self.offset ** self.gamma

    def __repr__(self) -> str:
        return f"gamma_loss(gamma={self.gamma}, mul={self.mul}, offset={self.offset:.4g}, clip={self.clip})"


def gamma_loss(gamma: float, mul: float = 1.0, offset: Optional[float] = None, clip: float = math.inf) -> PointLoss:
    """Build the gamma loss described in the module docstring.

    Args:
        gamma: exponent (> 0). ``gamma == 1`` with no offset is the plain L1 distance.
        mul: scale applied to the distance before the power.
        offset: additive offset; default ``(1/gamma) ** (1/(gamma-1))`` (unit slope at 0).
        clip: distances are clipped to this value first.
    """
    if not (isinstance(gamma, (int, float)) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    if offset is None:
        if gamma == 1:
            return l1_loss
        offset = (1.0 / gamma) ** (1.0 / (gamma - 1.0))
    return _GammaLoss(gamma, mul, offset, clip)


class MetaLoss:
    """A loss that changes during optimisation: ``meta(alpha)`` returns the point loss to use when a fraction
    ``1 - alpha`` of the iterations has been done (``alpha`` goes from 1 down to ~0)."""

    def __init__(self, factory: Callable[[float], PointLoss]) -> None:
        self.factory = factory

    def __call__(self, alpha: float) -> PointLoss:
        return self.factory(alpha)

    def __repr__(self) -> str:
        return "meta_loss"


def meta_gamma_loss() -> MetaLoss:
    """``alpha -> gamma_loss(alpha)``: starts close to L1 and becomes more and more robust."""
    return MetaLoss(lambda alpha: gamma_loss(max(float(alpha), 1e-3)))


def is_meta_loss(loss: object) -> bool:
    """True for schedule-dependent losses (ours, or any callable whose repr mentions 'meta' like the original's)."""
    return isinstance(loss, MetaLoss) or "meta" in repr(loss)
