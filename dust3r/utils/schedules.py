"""Learning-rate schedules: the one home of the schedules of the global alignments (and, later, of training).

A schedule is a plain function ``schedule(t, lr_start, lr_end) -> lr`` of the progress ``t`` in [0, 1]
(``t = iteration / n_iterations``). :func:`get_schedule` resolves a name of :data:`SCHEDULES` (or returns a
callable as is). A schedule with extra parameters joins the table through :func:`register_schedule` and binds
them with keywords, e.g. a training schedule with a warm-up::

    @register_schedule("cosine_warmup")
    def cosine_warmup_schedule(t, lr_start, lr_end=0.0, *, warmup=0.05):
        ...

    schedule = functools.partial(get_schedule("cosine_warmup"), warmup=0.1)
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Union

# the training schedule (warm-up + half cosine, by epoch): defined in croco, where the original's
# ``adjust_learning_rate`` lives, and re-exported here as dust3r's schedule home
from croco.utils.misc import cosine_warmup_lr

__all__ = ["Schedule", "SCHEDULES", "register_schedule", "get_schedule", "linear_schedule", "cosine_schedule",
           "cosine_warmup_lr"]

#: ``schedule(t, lr_start, lr_end) -> lr``
Schedule = Callable[..., float]

#: name -> schedule function
SCHEDULES: Dict[str, Schedule] = {}


def register_schedule(name: str) -> Callable[[Schedule], Schedule]:
    """Decorator adding a schedule to :data:`SCHEDULES` under ``name`` (a name may be registered once)."""
    def add(fn: Schedule) -> Schedule:
        if name in SCHEDULES:
            raise ValueError(f"schedule {name!r} is already registered")
        SCHEDULES[name] = fn
        return fn
    return add


def _check_progress(t: float) -> None:
    if not 0 <= t <= 1:
        raise ValueError(f"schedule time must lie in [0, 1], got {t}")


@register_schedule("linear")
def linear_schedule(t: float, lr_start: float, lr_end: float = 0.0) -> float:
    """Straight line from ``lr_start`` (t=0) to ``lr_end`` (t=1)."""
    _check_progress(t)
    return lr_start + (lr_end - lr_start) * t


@register_schedule("cosine")
def cosine_schedule(t: float, lr_start: float, lr_end: float = 0.0) -> float:
    """Half cosine from ``lr_start`` (t=0) to ``lr_end`` (t=1)."""
    _check_progress(t)
    return lr_end + (lr_start - lr_end) * (1 + math.cos(t * math.pi)) / 2


def get_schedule(schedule: Union[str, Schedule]) -> Schedule:
    """The schedule function of a name of :data:`SCHEDULES` ('cosine', 'linear'), or a callable as is."""
    if callable(schedule):
        return schedule
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return SCHEDULES[schedule]
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {sorted(SCHEDULES)} or a callable")
