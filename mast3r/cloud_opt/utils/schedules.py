"""Learning-rate schedules of the sparse global alignment (the original's module path).

The implementations live in :mod:`dust3r.utils.schedules`; this module re-exports them.
"""
from dust3r.utils.schedules import Schedule, cosine_schedule, get_schedule, linear_schedule

__all__ = ["linear_schedule", "cosine_schedule", "get_schedule", "Schedule"]
