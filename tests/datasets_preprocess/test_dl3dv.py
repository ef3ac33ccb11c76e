"""datasets_preprocess/preprocess_dl3dv.py on a fake raw DL3DV-10K + depth source (one broken depth file)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess import preprocess_dl3dv as pre
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw._checks import built, check_processed_frame, load_index, processed_frames
from tests.helpers.fake_raw.dl3dv import BROKEN_DEPTH


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    b = built("dl3dv", tmp_path_factory)
    return b.raw, b.depth, b.truths


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    b = built("dl3dv", tmp_path_factory)  # pre.main(raw, depth, out, gaps=(1, 2))
    return b.root, b.result


class TestPreprocessDL3DV:
    def test_broken_sample_reported_and_skipped(self, raw, processed):
        out, result = processed
        assert result.exit_code == 0 and result.n_frames == len(raw[2]) - 1 == 4
        assert len(result.failures) == 1
        assert result.failures[0][0].replace("\\", "/").endswith("1K/0a1b2c3d/images_4/frame_00002.png")
        assert BROKEN_DEPTH.split("/")[-1] in result.failures[0][1]

    def test_index(self, processed):
        index = load_index(processed[0])
        assert index["scenes"].tolist() == ["1K/0a1b2c3d", "1K/9f8e7d6c"]
        assert index["scene_splits"].tolist() == ["train", "train"]
        assert index["frames"].tolist() == ["frame_00001", "frame_00003", "frame_00001", "frame_00002"]
        named = sorted((str(index["frames"][a]), str(index["frames"][b])) for a, b in index["pairs"])
        assert named == [("frame_00001", "frame_00002"), ("frame_00001", "frame_00003")]

    def test_pinhole_frames_match_truth(self, raw, processed):
        for key, stem in processed_frames(processed[0]).items():
            if key[0] == "1K/0a1b2c3d":
                frame = raw[2][key]
                check_processed_frame(stem, frame, depth_atol=1e-5, sky_marked=True)
                assert frame.sky.any()

    def test_distorted_frames_undistorted(self, raw, processed):
        for key, stem in processed_frames(processed[0]).items():
            if key[0] == "1K/9f8e7d6c":
                frame = raw[2][key]
                cam, depth = np.load(stem + ".npz"), read_exr(stem + ".exr")
                np.testing.assert_allclose(cam["intrinsics"], frame.K, atol=1e-4)
                np.testing.assert_allclose(cam["cam2world"], frame.cam2world, atol=1e-5)
                inner = np.zeros_like(frame.sky)
                inner[4:-4, 4:-4] = True
                solid = inner & (depth > 0) & ~frame.sky
                rel = np.abs(depth[solid] - frame.depth[solid]) / frame.depth[solid]
                assert solid.mean() > 0.4 and np.median(rel) < 0.01
                assert (depth[inner & frame.sky] == -1).mean() > 0.9

    def test_split_merges_into_the_index(self, raw, tmp_path):
        out = str(tmp_path / "merged")
        pre.main(raw[0], raw[1], out, gaps=(1,))
        pre.main(raw[0], raw[1], out, gaps=(1,), split="test")  # the same scenes again: replaced, tagged 'test'
        assert load_index(out)["scene_splits"].tolist() == ["test", "test"]

    def test_camera_conventions(self):
        meta = {"w": 400, "h": 200, "fl_x": 100.0, "fl_y": 110.0, "cx": 200.0, "cy": 100.0, "k1": 0.1}
        K, dist = pre.camera_of(meta, {}, 100, 50)
        # quarter size, then the half-pixel shift from COLMAP's pixel corners to OpenCV's pixel centres
        np.testing.assert_allclose(K, [[25, 0, 49.5], [0, 27.5, 24.5], [0, 0, 1]])
        np.testing.assert_allclose(dist, [0.1, 0, 0, 0, 0])
        K, _ = pre.camera_of(meta, {"fl_x": 200.0}, 400, 200)  # per-frame values override the global ones
        assert K[0, 0] == 200
        with pytest.raises(ValueError, match="fl_x"):
            pre.camera_of({"w": 4, "h": 2}, {}, 4, 2)

    def test_depth_source(self, tmp_path):
        path = str(tmp_path / "d.npy")
        np.save(path, np.array([[1.0, np.inf], [np.nan, -3.0]], np.float32))
        np.testing.assert_array_equal(pre.read_depth_source(path, 2, 2), [[1, -1], [0, -1]])
        np.testing.assert_array_equal(pre.read_depth_source(path, 4, 4)[::2, ::2], [[1, -1], [0, -1]])
        with pytest.raises(ValueError, match="aspect"):
            pre.read_depth_source(path, 2, 6)
