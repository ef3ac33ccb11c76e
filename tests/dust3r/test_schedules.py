"""dust3r.utils.schedules: the one home of the learning-rate schedules."""
from __future__ import annotations

import functools
import math

import pytest

from dust3r.utils import schedules
from dust3r.utils.schedules import SCHEDULES, cosine_schedule, get_schedule, linear_schedule, register_schedule


class TestSchedules:
    @pytest.mark.parametrize("fn", [linear_schedule, cosine_schedule])
    def test_end_points(self, fn):
        assert fn(0.0, 0.2, 0.01) == pytest.approx(0.2)
        assert fn(1.0, 0.2, 0.01) == pytest.approx(0.01)
        assert fn(1.0, 0.2) == 0.0  # lr_end defaults to 0 (the original MASt3R schedules)

    def test_values(self):
        assert linear_schedule(0.25, 1.0, 0.0) == pytest.approx(0.75)
        assert cosine_schedule(0.5, 1.0, 0.2) == pytest.approx(0.6)
        assert cosine_schedule(0.25, 1.0, 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
        lrs = [cosine_schedule(t / 10, 0.07, 1e-6) for t in range(11)]
        assert all(a > b for a, b in zip(lrs, lrs[1:]))

    @pytest.mark.parametrize("t", [-0.01, 1.5])
    def test_progress_out_of_range(self, t):
        with pytest.raises(ValueError, match="schedule time must lie in"):
            cosine_schedule(t, 1.0, 0.0)
        with pytest.raises(ValueError, match="schedule time must lie in"):
            linear_schedule(t, 1.0, 0.0)


class TestGetSchedule:
    def test_names_and_callables(self):
        assert get_schedule("cosine") is cosine_schedule and get_schedule("linear") is linear_schedule
        custom = functools.partial(linear_schedule, lr_end=0.5)
        assert get_schedule(custom) is custom
        assert set(SCHEDULES) >= {"cosine", "linear"}

    def test_unknown(self):
        with pytest.raises(ValueError, match=r"unknown schedule 'step'; expected one of \['cosine', 'linear'"):
            get_schedule("step")
        with pytest.raises(ValueError, match="unknown schedule"):
            get_schedule(None)

    def test_register(self, monkeypatch):
        monkeypatch.setattr(schedules, "SCHEDULES", dict(SCHEDULES))

        @register_schedule("constant")
        def constant(t, lr_start, lr_end=0.0):
            return lr_start

        assert get_schedule("constant")(0.7, 0.3) == 0.3
        with pytest.raises(ValueError, match="already registered"):
            register_schedule("cosine")(constant)

    def test_old_locations_reexport(self):
        import dust3r.cloud_opt.commons as commons
        import mast3r.cloud_opt.utils.schedules as mast3r_schedules
        assert commons.cosine_schedule is mast3r_schedules.cosine_schedule is cosine_schedule
        assert commons.linear_schedule is mast3r_schedules.linear_schedule is linear_schedule
        assert mast3r_schedules.get_schedule is get_schedule
