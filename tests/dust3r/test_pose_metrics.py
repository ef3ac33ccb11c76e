"""Tests of dust3r.utils.pose_metrics against synthetic cameras with known Sim(3) gauges."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.synthetic import SyntheticScene, make_scene
from dust3r.utils.pose_metrics import (align_poses, focal_rel_error, pose_errors, rotation_angle_deg,
                                       translation_direction_error_deg)


def _rot(axis, deg):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    a = np.radians(deg)
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


def _random_sim3(rng):
    R = _rot(rng.normal(size=3), rng.uniform(10, 170))
    return float(rng.uniform(0.3, 3.0)), R, rng.normal(size=3) * 2


def _apply_sim3(c2w, s, R, t):
    out = c2w.copy()
    out[:, :3, :3] = R @ c2w[:, :3, :3]
    out[:, :3, 3] = s * c2w[:, :3, 3] @ R.T + t
    return out


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return make_scene(5, 48, 64, seed=0)


# ============================================================================================
# pose metrics
# ============================================================================================
class TestPoseHelpers:
    def test_rotation_angle(self):
        R = _rot([1, 2, 3], 17.0)
        assert float(rotation_angle_deg(np.eye(3), R)) == pytest.approx(17.0, abs=1e-9)
        assert float(rotation_angle_deg(R, R)) == pytest.approx(0.0, abs=1e-6)
        assert float(rotation_angle_deg(np.eye(3), _rot([0, 0, 1], 180.0))) == pytest.approx(180.0, abs=1e-6)
        batch = np.stack([_rot([0, 1, 0], a) for a in (1.0, 5.0, 30.0)])
        np.testing.assert_allclose(rotation_angle_deg(np.eye(3), batch), [1.0, 5.0, 30.0], atol=1e-9)
        np.testing.assert_allclose(rotation_angle_deg(torch.eye(4), torch.from_numpy(batch)), [1, 5, 30], atol=1e-6)
        with pytest.raises(ValueError, match="Ra"):
            rotation_angle_deg(np.eye(2), np.eye(3))

    def test_translation_direction(self):
        assert float(translation_direction_error_deg([1, 0, 0], [5, 5, 0])) == pytest.approx(45.0)
        assert float(translation_direction_error_deg([1, 0, 0], [-2, 0, 0])) == pytest.approx(180.0)
        assert float(translation_direction_error_deg([0, 0, 3], [0, 0, 0.1])) == pytest.approx(0.0, abs=1e-6)
        with pytest.raises(ValueError, match="shape"):
            translation_direction_error_deg([1, 0], [1, 0, 0])

    @pytest.mark.parametrize("n", [2, 5])
    def test_align_poses_recovers_sim3(self, scene, n):
        rng = np.random.default_rng(n)
        s, R, t = _random_sim3(rng)
        gt = scene.cam2world[:n]
        # est = gt expressed in another gauge: X_gt = s R X_est + t  <=>  X_est = R^T (X_gt - t) / s
        est = _apply_sim3(gt, 1.0 / s, R.T, -R.T @ t / s)
        s_hat, R_hat, t_hat, aligned = align_poses(est, gt)
        assert s_hat == pytest.approx(s, rel=1e-9)
        np.testing.assert_allclose(R_hat, R, atol=1e-9)
        np.testing.assert_allclose(t_hat, t, atol=1e-8)
        np.testing.assert_allclose(aligned, gt, atol=1e-8)

    def test_pose_errors_gauge_free(self, scene):
        rng = np.random.default_rng(0)
        est = _apply_sim3(scene.cam2world, *_random_sim3(rng))
        err = pose_errors(torch.from_numpy(est), scene.cam2world)
        assert err["rot_deg"] < 1e-5 and err["trans_dir_deg"] < 1e-5 and err["center_err_rel"] < 1e-9
        assert err["n_pairs"] == 10

    def test_pose_errors_known_perturbation(self, scene):
        gt = scene.cam2world
        est = gt.copy()
        est[2, :3, :3] = est[2, :3, :3] @ _rot([0, 1, 0], 2.0)  # camera 2 turned by 2 degrees about its y axis
        err = pose_errors(est, gt)
        assert err["rot_deg"] == pytest.approx(2.0, abs=1e-6)
        assert err["rot_deg_median"] == pytest.approx(0.0, abs=1e-6)  # 4 of the 10 pairs involve camera 2
        assert err["trans_dir_deg"] > 0.5  # camera 2's frame rotates the direction to the others
        # moving a centre along the baseline direction: translation direction error, no rotation error
        est = gt.copy()
        est[4, :3, 3] += 0.3 * np.cross(gt[4, :3, 3] - gt[3, :3, 3], [0, 0, 1])
        err = pose_errors(est, gt)
        assert err["rot_deg"] < 1e-9 and err["trans_dir_deg"] > 5.0 and err["center_err_rel"] > 0.01
        with pytest.raises(ValueError, match="at least 2"):
            pose_errors(gt[:1], gt[:1])
        with pytest.raises(ValueError, match="same shape"):
            pose_errors(gt[:2], gt[:3])
        with pytest.raises(ValueError, match="est"):
            pose_errors(np.zeros((3, 3)), gt[:3])

    def test_focal_rel_error(self, scene):
        assert focal_rel_error([101.0, 99.0], [100.0, 100.0]) == pytest.approx(0.01)
        assert focal_rel_error(torch.tensor([[57.6], [56.0]]), scene.K[:2]) == pytest.approx(1.6 / 57.6)
        assert focal_rel_error(scene.K, scene.K) == 0.0
