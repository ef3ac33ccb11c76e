"""dust3r.datasets.UnrealStereo4K on data written by preprocess_unrealstereo4k from a fake raw UnrealStereo4K."""
from __future__ import annotations

import pytest

from dust3r.datasets.unrealstereo4k import UnrealStereo4K
from tests.helpers.fake_raw._checks import build_processed, check_loaded_pair, pair_truths


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_processed("unrealstereo4k", tmp_path_factory)


class TestUnrealStereo4K:
    def test_recipe_arguments(self, root):
        ds = UnrealStereo4K(ROOT=root[0], resolution=[(512, 384), (512, 288)], aug_crop="auto")
        assert len(ds) == 9 and not ds.is_metric_scale and ds.split is None

    def test_views_geometrically_consistent(self, root):
        out, truths = root
        ds = UnrealStereo4K(ROOT=out, resolution=[(160, 96)], seed=11)
        for idx in range(len(ds)):
            views = ds[(idx, 0)]
            assert views[0]["dataset"] == "UnrealStereo4K" and views[0]["true_shape"].tolist() == [96, 160]
            frames = pair_truths(ds, idx, truths)
            check_loaded_pair(views, frames)
