"""datasets_preprocess/preprocess_unrealstereo4k.py on a fake raw UnrealStereo4K (real layout, one broken image)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess import preprocess_unrealstereo4k as pre
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw._checks import built, check_processed_frame, load_index, named_pairs, processed_frames
from tests.helpers.fake_raw.unrealstereo4k import BROKEN


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    b = built("unrealstereo4k", tmp_path_factory)
    return b.raw, b.truths


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    b = built("unrealstereo4k", tmp_path_factory)  # pre.main(raw, out, gaps=(1,), max_side=None)
    return b.root, b.result


class TestPreprocessUnrealStereo4K:
    def test_broken_sample_reported_and_skipped(self, raw, processed):
        out, result = processed
        assert result.exit_code == 0 and result.n_frames == len(raw[1]) - 1 == 9
        assert len(result.failures) == 1 and result.failures[0][0].replace("\\", "/").endswith(BROKEN)
        assert ("00001", "00001_right") not in processed_frames(out)

    def test_index_pairs(self, processed):
        index = load_index(processed[0])
        assert index["scenes"].tolist() == ["00000", "00001"]
        named = named_pairs(index)
        expected = [("00000", f"{i:05d}_left", f"{i:05d}_right") for i in range(3)]
        expected += [("00000", f"{i:05d}_{s}", f"{i + 1:05d}_{s}") for s in ("left", "right") for i in range(2)]
        expected += [("00001", "00000_left", "00000_right"), ("00001", "00000_left", "00001_left")]
        assert named == sorted(expected)

    def test_frames_match_truth(self, raw, processed):
        for key, stem in processed_frames(processed[0]).items():
            frame = raw[1][key]
            check_processed_frame(stem, frame, depth_atol=1e-4 * frame.depth.max(), sky_marked=False)

    def test_max_side_downscales_consistently(self, raw, tmp_path):
        out = str(tmp_path / "small")
        pre.main(raw[0], out, gaps=(1,), max_side=96)
        stem = processed_frames(out)["00000", "00000_left"]
        cam, depth = np.load(stem + ".npz"), read_exr(stem + ".exr")
        assert depth.shape == (54, 96)
        # half size: focal halves, the principal point follows the pixel centres ((c + 0.5) / 2 - 0.5)
        np.testing.assert_allclose(cam["intrinsics"][[0, 0, 1], [0, 2, 2]], [55.0, 47.75, 26.75], atol=1e-3)
        truth = raw[1]["00000", "00000_left"].depth
        ys, xs = np.mgrid[0:54, 0:96]
        rel = np.abs(depth - truth[2 * ys, 2 * xs]) / truth[2 * ys, 2 * xs]
        assert np.median(rel) < 0.02

    def test_extrinsics_and_disparity(self, tmp_path):
        path = tmp_path / "00000.txt"
        path.write_text("2 0 1 0 2 1 0 0 1\n1 0 0 -1 0 1 0 0 0 0 1 0\n")
        K, cam2world = pre.read_extrinsics(str(path))
        np.testing.assert_allclose(K, [[2, 0, 1], [0, 2, 1], [0, 0, 1]])
        np.testing.assert_allclose(cam2world[:3, 3], [1, 0, 0])  # world2cam t = -1 on x: the camera is at x = 1
        path.write_text("1 2 3\n")
        with pytest.raises(ValueError, match="9 intrinsics"):
            pre.read_extrinsics(str(path))
        np.testing.assert_allclose(pre.depth_from_disparity(np.array([4.0, 0.0, -1.0, np.nan]), 100.0, 0.2),
                                   [5.0, 0.0, 0.0, 0.0])
