"""datasets_preprocess/preprocess_co3d.py on a fake raw CO3Dv2 download -> the Co3d reader loads it, exactly."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets_preprocess import preprocess_co3d
from dust3r.datasets.co3d import Co3d
from tests.helpers.fake_raw._checks import check_loaded_pair
from tests.helpers.fake_raw.co3d import break_frame, sequence_names, write_fake_co3d

ROOT = Path(__file__).resolve().parents[2]
SEQ = sequence_names(4)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("co3d")
    raw, out = str(base / "raw"), str(base / "processed")
    truths = write_fake_co3d(raw, width=128, height=96)
    broken = break_frame(raw, "apple", SEQ[0], 3, "missing")
    corrupt = break_frame(raw, "teddybear", SEQ[1], 2, "corrupt")
    status = preprocess_co3d.main(raw, out, img_size=96)
    return raw, out, truths, (broken, corrupt), status


def test_index_and_skipped_samples(processed):
    _, out, _, _, status = processed
    assert status == 0
    train = json.load(open(os.path.join(out, "selected_seqs_train.json")))
    test = json.load(open(os.path.join(out, "selected_seqs_test.json")))
    assert set(train) == set(test) == {"apple", "teddybear"}
    # low-quality sequence 3 filtered; the broken frames left out
    assert {k: sorted(v) for k, v in train["apple"].items()} == {SEQ[0]: [1, 2, 4, 5], SEQ[1]: [1, 2, 3, 4, 5]}
    assert sorted(train["teddybear"][SEQ[1]]) == [1, 3, 4, 5]
    assert test["apple"] == {SEQ[2]: [1, 2, 3, 4, 5]}
    assert json.load(open(os.path.join(out, "apple", "selected_seqs_train.json"))) == train["apple"]
    assert not os.path.exists(os.path.join(out, "apple", SEQ[0], "images", "frame000003.jpg"))


def test_broken_samples_are_named_in_the_log(tmp_path, caplog):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    write_fake_co3d(raw, categories=("apple",), n_frames=2, width=32, height=24)
    broken = break_frame(raw, "apple", SEQ[1], 2, "corrupt")
    with caplog.at_level(logging.WARNING):
        assert preprocess_co3d.main(raw, out, img_size=24) == 0
    assert "frame000002.jpg" in caplog.text and SEQ[1] in caplog.text
    assert os.path.basename(broken) in caplog.text or "frame000002" in caplog.text


def test_processed_frame_files(processed):
    _, out, truths, _, _ = processed
    meta = np.load(os.path.join(out, "apple", SEQ[0], "images", "frame000001.npz"))
    assert sorted(meta.files) == ["camera_intrinsics", "camera_pose", "maximum_depth"]
    frame = truths["apple", SEQ[0]][1]
    np.testing.assert_allclose(meta["camera_pose"], frame.cam2world, atol=1e-5)  # PyTorch3D -> OpenCV, exact
    K = meta["camera_intrinsics"]
    # short side 96 * 3/4 = 72 at least, principal point centred by the crop
    import PIL.Image
    w, h = PIL.Image.open(os.path.join(out, "apple", SEQ[0], "images", "frame000001.jpg")).size
    assert min(w, h) >= 72 and abs(K[0, 2] - (w - 1) / 2) < 1 and abs(K[1, 2] - (h - 1) / 2) < 1
    assert 0.8 * frame.depth.max() < meta["maximum_depth"] <= 1.001 * frame.depth.max()  # max over the crop


@pytest.mark.parametrize("idx", [0, 140, 495 + 40])
def test_reader_views_match_the_scene(processed, idx):
    """The reader's views of the processed data agree with the fake scene (relative pose, depth along every ray,
    reprojection into the other view)."""
    _, out, truths, _, _ = processed
    ds = Co3d(split="train", ROOT=out, mask_bg=False, resolution=(96, 72), seed=4)
    views = ds[idx]
    frames = []
    for view in views:
        category, sequence = view["label"].split("/")
        frames.append(truths[category, sequence][int(view["instance"][5:11])])
    check_loaded_pair(views, frames)


def test_single_sequence_subset(tmp_path):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    write_fake_co3d(raw, categories=("apple", "tv"), n_frames=3, width=32, height=24)
    assert preprocess_co3d.main(raw, out, single_sequence_subset=True, img_size=24) == 0
    train = json.load(open(os.path.join(out, "selected_seqs_train.json")))
    assert train == {"apple": {SEQ[0]: [1, 2]}}  # 'tv' is not a single-sequence category
    assert json.load(open(os.path.join(out, "selected_seqs_test.json"))) == {"apple": {SEQ[0]: [3]}}


def test_pose_and_intrinsics_conventions():
    """CO3D's NDC camera and PyTorch3D pose convert to the OpenCV pinhole they were made from."""
    from tests.helpers.fake_raw.co3d import co3d_viewpoint
    from dust3r.synthetic import look_at
    K = np.array([[50.0, 0, 35.3], [0, 52.0, 21.1], [0, 0, 1]])
    cam2world = look_at([1.0, -2.0, 1.5], [0.0, 0.0, 0.5])
    vp = co3d_viewpoint(K, cam2world, 64, 48)
    np.testing.assert_allclose(preprocess_co3d.ndc_to_pinhole(vp["focal_length"], vp["principal_point"], [48, 64]),
                               K, atol=1e-9)
    np.testing.assert_allclose(preprocess_co3d.pytorch3d_to_cam2world(vp["R"], vp["T"]), cam2world, atol=1e-9)
    # PyTorch3D's own projection of a world point (row vectors, NDC x left / y up) lands on the OpenCV pixel
    X = np.array([0.2, 0.1, 0.7])
    x_cam = X @ np.array(vp["R"]) + np.array(vp["T"])
    s = 24.0
    ndc = np.array(vp["focal_length"]) * x_cam[:2] / x_cam[2] + np.array(vp["principal_point"])
    pixel_p3d = np.array([32.0, 24.0]) - ndc * s
    x_cv = np.linalg.inv(cam2world) @ np.append(X, 1)
    np.testing.assert_allclose(pixel_p3d, (K @ x_cv[:3])[:2] / x_cv[2], atol=1e-9)


def test_command_line_and_resume(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_fake_co3d(str(raw), categories=("apple",), n_frames=2, width=32, height=24)
    cmd = [sys.executable, str(ROOT / "datasets_preprocess" / "preprocess_co3d.py"), "--co3d_dir", str(raw),
           "--output_dir", str(out), "--img_size", "24", "--category", "apple"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    index = json.load(open(out / "selected_seqs_train.json"))
    assert sorted(index["apple"]) == sorted(SEQ[:2])
    first = (out / "apple" / SEQ[0] / "images" / "frame000001.jpg").stat().st_mtime_ns
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)  # existing index: nothing redone
    assert (out / "apple" / SEQ[0] / "images" / "frame000001.jpg").stat().st_mtime_ns == first
    with pytest.raises(ValueError, match="differ"):
        preprocess_co3d.main(str(raw), str(raw))
