"""datasets_preprocess/_frames.py: the processed-frames writer shared by TartanAir, UnrealStereo4K, VirtualKitti,
Map-free and DL3DV."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from datasets_preprocess import _frames
from datasets_preprocess._frames import FrameData, FrameJob, SceneJob
from tests.helpers.fake_raw._checks import load_index, named_pairs

K = np.array([[10.0, 0, 7.5], [0, 10.0, 5.5], [0, 0, 1]])


def _data(depth_value=2.0, pose=None):
    return FrameData(np.full((12, 16, 3), 128, np.uint8), np.full((12, 16), depth_value, np.float32), K,
                     np.eye(4) if pose is None else pose)


def test_gap_pairs():
    assert _frames.gap_pairs(["a", "b", "c", "d"], (2, 1, 1, 0)) == [("a", "b"), ("b", "c"), ("c", "d"),
                                                                        ("a", "c"), ("b", "d")]


@pytest.mark.parametrize("order", ["xyzw", "wxyz"])
def test_quaternion_orders(order):
    rot = Rotation.from_euler("xyz", [0.3, -0.5, 1.2])
    xyzw = rot.as_quat()
    quat = xyzw if order == "xyzw" else np.roll(xyzw, 1)
    np.testing.assert_allclose(_frames.quaternion_to_rotation(quat, order), rot.as_matrix(), atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        _frames.quaternion_to_rotation([0, 0, 0, 0], order)
    with pytest.raises(ValueError, match="order"):
        _frames.quaternion_to_rotation(quat, "wzyx")


def test_opengl_to_opencv():
    # an OpenGL camera looking down world -z with y up is an OpenCV camera looking down -z with y down
    cv = np.eye(4) @ _frames.OPENGL_TO_OPENCV
    np.testing.assert_allclose(cv[:3, 2], [0, 0, -1])
    np.testing.assert_allclose(cv[:3, 1], [0, -1, 0])


def test_convert_skips_broken_frames_and_merges_the_index(tmp_path):
    def parse(scene):
        if scene == "bad":
            raise ValueError("unreadable metadata")
        names = ["f0", "f1", "f2"]
        return SceneJob(scene, "train", [FrameJob(scene, n, f"raw/{scene}/{n}", n) for n in names],
                        _frames.gap_pairs(names, (1, 2)))

    def load(job):
        if job.data == "f1":
            raise FileNotFoundError(f"no such file: {job.source}")
        return _data()

    out = str(tmp_path / "out")
    result = _frames.convert_dataset(["s/a", "bad"], parse, load, out, "test")
    assert (result.n_scenes, result.n_frames, result.n_pairs, result.exit_code) == (1, 2, 1, 0)
    assert [name for name, _ in result.failures] == ["bad", "raw/s/a/f1"]
    assert named_pairs(load_index(out)) == [("s/a", "f0", "f2")]
    # a second run with another split keeps the scenes it did not write
    _frames.convert_dataset(["s/b"], lambda s: SceneJob(s, "test", [FrameJob(s, "x", "x"), FrameJob(s, "y", "y")],
                                                         [("x", "y")]), lambda job: _data(), out, "test")
    index = load_index(out)
    assert index["scenes"].tolist() == ["s/a", "s/b"] and index["scene_splits"].tolist() == ["train", "test"]
    assert named_pairs(index) == [("s/a", "f0", "f2"), ("s/b", "x", "y")]
    assert index["pairs"].dtype == np.int32 and index["frame_scenes"].dtype == np.int32


def test_nothing_written_is_exit_code_1(tmp_path):
    result = _frames.convert_dataset([], lambda s: None, lambda j: None, str(tmp_path / "o"), "test")
    assert result.exit_code == 1 and load_index(str(tmp_path / "o"))["pairs"].shape == (0, 2)


@pytest.mark.parametrize("data, match", [
    (FrameData(np.zeros((12, 16, 3), np.uint8), np.zeros((6, 8), np.float32), K, np.eye(4)), "depth is"),
    (_data(pose=np.diag([1.0, 1.0, -1.0, 1.0])), "not a rotation"),
    (_data(pose=np.full((4, 4), np.nan)), "bad cam2world"),
    (FrameData(np.zeros((12, 16), np.uint8), np.zeros((12, 16), np.float32), K, np.eye(4)), "uint8 image"),
])
def test_write_frame_rejects_broken_frames(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        _frames.write_frame(str(tmp_path), FrameJob("s", "f", "raw/f"), data)
    assert not (tmp_path / "s").exists()


def test_load_npy_names_the_file(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        _frames.load_npy(str(tmp_path / "bad.npy"))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        _frames.load_npy(str(tmp_path / "missing.npy"))
