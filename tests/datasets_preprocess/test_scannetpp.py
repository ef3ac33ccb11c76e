"""datasets_preprocess/preprocess_scannetpp.py on a fake raw ScanNet++ -> the ScanNetpp reader loads it."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets_preprocess import preprocess_scannetpp as prep
from dust3r.datasets.scannetpp import ScanNetpp
from dust3r.synthetic import look_at
from dust3r.synthetic.render import cast_rays
from tests.helpers.fake_raw._checks import check_loaded_pair
from tests.helpers.fake_raw._scene import OBJECTS
from tests.helpers.fake_raw.scannetpp import SCENES, box_mesh, write_fake_scannetpp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("scannetpp")
    raw, pairs, out = str(base / "raw"), str(base / "pairs"), str(base / "processed")
    truths = write_fake_scannetpp(raw, pairs)
    os.remove(os.path.join(raw, "data", SCENES[1], "iphone", "rgb_masks", "frame_000010.png"))  # broken image
    return raw, pairs, out, truths, prep.main(raw, pairs, out, target_resolution=64)


def test_layout_and_skipped_image(processed):
    _, _, out, _, status = processed
    assert status == 0
    meta = np.load(os.path.join(out, "all_metadata.npz"))
    assert list(meta["scenes"]) == list(SCENES) and list(meta["counts"]) == [0, 4]
    assert list(meta["images"]) == ["DSC00001", "DSC00002", "frame_000000", "frame_000010",
                                    "DSC00001", "DSC00002", "frame_000000"]
    assert meta["pairs"].shape == (6 + 3, 3) and meta["pairs"][6:, :2].max() == 6
    assert meta["intrinsics"].shape == (7, 3, 3) and meta["trajectories"].shape == (7, 4, 4)
    depth = cv2.imread(os.path.join(out, SCENES[0], "depth", "DSC00001.png"), cv2.IMREAD_UNCHANGED)
    image = cv2.imread(os.path.join(out, SCENES[0], "images", "DSC00001.jpg"))
    assert depth.dtype == np.uint16 and depth.shape == image.shape[:2] == (48, 64)
    assert (depth == 0).sum() > 0 and depth.max() > 1000  # the anonymised blob is invalid; millimetres


@pytest.mark.parametrize("idx", [0, 2, 5, 7])
def test_reader_views_match_the_scene(processed, idx):
    _, _, out, truths, _ = processed
    ds = ScanNetpp(split="train", ROOT=out, resolution=(64, 48), seed=3)
    views = ds[idx]
    frames = [truths[view["label"][:len(SCENES[0])], view["label"][len(SCENES[0]) + 1:]] for view in views]
    check_loaded_pair(views, frames)
    assert views[0]["is_metric_scale"] is True and views[0]["dataset"] == "ScanNet++"


def test_rasterizer_is_exact():
    vertices, faces = box_mesh()
    K = np.array([[50.0, 0, 31.2], [0, 50.0, 24.7], [0, 0, 1]])
    pose = look_at([-2.5, -0.3, 1.3], [0.0, 0.0, 0.6])  # inside the room: walls cross the near plane
    depth = prep.rasterize_depth(vertices, faces, K, pose, 64, 48)
    np.testing.assert_allclose(depth, cast_rays(K, pose, 64, 48, OBJECTS)[0], rtol=1e-5)
    np.testing.assert_array_equal(prep.rasterize_depth(vertices, faces, K, pose, 64, 48, chunk=300), depth)
    far = prep.rasterize_depth(vertices, faces, K, pose, 64, 48, zfar=3.0)
    assert (far == 0).any() and far.max() < 3.0


def test_broken_scene_is_skipped(tmp_path, caplog):
    raw, pairs, out = str(tmp_path / "raw"), str(tmp_path / "pairs"), str(tmp_path / "out")
    write_fake_scannetpp(raw, pairs, dslr_size=(32, 24), iphone_size=(32, 24))
    os.remove(os.path.join(raw, "data", SCENES[0], "scans", "mesh_aligned_0.05.ply"))
    with caplog.at_level(logging.WARNING):
        assert prep.main(raw, pairs, out, target_resolution=32) == 0
    assert "mesh_aligned_0.05.ply" in caplog.text
    assert list(np.load(os.path.join(out, "all_metadata.npz"))["scenes"]) == [SCENES[1]]
    with pytest.raises(ValueError, match="split='train'"):
        ScanNetpp(split="test", ROOT=out, resolution=32)


def test_command_line(tmp_path):
    raw, pairs, out = tmp_path / "raw", tmp_path / "pairs", tmp_path / "out"
    write_fake_scannetpp(str(raw), str(pairs), dslr_size=(32, 24), iphone_size=(32, 24))
    subprocess.run([sys.executable, str(ROOT / "datasets_preprocess" / "preprocess_scannetpp.py"),
                    "--scannetpp_dir", str(raw), "--precomputed_pairs", str(pairs), "--output_dir", str(out),
                    "--target_resolution", "32"], check=True, capture_output=True, cwd=tmp_path)
    assert len(ScanNetpp(split="train", ROOT=str(out), resolution=(32, 24))) == 12
