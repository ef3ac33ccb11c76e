"""BaseStereoViewDataset: the views it assembles (geometry consistent, landscape, typed), its rng rules, the
bad-sample rule and the reader hooks."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dust3r.datasets.base.base_stereo_view_dataset import (MAX_SAMPLE_SKIPS, BaseStereoViewDataset, is_good_type,
                                                           transpose_to_landscape, view_name)
from dust3r.datasets.utils.transforms import ColorJitter
from dust3r.utils.geometry import geotrf, inv
from tests.dust3r.datasets.stored_pairs import load_fixture, stored_items

from .stored_pairs import make_stored_pairs

StoredPairs = make_stored_pairs(BaseStereoViewDataset)


def _ds(name="test_like", **kw):
    kw = {"resolution": (64, 48), "seed": 777, **kw}
    return StoredPairs(load_fixture(name), stored_items(name), **kw)


def _assert_points_reproject(view):
    """pts3d project onto their own (stored-layout) pixel with the stored intrinsics and pose."""
    ys, xs = np.nonzero(view["valid_mask"])
    proj = geotrf(view["camera_intrinsics"] @ inv(view["camera_pose"])[:3], view["pts3d"][ys, xs], norm=1, ncol=2)
    np.testing.assert_allclose(proj, np.stack((xs, ys), 1), atol=2e-3)


def test_views_have_consistent_geometry():
    views = _ds()[0]
    for v, view in enumerate(views):
        assert view["idx"] == (0, 0, v) and view["img"].shape == (3, 48, 64) and view["img"].dtype == torch.float32
        assert view["true_shape"].tolist() == [48, 64] and view["true_shape"].dtype == np.int32
        assert view["pts3d"].shape == (48, 64, 3) and view["pts3d"].dtype == np.float32
        np.testing.assert_array_equal(view["valid_mask"], view["depthmap"] > 0)
        np.testing.assert_array_equal(view["sky_mask"], view["depthmap"] < 0)
        assert view["sky_mask"].any() and view["is_metric_scale"] is False
        assert isinstance(view["rng"], int)
        _assert_points_reproject(view)
    assert view_name(views[0]) == "Synthetic/scene0/nonmetric_0_0"


def test_square_images_get_random_orientation_and_are_stored_landscape():
    ds = _ds("square_raw", resolution=(64, 48), seed=55)
    shapes = set()
    for idx in range(6):
        for view in ds[idx]:
            shapes.add(tuple(view["true_shape"].tolist()))
            assert view["img"].shape == (3, 48, 64) and view["pts3d"].shape == (48, 64, 3)
            _assert_points_reproject(view)  # also for transposed portrait views (K rows swapped)
    assert shapes == {(48, 64), (64, 48)}


def test_seeding_rules():
    ds = _ds()
    assert ds[5][0]["rng"] == ds[5][0]["rng"]
    unseeded = _ds(seed=None)
    torch.manual_seed(123)
    a = unseeded[5][0]["rng"]
    b = unseeded[5][0]["rng"]
    assert a != b  # one stream across items
    again = _ds(seed=0)  # seed=0 counts as no seed (as the original)
    torch.manual_seed(123)
    assert again[5][0]["rng"] == a


def test_color_jitter_draws_from_the_item_rng():
    ds = _ds(transform=ColorJitter)
    a, b = ds[5], ds[5]
    assert torch.equal(a[0]["img"], b[0]["img"])
    plain = _ds()[5]
    assert not torch.equal(a[0]["img"], plain[0]["img"])
    assert a[0]["img"].min() >= -1 and a[0]["img"].max() <= 1


def test_bad_sample_is_skipped_with_one_warning(caplog):
    ds = _ds(bad={2})
    with caplog.at_level(logging.WARNING, logger="dust3r.datasets.base.base_stereo_view_dataset"):
        first = ds[2]
        second = ds[2]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "/data/pairs/2/rgb.jpg" in msgs[0]
    assert first[0]["idx"][0] != 2 and first[0]["idx"] == second[0]["idx"]
    assert first[0]["instance"] == second[0]["instance"]


def test_all_samples_bad_raises():
    ds = _ds(bad=set(range(10)))
    with pytest.raises(RuntimeError, match=f"{MAX_SAMPLE_SKIPS + 1} unreadable samples"):
        ds[0]


def test_mask_hooks():
    ds = _ds()
    rng = np.random.default_rng(0)
    assert ds.draw_mask_bg(rng) is False
    ds.mask_bg = True
    assert ds.draw_mask_bg(rng) is True
    ds.mask_bg = "rand"
    draws = [ds.draw_mask_bg(np.random.default_rng(s)) for s in range(20)]
    assert draws == [bool(np.random.default_rng(s).choice(2)) for s in range(20)] and len(set(draws)) == 2
    ds.mask_bg = "sometimes"
    with pytest.raises(ValueError, match="mask_bg"):
        ds.draw_mask_bg(rng)
    depth, sky = np.ones((2, 2), np.float32), np.array([[True, False], [False, False]])
    assert ds.apply_sky(depth, sky)[0, 0] == 0 and depth[0, 0] == 1
    assert _ds(mask_sky=True).apply_sky(depth, sky)[0, 0] == -1


def test_transpose_to_landscape_round_trip():
    view = _ds("square_raw", resolution=(64, 48), seed=55)[1][1]
    assert tuple(view["true_shape"].tolist()) == (64, 48)
    K = view["camera_intrinsics"].copy()
    transpose_to_landscape(view, revert=True)  # back to portrait arrays
    assert view["img"].shape == (3, 64, 48) and view["pts3d"].shape == (64, 48, 3)
    transpose_to_landscape(view)
    np.testing.assert_array_equal(view["camera_intrinsics"], K)


def test_type_checks_and_errors():
    assert is_good_type("x", np.zeros(2, np.float32)) == (True, None)
    assert is_good_type("x", (1, 2))[0] and is_good_type("x", "s")[0]
    assert not is_good_type("x", np.zeros(2, np.float64))[0]
    with pytest.raises(ValueError, match="undefined resolution"):
        BaseStereoViewDataset()
    with pytest.raises(ValueError, match="landscape"):
        BaseStereoViewDataset(resolution=[(48, 64)])
    ds = _ds(resolution=[(64, 48), (48, 32)])
    with pytest.raises(ValueError, match="aspect_ratio_idx"):
        ds[0]
    assert ds[(0, 1)][0]["img"].shape == (3, 32, 48)
    with pytest.raises(NotImplementedError):
        BaseStereoViewDataset(resolution=224)._get_views(0, (224, 224), None)


def test_transform_by_name():
    assert BaseStereoViewDataset(resolution=224, transform="ColorJitter").transform is ColorJitter
    with pytest.raises(ValueError, match="unknown transform"):
        BaseStereoViewDataset(resolution=224, transform="Compose([])")
