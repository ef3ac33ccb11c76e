"""Habitat / Habitat512 readers on fake renderings indexed by preprocess_habitat."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess.preprocess_habitat import main as preprocess
from dust3r.datasets.habitat import Habitat, Habitat512
from tests.helpers.fake_raw.habitat import make_fake_habitat
from tests.helpers.view_geometry import assert_consistent, check_pair_against_scene, recipe_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    fake = make_fake_habitat(str(tmp_path_factory.mktemp("habitat")))
    assert preprocess(fake.root, [1_000_000]) == 0
    return fake


def test_recipe_constructors(data):
    train = Habitat512(1_000_000, split="train", ROOT=data.root,
                       resolution=[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)], aug_crop="auto")
    val = Habitat512(1_000_000, split="val", ROOT=data.root, resolution=(512, 384), seed=777)
    assert len(train) + len(val) == 5 and len(val) in (1, 2)  # 6 sub-scenes, 1 broken; 1 of 3 scenes held out
    assert train.is_metric_scale and isinstance(train, Habitat)
    with pytest.raises(ValueError, match="split"):
        Habitat(1_000_000, ROOT=data.root, resolution=224)


def test_views_agree_with_the_fake_scene(data):
    ds = Habitat(1_000_000, split="train", ROOT=data.root, resolution=(96, 64), seed=3)
    second = set()
    for idx in range(len(ds)):
        for rep in range(3):
            ds.seed = 3 + 100 * rep
            views = ds[idx]
            sub = views[0]["label"] + "/" + views[0]["instance"].rsplit("_", 1)[0]
            assert views[0]["dataset"] == "Habitat" and views[0]["instance"].endswith("_0")
            i, j = 0, int(views[1]["instance"].rsplit("_", 1)[1])
            second.add(j)
            if sub == data.nan_pose and j == 1:
                j = 2  # view 2 has a NaN pose: the next view is served
            stats = check_pair_against_scene(views[0], views[1], data.scenes[sub], i, j)
            assert np.isfinite(views[1]["camera_pose"]).all()
            assert_consistent(stats, min_n=20, px_p90=2.0)
    assert second <= {1, 2, 3, 4} and len(second) > 1


def test_square_renderings_get_both_orientations(data):
    ds = Habitat512(1_000_000, split="val", ROOT=data.root, resolution=(96, 64))
    shapes = {tuple(ds[0][0]["true_shape"]) for _ in range(12)}
    assert shapes == {(64, 96), (96, 64)}


def test_missing_list_names_the_script(data, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Habitat_5_scenes_train.txt.*preprocess_habitat.py"):
        Habitat(5, split="train", ROOT=data.root, resolution=224)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/habitat_processed"):
        Habitat512(1_000_000, split="val", resolution=(512, 384))


def test_a_view_with_a_nan_pose_is_replaced_by_the_next(data):
    ds = Habitat(1_000_000, split="train", ROOT=data.root, resolution=(96, 64), seed=1)
    if data.nan_pose not in ds.scenes:
        ds = Habitat(1_000_000, split="val", ROOT=data.root, resolution=(96, 64), seed=1)
    scene_dir, key = data.nan_pose.rsplit("/", 1)
    ds.filter_scene(scene_dir, f"{key}_2")  # second view: file 2, whose pose is NaN
    assert ds.scenes == [data.nan_pose] and ds.instances == [1]
    views = ds[0]
    np.testing.assert_allclose(views[1]["camera_pose"], data.scenes[data.nan_pose].cam2world[2], atol=1e-6)


RES = "[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)]"


def test_recipe_strings_build_mast3r_datasets_with_correspondences(data, tmp_path, monkeypatch):
    train = recipe_dataset(tmp_path, monkeypatch, "data/habitat_processed", data.root,
                           f"57_000 @ Habitat512(1_000_000, split='train', resolution={RES}, aug_crop='auto', "
                           "aug_monocular=0.005, transform=ColorJitter, n_corres=8192, nneg=0.5)")
    from mast3r.datasets import parse_dataset
    test = parse_dataset("100 @ Habitat512(1_000_000, split='val', resolution=(512,384), n_corres=1024, seed=777)")
    test.set_epoch(0)
    assert len(train) == 57_000 and len(test) == 100
    test.set_epoch(0)
    views = test[0]
    assert views[0]["img"].shape == (3, 384, 512) and views[0]["corres"].shape == (1024, 2)
    assert views[0]["valid_corres"].all()  # nneg = 0: positives only
    assert views[0]["is_metric_scale"]
