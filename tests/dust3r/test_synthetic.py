"""Tests of dust3r.synthetic: the scenes and the renderer's geometry, the oracle model, the old import path."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dust3r.synthetic import OracleModel, SyntheticScene, look_at, make_scene
from dust3r.utils.pose_metrics import rotation_angle_deg


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return make_scene(5, 48, 64, seed=0)


@pytest.fixture(scope="module")
def oracle(scene) -> OracleModel:
    return OracleModel(scene)


def _pixel_grid(H, W):
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return np.stack([xs, ys], -1)


# ============================================================================================
# renderer
# ============================================================================================
class TestMakeScene:
    def test_shapes_and_dtypes(self, scene):
        N, H, W = 5, 48, 64
        assert scene.images.shape == (N, H, W, 3) and scene.images.dtype == np.uint8
        assert scene.K.shape == (N, 3, 3) and scene.K.dtype == np.float64
        assert scene.cam2world.shape == (N, 4, 4) and scene.cam2world.dtype == np.float64
        assert scene.depth.shape == (N, H, W) and scene.depth.dtype == np.float32
        assert scene.pts3d.shape == (N, H, W, 3) and scene.pts3d.dtype == np.float32
        np.testing.assert_allclose(scene.K[0], [[0.9 * W, 0, (W - 1) / 2], [0, 0.9 * W, (H - 1) / 2], [0, 0, 1]])
        # every pixel hits a surface at a metric depth of a few metres
        assert np.isfinite(scene.depth).all() and scene.depth.min() > 1.0 and scene.depth.max() < 10.0
        # rotations are orthonormal, right-handed
        R = scene.cam2world[:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)

    def test_projection_gives_pixel_centres(self, scene):
        grid = _pixel_grid(scene.height, scene.width)
        for i in range(scene.n_views):
            xy, z = scene.project(i, scene.pts3d[i])
            np.testing.assert_allclose(xy, grid, atol=2e-3)  # float32 storage of pts3d
            np.testing.assert_allclose(z, scene.depth[i], rtol=1e-5)
            np.testing.assert_allclose(scene.pts3d_cam(i)[..., 2], scene.depth[i], rtol=1e-5)

    def test_depth_consistency_between_views(self, scene):
        for i, j in [(0, 1), (1, 2), (3, 4), (0, 2)]:
            xy, visible = scene.correspondences(i, j)
            assert visible.mean() > 0.6, f"views {i}, {j} overlap too little: {visible.mean():.2f}"
            # a visible point projects onto the surface view j sees there: same world point at that pixel
            c = np.rint(xy[visible]).astype(int)
            seen = scene.pts3d[j][c[:, 1], c[:, 0]]
            dist = np.linalg.norm(seen - scene.pts3d[i][visible], axis=-1)
            footprint = scene.depth[j][c[:, 1], c[:, 0]] / scene.K[j, 0, 0]
            assert np.median(dist / footprint) < 0.5
            assert np.mean(dist / footprint < 1.5) > 0.97

    def test_views_overlap_and_look_at_the_objects(self, scene):
        # the boxes (surface id > 0) are seen in every view
        assert scene.surface_id is not None
        assert all((scene.surface_id[i] > 0).mean() > 0.05 for i in range(scene.n_views))

    def test_deterministic_and_seeded(self):
        a, b, c = make_scene(3, seed=4), make_scene(3, seed=4), make_scene(3, seed=5)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.cam2world, b.cam2world)
        assert not np.array_equal(a.images, c.images)

    def test_resolution_independent_geometry(self):
        small, big = make_scene(2, 48, 64, seed=1), make_scene(2, 96, 128, seed=1)
        np.testing.assert_allclose(small.cam2world, big.cam2world)
        np.testing.assert_allclose(big.K[:, 0, 0], 2 * small.K[:, 0, 0])

    def test_texture_is_distinctive(self, scene):
        img = scene.images.astype(np.float64)
        # neighbouring pixels differ, yet the texture is not white noise
        dx = np.abs(np.diff(img, axis=2)).mean()
        assert 2.0 < dx < 60.0
        assert img.std() > 30.0

    @pytest.mark.parametrize("layout,baseline", [("orbit", None), ("orbit", 0.5), ("forward", None), ("forward", 0.4)])
    def test_layouts_baseline(self, layout, baseline):
        s = make_scene(4, layout=layout, baseline=baseline)
        expected = baseline if baseline is not None else (0.8 if layout == "orbit" else 0.25)
        steps = np.linalg.norm(np.diff(s.cam2world[:, :3, 3], axis=0), axis=1)
        np.testing.assert_allclose(steps, expected * (1.044 if layout == "forward" else 1.0), rtol=0.25)
        # consecutive views see a lot of the same surface
        for i in range(3):
            assert s.correspondences(i, i + 1)[1].mean() > 0.6

    def test_forward_layout_is_mostly_translation(self):
        s = make_scene(3, layout="forward")
        assert rotation_angle_deg(s.cam2world[0], s.cam2world[2]) < 15.0

    def test_render_speed(self):
        start = time.perf_counter()
        make_scene(10, 48, 64)
        assert time.perf_counter() - start < 2.0  # well under a second when the machine is not shared

    @pytest.mark.parametrize("kwargs,match", [
        (dict(n_views=0), "n_views"), (dict(height=0), "height"), (dict(width=2.5), "width"),
        (dict(layout="spiral"), "layout"), (dict(focal=-1.0), "focal"), (dict(baseline=0.0), "baseline"),
        (dict(baseline=9.0), "baseline"), (dict(n_boxes=7), "n_boxes"), (dict(noise=-0.1), "noise"),
        (dict(layout="forward", n_views=20, baseline=1.0), "forward"),
    ])
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            make_scene(**kwargs)

    def test_look_at(self):
        c2w = look_at([0, -3, 1], [0, 0, 1])
        np.testing.assert_allclose(c2w[:3, 2], [0, 1, 0], atol=1e-12)  # z forward
        np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1], atol=1e-12)  # y down
        with pytest.raises(ValueError, match="coincide"):
            look_at([0, 0, 0], [0, 0, 0])


class TestViewsAndSaving:
    def test_views_like_load_images(self, scene, tmp_path):
        from dust3r.utils.image import load_images

        paths = scene.save_images(tmp_path / "imgs")
        assert [p.rsplit("/", 1)[-1] for p in paths] == scene.names == [f"img_{i:03d}.png" for i in range(5)]
        loaded = load_images(str(tmp_path / "imgs"), size=scene.width, verbose=False)
        views = scene.views()
        assert len(loaded) == len(views) == scene.n_views
        for a, b in zip(loaded, views):
            assert torch.equal(a["img"], b["img"]) and a["img"].shape == (1, 3, scene.height, scene.width)
            assert a["img"].min() >= -1 and a["img"].max() <= 1
            for key in ("true_shape", "orig_shape", "resized_shape", "crop_offset", "resize_scale"):
                np.testing.assert_array_equal(a[key], b[key])
            assert a["idx"] == b["idx"] and a["instance"] == b["instance"]

    def test_views_with_ground_truth(self, scene):
        view = scene.views([2], with_gt=True)[0]
        np.testing.assert_array_equal(view["pts3d"][0].numpy(), scene.pts3d[2])
        np.testing.assert_array_equal(view["depthmap"][0].numpy(), scene.depth[2])
        assert view["valid_mask"].all() and view["valid_mask"].shape == (1, scene.height, scene.width)
        np.testing.assert_allclose(view["camera_pose"][0].numpy(), scene.cam2world[2], atol=1e-6)
        np.testing.assert_allclose(view["camera_intrinsics"][0].numpy(), scene.K[2], atol=1e-5)
        assert "pts3d" not in scene.views([2])[0]

    def test_views_subset_numbered_like_load_images(self, scene):
        views = scene.views([3, 1])
        assert [v["idx"] for v in views] == [0, 1] and [v["instance"] for v in views] == ["0", "1"]
        with pytest.raises(ValueError, match="out of range"):
            scene.views([7])

    def test_save_images_rejects_file(self, scene, tmp_path):
        f = tmp_path / "file.txt"
        f.write_text("x")
        with pytest.raises(ValueError, match="not a directory"):
            scene.save_images(f)


# ============================================================================================
# oracle
# ============================================================================================
def _gt_in_cam(scene, i, j):
    """(H, W, 3) world points of view j in camera i's frame."""
    return scene.pts3d_cam(j, frame=i)


class TestOracle:
    def test_outputs_equal_ground_truth(self, scene, oracle):
        views = scene.views()
        pred1, pred2 = oracle(views[1], views[3])
        assert set(pred1) == {"pts3d", "conf", "desc", "desc_conf"}
        assert set(pred2) == {"pts3d_in_other_view", "conf", "desc", "desc_conf"}
        H, W = scene.height, scene.width
        assert pred1["pts3d"].shape == (1, H, W, 3) and pred1["pts3d"].dtype == torch.float32
        assert pred1["desc"].shape == (1, H, W, 24) and pred1["conf"].shape == (1, H, W)
        np.testing.assert_allclose(pred1["pts3d"][0].numpy(), _gt_in_cam(scene, 1, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pred2["pts3d_in_other_view"][0].numpy(), _gt_in_cam(scene, 1, 3),
                                   rtol=1e-5, atol=1e-5)
        for pred, (a, b) in ((pred1, (1, 3)), (pred2, (3, 1))):
            assert (pred["conf"] > 1).all()
            np.testing.assert_allclose(pred["desc"].norm(dim=-1).numpy(), 1.0, atol=1e-5)
            # desc_conf: high where the other view sees the point, hidden_desc_conf elsewhere
            seen = torch.from_numpy(scene.correspondences(a, b)[1])
            assert 0 < int(seen.sum()) < seen.numel()
            assert (pred["desc_conf"][0][seen] > 1).all()
            assert torch.all(pred["desc_conf"][0][~seen] == oracle.hidden_desc_conf)
        uniform = OracleModel(scene, hidden_desc_conf=None)(views[1], views[3])[0]["desc_conf"]
        assert torch.all(uniform == uniform.max()) and (uniform > 1).all()
        # same 3D point -> same descriptor: view 1's desc in pair (3, 1) is pred2 desc of (1, 3)
        q1, q2 = oracle(views[3], views[1])
        assert torch.equal(q2["desc"], pred1["desc"]) and torch.equal(q1["desc"], pred2["desc"])

    def test_batched_mixed_pairs(self, scene, oracle):
        views = scene.views()
        pairs = [(0, 1), (2, 0), (4, 4), (3, 1)]
        v1 = {"img": torch.cat([views[a]["img"] for a, _ in pairs])}
        v2 = {"img": torch.cat([views[b]["img"] for _, b in pairs])}
        pred1, pred2 = oracle(v1, v2)
        assert pred1["pts3d"].shape[0] == 4
        for k, (a, b) in enumerate(pairs):
            single1, single2 = oracle(views[a], views[b])
            for key in single1:
                assert torch.equal(pred1[key][k], single1[key][0])
            for key in single2:
                assert torch.equal(pred2[key][k], single2[key][0])

    def test_through_inference(self, scene, oracle):
        from dust3r.image_pairs import make_pairs
        from dust3r.inference import inference

        views = scene.views()
        pairs = make_pairs(views, scene_graph="complete", symmetrize=True)
        out = inference(pairs, oracle, "cpu", batch_size=3, verbose=False)
        assert out["pred1"]["pts3d"].shape == (len(pairs), scene.height, scene.width, 3)
        for k, (v1, v2) in enumerate(pairs):
            i, j = v1["idx"], v2["idx"]
            np.testing.assert_allclose(out["pred1"]["pts3d"][k].numpy(), _gt_in_cam(scene, i, i), atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(out["pred2"]["pts3d_in_other_view"][k].numpy(), _gt_in_cam(scene, i, j),
                                       atol=1e-5, rtol=1e-5)

    def test_identification_through_saved_png(self, scene, oracle, tmp_path):
        from dust3r.utils.image import load_images

        scene.save_images(tmp_path)
        loaded = load_images(str(tmp_path), size=scene.width, verbose=False)
        shuffled = [loaded[k] for k in (4, 0, 3)]
        idx = oracle.identify(torch.cat([v["img"] for v in shuffled]))
        assert idx.tolist() == [4, 0, 3]

    def test_identification_through_jpeg(self, scene, oracle, tmp_path):
        import PIL.Image

        from dust3r.utils.image import load_images

        paths = []
        for k in (2, 4):
            paths.append(str(tmp_path / f"v{k}.jpg"))
            PIL.Image.fromarray(scene.images[k]).save(paths[-1], quality=75)
        loaded = load_images(paths, size=scene.width, verbose=False)
        assert oracle.identify(torch.cat([v["img"] for v in loaded])).tolist() == [2, 4]

    def test_resized_input_is_exact(self, tmp_path):
        from dust3r.utils.image import intrinsics_from_original, load_images

        big = make_scene(3, 96, 128, seed=2)
        oracle = OracleModel(big)
        big.save_images(tmp_path)
        views = load_images(str(tmp_path), size=64, verbose=False)  # 128x96 -> 64x48, no crop
        assert views[0]["img"].shape[-2:] == (48, 64)
        pred1, pred2 = oracle(views[2], views[0])
        assert pred1["pts3d"].shape == (1, 48, 64, 3)
        grid = _pixel_grid(48, 64)
        K_net = intrinsics_from_original(big.K[2], views[2])
        pts = pred1["pts3d"][0].double().numpy()
        uv = pts @ K_net.T
        np.testing.assert_allclose(uv[..., :2] / uv[..., 2:], grid, atol=1e-3)
        # view 0's points in camera 2 project into view 0 at its network pixels
        c2w = big.cam2world[2]
        pts_world = pred2["pts3d_in_other_view"][0].double().numpy() @ c2w[:3, :3].T + c2w[:3, 3]
        xy, _ = big.project(0, pts_world)
        np.testing.assert_allclose((xy + 0.5) / 2 - 0.5, grid, atol=1e-3)

    def test_resized_input_nearest_fallback(self):
        import dataclasses

        big = make_scene(2, 96, 128, seed=2)
        bare = dataclasses.replace(big, objects=[])  # no geometry to re-cast: nearest-neighbour resize
        views = big.views()
        small = {"img": torch.nn.functional.interpolate(views[0]["img"], size=(48, 64), mode="area")}
        exact, _ = OracleModel(big)(small, small)
        approx, _ = OracleModel(bare)(small, small)
        gt = big.pts3d_cam(0)
        np.testing.assert_allclose(approx["pts3d"][0].numpy(), gt[1::2, 1::2], atol=1e-5, rtol=1e-5)
        # exact and nearest differ by at most about one render pixel footprint
        diff = np.linalg.norm(exact["pts3d"][0].numpy() - approx["pts3d"][0].numpy(), axis=-1)
        footprint = exact["pts3d"][0, ..., 2].numpy() / big.K[0, 0, 0]
        assert np.median(diff / footprint) < 1.0

    def test_unknown_image_raises(self, scene, oracle):
        other = make_scene(1, seed=99).views()[0]
        with pytest.raises(ValueError, match="match none"):
            oracle(other, scene.views()[0])

    def test_cropped_input_raises(self, scene, oracle):
        img = scene.views()[0]["img"][..., :32, :]
        with pytest.raises(ValueError, match="not a uniform resize"):
            oracle({"img": img}, {"img": img})

    def test_bad_view_raises(self, oracle, scene):
        with pytest.raises(ValueError, match="view dict"):
            oracle({"image": 1}, scene.views()[0])
        v = scene.views()
        with pytest.raises(ValueError, match="batch sizes"):
            oracle({"img": torch.cat([v[0]["img"], v[1]["img"]])}, v[2])

    def test_noise_is_seeded_and_proportional_to_depth(self, scene):
        views = scene.views()
        noisy = OracleModel(scene, noise_std=0.01, seed=3)
        a1, a2 = noisy(views[0], views[2])
        b1, b2 = noisy(views[0], views[2])
        assert torch.equal(a1["pts3d"], b1["pts3d"])
        assert torch.equal(a2["pts3d_in_other_view"], b2["pts3d_in_other_view"])
        gt = _gt_in_cam(scene, 0, 0)
        rel = (a1["pts3d"][0].double().numpy() - gt) / gt[..., 2:3]
        assert 0.008 < rel.std() < 0.012 and abs(rel.mean()) < 1e-3
        c1, _ = OracleModel(scene, noise_std=0.01, seed=4)(views[0], views[2])
        assert not torch.equal(c1["pts3d"], a1["pts3d"])
        clean, _ = OracleModel(scene)(views[0], views[2])
        assert (a1["conf"] > 1).all() and (a1["conf"] < clean["conf"]).all()

    def test_scale_per_pair(self, scene):
        views = scene.views()
        model = OracleModel(scene, scale_per_pair=True, seed=1)
        scales = []
        for i, j in [(0, 1), (1, 0), (2, 4)]:
            p1, p2 = model(views[i], views[j])
            gt1, gt2 = _gt_in_cam(scene, i, i), _gt_in_cam(scene, i, j)
            s = float(np.median(p1["pts3d"][0, ..., 2].double().numpy() / gt1[..., 2]))
            # one scale for the whole pair, both pointmaps
            np.testing.assert_allclose(p1["pts3d"][0].numpy(), s * gt1, atol=1e-4, rtol=1e-5)
            np.testing.assert_allclose(p2["pts3d_in_other_view"][0].numpy(), s * gt2, atol=1e-4, rtol=1e-5)
            assert 0.5 <= s <= 2.0
            again, _ = model(views[i], views[j])
            assert torch.equal(again["pts3d"], p1["pts3d"])
            scales.append(s)
        assert len(set(np.round(scales, 6))) == 3

    def test_options(self, scene):
        v = scene.views()
        p1, p2 = OracleModel(scene, desc_dim=16, two_confs=False)(v[0], v[1])
        assert p1["desc"].shape[-1] == 16 and "desc_conf" not in p1 and "desc_conf" not in p2
        by_idx = OracleModel(scene, lookup="idx")
        q1, _ = by_idx({"img": v[2]["img"], "idx": [2]}, {"img": v[0]["img"], "idx": [0]})
        np.testing.assert_allclose(q1["pts3d"][0].numpy(), _gt_in_cam(scene, 2, 2), atol=1e-5, rtol=1e-5)
        for kwargs, match in [(dict(desc_dim=5), "desc_dim"), (dict(noise_std=-1.0), "noise_std"),
                              (dict(conf=1.0), "conf"), (dict(lookup="name"), "lookup")]:
            with pytest.raises(ValueError, match=match):
                OracleModel(scene, **kwargs)
        with pytest.raises(ValueError, match="SyntheticScene"):
            OracleModel(object())

    def test_model_attributes(self, oracle):
        assert oracle.patch_embed.patch_size == (16, 16)
        assert next(oracle.parameters()).device.type == "cpu"
        assert not hasattr(oracle, "_encode_image")

    def test_reciprocal_matches_are_true_correspondences(self, scene, oracle):
        from mast3r.fast_nn import fast_reciprocal_NNs

        views = scene.views()
        fractions = []
        for i, j in [(0, 1), (1, 2), (2, 3), (1, 3)]:
            pred1, pred2 = oracle(views[i], views[j])
            xy1, xy2 = fast_reciprocal_NNs(pred1["desc"][0], pred2["desc"][0], subsample_or_initxy1=2,
                                           dist="dot", device="cpu")
            assert len(xy1) > 300
            true_xy, _ = scene.correspondences(i, j)
            err = np.linalg.norm(true_xy[xy1[:, 1], xy1[:, 0]] - xy2, axis=1)
            fractions.append(float(np.mean(err <= 1.0)))
        print(f"fraction of reciprocal matches within 1 px of the truth: {np.round(fractions, 3).tolist()}")
        assert min(fractions) > 0.85 and np.mean(fractions) > 0.9


class TestOldImportPath:
    def test_every_name_reexported(self):
        import dust3r.synthetic as new
        import dust3r.utils.pose_metrics as metrics
        import dust3r.utils.synthetic as old
        names = ["SceneBox", "SyntheticScene", "make_scene", "look_at", "OracleModel", "rotation_angle_deg",
                 "translation_direction_error_deg", "align_poses", "pose_errors", "focal_rel_error"]
        assert sorted(old.__all__) == sorted(names)
        for name in names:
            assert getattr(old, name) is getattr(new, name), name
        for name in metrics.__all__:
            assert getattr(old, name) is getattr(metrics, name), name
