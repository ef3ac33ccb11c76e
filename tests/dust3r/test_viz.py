"""Tests of dust3r.viz: sky segmentation (both OpenCV and numpy/scipy paths), mask_sky, mesh helpers."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dust3r.viz import (binary_opening_square, cat_meshes, keep_dominant_components, pts3d_to_trimesh, segment_sky,
                        sky_colour_mask, uint8)

H, W = 48, 64


def _ground(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Brown / green textured ground (red or green dominant, saturated): (h, w, 3) uint8."""
    base = np.array([120, 95, 55], dtype=float)
    tex = rng.normal(0.0, 18.0, size=(h, w, 1)) + rng.normal(0.0, 6.0, size=(h, w, 3))
    stripes = 25 * np.sin(np.arange(w) / 3.0)[None, :, None] * np.array([0.2, 1.0, 0.1])
    return np.clip(base + tex + stripes, 0, 255).astype(np.uint8)


def _blue_sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blue gradient (deep blue at the top, paler at the horizon) with mild noise: (h, w, 3) uint8."""
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    top, horizon = np.array([40.0, 90.0, 200.0]), np.array([150.0, 190.0, 240.0])
    sky = top + t * (horizon - top) + rng.normal(0.0, 2.0, size=(h, w, 3))
    return np.clip(np.broadcast_to(sky, (h, w, 3)), 0, 255).astype(np.uint8)


def _sky_image(sky_rows: int = 18, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([_blue_sky(rng, sky_rows, W), _ground(rng, H - sky_rows, W)], axis=0)


def _truth(sky_rows: int = 18) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[:sky_rows] = True
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture
def no_cv2(monkeypatch):
    """Make ``import cv2`` fail, forcing the numpy / scipy path."""
    monkeypatch.setitem(sys.modules, "cv2", None)


class TestSegmentSky:
    def test_blue_sky_over_ground(self):
        img = _sky_image()
        sky = segment_sky(img)
        assert isinstance(sky, torch.Tensor) and sky.dtype == torch.bool and sky.shape == (H, W)
        sky = sky.numpy()
        assert _iou(sky, _truth()) > 0.9
        assert sky[18:].mean() < 0.01  # ground is not sky
        assert sky[:18].mean() > 0.95

    def test_overcast_sky(self):
        rng = np.random.default_rng(1)
        img = _sky_image(seed=1)
        # warm white, low saturation, bright: overcast sky (not blue >= green >= red)
        img[:18] = np.clip(np.array([236, 233, 229]) + rng.normal(0, 1.5, size=(18, W, 3)), 0, 255).astype(np.uint8)
        assert _iou(segment_sky(img).numpy(), _truth()) > 0.9

    def test_no_sky(self):
        img = _ground(np.random.default_rng(2), H, W)
        assert segment_sky(img).numpy().mean() < 0.01

    def test_dark_blue_is_not_sky(self):
        img = _sky_image()
        img[:18] = (10, 20, 60)  # blue hue but far too dark
        assert not segment_sky(img).any()

    def test_small_blue_objects_removed(self):
        img = _sky_image()
        img[30:33, 10:13] = (80, 120, 220)  # 3x3 blue blob on the ground: removed by the opening
        img[36:46, 40:50] = (80, 120, 220)  # 10x10 blob: survives the opening, dropped as a minor component
        sky = segment_sky(img).numpy()
        assert not sky[18:].any()
        assert _iou(sky, _truth()) > 0.9

    def test_two_comparable_regions_kept(self):
        img = _ground(np.random.default_rng(3), H, W)
        img[:, :20] = _blue_sky(np.random.default_rng(4), H, 20)   # 48 x 20 region
        img[:, 44:] = _blue_sky(np.random.default_rng(5), H, 20)   # same size: both kept
        expect = np.zeros((H, W), dtype=bool)
        expect[:, :20] = expect[:, 44:] = True
        assert _iou(segment_sky(img).numpy(), expect) > 0.95

    def test_input_forms_agree(self):
        img = _sky_image()
        ref = segment_sky(img)
        as_float = img.astype(np.float32) / 255.0 + 1e-4  # float in [0, 1] -> uint8 by truncation
        assert torch.equal(segment_sky(as_float), ref)
        assert torch.equal(segment_sky(img.astype(np.float64) / 255.0 + 1e-6), ref)
        assert torch.equal(segment_sky(Image.fromarray(img)), ref)
        assert torch.equal(segment_sky(Image.fromarray(img).convert("RGBA")), ref)
        assert torch.equal(segment_sky(torch.from_numpy(img)), ref)
        assert torch.equal(segment_sky(img.astype(np.int64)), ref)
        # out-of-range floats are clipped, not wrapped
        assert torch.equal(segment_sky(np.full((H, W, 3), 2.0)), segment_sky(np.full((H, W, 3), 1.0)))

    def test_colour_rule(self):
        rgb = np.array([[[60, 120, 200],    # clear blue sky
                         [60, 120, 99],     # blue >= green >= red violated (green max)
                         [30, 40, 90],      # too dark
                         [200, 200, 200],   # bright grey
                         [140, 140, 140],   # grey, value 140 < 150 but blue >= green >= red, value >= 100: sky
                         [240, 232, 236],   # near white, saturation 8.5 -> 8 < 10
                         [160, 130, 110],   # saturated warm: not sky
                         [250, 215, 215]]], dtype=np.uint8)  # saturation 35.7 -> 36 < 50, value 250 > 220
        assert sky_colour_mask(rgb)[0].tolist() == [True, False, False, True, True, True, False, True]

    def test_colour_rule_matches_hsv_definition(self):
        """The rule is: 8-bit HSV (OpenCV) of the channel-swapped image has hue <= 30 and value >= 100, or one
        of the overcast (saturation, value) pairs. Checked on random colours (rounding edges aside)."""
        cv2 = pytest.importorskip("cv2")
        rgb = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_RGB2HSV).astype(int)
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        ref = (h <= 30) & (v >= 100)
        ref |= ((s < 10) & (v > 150)) | ((s < 30) & (v > 180)) | ((s < 50) & (v > 220))
        agree = float((sky_colour_mask(rgb) == ref).mean())
        assert agree > 0.995, agree

    @pytest.mark.parametrize("bad, msg", [
        (np.zeros((H, W), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((3, H, W), np.uint8), r"shape \(3, 48, 64\)"),
        (np.zeros((H, W, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, W, 3), np.uint8), "empty"),
        (np.full((H, W, 3), np.nan), "NaN"),
        (np.full((H, W, 3), 300, dtype=np.int32), r"\[0, 255\]"),
        (np.zeros((H, W, 3), bool), "dtype"),
        ("sky.png", "str"),
    ])
    def test_bad_inputs(self, bad, msg):
        with pytest.raises(ValueError, match=msg):
            segment_sky(bad)


class TestFallbackParity:
    """OpenCV and numpy / scipy paths give identical masks."""

    @staticmethod
    def _random_masks():
        rng = np.random.default_rng(0)
        out = []
        for density in (0.3, 0.5, 0.7):
            noise = rng.random((37, 53)) < density
            out.append(noise)
            # blobby masks (thresholded smoothed noise) touching the borders
            smooth = rng.random((37, 53))
            for _ in range(3):
                smooth = (smooth + np.roll(smooth, 1, 0) + np.roll(smooth, 1, 1) + np.roll(smooth, -1, 0)) / 4
            out.append(smooth > np.quantile(smooth, 1 - density))
        strip = np.zeros((20, 30), bool)
        strip[:3] = True  # thin strip along the border
        out.append(strip)
        out.append(np.zeros((10, 12), bool))
        out.append(np.ones((10, 12), bool))
        return out

    def test_opening(self, monkeypatch):
        pytest.importorskip("cv2")
        masks = self._random_masks()
        with_cv2 = [binary_opening_square(m, s) for m in masks for s in (1, 3, 4, 5)]
        monkeypatch.setitem(sys.modules, "cv2", None)
        without = [binary_opening_square(m, s) for m in masks for s in (1, 3, 4, 5)]
        assert all(np.array_equal(a, b) for a, b in zip(with_cv2, without))
        assert any(a.any() and not a.all() for a in without)  # non-trivial cases

    def test_opening_semantics(self, no_cv2):
        mask = np.zeros((16, 12), bool)
        mask[:3] = True            # 3-row strip on the top border: outside pixels ignored -> kept
        mask[5:8] = True           # 3-row strip inside the image: thinner than the 5x5 square -> removed
        mask[10:16, 4:10] = True   # 6x6 square touching the bottom border -> kept whole
        mask[9, 0] = True          # isolated pixel -> removed
        out = binary_opening_square(mask, 5)
        expect = np.zeros_like(mask)
        expect[:3] = True
        expect[10:16, 4:10] = True
        assert np.array_equal(out, expect)
        with pytest.raises(ValueError, match="size"):
            binary_opening_square(mask, 0)

    def test_components(self, monkeypatch):
        pytest.importorskip("cv2")
        masks = self._random_masks()
        with_cv2 = [keep_dominant_components(m, r) for m in masks for r in (0.0, 0.5, 0.9)]
        monkeypatch.setitem(sys.modules, "cv2", None)
        without = [keep_dominant_components(m, r) for m in masks for r in (0.0, 0.5, 0.9)]
        assert all(np.array_equal(a, b) for a, b in zip(with_cv2, without))

    def test_components_semantics(self, no_cv2):
        mask = np.zeros((10, 20), bool)
        mask[0:4, 0:5] = True      # 20 px, largest
        mask[6:9, 0:4] = True      # 12 px > 10: kept
        mask[0:3, 10:13] = True    # 9 px < 10: dropped
        mask[4, 5] = True          # touches the largest diagonally: 8-connected -> part of it
        out = keep_dominant_components(mask, 0.5)
        expect = mask.copy()
        expect[0:3, 10:13] = False
        assert np.array_equal(out, expect)
        assert not keep_dominant_components(np.zeros((4, 4), bool)).any()

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_segment_sky(self, monkeypatch, seed):
        pytest.importorskip("cv2")
        img = _sky_image(sky_rows=12 + 6 * seed, seed=seed)
        rng = np.random.default_rng(seed)
        img[20:40] = np.where(rng.random((20, W, 1)) < 0.3, np.array([90, 140, 230], np.uint8), img[20:40])
        noisy = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        ref = [segment_sky(img), segment_sky(noisy)]
        monkeypatch.setitem(sys.modules, "cv2", None)
        assert torch.equal(segment_sky(img), ref[0]) and torch.equal(segment_sky(noisy), ref[1])
        assert ref[0].any()


class TestMaskSky:
    def test_dense_aligner_masks_sky(self):
        from dust3r.cloud_opt import global_aligner
        from dust3r.image_pairs import make_pairs
        from dust3r.inference import inference
        from dust3r.utils.synthetic import OracleModel, make_scene

        scene = make_scene(2, height=H, width=W, seed=0)
        pairs = make_pairs(scene.views(), scene_graph="complete", symmetrize=True)
        out = inference(pairs, OracleModel(scene), "cpu", batch_size=4, verbose=False)
        aligner = global_aligner(out, "cpu", verbose=False)
        # replace the colours used for the sky test: image 0 has 18 rows of sky, image 1 none
        aligner.imgs[0] = _sky_image().astype(np.float32) / 255.0
        aligner.imgs[1] = _ground(np.random.default_rng(7), H, W).astype(np.float32) / 255.0
        before = [c.detach().clone() for c in aligner.im_conf]
        assert all(bool((c > 0).all()) for c in before)

        masked = aligner.mask_sky()
        assert masked is not aligner
        sky = _truth()
        conf0 = masked.im_conf[0].detach()
        assert _iou((conf0 == 0).numpy(), sky) > 0.9
        not_sky = ~segment_sky(aligner.imgs[0])
        assert torch.equal(conf0[not_sky], before[0][not_sky])  # other pixels keep their confidence
        assert torch.equal(masked.im_conf[1].detach(), before[1])
        assert all(torch.equal(a.detach(), b) for a, b in zip(aligner.im_conf, before))  # original untouched
        masks = masked.get_masks()
        assert not bool(masks[0][:18].any()) and bool(masks[0][18:].all())

    def test_needs_images(self):
        from dust3r.cloud_opt.base_opt import BasePCOptimizer

        class _NoImages:
            imgs = None

        with pytest.raises(ValueError, match="images"):
            BasePCOptimizer.mask_sky(_NoImages())


class TestMeshHelpers:
    def test_pts3d_to_trimesh(self):
        h, w = 3, 4
        img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
        pts = np.random.default_rng(0).random((h, w, 3))
        mesh = pts3d_to_trimesh(img, pts)
        n_quads = (h - 1) * (w - 1)
        assert mesh["vertices"].shape == (h * w, 3) and mesh["faces"].shape == (4 * n_quads, 3)
        assert len(mesh["face_colors"]) == len(mesh["faces"])
        # every quad: both triangles, each also reversed
        faces = {tuple(f) for f in mesh["faces"].tolist()}
        assert (0, 1, 4) in faces and (4, 1, 0) in faces and (1, 4, 5) in faces and (5, 4, 1) in faces
        valid = np.ones((h, w), bool)
        valid[0, 0] = False  # removes the two faces (and reversed) that use vertex 0
        vm = pts3d_to_trimesh(img, pts, valid)
        assert len(vm["faces"]) == 4 * n_quads - 2 and not (vm["faces"] == 0).any()
        with pytest.raises(ValueError, match="pts3d shape"):
            pts3d_to_trimesh(img, pts[:2])
        with pytest.raises(ValueError, match="valid"):
            pts3d_to_trimesh(img, pts, valid[:2])

    def test_cat_meshes(self):
        img = np.zeros((2, 2, 3), np.uint8)
        m1 = pts3d_to_trimesh(img, np.zeros((2, 2, 3)))
        m2 = pts3d_to_trimesh(img, np.ones((2, 2, 3)))
        faces2 = m2["faces"].copy()
        cat = cat_meshes([m1, m2])
        assert cat["vertices"].shape == (8, 3) and cat["faces"].shape == (8, 3)
        assert np.array_equal(cat["faces"][4:], faces2 + 4)
        assert np.array_equal(m2["faces"], faces2)  # inputs unchanged
        trimesh = pytest.importorskip("trimesh")
        tm = trimesh.Trimesh(**cat, process=False)
        assert len(tm.faces) == 8

    def test_uint8(self):
        assert uint8([0.0, 0.5, 1.0]).tolist() == [0, 127, 255]
        colors = np.array([0.2, 0.4])
        uint8(colors)
        assert colors.tolist() == [0.2, 0.4]  # not scaled in place
        with pytest.raises(ValueError, match="range"):
            uint8([300, 2])


def _random_pose(seed: int) -> np.ndarray:
    """A cam2world with a random rotation (det +1) and translation."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    return pose


class TestTrimeshScenes:
    """The original's trimesh helpers: what they put in the scene (no window is opened)."""

    def test_rgb_is_the_image_helper(self):
        import dust3r.utils.image
        import dust3r.viz
        assert dust3r.viz.rgb is dust3r.utils.image.rgb

    def test_add_scene_cam_pose_and_image(self):
        trimesh = pytest.importorskip("trimesh")
        from dust3r.viz import add_scene_cam
        pose = _random_pose(0)
        H_img, W_img, focal, width = 30, 40, 50.0, 0.1
        image = np.random.default_rng(1).integers(0, 255, (H_img, W_img, 3), dtype=np.uint8)
        scene = trimesh.Scene()
        names = add_scene_cam(scene, torch.from_numpy(pose), (255, 0, 0), image=image, focal=np.array([focal]),
                              screen_width=width)
        assert len(names) == 2 and set(names) == set(scene.geometry)
        frustum, quad = scene.geometry[names[0]], scene.geometry[names[1]]
        # far plane: screen_width high, screen_width * W / H wide, at depth focal * screen_width / H
        depth, half_w, half_h = focal * width / H_img, 0.5 * width * W_img / H_img, 0.5 * width
        corners_cam = np.array([[-half_w, -half_h, depth], [half_w, -half_h, depth], [half_w, half_h, depth],
                                [-half_w, half_h, depth]])  # top-left, top-right, bottom-right, bottom-left
        expected = corners_cam @ pose[:3, :3].T + pose[:3, 3]
        np.testing.assert_allclose(quad.vertices, expected, atol=1e-12)
        # the frustum's apex is the camera centre (within the thin ribbons' half thickness) and its far end
        # reaches the image plane
        centre = pose[:3, 3]
        assert np.linalg.norm(frustum.vertices - centre, axis=1).min() < 0.03 * width
        local = (frustum.vertices - centre) @ pose[:3, :3]  # camera coordinates
        assert local[:, 2].min() > -0.05 * width and abs(local[:, 2].max() - depth) < 0.05 * width
        assert (frustum.visual.face_colors == [255, 0, 0, 255]).all()
        assert np.array_equal(np.asarray(quad.visual.material.image.convert("RGB")), image)

    def test_add_scene_cam_size_defaults(self):
        trimesh = pytest.importorskip("trimesh")
        from dust3r.viz import add_scene_cam
        scene = trimesh.Scene()
        # imsize (W, H) without image: focal defaults to 1.1 * min(W, H); no image quad
        (name,) = add_scene_cam(scene, np.eye(4), (0.0, 1.0, 0.0), imsize=(64, 32), screen_width=1.0)
        verts = scene.geometry[name].vertices
        assert abs(verts[:, 2].max() - 1.1) < 0.05  # depth = 1.1 * 32 * 1.0 / 32
        assert abs(verts[:, 0].max() - 1.0) < 0.05 and abs(verts[:, 1].max() - 0.5) < 0.05  # 2 x 1 far plane
        assert (scene.geometry[name].visual.face_colors[:, :3] == [0, 255, 0]).all()
        with pytest.raises(ValueError, match="pose_c2w"):
            add_scene_cam(scene, np.eye(3), (0, 0, 0))
        with pytest.raises(ValueError, match="positive"):
            add_scene_cam(scene, np.eye(4), (0, 0, 0), focal=-1.0)

    def test_scene_viz_pointcloud_and_cameras(self):
        pytest.importorskip("trimesh")
        from dust3r.viz import CAM_COLORS, SceneViz
        rng = np.random.default_rng(0)
        pts = rng.normal(size=(2, 4, 5, 3))
        cols = rng.integers(0, 255, (2, 4, 5, 3), dtype=np.uint8)
        mask = rng.random((2, 4, 5)) > 0.5
        viz = SceneViz().add_pointcloud(torch.from_numpy(pts), cols, mask)
        (cloud,) = viz.scene.geometry.values()
        np.testing.assert_array_equal(cloud.vertices, np.concatenate([pts[0][mask[0]], pts[1][mask[1]]]))
        np.testing.assert_array_equal(cloud.colors[:, :3], np.concatenate([cols[0][mask[0]], cols[1][mask[1]]]))
        poses = [_random_pose(1), _random_pose(2)]
        assert viz.add_cameras(poses, focals=[50.0, 60.0], imsizes=[(40, 30), (40, 30)]) is viz
        frustums = list(viz.scene.geometry.values())[1:]
        assert len(frustums) == 2
        for k, (frustum, pose) in enumerate(zip(frustums, poses)):
            assert (frustum.visual.face_colors[:, :3] == CAM_COLORS[k]).all()
            assert np.linalg.norm(frustum.vertices - pose[:3, 3], axis=1).min() < 0.03 * 0.03
        # one colour for every point
        single = SceneViz().add_pointcloud([pts[0]], (0, 0, 255))
        (cloud,) = single.scene.geometry.values()
        assert len(cloud.vertices) == 20 and (cloud.colors[:, :3] == [0, 0, 255]).all()
        with pytest.raises(ValueError, match="colours"):
            SceneViz().add_pointcloud(pts, cols[:1], mask)

    def test_show_builds_the_scene_without_a_window(self, monkeypatch):
        trimesh = pytest.importorskip("trimesh")
        from dust3r.viz import SceneViz, show_raw_pointcloud
        shown = []
        monkeypatch.setattr(trimesh.Scene, "show", lambda self, **kw: shown.append((self, kw)))
        pts = [np.zeros((2, 3)), torch.ones(1, 2, 3)]
        colors = [np.full((2, 3), 0.5), np.ones((1, 2, 3))]
        scene = show_raw_pointcloud(pts, colors, point_size=4)
        (cloud,) = scene.geometry.values()
        np.testing.assert_array_equal(cloud.vertices, [[0, 0, 0]] * 2 + [[1, 1, 1]] * 2)
        assert cloud.colors[:, :3].tolist() == [[127] * 3] * 2 + [[255] * 3] * 2
        assert shown == [(scene, {"line_settings": {"point_size": 4}})]
        viz = SceneViz()
        viz.show(point_size=3)
        assert shown[-1] == (viz.scene, {"line_settings": {"point_size": 3}})
