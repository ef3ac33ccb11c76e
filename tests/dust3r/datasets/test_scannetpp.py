"""dust3r.datasets.scannetpp: the ScanNetpp reader on the original processed layout (COLMAP-convention K)."""
from __future__ import annotations


import pytest

import dust3r.datasets
from dust3r.datasets.scannetpp import ScanNetpp
from tests.dust3r.datasets.test_arkitscenes import H, W, check_exact_pair, write_metadata_layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("scannetpp"))
    # the original stores the intrinsics in COLMAP's convention: principal point + 0.5
    truth = write_metadata_layout(root, ["0a5c013435", "1b75758486"], "images", "depth", intrinsics_shift=0.5)
    return root, truth


def test_views_are_exact_with_the_colmap_shift_undone(layout):
    root, truth = layout
    ds = ScanNetpp(split="train", ROOT=root, resolution=(W, H), seed=2)
    assert len(ds) == 6 and ScanNetpp.is_metric_scale
    for idx in range(6):
        views = ds[idx]
        assert views[0]["dataset"] == "ScanNet++" and views[0]["is_metric_scale"] is True
        check_exact_pair(views, truth)  # a half-pixel error in K would fail the 0.05 px reprojection check


def test_split_and_root(layout, tmp_path):
    root, _ = layout
    with pytest.raises(ValueError, match="split='train'"):
        ScanNetpp(split="test", ROOT=root, resolution=(W, H))
    with pytest.raises(FileNotFoundError, match="preprocess_scannetpp.py"):
        ScanNetpp(split="train", ROOT=str(tmp_path), resolution=(W, H))
    assert dust3r.datasets.ScanNetpp is ScanNetpp and ScanNetpp.DEFAULT_ROOT == "data/scannetpp_processed"
