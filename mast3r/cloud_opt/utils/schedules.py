"""Learning-rate schedules: ``schedule(alpha, lr_base, lr_end)`` with ``alpha`` in [0, 1] the progress."""
from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[float, float, float], float]

__all__ = ["linear_schedule", "cosine_schedule", "get_schedule"]


def linear_schedule(alpha: float, lr_base: float, lr_end: float = 0.0) -> float:
    """Straight line from ``lr_base`` (alpha=0) to ``lr_end`` (alpha=1)."""
    return lr_base + alpha * (lr_end - lr_base)


def cosine_schedule(alpha: float, lr_base: float, lr_end: float = 0.0) -> float:
    """Half cosine from ``lr_base`` (alpha=0) to ``lr_end`` (alpha=1)."""
    return lr_end + 0.5 * (lr_base - lr_end) * (1.0 + math.cos(math.pi * alpha))


_SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


def get_schedule(schedule) -> Schedule:
    """A schedule function from a name ('cosine', 'linear') or a callable (returned as is)."""
    if callable(schedule):
        return schedule
    if schedule in _SCHEDULES:
        return _SCHEDULES[schedule]
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {sorted(_SCHEDULES)} or a callable")
