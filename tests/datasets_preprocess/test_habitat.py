"""preprocess_habitat (the original's find_scenes) on fake habitat-sim renderings (tests/helpers/fake_raw/habitat.py).

What is NOT tested: the habitat-sim rendering stage itself (the original's renderer; needs habitat-sim and meshes)."""
from __future__ import annotations

import logging

import pytest

from datasets_preprocess import preprocess_habitat as pre
from tests.helpers.fake_raw.habitat import make_fake_habitat


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return make_fake_habitat(str(tmp_path_factory.mktemp("habitat")))


def test_lists(rendered, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert pre.main(rendered.root, [1_000, 2], output_dir=str(tmp_path)) == 0
    assert "1 skipped" in caplog.text and rendered.broken in caplog.text
    all_scenes = (tmp_path / "Habitat_all_scenes.txt").read_text().splitlines()
    assert sorted(all_scenes) == sorted(set(rendered.scenes) - {rendered.broken})
    train = (tmp_path / "Habitat_1000_scenes_train.txt").read_text().splitlines()
    val = (tmp_path / "Habitat_1000_scenes_val.txt").read_text().splitlines()
    assert (tmp_path / "Habitat_100_scenes_val.txt").read_text().splitlines() == val
    assert sorted(train + val) == sorted(all_scenes)
    # split by scene: the two batches of a scene stay together
    scene_of = {sub.rsplit("/", 1)[0] for sub in val}
    assert len(scene_of) == 1 and not any(sub.rsplit("/", 1)[0] in scene_of for sub in train)
    # every list is a prefix of one order
    assert (tmp_path / "Habitat_2_scenes_train.txt").read_text().splitlines() == train[:2]
    assert not (tmp_path / "Habitat_0_scenes_val.txt").exists()


def test_default_output_is_root_and_deterministic(rendered, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(rendered.root, copy)
    assert pre.main(str(copy), [10]) == 0
    first = (copy / "Habitat_10_scenes_train.txt").read_text()
    assert pre.main(str(copy), [10]) == 0
    assert (copy / "Habitat_10_scenes_train.txt").read_text() == first


def test_check_subscene_names_the_bad_file(rendered, tmp_path):
    with pytest.raises(FileNotFoundError, match="000001_3_camera_params.json"):
        pre.check_subscene(rendered.root, rendered.broken)
    bad = tmp_path / "s"
    bad.mkdir()
    for v in range(1, 6):
        for suffix in (".jpeg", "_depth.exr"):
            (bad / f"k_{v}{suffix}").write_bytes(b"")
        (bad / f"k_{v}_camera_params.json").write_text("{not json")
    with pytest.raises(OSError, match="k_1_camera_params.json"):
        pre.check_subscene(str(tmp_path), "s/k")


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pre.main(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="_1_depth.exr"):
        pre.main(str(tmp_path))
