"""dust3r.cloud_opt.init_im_poses: the original's helpers that downstream code imports (fast_pnp,
rigid_points_registration, sRT_to_4x4), on synthetic scenes with known cameras."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.cloud_opt.init_im_poses import fast_pnp, rigid_points_registration, sRT_to_4x4
from dust3r.utils.geometry import geotrf, quat_to_rotmat, xy_grid

H, W = 96, 128


def _cam2world() -> torch.Tensor:
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = quat_to_rotmat(torch.tensor([0.1, -0.2, 0.05, 1.0], dtype=torch.float64))
    c2w[:3, 3] = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    return c2w


def _world_pointmap(focal: float, pp, cam2world: torch.Tensor, seed: int = 0) -> np.ndarray:
    """(H, W, 3) world points seen at every pixel of a pinhole camera (depths in [2, 6])."""
    depth = np.random.default_rng(seed).uniform(2, 6, (H, W, 1))
    pts_cam = np.concatenate(((xy_grid(W, H) - np.asarray(pp)) / focal * depth, depth), axis=-1)
    return pts_cam @ cam2world[:3, :3].numpy().T + cam2world[:3, 3].numpy()


@pytest.fixture(autouse=True)
def _opencv_seed():
    cv2 = pytest.importorskip("cv2")
    cv2.setRNGSeed(0)


class TestFastPnP:
    def test_recovers_pose_and_focal(self):
        """Unknown focal: the candidate equal to the true focal wins and the pose is exact."""
        focal = float(np.geomspace(max(H, W) / 2, max(H, W) * 3, 21)[7])  # one of the searched candidates
        c2w = _cam2world()
        pts = torch.from_numpy(_world_pointmap(focal, (W / 2, H / 2), c2w)).float()
        msk = torch.ones(H, W, dtype=torch.bool)
        est_focal, est_c2w = fast_pnp(pts, None, msk, "cpu")
        assert est_focal == pytest.approx(focal, rel=1e-9)
        assert est_c2w.dtype == torch.float32 and est_c2w.shape == (4, 4)
        torch.testing.assert_close(est_c2w.double(), c2w, atol=1e-5, rtol=0)

    def test_known_focal_and_principal_point(self):
        c2w = _cam2world()
        pp = (60.0, 40.0)
        pts = _world_pointmap(150.0, pp, c2w, seed=1)  # numpy input works too
        msk = np.zeros((H, W), bool)
        msk[10:80, 20:100] = True
        est_focal, est_c2w = fast_pnp(pts, 150.0, msk, "cpu", pp=torch.tensor(pp))
        assert est_focal == 150.0
        torch.testing.assert_close(est_c2w.double(), c2w, atol=1e-5, rtol=0)

    def test_too_few_points(self):
        msk = torch.zeros(H, W, dtype=torch.bool)
        msk[0, :3] = True
        assert fast_pnp(torch.ones(H, W, 3), 100.0, msk, "cpu") is None
        pts = torch.full((H, W, 3), float("nan"))
        assert fast_pnp(pts, 100.0, torch.ones(H, W, dtype=torch.bool), "cpu") is None  # no finite point

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match=r"\(H, W, 3\) pointmap and an \(H, W\) mask"):
            fast_pnp(torch.ones(H, W, 3), 100.0, torch.ones(W, H, dtype=torch.bool), "cpu")


class TestRigidPointsRegistration:
    def test_recovers_similarity(self):
        R = quat_to_rotmat(torch.tensor([-0.3, 0.4, 0.1, 0.8], dtype=torch.float64))
        s, T = 2.5, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        pts1 = torch.randn(12, 16, 3, dtype=torch.float64)
        pts2 = s * pts1 @ R.T + T
        conf = torch.rand(12, 16, dtype=torch.float64) + 1
        s_est, R_est, T_est = rigid_points_registration(pts1.float(), pts2.float(), conf=conf.float())
        assert s_est.dtype == R_est.dtype == T_est.dtype == torch.float32
        assert float(s_est) == pytest.approx(s, rel=1e-5)
        torch.testing.assert_close(R_est.double(), R, atol=1e-5, rtol=0)
        torch.testing.assert_close(T_est.double(), T, atol=1e-5, rtol=0)

    def test_original_usage_pattern(self):
        """As the original's MST init: register pred_i onto pts3d_i, then place pred_j with sRT_to_4x4 + geotrf."""
        R = quat_to_rotmat(torch.tensor([0.2, 0.1, -0.3, 0.9]))
        pred_i, pred_j = torch.randn(8, 10, 3), torch.randn(8, 10, 3)
        world_i, world_j = 0.5 * pred_i @ R.T + 3, 0.5 * pred_j @ R.T + 3
        s, R_est, T_est = rigid_points_registration(pred_i, world_i, conf=torch.ones(8, 10))
        trf = sRT_to_4x4(s, R_est, T_est, "cpu")
        torch.testing.assert_close(geotrf(trf, pred_j), world_j, atol=1e-5, rtol=0)


def test_sRT_to_4x4():
    R = quat_to_rotmat(torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    trf = sRT_to_4x4(2.0, R, torch.tensor([[1.0], [2.0], [3.0]]), "cpu")
    assert trf.dtype == torch.float32
    expected = torch.tensor([[0.0, -2, 0, 1], [2, 0, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1]])
    torch.testing.assert_close(trf, expected, atol=1e-6, rtol=0)
