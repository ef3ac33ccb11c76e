"""Waymo reader on data processed from a fake (decoded) Waymo sequence: sparse LiDAR depth against the fake scene."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess.preprocess_waymo import main as preprocess
from dust3r.datasets.waymo import Waymo
from tests.helpers.fake_raw.waymo import SEQUENCE, make_fake_waymo
from tests.helpers.view_geometry import assert_consistent, check_pair_against_scene


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("waymo")
    fake = make_fake_waymo(str(base / "raw"), str(base / "out"))
    assert preprocess(fake.waymo_dir, None, fake.output_dir) == 0
    return fake


def test_views_agree_with_the_fake_scene(data):
    ds = Waymo(ROOT=data.output_dir, resolution=[(512, 336)], seed=2, split="train")
    assert len(ds) == 4 and ds.is_metric_scale and "4 pairs from 1 scenes" in repr(ds)
    for idx in range(len(ds)):
        views = ds[idx]
        assert views[0]["label"] == SEQUENCE and views[0]["dataset"] == "Waymo"
        assert views[0]["is_metric_scale"]
        i, j = data.frames[views[0]["instance"]], data.frames[views[1]["instance"]]
        # sparse depth: one LiDAR point per 3x3 raw pixels, 8x8 processed pixels
        assert 0.01 < views[0]["valid_mask"].mean() < 0.03
        stats = check_pair_against_scene(views[0], views[1], data.scene, i, j)
        assert_consistent(stats, min_n=20, px_p90=2.0)


def test_bad_index_and_missing_root(data, tmp_path, monkeypatch):
    np.savez(tmp_path / "waymo_pairs.npz", scenes=np.array([SEQUENCE]), frames=np.array(["00000_1"]),
             pairs=np.array([[0, 0, 3]]))
    with pytest.raises(ValueError, match="waymo_pairs.npz"):
        Waymo(ROOT=str(tmp_path), resolution=224)
    monkeypatch.chdir(tmp_path / "..")
    with pytest.raises(FileNotFoundError, match="data/waymo_processed.*preprocess_waymo.py"):
        Waymo(resolution=224)
