"""dust3r.datasets.NianticMapFree on data written by preprocess_mapfree from a fake raw Map-free (portrait frames)."""
from __future__ import annotations

import pytest

from dust3r.datasets.mapfree import NianticMapFree
from tests.helpers.fake_raw._checks import build_processed, check_loaded_pair, pair_truths


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_processed("mapfree", tmp_path_factory)


class TestNianticMapFree:
    def test_splits(self, root):
        out, _ = root
        assert len(NianticMapFree(split="train", ROOT=out, resolution=[(512, 384), (512, 336)], aug_crop="auto")) == 2
        assert len(NianticMapFree(split="val", ROOT=out, resolution=224)) == 2
        assert len(NianticMapFree(split=None, ROOT=out, resolution=224)) == 4
        assert len(NianticMapFree(split="test", ROOT=out, resolution=224)) == 0  # no posed query
        assert NianticMapFree.is_metric_scale

    @pytest.mark.parametrize("split", ["train", "val"])
    def test_views_geometrically_consistent(self, root, split):
        out, truths = root
        ds = NianticMapFree(split=split, ROOT=out, resolution=[(48, 36)], seed=2)
        for idx in range(len(ds)):
            views = ds[(idx, 0)]
            assert views[0]["label"].startswith(split + "/") and views[0]["dataset"] == "NianticMapFree"
            # portrait frames (true_shape H > W) are served transposed to landscape, intrinsics rows swapped with
            # them: the checks hold in that layout too
            assert views[0]["true_shape"].tolist() == [48, 36] and views[0]["depthmap"].shape == (36, 48)
            frames = pair_truths(ds, idx, truths)
            check_loaded_pair(views, frames)
