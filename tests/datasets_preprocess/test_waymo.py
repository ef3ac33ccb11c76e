"""preprocess_waymo on the stage-1 (decoded .tfrecord) layout of a fake Waymo sequence.

Tested: stage 2 (crops, LiDAR depth, camera conventions), pairs, reporting, the clear error when stage 1 needs
tensorflow. Not tested: stage 1's decoding of real .tfrecord files (tensorflow + waymo_open_dataset unavailable)."""
from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from datasets_preprocess import preprocess_waymo as pre
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw.waymo import AXES, SEQUENCE, make_fake_waymo


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("waymo")
    fake = make_fake_waymo(str(base / "raw"), str(base / "out"))
    return fake, base / "out", pre.main(fake.waymo_dir, None, fake.output_dir)


def test_axes_transformation_is_the_original(processed):
    np.testing.assert_array_equal(pre.AXES_TRANSFORMATION, AXES)
    # Waymo forward (x) is OpenCV z, left (y) is -x, up (z) is -y
    assert (pre.AXES_TRANSFORMATION[:3, :3] @ [1, 0, 0]).tolist() == [0, 0, 1]
    assert (pre.AXES_TRANSFORMATION[:3, :3] @ [0, 1, 0]).tolist() == [-1, 0, 0]


def test_crops_depth_and_cameras(processed):
    fake, out, status = processed
    assert status == 0
    assert not (out / "tmp").exists()  # removed at the end
    scene = fake.scene
    for name, k in fake.frames.items():
        stem = out / SEQUENCE / name
        if name == fake.broken[1]:
            assert not stem.with_suffix(".npz").exists()
            continue
        with np.load(stem.with_suffix(".npz")) as cam:
            assert sorted(cam.files) == ["cam2world", "distortion", "intrinsics"]
            np.testing.assert_allclose(cam["cam2world"], scene.cam2world[k], atol=1e-9)
            K = cam["intrinsics"]
        np.testing.assert_allclose(K[0, 0], 512 / 192 * scene.K[k][0, 0], rtol=1e-6)  # long side 512
        depth = read_exr(stem.with_suffix(".exr"))
        assert depth.shape == (341, 512)
        ys, xs = np.nonzero(depth)
        assert len(ys) == (128 // 3 + 1) * (192 // 3)  # one LiDAR point per 3x3 pixels
        raw = np.stack([xs, ys, np.ones_like(xs)], -1) @ (scene.K[k] @ np.linalg.inv(K)).T
        r, c = np.rint(raw[:, 1]).astype(int), np.rint(raw[:, 0]).astype(int)
        np.testing.assert_allclose(depth[ys, xs], scene.depth[k][r, c], rtol=1e-5)


def test_pairs_and_report(processed, tmp_path, caplog):
    fake, out, _ = processed
    with np.load(out / "waymo_pairs.npz") as data:
        frames, pairs = data["frames"].tolist(), data["pairs"].tolist()
    assert fake.broken[1] not in frames
    named = [(frames[a], frames[b]) for _, a, b in pairs]
    assert named == [("00000_1", "00001_1"), ("00000_2", "00001_2"), ("00000_2", "00002_2"), ("00001_2", "00002_2")]
    fake2 = make_fake_waymo(str(tmp_path / "raw"), str(tmp_path / "out"))
    with caplog.at_level(logging.INFO):
        assert pre.main(fake2.waymo_dir, None, fake2.output_dir, keep_tmp=True) == 0
    assert "1 skipped" in caplog.text and fake2.broken[1] in caplog.text
    assert (tmp_path / "out" / "tmp" / SEQUENCE / "calib.json").is_file()


def test_precomputed_pairs(processed, tmp_path):
    fake = make_fake_waymo(str(tmp_path / "raw"), str(tmp_path / "out"))
    np.savez(tmp_path / "waymo_pairs.npz", scenes=np.array([SEQUENCE]),
             frames=np.array(["00000_1", "00002_1", "00001_2"]), pairs=np.array([[0, 0, 1], [0, 0, 2]]))
    assert pre.main(fake.waymo_dir, str(tmp_path / "waymo_pairs.npz"), fake.output_dir) == 0
    with np.load(tmp_path / "out" / "waymo_pairs.npz") as data:
        assert data["pairs"].tolist() == [[0, 0, 2]]  # 00002_1 is the broken image


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="tensorflow is installed")
def test_decoding_needs_tensorflow_and_says_so(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "segment-x.tfrecord").write_bytes(b"")
    with pytest.raises(ImportError, match="pip install .*waymo-open-dataset"):
        pre.main(str(tmp_path / "raw"), None, str(tmp_path / "out"))
