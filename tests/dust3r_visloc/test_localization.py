"""dust3r_visloc.localization.run_pnp: each back end recovers a known pose; failures are (False, None)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from dust3r.utils.pose_metrics import rotation_angle_deg
from dust3r_visloc.localization import PNP_MODES, default_pnp_mode, run_pnp
from dust3r.synthetic import look_at

K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
W, H = 640, 480


def _problem(n=300, outliers=0.0, seed=0):
    rng = np.random.default_rng(seed)
    cam2world = look_at([1.0, -2.0, 1.5], [0.0, 0.0, 0.3])
    # points in front of the camera, seen inside the image
    pix = np.stack([rng.uniform(0, W - 1, n), rng.uniform(0, H - 1, n)], -1)
    depth = rng.uniform(2.0, 6.0, n)
    rays = (np.linalg.inv(K) @ np.c_[pix, np.ones(n)].T).T
    pts_cam = rays * depth[:, None]
    pts_world = pts_cam @ cam2world[:3, :3].T + cam2world[:3, 3]
    bad = rng.random(n) < outliers
    pix[bad] = np.stack([rng.uniform(0, W, bad.sum()), rng.uniform(0, H, bad.sum())], -1)
    return pix, pts_world, cam2world


@pytest.mark.parametrize("mode", PNP_MODES)
class TestRunPnp:
    def test_exact_correspondences(self, mode):
        pix, pts, gt = _problem()
        ok, est = run_pnp(pix, pts, K, None, mode, 2.0, img_size=[W, H])
        assert ok
        assert np.linalg.norm(est[:3, 3] - gt[:3, 3]) < 1e-5
        assert float(rotation_angle_deg(est, gt)) < 1e-4

    def test_outliers_rejected(self, mode):
        pix, pts, gt = _problem(n=400, outliers=0.3, seed=1)
        ok, est = run_pnp(pix, pts, K, np.zeros(4), mode, 2.0, img_size=[W, H])
        assert ok
        assert np.linalg.norm(est[:3, 3] - gt[:3, 3]) < 1e-3
        assert float(rotation_angle_deg(est, gt)) < 1e-2

    def test_too_few_points_fail_without_exception(self, mode):
        pix, pts, _ = _problem(n=4)
        assert run_pnp(pix, pts, K, None, mode, 2.0, img_size=[W, H]) == (False, None)

    def test_degenerate_input_is_a_failure_not_a_crash(self, mode, caplog):
        pix = np.tile([[100.0, 100.0]], (20, 1))
        pts = np.tile([[0.0, 0.0, 5.0]], (20, 1))
        with caplog.at_level(logging.INFO):
            ok, pose = run_pnp(pix, pts, K, None, mode, 2.0, img_size=[W, H])
        if ok:  # a library may return some pose for a degenerate set; it must at least be a finite rigid motion
            assert np.isfinite(pose).all()
        else:
            assert pose is None


def test_distortion_is_applied():
    """OpenCV k1: the pixels of a distorted camera localize with the distortion given, not without."""
    import cv2

    pix, pts, gt = _problem(n=300, seed=2)
    dist = np.array([-0.2, 0.05, 0.0, 0.0])
    w2c = np.linalg.inv(gt)
    distorted, _ = cv2.projectPoints(pts, cv2.Rodrigues(w2c[:3, :3])[0], w2c[:3, 3], K, dist)
    distorted = distorted.reshape(-1, 2)
    for mode in ("cv2", "poselib"):
        ok, est = run_pnp(distorted, pts, K, dist, mode, 1.0, img_size=[W, H])
        assert ok and np.linalg.norm(est[:3, 3] - gt[:3, 3]) < 1e-3, mode


def test_pycolmap_4_api():
    """pycolmap 4.x has no absolute_pose_estimation; the pycolmap mode must still localize (the original failed
    every query there)."""
    import pycolmap

    assert not hasattr(pycolmap, "absolute_pose_estimation")
    pix, pts, gt = _problem(seed=3)
    ok, est = run_pnp(pix, pts, K, None, "pycolmap", 2.0, img_size=[W, H])
    assert ok and np.linalg.norm(est[:3, 3] - gt[:3, 3]) < 1e-5


def test_unknown_mode():
    with pytest.raises(ValueError, match="pnp mode"):
        run_pnp(np.zeros((10, 2)), np.zeros((10, 3)), K, None, "ransac")


def test_default_mode_prefers_poselib():
    assert default_pnp_mode() == "poselib"  # installed in this environment
