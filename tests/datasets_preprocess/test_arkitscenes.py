"""datasets_preprocess/preprocess_arkitscenes.py on a fake raw ARKitScenes -> the ARKitScenes reader loads it."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets_preprocess import preprocess_arkitscenes as prep
from dust3r.datasets.arkitscenes import ARKitScenes
from dust3r.synthetic import look_at
from tests.helpers.fake_raw._checks import check_loaded_pair
from tests.helpers.fake_raw._scene import corrupt
from tests.helpers.fake_raw.arkitscenes import write_fake_arkitscenes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("arkit")
    raw, pairs, out = str(base / "raw"), str(base / "pairs"), str(base / "processed")
    truths = write_fake_arkitscenes(raw, pairs)
    corrupt(os.path.join(raw, "Training", "41000001", "lowres_depth", "41000001_100.150.png"))  # frame 1 broken
    return raw, pairs, out, truths, prep.main(raw, pairs, out)


def test_layout_and_skipped_frame(processed):
    _, _, out, truths, status = processed
    assert status == 0
    split = os.path.join(out, "Training")
    assert json.load(open(os.path.join(split, "scene_list.json"))) == ["41000001", "41000002"]
    meta = np.load(os.path.join(split, "all_metadata.npz"))
    assert {"counts", "scenes", "sceneids", "images", "intrinsics", "trajectories", "pairs"} <= set(meta.files)
    assert list(meta["scenes"]) == ["41000001", "41000002"] and list(meta["counts"]) == [0, 3]
    assert list(meta["sceneids"]) == [0, 0, 0, 1, 1, 1, 1]
    assert "41000001_100.150.png" not in list(meta["images"])
    # 6 pairs per scene, minus the 3 of the broken frame; indices global, the score column kept
    pairs = meta["pairs"]
    assert pairs.shape == (3 + 6, 3) and set(pairs[:3, :2].ravel()) == {0, 1, 2} and pairs[3:, :2].min() == 3
    assert os.path.isfile(os.path.join(split, "41000002", "vga_wide", "41000002_100.000.jpg"))
    assert os.path.isfile(os.path.join(split, "41000002", "scene_metadata.npz"))


def test_sideways_scene_is_turned_sky_up(processed):
    _, _, out, truths, _ = processed
    meta = np.load(os.path.join(out, "Training", "all_metadata.npz"))
    import PIL.Image
    k = list(meta["images"]).index("41000002_100.150.png")
    image = PIL.Image.open(os.path.join(out, "Training", "41000002", "vga_wide", "41000002_100.150.jpg"))
    assert image.size == (72, 96)  # portrait after turning
    truth = truths["41000002", "41000002_100.150.png"]
    np.testing.assert_allclose(meta["intrinsics"][k], truth.K, atol=1e-6)
    np.testing.assert_allclose(meta["trajectories"][k], truth.cam2world, atol=2e-5)  # interpolated between samples
    assert meta["trajectories"][k][2, 1] < -0.9  # image y points down in the world: upright


@pytest.mark.parametrize("idx", [0, 2, 5, 8])
def test_reader_views_match_the_scene(processed, idx):
    _, _, out, truths, _ = processed
    ds = ARKitScenes(split="train", ROOT=out, resolution=(96, 72), seed=1)
    views = ds[idx]
    frames = [truths[view["label"].split("_", 1)[0], view["label"].split("_", 1)[1]] for view in views]
    check_loaded_pair(views, frames)
    assert views[0]["is_metric_scale"] is True and views[0]["dataset"] == "arkitscenes"


def test_orientation_and_intrinsics_rules():
    upright = look_at([0.0, -2.0, 1.2], [0.0, 0.0, 1.0])
    for sky, roll in (("UP", 0), ("RIGHT", -90), ("LEFT", 90), ("DOWN", 180)):
        device = upright.copy()
        device[:3, :3] = upright[:3, :3] @ prep._rot_z(roll)
        assert prep.find_sky_direction(device[None]) == sky
    # turning a 4x3 image counter-clockwise moves pixel (x, y) to (y, w - 1 - x): check with the intrinsics
    K = prep.rotate_intrinsics(4, 3, 10.0, 11.0, 1.2, 0.7, "RIGHT")
    img = np.arange(12).reshape(3, 4)
    turned = prep.rotate_image_array(img, "RIGHT")
    assert turned[4 - 1 - 1, 2] == img[2, 1]  # (x=1, y=2) -> (x'=2, y'=2)
    np.testing.assert_allclose(K, [[11.0, 0, 0.7], [0, 10.0, 4 - 1 - 1.2], [0, 0, 1]])


def test_broken_scene_is_skipped(tmp_path, caplog):
    raw, pairs, out = str(tmp_path / "raw"), str(tmp_path / "pairs"), str(tmp_path / "out")
    write_fake_arkitscenes(raw, pairs, n_frames=2, width=32, height=24)
    os.remove(os.path.join(raw, "Training", "41000002", "lowres_wide.traj"))
    with caplog.at_level(logging.WARNING):
        assert prep.main(raw, pairs, out) == 0
    assert "41000002" in caplog.text and "lowres_wide.traj" in caplog.text
    assert json.load(open(os.path.join(out, "Training", "scene_list.json"))) == ["41000001"]


def test_command_line(tmp_path):
    raw, pairs, out = tmp_path / "raw", tmp_path / "pairs", tmp_path / "out"
    write_fake_arkitscenes(str(raw), str(pairs), n_frames=2, width=32, height=24)
    subprocess.run([sys.executable, str(ROOT / "datasets_preprocess" / "preprocess_arkitscenes.py"),
                    "--arkitscenes_dir", str(raw), "--precomputed_pairs", str(pairs), "--output_dir", str(out)],
                   check=True, capture_output=True, cwd=tmp_path)
    assert len(ARKitScenes(split="train", ROOT=str(out), resolution=(32, 24))) == 2
