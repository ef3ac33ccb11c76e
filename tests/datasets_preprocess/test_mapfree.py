"""datasets_preprocess/preprocess_mapfree.py on a fake raw Map-free (real layout, one broken depth file)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets_preprocess import preprocess_mapfree as pre
from tests.helpers.fake_raw._checks import built, check_processed_frame, load_index, named_pairs, processed_frames


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    b = built("mapfree", tmp_path_factory)  # pre.main(raw, out) with the default flags
    return b.root, b.truths, b.result, b.raw


class TestPreprocessMapFree:
    def test_broken_sample_reported_and_skipped(self, processed):
        out, truths, result, _ = processed
        assert result.exit_code == 0 and result.n_frames == len(truths) - 1 == 7
        assert len(result.failures) == 1
        assert result.failures[0][0].replace("\\", "/").endswith("train/s00000/seq1/frame_00001.jpg")
        assert "frame_00001.dptkitti.png" in result.failures[0][1]
        assert ("train/s00000", "seq1_frame_00001") not in processed_frames(out)

    def test_index(self, processed):
        index = load_index(processed[0])
        assert index["scenes"].tolist() == ["test/s00520", "train/s00000", "val/s00460"]
        assert index["scene_splits"].tolist() == ["test", "train", "val"]
        named = named_pairs(index)
        # train: the overlaps.npz pairs in [0.1, 0.9] ((0,0,1,1) touches the broken frame); val: map frame x queries
        assert named == [("train/s00000", "seq0_frame_00000", "seq0_frame_00001"),
                         ("train/s00000", "seq0_frame_00000", "seq1_frame_00000"),
                         ("val/s00460", "seq0_frame_00000", "seq1_frame_00000"),
                         ("val/s00460", "seq0_frame_00000", "seq1_frame_00001")]

    def test_frames_match_truth(self, processed):
        out, truths, _, _ = processed
        for key, stem in processed_frames(out).items():
            frame = truths[key]
            check_processed_frame(stem, frame, depth_atol=5.1e-4, sky_marked=False, image_tol=20)
        # the world is the first map frame
        stem = processed_frames(out)["train/s00000", "seq0_frame_00000"]
        np.testing.assert_allclose(np.load(stem + ".npz")["cam2world"], np.eye(4), atol=1e-6)

    def test_jpeg_copied_as_is(self, processed):
        out, _, _, raw = processed
        stem = processed_frames(out)["val/s00460", "seq1_frame_00001"]
        with open(stem + ".jpg", "rb") as mine, open(f"{raw}/val/s00460/seq1/frame_00001.jpg", "rb") as source:
            assert mine.read() == source.read()

    def test_pose_convention(self):
        # world-to-camera: a camera translated by t = (0, 0, -2) with no rotation sits at world (0, 0, 2)
        np.testing.assert_allclose(pre.pose_to_cam2world(np.array([1, 0, 0, 0, 0, 0, -2.0])),
                                   [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]])
        # 90 degrees about z, scalar first: world x maps to camera y
        c2w = pre.pose_to_cam2world(np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4), 0, 0, 0]))
        np.testing.assert_allclose(np.linalg.inv(c2w)[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)

    def test_missing_raw_dir(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="Map-free folder"):
            pre.main(str(tmp_path / "missing"), str(tmp_path / "out"))

