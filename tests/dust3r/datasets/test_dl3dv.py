"""dust3r.datasets.DL3DV on data written by preprocess_dl3dv from a fake raw DL3DV-10K and its depth source."""
from __future__ import annotations

import numpy as np
import pytest

from dust3r.datasets.dl3dv import DL3DV
from tests.helpers.fake_raw._checks import build_processed, check_loaded_pair, pair_truths

RECIPE = dict(split="train", mask_sky=True, resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)],
              aug_crop="auto")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_processed("dl3dv", tmp_path_factory)


class TestDL3DV:
    def test_recipe_arguments(self, root):
        ds = DL3DV(ROOT=root[0], **RECIPE)
        assert len(ds) == 2 and ds.mask_sky and not ds.is_metric_scale
        with pytest.raises(ValueError, match="split 'test'"):
            DL3DV(ROOT=root[0], split="test", resolution=224)

    @pytest.mark.parametrize("mask_sky", [True, False])
    def test_views_geometrically_consistent(self, root, mask_sky):
        out, truths = root
        ds = DL3DV(ROOT=out, split="train", mask_sky=mask_sky, resolution=[(80, 48)], seed=4)
        for idx in range(len(ds)):
            views = ds[(idx, 0)]
            frames = pair_truths(ds, idx, truths)
            check_loaded_pair(views, frames)
            for view, frame in zip(views, frames):
                # the ceiling is the depth source's sky: sky (depth -1) with mask_sky, invalid (0) without
                assert view["sky_mask"].any() == mask_sky
                assert view["sky_mask"].sum() > 0.05 * view["sky_mask"].size or not mask_sky
                assert not (view["valid_mask"] & view["sky_mask"]).any()
                assert np.all(view["depthmap"] >= (-1 if mask_sky else 0))
