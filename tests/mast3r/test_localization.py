"""mast3r.localization and mast3r.utils.coarse_to_fine: crop selection against the original's choices, crops and
homographies, resizing, and query matching on a synthetic scene with the oracle model (true 2D-3D matches)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from dust3r.synthetic import OracleModel, make_scene
from dust3r_visloc.datasets import build_dataset
from dust3r_visloc.datasets.synthetic import write_synthetic_dataset
from mast3r.localization import (MatchingOptions, crop, estimate_pose, match_query, resize_image_to_max)
from mast3r.utils.coarse_to_fine import crop_slice, crop_tag, greedy_selection, select_pairs_of_crops
from tests.helpers.visloc_oracle import CropOracle

DATA = Path(__file__).resolve().parents[1] / "data" / "mast3r" / "coarse_to_fine.npz"


class TestCoarseToFine:
    @pytest.mark.parametrize("case", range(4))
    def test_matches_the_original_selection(self, case):
        z = np.load(DATA)
        c = f"c{case}_"
        res = list(select_pairs_of_crops(np.zeros(tuple(z[c + "shape_q"])), np.zeros(tuple(z[c + "shape_b"])),
                                         z[c + "pq"], z[c + "pb"], maxdim=512, overlap=.5,
                                         forced_resolution=z[c + "forced"].tolist()))
        np.testing.assert_array_equal(np.array([r[0] for r in res]), z[c + "cells_q"])
        np.testing.assert_array_equal(np.array([r[1] for r in res]), z[c + "cells_b"])

    def test_tags_and_slices(self):
        cell = np.array([10, 20, 30, 50])
        assert crop_tag(cell) == "[20:50,10:30]"
        assert np.zeros((60, 40))[crop_slice(cell)].shape == (30, 20)

    def test_greedy_selection_covers_target(self):
        w = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.9, 0.9, 0.9]])
        assert greedy_selection(w, target=0.5) == [2]
        assert greedy_selection(w, target=1.0) == [2, 0, 1]  # what is left after a pick is its excess

    def test_no_matches_no_crops(self):
        empty = np.zeros((0, 2))
        assert list(select_pairs_of_crops(np.zeros((600, 800)), np.zeros((600, 800)), empty, empty,
                                          forced_resolution=[384, 512])) == []


class TestCrop:
    def test_plain_crop_is_a_slice(self):
        img = torch.rand(60, 80, 3)
        pts = torch.rand(60, 80, 3)
        mask = torch.rand(60, 80) > 0.5
        c, m, p, to_orig = crop(img, mask, pts, np.array([8, 4, 40, 28]))
        assert torch.equal(c, img[4:28, 8:40]) and torch.equal(m, mask[4:28, 8:40]) and torch.equal(p, pts[4:28, 8:40])
        np.testing.assert_array_equal(to_orig.numpy() @ [0, 0, 1], [8, 4, 1])

    def test_homography_crop_samples_through_to_orig(self):
        rng = np.random.default_rng(0)
        H, W = 120, 160
        img = torch.from_numpy(rng.uniform(-1, 1, (H, W, 3)).astype(np.float32))
        ys, xs = np.mgrid[0:H, 0:W]
        pts = torch.from_numpy(np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float32))  # pixel -> its coords
        K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
        c, m, p, to_orig = crop(img, torch.ones(H, W, dtype=torch.bool), pts, np.array([80, 40, 144, 88]), K)
        assert tuple(c.shape) == (48, 64, 3) and tuple(p.shape) == (48, 64, 3)
        Hm = to_orig.numpy()
        # nearest-neighbour points: the source pixel of crop pixel (x, y) is round(H (x, y, 1))
        for x, y in [(0, 0), (10, 5), (63, 47), (30, 20)]:
            src = Hm @ [x, y, 1.0]
            src = src[:2] / src[2]
            if m[y, x]:
                np.testing.assert_allclose(p[y, x, :2].numpy(), np.round(src), atol=1e-6)
        assert m.float().mean() > 0.9  # the warp stays (almost) inside the image


def test_resize_image_to_max_scales_intrinsics_about_pixel_corners():
    rgb = PIL.Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    K = np.array([[200.0, 0, 199.5], [0, 200.0, 149.5], [0, 0, 1]])
    t, K2, to_orig, to_resize, (h, w) = resize_image_to_max(200, rgb, K)
    assert tuple(t.shape) == (150, 200, 3) and (h, w) == (150, 200)
    np.testing.assert_allclose(K2, [[100.0, 0, 99.5], [0, 100.0, 74.5], [0, 0, 1]])
    np.testing.assert_allclose(to_orig @ to_resize, np.eye(3))
    same = resize_image_to_max(None, rgb, K)
    assert same[0].shape == (300, 400, 3) and np.array_equal(same[1], K)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    scene = make_scene(n_views=4, height=96, width=128, seed=5)
    root = tmp_path_factory.mktemp("visloc_small")
    data = write_synthetic_dataset(str(root), scene, "cambridge", topk=1, n_queries=1)
    model = OracleModel(scene)
    model.patch_embed.img_size = (128, 128)
    ds = build_dataset(data.dataset_string)
    ds.set_resolution(model)
    return scene, data, model, ds


def test_matches_are_true_2d_3d_correspondences(small_dataset):
    scene, data, model, ds = small_dataset
    views = ds[0]
    matches = match_query(views[0], views[1:], model, MatchingOptions(pixel_tol=5))
    assert len(matches) == 1 and len(matches[0]) > 500
    gt = data.gt_cam2world[views[0]["image_name"]]
    w2c = np.linalg.inv(gt)
    X = matches[0].pts3d
    p = (views[0]["intrinsics"] @ (w2c[:3, :3] @ X.T + w2c[:3, 3:])).T
    err = np.linalg.norm(p[:, :2] / p[:, 2:] - matches[0].query_xy, axis=1)
    # mostly within the pixel quantisation; the rest within pixel_tol (the oracle's smooth descriptors tie nearby)
    assert np.median(err) < 0.6 and np.mean(err < 1.5) > 0.75
    res = estimate_pose(views[0], matches, "poselib", 5.0)
    assert res.success and np.linalg.norm(res.cam2world[:3, 3] - gt[:3, 3]) < 0.01


def test_no_map_points_is_a_failure(small_dataset):
    _, _, model, ds = small_dataset
    views = ds[0]
    views[1]["valid_rescaled"] = torch.zeros_like(views[1]["valid_rescaled"])
    matches = match_query(views[0], views[1:], model, MatchingOptions(pixel_tol=5))
    res = estimate_pose(views[0], matches, "poselib", 5.0)
    assert not res.success and res.cam2world is None and res.reason == "no matches"


def test_matching_options_checked():
    with pytest.raises(ValueError, match="pixel_tol"):
        MatchingOptions(pixel_tol=0)
    with pytest.raises(ValueError, match="max_batch_size"):
        MatchingOptions(max_batch_size=0)


@pytest.mark.slow
@pytest.mark.parametrize("homography", [False, True])
def test_coarse_to_fine_on_larger_images(homography, tmp_path):
    """Images twice the network size: crops (plain or homography-warped, batched by max_batch_size) give the
    true pose like the single-scale matching does."""
    scene = make_scene(n_views=4, height=192, width=256, seed=0)
    data = write_synthetic_dataset(str(tmp_path), scene, "cambridge", topk=1, n_queries=1)
    model = CropOracle(scene, maxdim=128)
    ds = build_dataset(data.dataset_string)
    ds.set_resolution(model)
    views = ds[0]
    opts = MatchingOptions(pixel_tol=5, coarse_to_fine=True, c2f_crop_with_homography=homography, max_batch_size=3)
    matches = match_query(views[0], views[1:], model, opts)
    assert model.crop_calls >= 2  # the crops did not fit one batch of 3
    res = estimate_pose(views[0], matches, "poselib", 5.0)
    gt = data.gt_cam2world[views[0]["image_name"]]
    from dust3r.utils.pose_metrics import rotation_angle_deg

    assert res.success
    assert np.linalg.norm(res.cam2world[:3, 3] - gt[:3, 3]) < 0.01
    assert float(rotation_angle_deg(res.cam2world, gt)) < 0.1


def test_encoder_cache_gives_the_forward_predictions(tiny_model):
    """Cached encoder outputs + the model's decoder and heads == the model's forward, and a map image shared by
    two queries is encoded once."""
    from dust3r.inference import inference
    from mast3r.localization import EncoderCache, _pair_views

    model = tiny_model("mast3r_tiny_a")
    assert EncoderCache.usable(model) and not EncoderCache.usable(OracleModel(make_scene(2, 16, 16)))
    gen = torch.Generator().manual_seed(0)
    q1, q2, m1, m2 = (torch.rand(3, 64, 80, generator=gen) * 2 - 1 for _ in range(4))
    cache = EncoderCache(model, "cpu")
    for q in (q1, q2):
        cached = cache.predict(("query", id(q)), q, [("map", 1), ("map", 2)], [m1, m2])
        ref = inference([_pair_views(q, m1), _pair_views(q, m2)], model, "cpu", batch_size=2, verbose=False)
        for k, (p1, p2) in enumerate(cached):
            for key in ("desc", "desc_conf", "pts3d", "conf"):
                torch.testing.assert_close(p1[key][0], ref["pred1"][key][k], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(p2["desc"][0], ref["pred2"]["desc"][k], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(p2["pts3d_in_other_view"][0], ref["pred2"]["pts3d_in_other_view"][k],
                                       rtol=1e-4, atol=1e-5)
    assert (cache.misses, cache.hits) == (4, 2)  # q1, m1, m2, q2 encoded; m1, m2 reused for q2
    small = EncoderCache(model, "cpu", max_items=2)
    for key in range(3):
        small.encode(key, q1)
    assert [k[0] for k in small.entries] == [1, 2]  # least recently used dropped
