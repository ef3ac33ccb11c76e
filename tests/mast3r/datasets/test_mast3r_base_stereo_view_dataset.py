"""MASt3RBaseStereoViewDataset: __getitem__ outputs equal the original's (datasets/getitem_*.npz), crop-resize equals
the original's (geometry/cropping.npz), and the augmentations keep the geometry consistent."""
from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from dust3r.utils.geometry import geotrf, inv
from mast3r.datasets.base.mast3r_base_stereo_view_dataset import MASt3RBaseStereoViewDataset, rotate_90
from tests.dust3r.datasets.stored_pairs import INDEX, load_fixture, make_stored_pairs, parse_call, stored_items
from tests.dust3r.datasets.test_cropping import CASES, check_case

StoredPairs = make_stored_pairs(MASt3RBaseStereoViewDataset)

CONFIGS = {
    "test_like": dict(kind="nonmetric", split="train", resolution=(64, 48), n_corres=64, seed=777),
    "monocular_swap_same": dict(kind="nonmetric", split="train", resolution=[(64, 48), (48, 32)], aug_crop="auto",
                                aug_swap=True, aug_monocular=1.0, aug_rot90="same", n_corres=64, nneg=0.25, seed=31),
    "square_raw": dict(kind="square", split="train", resolution=[(64, 48)], aug_crop=16, n_corres=48, nneg=0.5,
                       seed=55),
}
KEYS = ("img", "true_shape", "depthmap", "camera_intrinsics", "camera_pose", "is_metric_scale", "pts3d",
        "valid_mask", "sky_mask", "corres", "valid_corres", "rng")


def _dataset(name, **extra):
    cfg = dict(CONFIGS[name], **extra)
    return StoredPairs(load_fixture(name), stored_items(name), **cfg)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_getitem_matches_original_bit_for_bit(name):
    arrays = load_fixture(name)
    ds = _dataset(name)
    for j, item in enumerate(INDEX["getitem"][name]["items"]):
        views = ds[parse_call(item["call"])]
        assert [list(v["idx"]) for v in views] == item["idx"]
        assert [v["instance"] for v in views] == item["instances"]
        for v, view in enumerate(views):
            for key in KEYS:
                got = view[key].numpy() if torch.is_tensor(view[key]) else np.asarray(view[key])
                want = arrays[f"item{j}.view{v}.{key}"]
                assert got.dtype == want.dtype or key in ("rng", "is_metric_scale"), key
                np.testing.assert_array_equal(got, want, err_msg=f"{name} item {j} view {v} {key}")
        assert int(views[0]["valid_corres"].sum()) == item["n_valid_corres"]


def test_seeded_items_are_reproducible_and_unseeded_consume_one_stream():
    ds = _dataset("square_raw")
    a, b = ds[(1, 0)], ds[(1, 0)]
    assert a[0]["rng"] == b[0]["rng"] and torch.equal(a[1]["img"], b[1]["img"])
    unseeded = _dataset("square_raw", seed=None)
    torch.manual_seed(5)
    first = unseeded[(1, 0)][0]["rng"]
    assert unseeded[(1, 0)][0]["rng"] != first  # the stream goes on across items


@pytest.mark.parametrize("tag", [c["tag"] for c in CASES if c["tag"].startswith("m_")])
def test_crop_resize_matches_original(tag):
    check_case(tag, MASt3RBaseStereoViewDataset)


def _reprojection_error(view_a, view_b):
    """Max pixel distance between corres in b and the projection of a's pts3d at corres in a (positives)."""
    valid = view_a["valid_corres"]
    xa, ya = view_a["corres"][valid].T
    pts = view_a["pts3d"][ya, xa]  # stored layout is landscape; pts3d follows it
    K, w2c = view_b["camera_intrinsics"], inv(view_b["camera_pose"])
    proj = geotrf(K @ w2c[:3], pts, norm=1, ncol=2)
    return np.abs(proj - view_b["corres"][valid]).max()


@pytest.mark.parametrize("rot90", ["same", "diff"])
def test_rot90_and_crops_keep_correspondences_consistent(rot90):
    ds = _dataset("test_like", aug_crop="auto", aug_rot90=rot90, seed=3, resolution=[(64, 48), (48, 32)])
    for ar in (0, 1):
        for idx in (0, 5):
            v1, v2 = ds[(idx, ar)]
            assert v1["img"].shape == v2["img"].shape and v1["img"].shape[1] <= v1["img"].shape[2]
            for view in (v1, v2):  # pts3d recomputed from depth + camera after every augmentation
                assert tuple(view["pts3d"].shape[:2]) == tuple(view["img"].shape[1:])
                assert view["valid_corres"].sum() == 64
            # reprojection lands within rounding of the stored match (in portrait-transposed views too)
            if all(tuple(v["true_shape"]) == tuple(v["img"].shape[1:]) for v in (v1, v2)):
                assert _reprojection_error(v1, v2) <= 0.75
                assert _reprojection_error(v2, v1) <= 0.75


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate_90_moves_pixels_and_camera_together(k):
    ds = _dataset("test_like")
    view = ds[(0, 0)][0]
    before = copy.deepcopy(view)
    rotate_90([view], k=k)
    H, W = view["depthmap"].shape
    assert tuple(view["true_shape"]) == (H, W) and tuple(view["img"].shape[1:]) == (H, W)
    np.testing.assert_array_equal(view["depthmap"], np.rot90(before["depthmap"], k))
    # the world point of a pixel does not move with the rotation
    valid = view["valid_mask"]
    np.testing.assert_allclose(view["pts3d"][valid], np.rot90(before["pts3d"], k)[valid], atol=1e-5)
    # corres follow the pixels
    x, y = before["corres"][0]
    xr, yr = view["corres"][0]
    assert view["depthmap"][yr, xr] == before["depthmap"][y, x]


def test_swap_and_monocular_draws():
    ds = _dataset("monocular_swap_same")
    v1, v2 = ds[(4, 1)]
    assert v1["instance"] == v2["instance"] and torch.equal(v1["img"], v2["img"])
    no_mono = _dataset("monocular_swap_same", aug_monocular=False)
    w1, w2 = no_mono[(4, 1)]
    assert w1["instance"] != w2["instance"]


def test_unreadable_sample_is_skipped_with_one_warning(caplog):
    ds = _dataset("test_like", bad={3})
    with caplog.at_level(logging.WARNING):
        a = ds[(3, 0)]
        b = ds[(3, 0)]
    warnings = [r for r in caplog.records if "/data/pairs/3/rgb.jpg" in r.getMessage()]
    assert len(warnings) == 1
    assert a[0]["idx"] == b[0]["idx"] and a[0]["idx"][0] != 3  # a deterministic substitute (seeded dataset)
    assert a[0]["rng"] == b[0]["rng"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="aug_rot90"):
        MASt3RBaseStereoViewDataset(resolution=224, aug_rot90="left")
    with pytest.raises(ValueError, match="nneg"):
        MASt3RBaseStereoViewDataset(resolution=224, nneg=1.5)
    with pytest.raises(ValueError, match="landscape"):
        MASt3RBaseStereoViewDataset(resolution=(224, 512))


def test_views_collate_into_training_batches():
    """get_data_loader + default collate give the batch layout the losses read (one aspect ratio per batch)."""
    from dust3r.datasets import get_data_loader
    ds = 8 @ _dataset("monocular_swap_same", aug_monocular=0.5, seed=None)
    ds.set_epoch(0)
    torch.manual_seed(0)
    dl = get_data_loader(ds, batch_size=4, num_workers=0, shuffle=True, drop_last=True, pin_mem=False)
    dl.sampler.set_epoch(0)
    for view1, view2 in dl:
        B, _, H, W = view1["img"].shape
        assert B == 4 and W >= H and view2["img"].shape == view1["img"].shape
        assert view1["corres"].shape == (4, 64, 2) and view1["corres"].dtype == torch.int64
        assert view1["valid_corres"].shape == (4, 64) and view1["is_metric_scale"].dtype == torch.bool
        assert view1["pts3d"].shape == (4, H, W, 3) and view1["sky_mask"].shape == (4, H, W)
        assert len(view1["idx"]) == 3 and view1["true_shape"].shape == (4, 2)
        assert (view1["corres"][..., 0] < W).all() and (view1["corres"][..., 1] < H).all()
