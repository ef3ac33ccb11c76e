"""MegaDepth reader on data processed from a fake raw MegaDepth: splits, geometry against the fake scene."""
from __future__ import annotations

import pytest

from datasets_preprocess.preprocess_megadepth import main as preprocess
from dust3r.datasets.megadepth import MegaDepth
from tests.helpers.fake_raw.megadepth import make_fake_megadepth
from tests.helpers.view_geometry import assert_consistent, check_pair_against_scene, recipe_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    fake = make_fake_megadepth(str(tmp_path_factory.mktemp("raw")))
    out = str(tmp_path_factory.mktemp("processed"))
    assert preprocess(fake.root, None, out) == 0
    return fake, out


def test_splits_hold_out_0015_and_0022(data):
    _, root = data
    assert len(MegaDepth(split="val", ROOT=root, resolution=224)) == 6  # scene 0015
    train = MegaDepth(split="train", ROOT=root, resolution=224)
    assert len(train) == 3 and set(train.pairs["scene_id"].tolist()) == {1}
    assert len(MegaDepth(ROOT=root, resolution=224)) == 9
    with pytest.raises(ValueError, match="split"):
        MegaDepth(split="test", ROOT=root, resolution=224)


def test_select_scene_with_instances(data):
    fake, root = data
    ds = MegaDepth(ROOT=root, resolution=224)
    ds.select_scene("0015", fake.names["0015"][0], fake.names["0015"][1])
    assert len(ds) == 1
    with pytest.raises(ValueError, match="no scene"):
        MegaDepth(ROOT=root, resolution=224).select_scene("9999")


@pytest.mark.parametrize("split", ["val", "train"])
def test_views_agree_with_the_fake_scene(data, split):
    fake, root = data
    ds = MegaDepth(split=split, ROOT=root, resolution=[(128, 96)], seed=5, aug_crop=8)
    assert not ds.is_metric_scale
    for idx in range(len(ds)):
        views = ds[idx]
        scene_name = views[0]["label"].split("/")[0]
        assert views[0]["label"] == f"{scene_name}/0" and views[0]["dataset"] == "MegaDepth"
        names = fake.names[scene_name]
        i, j = names.index(views[0]["instance"]), names.index(views[1]["instance"])
        stats = check_pair_against_scene(views[0], views[1], fake.scenes[scene_name], i, j)
        assert_consistent(stats)


def test_missing_root_names_the_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/megadepth_processed.*preprocess_megadepth.py"):
        MegaDepth(split="train", resolution=224)


def test_recipe_string_builds_the_mast3r_dataset(data, tmp_path, monkeypatch):
    _, root = data
    ds = recipe_dataset(tmp_path, monkeypatch, "data/megadepth_processed", root,
                        "68_400 @ MegaDepth(split='train', mask_sky=True, resolution=[(512, 384), (512, 160)], "
                        "aug_crop='auto', aug_monocular=0.005, transform=ColorJitter, n_corres=128, nneg=0.5)")
    views = ds[(3, 1)]
    assert views[0]["img"].shape == (3, 160, 512) and views[0]["corres"].shape == (128, 2)
