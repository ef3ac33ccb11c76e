"""Dense global alignment (dust3r.cloud_opt) against synthetic ground truth.

Scenes come from ``dust3r.utils.synthetic`` (exact cameras), predictions from its ``OracleModel`` through the
public pipeline ``make_pairs -> inference -> global_aligner``. Errors are gauge-free (relative poses).
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch

from dust3r.cloud_opt import GlobalAlignerMode, ModularPointCloudOptimizer, PairViewer, global_aligner
from dust3r.cloud_opt.commons import quat_to_rotmat, rotmat_to_quat, weighted_procrustes
from dust3r.cloud_opt.init_im_poses import camera_from_pointmap, spanning_tree_order
from dust3r.image_pairs import make_pairs
from dust3r.inference import inference
from dust3r.post_process import estimate_focal_knowing_depth
from dust3r.utils.synthetic import OracleModel, focal_rel_error, make_scene, pose_errors

ROT_TOL_DEG, TRANS_TOL_DEG, FOCAL_TOL = 0.5, 1.0, 0.01
NITER = 100  # default lr 0.01: Adam's first steps kick every parameter by ~lr, ~100 steps settle it again
FAST = dict(niter=40, lr=0.003)  # for tests about presets / outputs, not about the default schedule


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The problems are tiny: one thread avoids oversubscription on the shared 2-core runners."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def _scene(n: int, seed: int = 0):
    return make_scene(n, seed=seed)


@functools.lru_cache(maxsize=None)
def _output(n: int, graph: str = "complete", noise: float = 0.0, scale_per_pair: bool = False, seed: int = 0):
    scene = _scene(n, seed)
    model = OracleModel(scene, noise_std=noise, scale_per_pair=scale_per_pair)
    pairs = make_pairs(scene.views(), scene_graph=graph, symmetrize=True)
    return inference(pairs, model, "cpu", batch_size=8, verbose=False)


def _fresh(out: dict) -> dict:
    """Independent copy of an inference output (the aligners must not share state between tests)."""
    def copy(x):
        if isinstance(x, torch.Tensor):
            return x.clone()
        if isinstance(x, dict):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, list):
            return [copy(v) for v in x]
        return x
    return copy(out)


def _gt_output(images, edges, conf: float = 5.0) -> dict:
    """An inference-like output built from ground truth: ``images`` = [(world points (H, W, 3), cam2world)]; the
    pairs' values are per-pair lists (as inference returns for images of different sizes)."""
    view1, view2 = {"idx": [], "img": []}, {"idx": [], "img": []}
    pred1, pred2 = {"pts3d": [], "conf": []}, {"pts3d_in_other_view": [], "conf": []}
    for i, j in edges:
        world2cam_i = np.linalg.inv(images[i][1])
        for view, pred, key, img in ((view1, pred1, "pts3d", i), (view2, pred2, "pts3d_in_other_view", j)):
            pts = images[img][0] @ world2cam_i[:3, :3].T + world2cam_i[:3, 3]
            view["idx"].append(img)
            view["img"].append(torch.zeros(3, *pts.shape[:2]))
            pred[key].append(torch.tensor(pts, dtype=torch.float32))
            pred["conf"].append(torch.full(pts.shape[:2], conf))
    return dict(view1=view1, view2=view2, pred1=pred1, pred2=pred2)


def _align(n, graph="complete", noise=0.0, mode=GlobalAlignerMode.PointCloudOptimizer, init="mst", niter=NITER,
           scale_per_pair=False, lr=0.01, **kw):
    torch.manual_seed(0)
    scene = _scene(n)
    aligner = global_aligner(_fresh(_output(n, graph, noise, scale_per_pair)), "cpu", mode=mode, verbose=False, **kw)
    loss = aligner.compute_global_alignment(init=init, niter=niter, schedule="cosine", lr=lr)
    return scene, aligner, loss


def _errors(scene, aligner):
    err = pose_errors(aligner.get_im_poses().detach().numpy(), scene.cam2world)
    err["focal"] = focal_rel_error(aligner.get_focals().detach().numpy(), scene.K)
    return err


def _assert_accurate(err, rot=ROT_TOL_DEG, trans=TRANS_TOL_DEG, focal=FOCAL_TOL):
    assert err["rot_deg"] < rot, err
    assert err["trans_dir_deg"] < trans, err
    assert err["focal"] < focal, err


# ================================================================================================ accuracy
class TestGlobalAlignment:
    @pytest.mark.parametrize("graph", ["complete", "swin-2"])
    @pytest.mark.parametrize("n", [2, 3, 5, 10])
    def test_recovers_cameras(self, n, graph):
        scene, aligner, loss = _align(n, graph)
        assert np.isfinite(loss) and loss < 0.01
        _assert_accurate(_errors(scene, aligner))

    def test_mst_init_is_exact_on_exact_predictions(self):
        scene, aligner, loss = _align(5, "swin-2", niter=0)
        err = _errors(scene, aligner)
        _assert_accurate(err, rot=1e-3, trans=1e-2, focal=1e-4)
        assert loss < 1e-4

    def test_chunked_init_equals_batched(self, monkeypatch):
        from dust3r.cloud_opt import init_im_poses
        _, whole, _ = _align(4, "complete", niter=0)
        monkeypatch.setattr(init_im_poses, "_CHUNK_PIXELS", 1)  # one edge / image per Procrustes call
        _, chunked, _ = _align(4, "complete", niter=0)
        assert torch.allclose(whole.pw_poses, chunked.pw_poses, atol=1e-6)
        assert torch.allclose(whole.get_im_poses(), chunked.get_im_poses(), atol=1e-6)

    def test_per_pair_scales_as_dust3r(self):
        """DUSt3R pointmaps have an arbitrary scale per pair: the pairwise similarities absorb it."""
        scene, aligner, loss = _align(4, "complete", scale_per_pair=True)
        _assert_accurate(_errors(scene, aligner))
        scales = aligner.get_pw_scale().detach()
        assert float(scales.max() / scales.min()) > 1.5  # the per-pair scales really differ
        assert float(scales.log().mean().exp()) == pytest.approx(aligner.base_scale, rel=1e-3)

    def test_world_pointmaps_match_ground_truth(self):
        scene, aligner, _ = _align(3, "complete")
        est = aligner.get_im_poses().detach().numpy().astype(np.float64)
        # similarity est -> gt from the camera centres (scale from the first two)
        from dust3r.utils.synthetic import align_poses
        s, R, t, _ = align_poses(est, scene.cam2world)
        for n, pts in enumerate(aligner.get_pts3d()):
            mapped = s * pts.detach().numpy().reshape(-1, 3) @ R.T + t
            err = np.linalg.norm(mapped - scene.pts3d[n].reshape(-1, 3), axis=1)
            depth = scene.depth[n].reshape(-1)
            assert np.median(err / depth) < 5e-3

    def test_optimisation_recovers_from_perturbed_init(self):
        torch.manual_seed(0)
        scene = _scene(3)
        aligner = global_aligner(_fresh(_output(3)), "cpu", verbose=False)
        aligner.compute_global_alignment(init="mst", niter=0)
        with torch.no_grad():
            aligner.im_poses[:, :4] += 0.03 * torch.randn(3, 4)
            aligner.im_focals += aligner.focal_break * np.log(1.03)
            aligner.im_depthmaps += 0.05 * torch.randn_like(aligner.im_depthmaps)
        start = float(aligner().detach())
        err_start = _errors(scene, aligner)
        # focals move slowly (focal_break=20: at most ~lr/20 in log-focal per step), hence 200 steps
        loss = aligner.compute_global_alignment(init=None, niter=200, lr=0.01)
        assert loss < 0.1 * start
        assert err_start["rot_deg"] > 1 and err_start["focal"] > 0.025  # the perturbation was real
        _assert_accurate(_errors(scene, aligner))

    def test_linear_schedule_and_l2(self):
        scene, aligner, loss = _align(3, "complete", dist="l2", niter=0)
        aligner.compute_global_alignment(init="mst", schedule="linear", **FAST)
        _assert_accurate(_errors(scene, aligner))

    @pytest.mark.parametrize("noise", [0.01, 0.03])
    def test_noise_degrades_gracefully(self, noise):
        """Relative noise on the pointmaps: bounded errors, and the optimisation improves on the init."""
        scene = _scene(5)
        torch.manual_seed(0)
        aligner = global_aligner(_fresh(_output(5, "complete", noise)), "cpu", verbose=False)
        init_loss = aligner.compute_global_alignment(init="mst", niter=0)
        err_init = _errors(scene, aligner)
        loss = aligner.compute_global_alignment(init=None, niter=NITER)
        err = _errors(scene, aligner)
        # measured (seed 0, 5 views): 1% -> rot 0.04 deg, trans 0.5 deg, focal 0.3%; 3% -> 0.14 deg, 1.3 deg, 0.8%
        bound = noise / 0.01
        assert err["rot_deg"] < 0.2 * bound, err
        assert err["trans_dir_deg"] < 1.0 * bound, err
        assert err["focal"] < 0.005 * bound, err
        assert loss < init_loss
        assert err["rot_deg"] < err_init["rot_deg"]

    def test_modular_optimizer_matches(self):
        scene, aligner, loss = _align(3, "complete", mode=GlobalAlignerMode.ModularPointCloudOptimizer, **FAST)
        assert isinstance(aligner, ModularPointCloudOptimizer)
        _assert_accurate(_errors(scene, aligner))

    def test_modular_fx_and_fy(self):
        scene, aligner, _ = _align(3, "complete", mode="ModularPointCloudOptimizer", fx_and_fy=True, **FAST)
        focals = aligner.get_focals().detach()
        assert focals.shape == (3, 2)
        assert torch.allclose(focals, torch.full_like(focals, float(scene.K[0, 0, 0])), rtol=FOCAL_TOL)
        K = aligner.get_intrinsics()
        assert torch.equal(K[:, 0, 0], focals[:, 0]) and torch.equal(K[:, 1, 1], focals[:, 1])

    def test_mixed_image_sizes(self):
        """Landscape and portrait images (same cameras and room): pairs are padded to the largest area."""
        land, port = make_scene(3, height=48, width=64, seed=0), make_scene(3, height=64, width=48, seed=0)
        per_image = [land, port, land]  # image 1 is portrait
        out = _gt_output([(s.pts3d[n], s.cam2world[n]) for n, s in enumerate(per_image)],
                         [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0)])
        torch.manual_seed(0)
        aligner = global_aligner(out, "cpu", verbose=False)
        assert aligner.imshapes == [(48, 64), (64, 48), (48, 64)]
        aligner.compute_global_alignment(init="mst", **FAST)
        assert [tuple(p.shape) for p in aligner.get_pts3d()] == [(48, 64, 3), (64, 48, 3), (48, 64, 3)]
        err = pose_errors(aligner.get_im_poses().detach().numpy(), land.cam2world)
        focal_gt = np.array([0.9 * 64, 0.9 * 48, 0.9 * 64])
        err["focal"] = float(np.max(np.abs(aligner.get_focals().detach().numpy()[:, 0] / focal_gt - 1)))
        _assert_accurate(err)
        assert aligner.get_principal_points()[1].tolist() == [23.5, 31.5]

    def test_batched_loss_equals_per_pair_loop(self):
        _, aligner, _ = _align(3, "swin-2", niter=5, allow_pw_adaptors=True)
        with torch.no_grad():
            aligner.pw_adaptors.normal_(0, 1)
            pts = aligner.get_pts3d()
            pw = aligner.get_pw_poses()
            adapt = aligner.get_adaptors()
            area_i, area_j = 0, 0
            li_sum, lj_sum = 0.0, 0.0
            for e, (i, j) in enumerate(aligner.edges):
                name = f"{i}_{j}"
                for img, pred, conf in ((i, aligner.pred_i[name], aligner.conf_i[name]),
                                        (j, aligner.pred_j[name], aligner.conf_j[name])):
                    aligned = (adapt[e] * pred) @ pw[e, :3, :3].T + pw[e, :3, 3]
                    d = ((pts[img] - aligned).norm(dim=-1) * conf.log()).sum()
                    if img == i:
                        li_sum, area_i = li_sum + d, area_i + pred.shape[0] * pred.shape[1]
                    else:
                        lj_sum, area_j = lj_sum + d, area_j + pred.shape[0] * pred.shape[1]
            expected = li_sum / area_i + lj_sum / area_j
            loss, details = aligner(ret_details=True)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
        assert details.shape == (3, 3) and float(details[0, 0]) == -1


# ================================================================================================ known values
MODES = [GlobalAlignerMode.PointCloudOptimizer, GlobalAlignerMode.ModularPointCloudOptimizer]


class TestPresets:
    @pytest.mark.parametrize("mode", MODES)
    def test_known_poses_hold_and_focals_are_optimised(self, mode):
        scene = _scene(4)
        torch.manual_seed(0)
        aligner = global_aligner(_fresh(_output(4)), "cpu", mode=mode, verbose=False)
        known = torch.tensor(scene.cam2world, dtype=torch.float32)
        aligner.preset_pose(known)
        aligner.compute_global_alignment(init="known_poses", niter=0)
        focal_init = aligner.get_focals().detach().clone()
        aligner.compute_global_alignment(init=None, **FAST)
        assert torch.equal(aligner.get_im_poses().detach(), known)
        assert not torch.equal(aligner.get_focals().detach(), focal_init)  # optimised
        assert focal_rel_error(aligner.get_focals().detach().numpy(), scene.K) < FOCAL_TOL
        # metric world: the depth maps are the true ones
        for n, depth in enumerate(aligner.get_depthmaps()):
            rel = np.abs(depth.detach().numpy() / scene.depth[n] - 1)
            assert np.median(rel) < 5e-3

    @pytest.mark.parametrize("mode", MODES)
    def test_partial_known_poses_with_mst(self, mode):
        scene = _scene(4)
        torch.manual_seed(0)
        aligner = global_aligner(_fresh(_output(4)), "cpu", mode=mode, verbose=False)
        known = torch.tensor(scene.cam2world[[0, 2]], dtype=torch.float32)
        aligner.preset_pose(known, pose_msk=[0, 2])
        assert not aligner.norm_pw_scale
        aligner.compute_global_alignment(init="mst", **FAST)
        poses = aligner.get_im_poses().detach()
        assert torch.equal(poses[[0, 2]], known)
        # the other cameras are optimised and land on the truth, in the (metric) world of the known ones
        centre_err = (poses[[1, 3], :3, 3].double() - torch.from_numpy(scene.cam2world[[1, 3], :3, 3])).norm(dim=-1)
        assert float(centre_err.max()) < 0.02
        _assert_accurate(_errors(scene, aligner))

    def test_single_known_pose(self):
        scene = _scene(3)
        aligner = global_aligner(_fresh(_output(3)), "cpu", verbose=False)
        known = torch.tensor(scene.cam2world[1], dtype=torch.float32)
        aligner.preset_pose(known, pose_msk=1)
        aligner.compute_global_alignment(init="mst", **FAST)
        assert torch.equal(aligner.get_im_poses()[1].detach(), known)
        _assert_accurate(_errors(scene, aligner))

    @pytest.mark.parametrize("mode", MODES)
    def test_known_focals_hold_others_optimised(self, mode):
        torch.manual_seed(0)
        aligner = global_aligner(_fresh(_output(3)), "cpu", mode=mode, verbose=False)
        preset = [50.0, 61.0]  # deliberately not the truth (57.6): they must still hold
        aligner.preset_focal(preset, msk=np.array([True, False, True]))
        aligner.compute_global_alignment(init="mst", niter=0)
        focal_init = aligner.get_focals().detach().clone()
        poses_init = aligner.get_im_poses().detach().clone()
        aligner.compute_global_alignment(init=None, **FAST)
        focals = aligner.get_focals().detach()
        assert focals[0].item() == 50.0 and focals[2].item() == 61.0
        assert aligner.get_known_focal_mask().tolist() == [True, False, True]
        assert focals[1].item() != focal_init[1].item()  # optimised
        assert not torch.equal(aligner.get_im_poses().detach(), poses_init)

    @pytest.mark.parametrize("mode", MODES)
    def test_known_principal_points_hold(self, mode):
        scene = _scene(3)
        torch.manual_seed(0)
        aligner = global_aligner(_fresh(_output(3)), "cpu", mode=mode, optimize_pp=True, verbose=False)
        aligner.preset_principal_point([(31.5, 23.5)], msk=[1])
        default_pp = aligner.get_principal_points().detach().clone()
        aligner.compute_global_alignment(init="mst", **FAST)
        pp = aligner.get_principal_points().detach()
        assert pp[1].tolist() == [31.5, 23.5]
        assert not torch.equal(pp[[0, 2]], default_pp[[0, 2]])  # optimised (optimize_pp=True)
        assert torch.allclose(pp, torch.tensor(scene.K[:, :2, 2], dtype=torch.float32), atol=0.5)
        _assert_accurate(_errors(scene, aligner))

    def test_all_known_intrinsics_and_poses(self):
        scene = _scene(3)
        aligner = global_aligner(_fresh(_output(3)), "cpu", verbose=False)
        K = torch.tensor(scene.K, dtype=torch.float32)
        aligner.preset_intrinsics(K)
        aligner.preset_pose(torch.tensor(scene.cam2world, dtype=torch.float32))
        names = [n for n, p in aligner.named_parameters() if p.requires_grad]
        assert "im_poses" not in names and "im_focals" not in names and "im_depthmaps" in names
        aligner.compute_global_alignment(init="known_poses", niter=30)
        assert torch.equal(aligner.get_intrinsics(), K)

    def test_intrinsics_in_original_pixels(self, tmp_path):
        """Images rendered at 128x96, loaded at 64x48: K given in original pixels is converted on the way in."""
        from dust3r.utils.image import intrinsics_from_original, load_images
        big = make_scene(2, height=96, width=128, seed=0)
        views = load_images(big.save_images(tmp_path), size=64, verbose=False)
        assert tuple(views[0]["true_shape"][0]) == (48, 64)
        out = inference(make_pairs(views, scene_graph="complete", symmetrize=True), OracleModel(big), "cpu",
                        verbose=False)
        aligner = global_aligner(out, "cpu", verbose=False)
        assert aligner.views_meta[0] is not None and tuple(aligner.views_meta[1]["orig_shape"][0]) == (96, 128)
        aligner.preset_intrinsics(list(big.K), original=True)
        expected = torch.tensor(np.stack([intrinsics_from_original(big.K[n], views[n]) for n in range(2)]),
                                dtype=torch.float32)
        aligner.compute_global_alignment(init="mst", niter=20)
        assert torch.equal(aligner.get_intrinsics(), expected)
        assert float(expected[0, 0, 0]) == pytest.approx(0.9 * 64)  # focal halves with the image
        assert expected[0, :2, 2].tolist() == pytest.approx([31.5, 23.5])

    def test_preset_errors(self):
        aligner = global_aligner(_fresh(_output(3)), "cpu", verbose=False)
        with pytest.raises(ValueError, match="2 known poses given for 3"):
            aligner.preset_pose(torch.eye(4).repeat(2, 1, 1))
        with pytest.raises(ValueError, match="rigid"):
            aligner.preset_pose(2 * torch.eye(4), pose_msk=0)
        with pytest.raises(ValueError, match="out of range"):
            aligner.preset_focal([50.0], msk=[7])
        with pytest.raises(ValueError, match="positive"):
            aligner.preset_focal([-5.0], msk=[0])
        with pytest.raises(ValueError, match="boolean mask has 2 entries"):
            aligner.preset_principal_point([(1.0, 2.0)], msk=np.array([True, False]))
        with pytest.raises(ValueError, match="not finite"):
            aligner.preset_focal([float("nan")], msk=0)
        with pytest.raises(ValueError, match="needs every pose preset"):
            aligner.compute_global_alignment(init="known_poses", niter=1)
        out = _fresh(_output(3))
        for side in ("view1", "view2"):
            for key in ("orig_shape", "resized_shape", "crop_offset"):
                out[side].pop(key, None)
        bare = global_aligner(out, "cpu", verbose=False)
        assert bare.views_meta == [None] * 3
        with pytest.raises(ValueError, match="resize metadata"):
            bare.preset_intrinsics([np.eye(3)], msk=0, original=True)


# ================================================================================================ pair viewer
class TestPairViewer:
    def test_two_views(self):
        scene = _scene(2)
        viewer = global_aligner(_fresh(_output(2)), "cpu", mode=GlobalAlignerMode.PairViewer, verbose=False)
        assert isinstance(viewer, PairViewer)
        assert np.isnan(viewer.compute_global_alignment(init="mst", niter=10))
        _assert_accurate(_errors(scene, viewer), rot=1e-3, trans=1e-2)
        assert viewer.get_focals().shape == (2, 1)
        assert any(torch.equal(p, torch.eye(4)) for p in viewer.get_im_poses())
        # its pointmaps are the (consistent) predictions
        pts = viewer.get_pts3d()
        assert torch.allclose(pts[0], viewer.pred_i["0_1"], atol=1e-3) or \
            torch.allclose(pts[1], viewer.pred_i["1_0"], atol=1e-3)
        assert all(d.shape == (48, 64) for d in viewer.get_depthmaps())

    def test_same_focals(self):
        viewer = global_aligner(_fresh(_output(2)), "cpu", mode="PairViewer", same_focals=True, verbose=False)
        f = viewer.get_focals()
        assert f[0] == f[1]

    def test_needs_one_symmetric_pair(self):
        with pytest.raises(ValueError, match="exactly one symmetrised pair"):
            global_aligner(_fresh(_output(3)), "cpu", mode=GlobalAlignerMode.PairViewer)
        viewer = global_aligner(_fresh(_output(2)), "cpu", mode=GlobalAlignerMode.PairViewer, verbose=False)
        with pytest.raises(NotImplementedError, match="PointCloudOptimizer"):
            viewer.preset_focal([50.0, 50.0])


# ================================================================================================ outputs
class TestSceneOutputs:
    def test_contract_b(self):
        scene, aligner, _ = _align(3, "complete", niter=5)
        N, H, W = 3, 48, 64
        assert len(aligner.imgs) == N and aligner.imgs[0].shape == (H, W, 3) and aligner.imgs[0].dtype == np.float32
        assert np.allclose(aligner.imgs[1], scene.images[1] / 255.0, atol=1e-6)
        assert aligner.get_im_poses().shape == (N, 4, 4)
        assert aligner.get_focals().shape == (N, 1)
        assert aligner.get_principal_points().shape == (N, 2)
        K = aligner.get_intrinsics()
        assert K.shape == (N, 3, 3) and torch.equal(K[:, 0, 0], aligner.get_focals()[:, 0])
        assert aligner.get_principal_points()[0].tolist() == [(W - 1) / 2, (H - 1) / 2]
        assert [d.shape for d in aligner.get_depthmaps()] == [(H, W)] * N
        assert [p.shape for p in aligner.get_pts3d()] == [(H, W, 3)] * N
        masks = aligner.get_masks()
        assert all(m.dtype == torch.bool and m.shape == (H, W) and bool(m.all()) for m in masks)  # conf 10 > 3
        aligner.min_conf_thr = 20
        assert not any(bool(m.any()) for m in aligner.get_masks())
        assert torch.allclose(aligner.get_conf()[0], torch.full((H, W), float(np.log(10.0))))
        assert torch.allclose(aligner.get_conf("id")[0], torch.full((H, W), 10.0))
        meta = aligner.views_meta  # synthetic views carry identity resize metadata
        assert len(meta) == N and meta[2]["orig_shape"].tolist() == [[H, W]] and meta[2]["instance"] == "2"
        assert meta[1]["filepath"] is None and meta[0]["crop_offset"].tolist() == [[0, 0]]

    def test_clean_pointcloud_lowers_occluded_points(self):
        _, aligner, _ = _align(3, "complete", niter=0)
        clean = aligner.clean_pointcloud()
        assert clean is not aligner
        # consistent reconstruction: (almost) nothing is in front of another view's surface
        kept = [float((c > 0).float().mean()) for c in clean.im_conf]
        assert min(kept) > 0.97
        # pull a pixel of image 0 towards its camera and lower its confidence: it now floats in front of the
        # surfaces the other views see, and gets cleaned
        with torch.no_grad():
            depth = aligner.im_depthmaps.data
            depth[0, 24 * 64 + 32] -= np.log(2.0)
            aligner.im_conf[0].data[24, 32] = 2.0
        clean = aligner.clean_pointcloud()
        assert float(clean.im_conf[0][24, 32]) == 0.0
        assert float(aligner.im_conf[0][24, 32]) == 2.0  # the original is untouched

    def test_trimesh_export(self):
        trimesh = pytest.importorskip("trimesh")
        _, aligner, _ = _align(2, "complete", niter=0)
        tm = aligner.to_trimesh()
        clouds = [g for g in tm.geometry.values() if isinstance(g, trimesh.PointCloud)]
        assert len(clouds) == 1 and len(clouds[0].vertices) == 2 * 48 * 64


# ================================================================================================ real models
class TestCheckpoints:
    def test_tiny_dust3r_end_to_end(self, tiny_model):
        model = tiny_model("dust3r_tiny_dpt")
        views = _scene(3).views()
        out = inference(make_pairs(views, scene_graph="complete", symmetrize=True), model, "cpu", verbose=False)
        aligner = global_aligner(out, "cpu", verbose=False)
        loss = aligner.compute_global_alignment(init="mst", niter=10)
        assert np.isfinite(loss)
        assert torch.isfinite(aligner.get_im_poses()).all() and torch.isfinite(aligner.get_focals()).all()
        assert all(torch.isfinite(p).all() for p in aligner.get_pts3d())
        viewer = global_aligner(inference(make_pairs(views[:2], symmetrize=True), model, "cpu", verbose=False),
                                "cpu", mode=GlobalAlignerMode.PairViewer, verbose=False)
        assert torch.isfinite(viewer.get_im_poses()).all()

    def test_tiny_mast3r_outputs(self, tiny_model):
        model = tiny_model("mast3r_tiny_a")
        out = inference(make_pairs(_scene(2).views(), symmetrize=True), model, "cpu", verbose=False)
        assert "desc" in out["pred1"]  # extra MASt3R outputs are ignored
        aligner = global_aligner(out, "cpu", verbose=False)
        assert np.isfinite(aligner.compute_global_alignment(init="mst", niter=5))


# ================================================================================================ robustness
def _edited(n=3, graph="complete"):
    return _fresh(_output(n, graph))


def _select(out: dict, keep) -> dict:
    """The pairs ``keep`` of an inference output."""
    def sel(v):
        if isinstance(v, torch.Tensor):
            return v[keep]
        if isinstance(v, list):
            return [v[m] for m in keep]
        return v
    return {side: {k: sel(v) for k, v in out[side].items()} for side in ("view1", "view2", "pred1", "pred2")}


class TestErrors:
    def test_nan_prediction_names_the_pair(self):
        out = _edited()
        out["pred2"]["pts3d_in_other_view"][4, 3, 5, 1] = float("nan")
        i, j = out["view1"]["idx"][4], out["view2"]["idx"][4]
        with pytest.raises(ValueError, match=rf"pair #4 \(images {i} -> {j}\).*NaN/inf"):
            global_aligner(out, "cpu")

    def test_inf_confidence(self):
        out = _edited()
        out["pred1"]["conf"][0, 0, 0] = float("inf")
        with pytest.raises(ValueError, match=r"pred1\['conf'\] of pair #0"):
            global_aligner(out, "cpu")

    def test_disconnected_graph_lists_components(self):
        out = _edited(4)
        keep = [k for k, (i, j) in enumerate(zip(out["view1"]["idx"], out["view2"]["idx"]))
                if {i, j} in ({0, 1}, {2, 3})]
        sub = _select(out, keep)
        with pytest.raises(ValueError, match=r"not connected: 2 components \[\[0, 1\], \[2, 3\]\]"):
            global_aligner(sub, "cpu")

    def test_gap_in_image_indices(self):
        out = _edited(2)
        out["view1"]["idx"] = [0, 2]
        out["view2"]["idx"] = [2, 0]
        with pytest.raises(ValueError, match=r"images \[1\] appear in no pair"):
            global_aligner(out, "cpu")

    def test_missing_keys(self):
        out = _edited(2)
        out["pred2"]["pts3d"] = out["pred2"].pop("pts3d_in_other_view")
        with pytest.raises(ValueError, match="pts3d_in_other_view"):
            global_aligner(out, "cpu")
        with pytest.raises(ValueError, match="lacks"):
            global_aligner({"view1": {}}, "cpu")
        with pytest.raises(ValueError, match="unknown global aligner mode"):
            global_aligner(_edited(2), "cpu", mode="Nope")

    def test_bad_arguments(self):
        aligner = global_aligner(_edited(2), "cpu", verbose=False)
        with pytest.raises(ValueError, match="init="):
            aligner.compute_global_alignment(init="pnp")
        with pytest.raises(ValueError, match="schedule"):
            aligner.compute_global_alignment(init=None, schedule="step")
        with pytest.raises(ValueError, match="dist"):
            global_aligner(_edited(2), "cpu", dist="l3")

    @pytest.mark.parametrize("row", [0, 1])
    def test_single_directed_pair(self, row):
        """One pair, one direction: the second image is never first (its camera comes from the linear DLT)."""
        scene = _scene(2)
        out = _edited(2)
        one = _select(out, [row])
        aligner = global_aligner(one, "cpu", verbose=False)
        assert len(aligner.edges) == 1 and not aligner.is_symmetrized
        aligner.compute_global_alignment(init="mst", **FAST)
        _assert_accurate(_errors(scene, aligner))

    def test_zero_confidences_get_no_weight(self, caplog):
        out = _edited(2)
        out["pred1"]["conf"][0, :10] = 0.0  # log(0) = -inf would poison the loss
        with caplog.at_level(logging.WARNING, logger="dust3r.cloud_opt.base_opt"):
            aligner = global_aligner(out, "cpu", verbose=False)
        assert "confidences <= 0 get weight 0" in caplog.text
        assert float(aligner._weight_i[0, :640].abs().sum()) == 0.0
        assert np.isfinite(aligner.compute_global_alignment(init="mst", niter=5))

    def test_degenerate_confidences(self, caplog):
        scene = _scene(3)
        out = _edited(3)
        for side in ("pred1", "pred2"):
            out[side]["conf"] = torch.ones_like(out[side]["conf"])  # log(1) = 0: no weight anywhere
        with caplog.at_level(logging.WARNING, logger="dust3r.cloud_opt.base_opt"):
            aligner = global_aligner(out, "cpu", verbose=False)
        assert "degenerate confidence" in caplog.text
        loss = aligner.compute_global_alignment(init="mst", **FAST)
        assert np.isfinite(loss)
        assert not any(bool(m.any()) for m in aligner.get_masks())  # nothing above min_conf_thr
        _assert_accurate(_errors(scene, aligner))


# ================================================================================================ building blocks
class TestBuildingBlocks:
    def test_quaternion_roundtrip(self):
        torch.manual_seed(0)
        q = torch.nn.functional.normalize(torch.randn(100, 4, dtype=torch.float64), dim=-1)
        q = torch.where(q[:, 3:] < 0, -q, q)
        R = quat_to_rotmat(q)
        assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(100, 3, 3), atol=1e-12)
        assert torch.allclose(rotmat_to_quat(R), q, atol=1e-10)
        # 180 degree rotations (w = 0) stay well defined
        R180 = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
        assert torch.allclose(quat_to_rotmat(rotmat_to_quat(R180)), R180, atol=1e-12)

    def test_weighted_procrustes(self):
        torch.manual_seed(0)
        src = torch.randn(2, 50, 3, dtype=torch.float64)
        R = quat_to_rotmat(torch.randn(2, 4, dtype=torch.float64))
        dst = 2.5 * src @ R.transpose(1, 2) + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
        w = torch.rand(2, 50, dtype=torch.float64)
        dst[:, :5] += 100  # outliers with zero weight are ignored
        w[:, :5] = 0
        s, R_est, t = weighted_procrustes(src, dst, w)
        assert torch.allclose(s, torch.full((2,), 2.5, dtype=torch.float64))
        assert torch.allclose(R_est, R, atol=1e-10)

    def test_spanning_tree_order(self):
        edges = [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 3)]
        scores = [5.0, 1.0, 4.0, 4.5, 0.5, 3.0]
        chain = spanning_tree_order(4, edges, scores)
        assert chain == [0, 3, 5]  # best edge first, then the best edges touching the placed images

    def test_camera_from_pointmap(self):
        scene = _scene(2)
        world = torch.from_numpy(scene.pts3d[1].astype(np.float64))
        cam2world, focal = camera_from_pointmap(world, torch.ones(48, 64), torch.tensor([31.5, 23.5]))
        assert focal == pytest.approx(57.6, rel=1e-4)
        assert torch.allclose(cam2world, torch.from_numpy(scene.cam2world[1]), atol=1e-4)
        # known focal: calibrated DLT
        cam2world, focal = camera_from_pointmap(world, torch.ones(48, 64), torch.tensor([31.5, 23.5]), focal=57.6)
        assert focal == 57.6 and torch.allclose(cam2world, torch.from_numpy(scene.cam2world[1]), atol=1e-4)
        # too few usable points
        assert camera_from_pointmap(world[:1, :5], torch.ones(1, 5), torch.tensor([2.0, 0.0])) is None

    @pytest.mark.parametrize("mode", ["median", "weiszfeld"])
    def test_estimate_focal_knowing_depth(self, mode):
        scene = _scene(2)
        pts = torch.from_numpy(np.stack([scene.pts3d_cam(n) for n in range(2)])).float()
        pp = torch.tensor([[31.5, 23.5]] * 2)
        focal = estimate_focal_knowing_depth(pts, pp, focal_mode=mode)
        assert focal.shape == (2,)
        assert torch.allclose(focal, torch.full((2,), 57.6), rtol=1e-4)
        # the clip range: a huge focal is capped at 3.5 * focal_base
        flat = pts.clone()
        flat[..., :2] *= 1e-3
        assert float(estimate_focal_knowing_depth(flat, pp, focal_mode=mode)[0]) == pytest.approx(
            3.5 * 64 / (2 * np.tan(np.deg2rad(30))), rel=1e-5)
        with pytest.raises(ValueError, match="focal_mode"):
            estimate_focal_knowing_depth(pts, pp, focal_mode="mean")
