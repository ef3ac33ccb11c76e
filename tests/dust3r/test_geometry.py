"""dust3r.utils.geometry: rotations, similarities and the focal fit (the one home of these primitives)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dust3r.utils.geometry import (align_camera_poses, apply_sim3_to_poses, project_to_so3, quat_to_rotmat,
                                   rotmat_to_quat, sim3_to_4x4, weighted_procrustes, weiszfeld_focal, xy_grid)


def _random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return quat_to_rotmat(torch.randn(n, 4, generator=gen, dtype=torch.float64))


def _random_sim3(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = float(torch.rand(1, generator=gen, dtype=torch.float64)) * 3 + 0.2
    return s, _random_rotations(1, seed + 1)[0], torch.randn(3, generator=gen, dtype=torch.float64) * 2


class TestQuaternions:
    def test_known_values(self):
        half = math.sqrt(0.5)
        Rz90 = quat_to_rotmat(torch.tensor([0.0, 0.0, half, half], dtype=torch.float64))
        torch.testing.assert_close(Rz90, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))
        torch.testing.assert_close(quat_to_rotmat(torch.tensor([0.0, 0, 0, 5])), torch.eye(3))  # normalised
        Rx180 = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
        torch.testing.assert_close(rotmat_to_quat(Rx180), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))

    def test_round_trip_batched(self):
        q = torch.nn.functional.normalize(torch.randn(5, 7, 4, dtype=torch.float64), dim=-1)
        q = torch.where(q[..., 3:] < 0, -q, q)
        R = quat_to_rotmat(q)
        assert R.shape == (5, 7, 3, 3)
        torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=R.dtype).expand_as(R))
        torch.testing.assert_close(torch.linalg.det(R), torch.ones(5, 7, dtype=R.dtype))
        torch.testing.assert_close(rotmat_to_quat(R), q, atol=1e-12, rtol=0)

    def test_dtype_and_near_pi_rotations(self):
        R = _random_rotations(64).float()
        q = rotmat_to_quat(R)
        assert q.dtype == torch.float32 and (q[:, 3] >= 0).all()
        torch.testing.assert_close(quat_to_rotmat(q), R, atol=1e-6, rtol=0)
        # 180 degrees about an arbitrary axis: w = 0, the stable branch must still recover the axis
        axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
        R180 = 2 * torch.outer(axis, axis) - torch.eye(3, dtype=torch.float64)
        torch.testing.assert_close(quat_to_rotmat(rotmat_to_quat(R180)), R180, atol=1e-12, rtol=0)

    def test_gradient_flows(self):
        q = torch.tensor([0.1, 0.2, 0.3, 0.9], requires_grad=True)
        quat_to_rotmat(q)[0, 1].backward()
        assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match=r"quat must have shape \(\.\.\., 4\)"):
            quat_to_rotmat(torch.zeros(3))
        with pytest.raises(ValueError, match=r"rotmat must have shape \(\.\.\., 3, 3\)"):
            rotmat_to_quat(torch.zeros(2, 3, 4))
        with pytest.raises(TypeError, match="torch.Tensor"):
            quat_to_rotmat(np.zeros(4))

    def test_old_locations_are_the_same_functions(self):
        import dust3r.cloud_opt.commons as commons
        import mast3r.cloud_opt.geometry as mgeo
        assert commons.quat_to_rotmat is mgeo.quat_to_rotmat is quat_to_rotmat
        assert commons.rotmat_to_quat is mgeo.rotmat_to_quat is rotmat_to_quat
        assert commons.weighted_procrustes is weighted_procrustes and commons.sim3_to_4x4 is sim3_to_4x4


class TestProcrustes:
    def test_recovers_similarity_despite_zero_weight_outliers(self):
        s, R, t = _random_sim3(3)
        src = torch.randn(200, 3, dtype=torch.float64)
        dst = s * src @ R.T + t
        dst[:20] += 5 * torch.randn(20, 3, dtype=torch.float64)  # outliers ...
        w = torch.ones(200, dtype=torch.float64)
        w[:20] = 0  # ... without weight
        s_est, R_est, t_est = weighted_procrustes(src, dst, w)
        assert float(s_est) == pytest.approx(s, rel=1e-10)
        torch.testing.assert_close(R_est, R, atol=1e-10, rtol=0)
        torch.testing.assert_close(t_est, t, atol=1e-10, rtol=0)

    def test_batched_rigid_and_non_finite(self):
        R = _random_rotations(3, seed=5)
        src = torch.randn(3, 50, 3, dtype=torch.float64)
        dst = src @ R.transpose(1, 2) + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        dst[:, 0] = float("nan")  # dropped
        s_est, R_est, t_est = weighted_procrustes(src, dst, with_scale=False)
        assert s_est.shape == (3,) and R_est.shape == (3, 3, 3) and t_est.shape == (3, 3)
        torch.testing.assert_close(s_est, torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(R_est, R, atol=1e-10, rtol=0)
        torch.testing.assert_close(t_est, torch.tensor([[1.0, 2.0, 3.0]] * 3, dtype=torch.float64))

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="src and dst"):
            weighted_procrustes(torch.zeros(4, 3), torch.zeros(5, 3))
        with pytest.raises(ValueError, match="weights must have shape"):
            weighted_procrustes(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(3))

    def test_sim3_to_4x4(self):
        s, R, t = _random_sim3(1)
        T = sim3_to_4x4(s, R, t)
        pts = torch.randn(10, 3, dtype=torch.float64)
        torch.testing.assert_close(pts @ T[:3, :3].T + T[:3, 3], s * pts @ R.T + t)
        torch.testing.assert_close(T[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64))
        batched = sim3_to_4x4(torch.tensor([1.0, 2.0]), torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3))
        torch.testing.assert_close(batched[:, 0, 0], torch.tensor([1.0, 2.0]))

    def test_project_to_so3(self):
        R = _random_rotations(4, seed=9)
        noisy = R + 1e-3 * torch.randn(4, 3, 3, dtype=torch.float64)
        P = project_to_so3(noisy)
        torch.testing.assert_close(P @ P.transpose(1, 2), torch.eye(3, dtype=P.dtype).expand(4, 3, 3))
        assert (torch.linalg.det(P) > 0).all() and (P - R).abs().max() < 5e-3
        torch.testing.assert_close(project_to_so3(-torch.eye(3, dtype=torch.float64)).det(),
                                   torch.tensor(1.0, dtype=torch.float64))


class TestAlignCameraPoses:
    @staticmethod
    def _cameras(n: int, seed: int = 0, collinear: bool = False) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
        c2w[:, :3, :3] = _random_rotations(n, seed)
        if collinear:
            c2w[:, :3, 3] = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 0.5])
        else:
            c2w[:, :3, 3] = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        return c2w

    @pytest.mark.parametrize("n,collinear", [(5, False), (2, False), (4, True)])
    def test_recovers_known_similarity(self, n, collinear):
        s, R, t = _random_sim3(n)
        src = self._cameras(n, seed=n, collinear=collinear)
        dst = apply_sim3_to_poses(s, R, t, src)
        s_est, R_est, t_est = align_camera_poses(src, dst)
        assert float(s_est) == pytest.approx(s, rel=1e-9)
        torch.testing.assert_close(R_est, R, atol=1e-9, rtol=0)
        torch.testing.assert_close(t_est, t, atol=1e-9, rtol=0)
        torch.testing.assert_close(apply_sim3_to_poses(s_est, R_est, t_est, src), dst, atol=1e-9, rtol=0)

    def test_mask_and_single_camera(self):
        s, R, t = _random_sim3(2)
        src = self._cameras(4, seed=3)
        dst = apply_sim3_to_poses(s, R, t, src)
        dst[3] = torch.eye(4, dtype=torch.float64)  # a wrong camera, masked out
        s_est, R_est, _ = align_camera_poses(src, dst, mask=torch.tensor([True, True, True, False]))
        assert float(s_est) == pytest.approx(s, rel=1e-9)
        # one camera: rotation from its orientation, no scale information
        s1, R1, t1 = align_camera_poses(src[:1], dst[:1])
        assert float(s1) == 1.0
        torch.testing.assert_close(R1, R, atol=1e-9, rtol=0)
        torch.testing.assert_close(R1 @ src[0, :3, 3] + t1, dst[0, :3, 3])

    def test_apply_keeps_cameras_rigid(self):
        out = apply_sim3_to_poses(3.0, torch.eye(3), torch.zeros(3), self._cameras(3).float())
        assert out.dtype == torch.float32
        torch.testing.assert_close(torch.linalg.det(out[:, :3, :3]), torch.ones(3))

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"cam2world_src must be an \(N, 4, 4\)"):
            align_camera_poses(torch.eye(4), torch.eye(4)[None])
        with pytest.raises(ValueError, match="hold 2 and 1 cameras"):
            align_camera_poses(self._cameras(2), self._cameras(1))
        with pytest.raises(ValueError, match="at least one camera"):
            align_camera_poses(self._cameras(2), self._cameras(2), mask=torch.zeros(2, dtype=torch.bool))


class TestWeiszfeldFocal:
    @staticmethod
    def _rays(focal: float, H: int = 24, W: int = 32, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        pixels = xy_grid(W, H, device="cpu", dtype=torch.float64).reshape(1, -1, 2) - torch.tensor(
            [(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
        depth = 1 + torch.rand(1, H * W, 1, generator=gen, dtype=torch.float64)
        pts = torch.cat((pixels / focal * depth, depth), dim=-1)
        return pixels, pts[..., :2] / pts[..., 2:]

    def test_exact_pinhole(self):
        pixels, rays = self._rays(41.5)
        torch.testing.assert_close(weiszfeld_focal(pixels, rays), torch.tensor([41.5], dtype=torch.float64))

    def test_robust_to_outliers_and_masks(self):
        pixels, rays = self._rays(60.0)
        corrupted = rays.clone()
        corrupted[:, ::10] *= 3  # 10 % gross outliers: least squares is biased, the L1 fit is not
        l2 = float((corrupted * pixels).sum() / corrupted.square().sum())
        robust = float(weiszfeld_focal(pixels, corrupted))
        assert abs(l2 / 60 - 1) > 0.1 and abs(robust / 60 - 1) < 0.01
        valid = torch.ones(rays.shape[:2], dtype=torch.bool)
        valid[:, ::10] = False
        corrupted[:, 1::10] = float("nan")  # non-finite rays are ignored
        assert float(weiszfeld_focal(pixels, corrupted, valid=valid)) == pytest.approx(60.0, rel=1e-6)

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match="pixels and rays must be"):
            weiszfeld_focal(torch.zeros(1, 5, 2), torch.zeros(1, 6, 2))

    def test_post_process_and_relpose_use_it(self):
        """The two public focal estimators agree with each other on a noisy pointmap (one solver)."""
        from dust3r.post_process import estimate_focal_knowing_depth
        from mast3r.relpose import estimate_focal_weiszfeld
        H, W = 24, 32
        pixels, rays = self._rays(50.0, H, W)
        gen = torch.Generator().manual_seed(1)
        rays = rays + 0.01 * torch.randn(rays.shape, generator=gen, dtype=torch.float64)
        depth = 2.0
        pts = torch.cat((rays * depth, torch.full_like(rays[..., :1], depth)), dim=-1).reshape(1, H, W, 3)
        pp = torch.tensor([[(W - 1) / 2, (H - 1) / 2]], dtype=torch.float64)
        f_dust3r = float(estimate_focal_knowing_depth(pts, pp, focal_mode="weiszfeld", min_focal=0, max_focal=99))
        f_relpose = estimate_focal_weiszfeld(pts[0])
        f_direct = float(weiszfeld_focal(pixels, rays))
        assert f_dust3r == pytest.approx(f_direct, rel=1e-12) and f_relpose == pytest.approx(f_direct, rel=1e-12)
        assert f_direct == pytest.approx(50.0, rel=0.02)
