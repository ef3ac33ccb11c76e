"""dust3r.datasets.VirtualKitti on data written by preprocess_virtualkitti from a fake raw Virtual KITTI 2."""
from __future__ import annotations

import numpy as np
import pytest

from dust3r.datasets.virtualkitti import VirtualKitti
from tests.helpers.fake_raw._checks import build_processed, check_loaded_pair, pair_truths
from tests.helpers.fake_raw.virtualkitti import H, W

RECIPE = dict(optical_center_is_centered=True, resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)],
              aug_crop="auto")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_processed("virtualkitti", tmp_path_factory)



class TestVirtualKitti:
    def test_recipe_arguments(self, root):
        ds = VirtualKitti(ROOT=root[0], seed=5, **RECIPE)
        assert len(ds) == 9 and ds.is_metric_scale and ds.optical_center_is_centered

    @pytest.mark.parametrize("mask_sky", [False, True])
    def test_views_geometrically_consistent(self, root, mask_sky):
        out, truths = root
        ds = VirtualKitti(ROOT=out, resolution=[(512, 160)], seed=3, mask_sky=mask_sky, optical_center_is_centered=True)
        for idx in range(len(ds)):
            views = ds[(idx, 0)]
            assert views[0]["true_shape"].tolist() == [160, 512] and views[0]["dataset"] == "VirtualKitti"
            check_loaded_pair(views, pair_truths(ds, idx, truths))
            for view in views:  # the ceiling is VKITTI's sky: sky with mask_sky, invalid otherwise
                assert view["sky_mask"].any() == mask_sky
                assert (view["depthmap"] < 0).any() == mask_sky

    def test_optical_center(self, root):
        out, _ = root
        off = VirtualKitti(ROOT=out, resolution=224)
        on = VirtualKitti(ROOT=out, resolution=224, optical_center_is_centered=True)
        K = np.float32([[181.25, 0, 150.0], [0, 181.25, 40.0], [0, 0, 1]])
        np.testing.assert_array_equal(off._adjust_intrinsics(K, H, W), K)
        np.testing.assert_array_equal(on._adjust_intrinsics(K, H, W)[:2, 2], [(W - 1) / 2, (H - 1) / 2])
        # the fake (like VKITTI 2) is calibrated with a centred principal point: both agree on its frames
        np.testing.assert_array_equal(off.read_frame(0)["camera_intrinsics"], on.read_frame(0)["camera_intrinsics"])
