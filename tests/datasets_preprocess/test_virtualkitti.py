"""datasets_preprocess/preprocess_virtualkitti.py on a fake raw Virtual KITTI 2 (real layout, one broken depth)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets_preprocess import preprocess_virtualkitti
from tests.helpers.fake_raw._checks import built, check_processed_frame, load_index, named_pairs, processed_frames
from tests.helpers.fake_raw.virtualkitti import BROKEN


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    b = built("virtualkitti", tmp_path_factory)  # preprocess_virtualkitti.main(raw, out, gaps=(1,))
    return b.root, b.truths, b.result, b.raw


class TestPreprocessVirtualKitti:
    def test_broken_sample_reported_and_skipped(self, processed):
        out, truths, result, _ = processed
        assert result.exit_code == 0 and result.n_frames == len(truths) - 1 == 9
        assert len(result.failures) == 1 and result.failures[0][0].replace("\\", "/").endswith(
            "Scene01/fog/frames/rgb/Camera_1/rgb_00001.jpg")  # the frame is named by its image
        assert BROKEN.split("/")[-1] in result.failures[0][1]  # the reason names the broken depth file
        assert ("Scene01/fog", "00001_Camera_1") not in processed_frames(out)

    def test_index_pairs(self, processed):
        out, _, _, _ = processed
        index = load_index(out)
        assert index["scenes"].tolist() == ["Scene01/clone", "Scene01/fog"]
        named = set(named_pairs(index))
        clone = {("Scene01/clone", f"{i:05d}_Camera_{c}", f"{i + 1:05d}_Camera_{c}") for i in range(2) for c in (0, 1)}
        clone |= {("Scene01/clone", f"{i:05d}_Camera_0", f"{i:05d}_Camera_1") for i in range(3)}
        fog = {("Scene01/fog", "00000_Camera_0", "00001_Camera_0"), ("Scene01/fog", "00000_Camera_0", "00000_Camera_1")}
        assert named == clone | fog

    def test_frames_match_truth(self, processed):
        out, truths, _, _ = processed
        for key, stem in processed_frames(out).items():
            frame = truths[key]
            # centimetre depth; the ceiling is VKITTI's sky (65535) and is stored as -1
            check_processed_frame(stem, frame, depth_atol=0.0051, sky_marked=True, image_tol=15)
            assert frame.sky.any()

    def test_depth_conversion(self):
        np.testing.assert_allclose(preprocess_virtualkitti.depth_from_png(np.array([[0, 150, 65535]], np.uint16)),
                                   [[0.0, 1.5, -1.0]])

    def test_separate_textgt_tree(self, processed, tmp_path):
        _, _, _, raw = processed
        textgt = tmp_path / "vkitti_2.0.3_textgt" / "Scene01" / "clone" / "textgt"
        textgt.mkdir(parents=True)
        for name in ("intrinsic.txt", "extrinsic.txt"):
            shutil.copy(f"{raw}/Scene01/clone/{name}", textgt / name)
        out = str(tmp_path / "out")
        result = preprocess_virtualkitti.main(raw, out, textgt_dir=str(tmp_path / "vkitti_2.0.3_textgt"))
        assert result.n_frames == 6 and load_index(out)["scenes"].tolist() == ["Scene01/clone"]

    def test_bad_table(self, tmp_path):
        (tmp_path / "intrinsic.txt").write_text("frame cameraID K[0,0]\n0 0 1\n")
        with pytest.raises(ValueError, match="columns"):
            preprocess_virtualkitti.read_table(str(tmp_path / "intrinsic.txt"), 4)
