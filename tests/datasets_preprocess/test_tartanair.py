"""datasets_preprocess/preprocess_tartanair.py on a fake raw TartanAir (real layout, NED poses, one broken image)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess import preprocess_tartanair
from tests.helpers.fake_raw._checks import built, check_processed_frame, load_index, processed_frames
from tests.helpers.fake_raw.tartanair import BROKEN


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    b = built("tartanair", tmp_path_factory)  # preprocess_tartanair.main(raw, out, gaps=(1, 2))
    return b.root, b.truths, b.result


class TestPreprocessTartanAir:
    def test_broken_sample_reported_and_skipped(self, processed):
        out, truths, result = processed
        assert result.exit_code == 0
        assert result.n_frames == len(truths) - 1
        assert len(result.failures) == 1 and result.failures[0][0].replace("\\", "/").endswith(BROKEN)
        assert ("abandonedfactory/Hard/P001", "000001") not in processed_frames(out)

    def test_index(self, processed):
        out, _, result = processed
        index = load_index(out)
        assert index["scenes"].tolist() == ["abandonedfactory/Easy/P000", "abandonedfactory/Hard/P001"]
        assert index["scene_splits"].tolist() == ["train", "train"]
        named = [(index["frames"][a], index["frames"][b]) for a, b in index["pairs"]]
        # Easy: gaps 1 and 2 over 3 frames; Hard: its only pair (0, 1) touches the broken frame
        assert sorted(named) == [("000000", "000001"), ("000000", "000002"), ("000001", "000002")]
        assert result.n_pairs == 3

    def test_frames_match_truth(self, processed):
        out, truths, _ = processed
        stems = processed_frames(out)
        assert len(stems) == 4
        for key, stem in stems.items():
            frame = truths[key]
            check_processed_frame(stem, frame, depth_atol=1e-5, sky_marked=False)

    def test_ned_conversion(self):
        # identity NED pose: the camera looks along world x (NED forward), its image x axis is world y (right)
        pose = preprocess_tartanair.ned_pose_to_opencv([1, 2, 3, 0, 0, 0, 1])
        np.testing.assert_allclose(pose[:3, :3], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
        np.testing.assert_allclose(pose[:3, 3], [1, 2, 3])
        with pytest.raises(ValueError, match="7 numbers"):
            preprocess_tartanair.ned_pose_to_opencv([0, 0, 0, 1])

    def test_missing_raw_dir(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            preprocess_tartanair.main(str(tmp_path / "nowhere"), str(tmp_path / "out"))

    def test_cli_flags(self):
        args = preprocess_tartanair.get_parser().parse_args(["--tartanair_dir", "raw", "--gaps", "1", "3"])
        assert (args.tartanair_dir, args.output_dir, args.gaps) == ("raw", "data/tartanair_processed", [1, 3])
