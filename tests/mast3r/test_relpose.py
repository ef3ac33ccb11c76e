"""Tests of mast3r.relpose against the synthetic scene + oracle model (exact ground truth)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from dust3r.utils.synthetic import OracleModel, make_scene, rotation_angle_deg, translation_direction_error_deg
from mast3r.relpose import (RelativePose, RelativePoseError, estimate_focal_weiszfeld, relative_pose,
                            solve_pnp_ransac)

HAS_POSELIB = importlib.util.find_spec("poselib") is not None
HAS_CV2 = importlib.util.find_spec("cv2") is not None
BACKENDS = [pytest.param("poselib", marks=pytest.mark.skipif(not HAS_POSELIB, reason="poselib not installed")),
            pytest.param("cv2", marks=pytest.mark.skipif(not HAS_CV2, reason="opencv not installed"))]
needs_solver = pytest.mark.skipif(not (HAS_POSELIB or HAS_CV2), reason="no PnP solver installed")


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 96, 128, seed=1)


@pytest.fixture(scope="module")
def oracle(scene):
    return OracleModel(scene)


def _errors(result: RelativePose, scene, i: int, j: int):
    gt = scene.relative_pose(i, j)
    rot = float(rotation_angle_deg(result.R, gt[:3, :3]))
    tdir = float(translation_direction_error_deg(result.t, gt[:3, 3]))
    tnorm = float(np.linalg.norm(result.t) / np.linalg.norm(gt[:3, 3]) - 1.0)
    return rot, tdir, tnorm


# ============================================================================================
# building blocks
# ============================================================================================
class TestEstimateFocal:
    def test_exact_on_ground_truth_pointmap(self, scene):
        f = estimate_focal_weiszfeld(scene.pts3d_cam(0))
        assert f == pytest.approx(scene.K[0, 0, 0], rel=1e-5)
        f_t = estimate_focal_weiszfeld(torch.from_numpy(scene.pts3d_cam(1)), mask=np.ones((96, 128), bool))
        assert f_t == pytest.approx(scene.K[1, 0, 0], rel=1e-5)

    def test_robust_to_outliers(self, scene):
        pts = scene.pts3d_cam(0).copy()
        rng = np.random.default_rng(0)
        bad = rng.random(pts.shape[:2]) < 0.1
        pts[bad] *= rng.uniform(0.5, 2.0, size=(int(bad.sum()), 3))  # 10 % corrupted points
        assert estimate_focal_weiszfeld(pts) == pytest.approx(scene.K[0, 0, 0], rel=0.02)

    def test_bad_input(self, scene):
        with pytest.raises(ValueError, match="pointmap"):
            estimate_focal_weiszfeld(np.zeros((4, 4)))
        with pytest.raises(ValueError, match="mask"):
            estimate_focal_weiszfeld(scene.pts3d_cam(0), mask=np.ones((3, 3), bool))
        with pytest.raises(ValueError, match="no pixel"):
            estimate_focal_weiszfeld(-np.ones((4, 4, 3)))


class TestSolvePnP:
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_recovers_pose_with_outliers(self, scene, backend):
        rng = np.random.default_rng(1)
        pts_world = scene.pts3d[0].reshape(-1, 3)[rng.choice(96 * 128, 300, replace=False)].astype(np.float64)
        xy, _ = scene.project(1, pts_world)
        xy = xy + rng.normal(scale=0.3, size=xy.shape)
        outliers = rng.random(300) < 0.25
        xy[outliers] = rng.uniform([0, 0], [128, 96], size=(int(outliers.sum()), 2))
        world2cam, inliers, used = solve_pnp_ransac(xy, pts_world, scene.K[1], (128, 96), thresh=3.0,
                                                    backend=backend)
        assert used == backend
        gt = np.linalg.inv(scene.cam2world[1])
        assert float(rotation_angle_deg(world2cam, gt)) < 0.3
        np.testing.assert_allclose(world2cam[:3, 3], gt[:3, 3], atol=0.03)
        # all true inliers found, few outliers accepted
        assert inliers[~outliers].mean() > 0.97 and inliers[outliers].mean() < 0.1

    @needs_solver
    def test_bad_input(self, scene):
        pts3d, pts2d = np.ones((10, 3)), np.ones((10, 2))
        with pytest.raises(ValueError, match="pts2d must be"):
            solve_pnp_ransac(pts2d[:, :1], pts3d, scene.K[0], (128, 96))
        with pytest.raises(RelativePoseError, match="at least 4"):
            solve_pnp_ransac(pts2d[:3], pts3d[:3], scene.K[0], (128, 96))
        with pytest.raises(ValueError, match="K must be"):
            solve_pnp_ransac(pts2d, pts3d, np.eye(2), (128, 96))
        with pytest.raises(ValueError, match="image_size"):
            solve_pnp_ransac(pts2d, pts3d, scene.K[0], 128)
        with pytest.raises(ValueError, match="thresh"):
            solve_pnp_ransac(pts2d, pts3d, scene.K[0], (128, 96), thresh=0)
        with pytest.raises(ValueError, match="finite"):
            solve_pnp_ransac(pts2d * np.nan, pts3d, scene.K[0], (128, 96))
        with pytest.raises(ValueError, match="backend"):
            solve_pnp_ransac(pts2d, pts3d, scene.K[0], (128, 96), backend="colmap")

    def test_missing_backends(self, monkeypatch):
        import mast3r.relpose as relpose

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "poselib" else real(name, *a))
        if HAS_CV2:
            assert relpose._pick_backend("auto") == "cv2"
        with pytest.raises(ImportError, match="pip install poselib"):
            relpose._pick_backend("poselib")
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name in ("poselib", "cv2") else real(name, *a))
        with pytest.raises(ImportError, match="poselib.*OpenCV"):
            relpose._pick_backend("auto")


# ============================================================================================
# end to end with the oracle
# ============================================================================================
class TestRelativePoseOracle:
    @pytest.mark.parametrize("pair,backend", [
        pytest.param((0, 1), "poselib", marks=pytest.mark.skipif(not HAS_POSELIB, reason="poselib not installed")),
        pytest.param((0, 2), "cv2", marks=pytest.mark.skipif(not HAS_CV2, reason="opencv not installed"))])
    def test_recovers_metric_pose(self, scene, oracle, backend, pair):
        i, j = pair
        result = relative_pose(scene.images[i], scene.images[j], oracle, size=128, subsample=4, backend=backend)
        rot, tdir, tnorm = _errors(result, scene, i, j)
        print(f"pair {pair} {backend}: rot {rot:.3f} deg, t dir {tdir:.3f} deg, |t| {100 * tnorm:+.2f} %, "
              f"{result.num_inliers}/{result.num_matches} inliers")
        assert rot < 0.5 and tdir < 1.0 and abs(tnorm) < 0.01
        assert result.backend == backend and result.K_estimated == (True, True)
        # estimated intrinsics: exact focal, principal point at the centre
        np.testing.assert_allclose(result.K1, scene.K[i], rtol=1e-4)
        np.testing.assert_allclose(result.K2, scene.K[j], rtol=1e-4)
        # shapes and consistency of the result
        n = result.num_matches
        assert n >= 50 and result.matches.shape == (n, 4) and result.inliers.shape == (n,)
        assert result.num_inliers == int(result.inliers.sum()) > 0.9 * n
        assert result.pts3d_cam1.shape == (n, 3)
        np.testing.assert_allclose(result.cam2_to_cam1 @ result.cam1_to_cam2, np.eye(4), atol=1e-9)
        np.testing.assert_array_equal(result.cam2_to_cam1[:3, :3], result.R)
        # matches are true correspondences (original pixels)
        true_xy, _ = scene.correspondences(i, j)
        x1, y1 = result.xy1.round().astype(int).T
        err = np.linalg.norm(true_xy[y1, x1] - result.xy2, axis=1)
        assert np.mean(err[result.inliers] < 1.0) > 0.95

    def test_given_intrinsics_in_original_pixels_are_used(self, scene, oracle):
        # network input 64x48 from the 128x96 images; K given at 128x96
        good = relative_pose(scene.images[0], scene.images[1], oracle, scene.K[0], scene.K[1], size=64,
                             subsample=2)
        assert good.K_estimated == (False, False)
        np.testing.assert_array_equal(good.K1, scene.K[0])
        np.testing.assert_array_equal(good.K2, scene.K[1])
        rot, tdir, tnorm = _errors(good, scene, 0, 1)
        assert rot < 0.5 and tdir < 1.0 and abs(tnorm) < 0.02
        # matches are reported in original pixels: inside the 128x96 image, true correspondences up to ~2 px
        assert good.matches[:, [0, 2]].max() <= 127.5 and good.matches[:, [1, 3]].max() <= 95.5
        true_xy, _ = scene.correspondences(0, 1)
        x1, y1 = good.xy1.round().astype(int).T
        assert np.median(np.linalg.norm(true_xy[y1, x1] - good.xy2, axis=1)) < 1.5
        # a wrong K2 (focal 40 % too long) is respected, and changes the pose
        K2_bad = scene.K[1].copy()
        K2_bad[0, 0] *= 1.4
        K2_bad[1, 1] *= 1.4
        bad = relative_pose(scene.images[0], scene.images[1], oracle, None, K2_bad, size=64, subsample=2,
                            ransac_thresh=50.0)
        assert bad.K_estimated == (True, False)
        np.testing.assert_array_equal(bad.K2, K2_bad)
        assert _errors(bad, scene, 0, 1)[0] > 1.0

    @needs_solver
    def test_paths_and_arrays_agree(self, scene, oracle, tmp_path):
        paths = scene.save_images(tmp_path)
        from_paths = relative_pose(paths[0], paths[2], oracle, size=64, subsample=4)
        from_arrays = relative_pose(scene.images[0], scene.images[2], oracle, size=64, subsample=4)
        np.testing.assert_array_equal(from_paths.matches, from_arrays.matches)
        np.testing.assert_allclose(from_paths.cam2_to_cam1, from_arrays.cam2_to_cam1, atol=1e-9)

    @needs_solver
    def test_bad_arguments(self, scene, oracle):
        a, b = scene.images[0], scene.images[1]
        for kwargs, match in [(dict(K1=np.eye(2)), "K1"), (dict(K2="x"), "K2"),
                              (dict(K1=np.diag([-1.0, 1.0, 1.0])), "positive focal"),
                              (dict(K2=np.array([[100.0, 3.0, 60], [0, 100, 40], [0, 0, 1]])), "skew"),
                              (dict(subsample=0), "subsample"), (dict(min_matches=2), "min_matches"),
                              (dict(ransac_thresh=0), "ransac_thresh"), (dict(border=-1), "border"),
                              (dict(backend="colmap"), "backend")]:
            with pytest.raises(ValueError, match=match):
                relative_pose(a, b, oracle, size=128, **kwargs)

    @needs_solver
    def test_too_few_matches(self, scene, oracle):
        with pytest.raises(RelativePoseError, match="too few matches"):
            relative_pose(scene.images[0], scene.images[1], oracle, size=128, subsample=16, min_matches=100_000)

    @needs_solver
    def test_model_without_descriptors(self, scene, oracle):
        class PointsOnly(torch.nn.Module):
            def forward(self, view1, view2):
                pred1, pred2 = oracle(view1, view2)
                return ({"pts3d": pred1["pts3d"], "conf": pred1["conf"]},
                        {"pts3d_in_other_view": pred2["pts3d_in_other_view"], "conf": pred2["conf"]})

        with pytest.raises(ValueError, match="MASt3R model"):
            relative_pose(scene.images[0], scene.images[1], PointsOnly(), size=128)

    def test_missing_file(self, oracle, tmp_path):
        with pytest.raises(FileNotFoundError):
            relative_pose(str(tmp_path / "nope.png"), str(tmp_path / "nope2.png"), oracle, size=128)


@needs_solver
def test_tiny_checkpoint_runs(tiny_model):
    """A random-weight MASt3R: only checks that the real model runs through and the result is well formed."""
    model = tiny_model("mast3r_tiny_a").eval()
    scene = make_scene(2, 48, 64, seed=3)
    result = relative_pose(scene.images[0], scene.images[1], model, scene.K[0], scene.K[1], size=64, subsample=2,
                           min_matches=4, ransac_thresh=50.0)
    n = result.num_matches
    assert n >= 4 and result.matches.shape == (n, 4) and result.inliers.shape == (n,) and result.num_inliers >= 4
    assert result.cam2_to_cam1.shape == (4, 4) and np.isfinite(result.cam2_to_cam1).all()
    np.testing.assert_allclose(result.R @ result.R.T, np.eye(3), atol=1e-6)
    np.testing.assert_array_equal(result.cam2_to_cam1[3], [0, 0, 0, 1])
    assert (result.matches[:, [0, 2]] >= 0).all() and (result.matches[:, [0, 2]] <= 63).all()
    assert (result.matches[:, [1, 3]] >= 0).all() and (result.matches[:, [1, 3]] <= 47).all()
    np.testing.assert_array_equal(result.K2, scene.K[1])
