"""dust3r_visloc.evaluation: pose errors, thresholds, submission files (failed queries are not poses)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dust3r_visloc.evaluation import (THRESHOLDS, accuracy_at_thresholds, aggregate_stats, export_results,
                                      get_pose_error, pose_to_submission_line, summary_table)


def _pose(rotvec, t):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def test_pose_error_values():
    gt = _pose([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    est = gt @ _pose([0.0, 0.0, np.radians(3.0)], [0.0, 0.0, 0.0])
    est[:3, 3] += [0.3, 0.4, 0.0]
    t, r = get_pose_error(est, gt)
    assert t == pytest.approx(0.5)
    assert r == pytest.approx(3.0, abs=1e-9)
    assert get_pose_error(None, gt) == (math.inf, math.inf)


def test_thresholds_and_table():
    t = [0.1, 0.3, 0.6, 6.0, math.inf]
    r = [1.0, 1.0, 1.0, 1.0, math.inf]
    acc = accuracy_at_thresholds(t, r)
    assert list(acc) == list(THRESHOLDS)
    assert list(acc.values()) == [20.0, 40.0, 60.0]
    table = summary_table(t, r, n_failed=1)
    assert "(0.25 m, 2 deg) |     20.0%" in table and "(5 m, 10 deg) |     60.0%" in table
    assert "median translation | 0.6000 m" in table and "5 (1 failed)" in table
    line = aggregate_stats("x", t, r)
    assert "acc@0.1m,1deg" in line and "acc@0.25m,2deg" in line and "=20.000" in line


def test_submission_line_round_trip():
    c2w = _pose([0.3, -0.2, 2.5], [1.0, -2.0, 0.5])
    name, *vals = pose_to_submission_line("query/day/a.jpg", c2w).split()
    qw, qx, qy, qz, tx, ty, tz = map(float, vals)
    assert name == "query/day/a.jpg" and qw >= 0
    w2c = np.eye(4)
    w2c[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
    w2c[:3, 3] = [tx, ty, tz]
    np.testing.assert_allclose(np.linalg.inv(w2c), c2w, atol=1e-12)


def test_export_results_lists_failures_instead_of_identity(tmp_path):
    c2w = _pose([0.1, 0.0, 0.0], [0.0, 1.0, 0.0])
    paths = export_results(str(tmp_path), "run", ["q/a.png", "q/b.png"], [c2w, None])
    assert [os.path.basename(p) for p in paths] == ["run_results.txt", "run_ltvl.txt", "run_failed.txt"]
    results = (tmp_path / "run_results.txt").read_text().splitlines()
    assert len(results) == 1 and results[0].startswith("q/a.png ")
    assert (tmp_path / "run_ltvl.txt").read_text().startswith("a.png ")
    assert (tmp_path / "run_failed.txt").read_text() == "q/b.png\n"
    assert export_results(None, "run", ["a"], [c2w]) == []
