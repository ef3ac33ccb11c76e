"""datasets_preprocess/preprocess_wildrgbd.py on a fake raw WildRGB-D download -> the WildRgbd reader loads it."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets_preprocess import preprocess_wildrgbd
from dust3r.datasets.wildrgbd import WildRgbd
from tests.helpers.fake_raw._checks import check_loaded_pair
from tests.helpers.fake_raw._scene import corrupt
from tests.helpers.fake_raw.wildrgbd import SEQUENCES, write_fake_wildrgbd

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wildrgbd")
    raw, out = str(base / "raw"), str(base / "processed")
    truths = write_fake_wildrgbd(raw, width=128, height=96)
    corrupt(os.path.join(raw, "box", SEQUENCES[0], "depth", "00002.png"))  # a broken frame
    os.remove(os.path.join(raw, "cup", SEQUENCES[1], "cam_poses.txt"))  # a broken sequence
    logging.getLogger("datasets_preprocess").setLevel(logging.INFO)
    status = preprocess_wildrgbd.main(raw, out, num_frames=4, img_size=96)
    return raw, out, truths, status


def test_index_and_skipped_samples(processed):
    _, out, _, status = processed
    assert status == 0
    train = json.load(open(os.path.join(out, "selected_seqs_train.json")))
    test = json.load(open(os.path.join(out, "selected_seqs_test.json")))
    # 4 of 6 frames, evenly spread: 0, 2, 3, 5; frame 2 of box/scene_000 broken; cup/scene_001 has no poses
    assert train == {"box": {SEQUENCES[0]: [0, 3, 5], SEQUENCES[1]: [0, 2, 3, 5]}, "cup": {SEQUENCES[0]: [0, 2, 3, 5]}}
    assert test == {"box": {SEQUENCES[2]: [0, 2, 3, 5]}, "cup": {SEQUENCES[2]: [0, 2, 3, 5]}}
    frame = os.path.join(out, "box", SEQUENCES[1])
    assert sorted(os.listdir(frame)) == ["depth", "masks", "metadata", "rgb"]
    meta = np.load(os.path.join(frame, "metadata", "00003.npz"))
    assert sorted(meta.files) == ["camera_intrinsics", "camera_pose"]


def test_broken_samples_are_reported(tmp_path, caplog):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    write_fake_wildrgbd(raw, categories=("box",), n_frames=2, width=32, height=24)
    os.remove(os.path.join(raw, "box", SEQUENCES[0], "rgb", "00001.png"))
    os.remove(os.path.join(raw, "box", SEQUENCES[1], "metadata"))
    with caplog.at_level(logging.WARNING):
        assert preprocess_wildrgbd.main(raw, out, num_frames=2, img_size=24) == 0
    assert "00001.png" in caplog.text and os.path.join(SEQUENCES[1], "metadata") in caplog.text
    assert json.load(open(os.path.join(out, "selected_seqs_train.json"))) == {"box": {SEQUENCES[0]: [0]}}


@pytest.mark.parametrize("idx", [0, 300, 990 + 17])
def test_reader_views_match_the_scene(processed, idx):
    _, out, truths, _ = processed
    ds = WildRgbd(split="train", ROOT=out, mask_bg=False, resolution=(96, 72), seed=2)
    views = ds[idx]
    frames = []
    for view in views:
        category, sequence = view["label"].split("/", 1)
        frames.append(truths[category, sequence][int(view["instance"][:5])])
    check_loaded_pair(views, frames)
    assert views[0]["is_metric_scale"] is True


def test_command_line(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_fake_wildrgbd(str(raw), categories=("cup",), n_frames=2, width=32, height=24)
    subprocess.run([sys.executable, str(ROOT / "datasets_preprocess" / "preprocess_wildrgbd.py"), "--wildrgbd_dir",
                    str(raw), "--output_dir", str(out), "--num_frames", "2", "--img_size", "24"],
                   check=True, capture_output=True, cwd=tmp_path)
    assert json.load(open(out / "cup" / "selected_seqs_test.json")) == {SEQUENCES[2]: [0, 1]}
