"""StaticThings3D reader on data processed from a fake raw StaticThings3D: geometry, mask_bg, clean/final pass."""
from __future__ import annotations

import pytest

from datasets_preprocess.preprocess_staticthings3d import main as preprocess
from dust3r.datasets.staticthings3d import BACKGROUND_DEPTH, StaticThings3D
from tests.helpers.fake_raw.staticthings3d import SCALE, make_fake_staticthings3d, view_index
from tests.helpers.view_geometry import assert_consistent, check_pair_against_scene, recipe_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    fake = make_fake_staticthings3d(str(tmp_path_factory.mktemp("raw")))
    out = str(tmp_path_factory.mktemp("processed"))
    assert preprocess(fake.root, None, out) == 0
    return fake, out


def _scene_view(instance: str) -> int:
    cam, img = instance.split("_", 1)
    return view_index(int(img[:4]), cam)


def test_views_agree_with_the_fake_scene(data):
    fake, root = data
    ds = StaticThings3D(root, mask_bg=False, resolution=[(160, 96)], seed=7)  # ROOT positional, as the original
    assert len(ds) == 25 and not ds.is_metric_scale
    passes = set()
    for idx in range(0, len(ds), 2):
        views = ds[idx]
        sub, seq = views[0]["label"].split("/")[1:]
        assert views[0]["label"] == f"TRAIN/{sub}/{seq}" and views[0]["dataset"] == "StaticThings3D"
        passes.update(v["instance"].rsplit("_", 1)[1] for v in views)
        i, j = _scene_view(views[0]["instance"]), _scene_view(views[1]["instance"])
        stats = check_pair_against_scene(views[0], views[1], fake.scenes[sub, seq], i, j, depth_scale=SCALE)
        assert_consistent(stats, px_p90=2.5, trans=5e-3)  # raw-pixel rounding at edges
    assert passes == {"clean.jpg", "final.jpg"}


def test_mask_bg_drops_the_far_background(data):
    _, root = data
    masked = StaticThings3D(ROOT=root, mask_bg=True, resolution=(160, 96), seed=1)[0]
    kept = StaticThings3D(ROOT=root, mask_bg=False, resolution=(160, 96), seed=1)[0]
    for m, k in zip(masked, kept):
        assert (k["depthmap"] > BACKGROUND_DEPTH).any()
        assert m["depthmap"].max() <= BACKGROUND_DEPTH
        far = k["depthmap"] > BACKGROUND_DEPTH
        assert not m["valid_mask"][far].any() and (m["depthmap"][~far] == k["depthmap"][~far]).all()
    with pytest.raises(ValueError, match="mask_bg"):
        StaticThings3D(ROOT=root, mask_bg="sometimes", resolution=224)


def test_no_split_and_missing_root(data, tmp_path, monkeypatch):
    _, root = data
    with pytest.raises(ValueError, match="no split"):
        StaticThings3D(ROOT=root, split="train", resolution=224)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/staticthings3d_processed.*preprocess_staticthings3d.py"):
        StaticThings3D(mask_bg="rand", resolution=224)


def test_recipe_string_builds_the_mast3r_dataset(data, tmp_path, monkeypatch):
    _, root = data
    ds = recipe_dataset(tmp_path, monkeypatch, "data/staticthings3d_processed", root,
                        "22_800 @ StaticThings3D(mask_bg='rand', resolution=[(512, 384), (512, 288)], "
                        "aug_crop='auto', aug_monocular=0.005, transform=ColorJitter, n_corres=128, nneg=0.5)")
    views = ds[(7, 1)]
    assert views[0]["img"].shape == (3, 288, 512) and views[0]["corres"].shape == (128, 2)
