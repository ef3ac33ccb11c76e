"""preprocess_megadepth on a fake raw MegaDepth (tests/helpers/fake_raw/megadepth.py)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from datasets_preprocess import preprocess_megadepth as pre
from dust3r.datasets.megadepth import PAIRS_DTYPE
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw.megadepth import SCENES, make_fake_megadepth


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    fake = make_fake_megadepth(str(tmp_path_factory.mktemp("megadepth_raw")))
    out = tmp_path_factory.mktemp("megadepth_processed")
    return fake, out, pre.main(fake.root, None, str(out))


def test_sfm_model_gives_colmap_world2cam(processed):
    fake, _, _ = processed
    sfm = pre.load_sfm(fake.root, SCENES[0], "0")
    scene = fake.scenes[SCENES[0]]
    for k, name in enumerate(fake.names[SCENES[0]]):
        np.testing.assert_allclose(np.linalg.inv(sfm.world2cam[name]), scene.cam2world[k], atol=1e-9)
        # the undistorted intrinsics are those the dense image was rendered with
        np.testing.assert_allclose(pre.undistorted_intrinsics(sfm.cameras[name], (160, 120)), scene.K[k], atol=1e-9)


def test_layout_of_the_original(processed):
    fake, out, status = processed
    assert status == 0
    for scene_name, scene in fake.scenes.items():
        for k, name in enumerate(fake.names[scene_name]):
            stem = out / scene_name / "0" / name  # name keeps its .jpg: "<name>.jpg.npz"
            if (scene_name, name) == fake.broken:
                assert not Path(str(stem) + ".npz").exists()
                continue
            with np.load(str(stem) + ".npz") as cam:
                assert sorted(cam.files) == ["cam2world", "intrinsics"]
                np.testing.assert_allclose(cam["cam2world"], scene.cam2world[k], atol=1e-9)
                np.testing.assert_allclose(cam["intrinsics"], scene.K[k], atol=1e-6)  # 160x120: not downscaled
            np.testing.assert_array_equal(read_exr(str(stem) + ".exr"), scene.depth[k])
            assert Path(str(stem) + ".jpg").is_file()


def test_metadata_pairs_from_covisibility(processed):
    fake, out, _ = processed
    with np.load(out / "all_metadata.npz") as meta:
        scenes, images, pairs = meta["scenes"], meta["images"], meta["pairs"]
    assert scenes.tolist() == ["0015 0", "0100 0"]
    assert pairs.dtype == PAIRS_DTYPE
    broken_id = images.tolist().index(fake.broken[1])
    assert not np.isin(broken_id, pairs[["im1_id", "im2_id"]].tolist()).any()
    assert (pairs["scene_id"] == 0).sum() == 6 and (pairs["scene_id"] == 1).sum() == 3
    assert ((pairs["score"] > 0.5) & (pairs["score"] <= 1)).all()


def test_precomputed_pairs_of_naver(processed, tmp_path, caplog):
    fake, _, _ = processed
    names = fake.names
    images = np.array(names[SCENES[0]] + names[SCENES[1]], dtype=object)  # naver's file: pickled object arrays
    rows = np.array([(1, 4, 5, 0.9), (1, 4, 6, 0.8), (0, 0, 3, 0.7)], dtype=PAIRS_DTYPE)
    np.savez(tmp_path / "megadepth_pairs.npz", scenes=np.array(["0015 0", "0100 0"], dtype=object), images=images,
             pairs=rows)
    with caplog.at_level(logging.INFO):
        assert pre.main(fake.root, str(tmp_path / "megadepth_pairs.npz"), str(tmp_path / "out")) == 0
    with np.load(tmp_path / "out" / "all_metadata.npz") as meta:  # loads without pickle
        assert meta["pairs"].tolist() == [rows[0].tolist(), rows[2].tolist()]  # (4, 6): 6 is the broken image
    assert "1 skipped" in caplog.text and fake.broken[1] in caplog.text
    # only the images of the pairs are processed
    assert sorted(p.name for p in (tmp_path / "out" / "0015" / "0").glob("*.npz")) == [
        names[SCENES[0]][0] + ".npz", names[SCENES[0]][3] + ".npz"]


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pre.main(str(tmp_path / "nowhere"), None, str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="sparse/manhattan"):
        pre.main(str(tmp_path), None, str(tmp_path / "out"))
