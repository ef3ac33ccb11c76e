"""BlendedMVS reader on data processed from a fake raw BlendedMVS: splits, geometry against the fake scene, bad
samples skipped."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from datasets_preprocess.preprocess_blendedmvs import main as preprocess
from dust3r.datasets.blendedmvs import BlendedMVS
from tests.helpers.fake_raw.blendedmvs import SEQUENCES, make_fake_blendedmvs
from tests.helpers.view_geometry import assert_consistent, check_pair_against_scene, recipe_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    fake = make_fake_blendedmvs(str(tmp_path_factory.mktemp("raw")))
    out = str(tmp_path_factory.mktemp("processed"))
    assert preprocess(fake.root, None, out) == 0
    return fake, out


def test_splits_follow_seq_low(data):
    fake, root = data
    # SEQUENCES[0] has seq_low % 10 == 0 (: val, 3 pairs left after the broken frame), [1] seq_low % 10 == 3
    assert len(BlendedMVS(split="val", ROOT=root, resolution=(128, 96))) == 3
    assert len(BlendedMVS(split="train", ROOT=root, resolution=(128, 96))) == 6
    ds = BlendedMVS(ROOT=root, resolution=(128, 96))
    assert len(ds) == 9 and "9 pairs from 2 scenes" in repr(ds)
    with pytest.raises(ValueError, match="split"):
        BlendedMVS(split="test", ROOT=root, resolution=(128, 96))


def test_views_agree_with_the_fake_scene(data):
    fake, root = data
    ds = BlendedMVS(split="train", ROOT=root, resolution=[(160, 120), (128, 96)], seed=3)
    assert not ds.is_metric_scale
    for idx in range(len(ds)):
        views = ds[idx, 1]
        assert views[0]["img"].shape == (3, 96, 128)
        assert views[0]["label"] == SEQUENCES[1] and views[0]["dataset"] == "BlendedMVS"
        assert views[0]["camera_pose"].dtype == np.float32 and views[0]["camera_intrinsics"].dtype == np.float32
        i, j = int(views[0]["instance"]), int(views[1]["instance"])
        stats = check_pair_against_scene(views[0], views[1], fake.scenes[SEQUENCES[1]], i, j)
        assert_consistent(stats)


def test_default_root_and_missing_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/blendedmvs_processed.*preprocess_blendedmvs.py"):
        BlendedMVS(split="train", resolution=224)


def test_unreadable_sample_is_skipped_with_one_warning(data, tmp_path, caplog):
    fake, root = data
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    os.remove(copy / SEQUENCES[1] / "00000002.exr")
    ds = BlendedMVS(split="train", ROOT=str(copy), resolution=(128, 96), seed=1)
    with caplog.at_level(logging.WARNING):
        served = [ds[idx] for idx in range(len(ds))]
    warnings = [r for r in caplog.records if "00000002.exr" in r.getMessage()]
    assert len(warnings) == 1
    assert all("00000002" not in (v[0]["instance"], v[1]["instance"]) for v in served)


def test_recipe_string_builds_the_mast3r_dataset(data, tmp_path, monkeypatch):
    _, root = data
    ds = recipe_dataset(tmp_path, monkeypatch, "data/blendedmvs_processed", root,
                        "68_400 @ BlendedMVS(split='train', mask_sky=True, resolution=[(512, 384), (512, 336)], "
                        "aug_crop='auto', aug_monocular=0.005, transform=ColorJitter, n_corres=256, nneg=0.5)")
    assert len(ds) == 68_400
    views = ds[(5, 1)]
    assert views[0]["img"].shape == (3, 336, 512) and views[0]["corres"].shape == (256, 2)
    assert 0 < views[0]["valid_corres"].sum() < 256  # half negatives
