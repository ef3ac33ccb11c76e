"""datasets_preprocess/make_synthetic_co3d.py: Co3d processed layout, exact geometry, determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

from datasets_preprocess import make_synthetic_co3d

ROOT = Path(__file__).resolve().parents[2]


def _frame(root, seq, n):
    base = os.path.join(root, "synthetic", seq)
    meta = np.load(os.path.join(base, "images", f"frame{n:06d}.npz"))
    depth = cv2.imread(os.path.join(base, "depths", f"frame{n:06d}.jpg.geometric.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(os.path.join(base, "masks", f"frame{n:06d}.png"), cv2.IMREAD_UNCHANGED)
    img = np.asarray(PIL.Image.open(os.path.join(base, "images", f"frame{n:06d}.jpg")))
    return meta, depth, mask, img


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "co3d"
    returned = make_synthetic_co3d.main(str(out), n_sequences=2, n_frames=5, image_size=(48, 32), seed=3)
    assert returned == str(out)
    return str(out)


class TestLayout:
    def test_index_files(self, synth):
        train = json.load(open(os.path.join(synth, "selected_seqs_train.json")))
        test = json.load(open(os.path.join(synth, "selected_seqs_test.json")))
        assert train == {"synthetic": {"train_000": [1, 2, 3, 4, 5], "train_001": [1, 2, 3, 4, 5]}}
        assert test == {"synthetic": {"test_000": [1, 2, 3, 4, 5]}}
        assert json.load(open(os.path.join(synth, "synthetic", "selected_seqs_train.json"))) == train["synthetic"]

    def test_frame_files(self, synth):
        meta, depth, mask, img = _frame(synth, "train_000", 1)
        assert sorted(meta.files) == ["camera_intrinsics", "camera_pose", "maximum_depth"]
        assert meta["camera_intrinsics"].shape == (3, 3) and meta["camera_intrinsics"].dtype == np.float32
        assert meta["camera_pose"].shape == (4, 4) and meta["camera_pose"].dtype == np.float32
        assert meta["maximum_depth"].shape == () and meta["maximum_depth"] > 1.0
        assert depth.dtype == np.uint16 and depth.shape == (32, 48) and depth.max() == 65535
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
        assert img.shape == (32, 48, 3)

    def test_depth_and_mask_are_the_scene_truth(self, synth):
        seed = make_synthetic_co3d.sequence_seed(3, "synthetic", "train", 1)
        scene = make_synthetic_co3d.render_sequence(seed, 5, 48, 32)
        for n in (1, 5):
            meta, depth, mask, _ = _frame(synth, "train_001", n)
            decoded = depth.astype(np.float32) / 65535 * meta["maximum_depth"]
            np.testing.assert_allclose(decoded, scene.depth[n - 1], atol=1e-4 * scene.depth.max())
            np.testing.assert_array_equal(mask > 0, scene.surface_id[n - 1] > 0)
            np.testing.assert_allclose(meta["camera_pose"], scene.cam2world[n - 1], atol=1e-6)


def test_views_of_a_sequence_are_consistent(synth):
    """Every pixel of frame 1 lifted with the written depth, K and pose lands in frame 2 where the scene's true
    correspondence says (the written files agree with each other and with the renderer), and neighbouring frames
    overlap well."""
    meta1, depth1, _, _ = _frame(synth, "train_000", 1)
    meta2, _, _, _ = _frame(synth, "train_000", 2)
    z1 = depth1.astype(np.float64) / 65535 * meta1["maximum_depth"]
    H, W = z1.shape
    v, u = np.mgrid[0:H, 0:W]
    K1, K2 = meta1["camera_intrinsics"].astype(np.float64), meta2["camera_intrinsics"].astype(np.float64)
    cam1 = np.stack([(u - K1[0, 2]) / K1[0, 0] * z1, (v - K1[1, 2]) / K1[1, 1] * z1, z1], -1)
    world = cam1 @ meta1["camera_pose"][:3, :3].T.astype(np.float64) + meta1["camera_pose"][:3, 3]
    w2c = np.linalg.inv(meta2["camera_pose"].astype(np.float64))
    uv = (world @ w2c[:3, :3].T + w2c[:3, 3]) @ K2.T
    xy = uv[..., :2] / uv[..., 2:]

    seed = make_synthetic_co3d.sequence_seed(3, "synthetic", "train", 0)
    scene = make_synthetic_co3d.render_sequence(seed, 5, 48, 32)
    xy_true, visible = scene.correspondences(0, 1)
    assert visible.mean() > 0.5
    np.testing.assert_allclose(xy[visible], xy_true[visible], atol=0.02)


def test_deterministic(tmp_path):
    a = make_synthetic_co3d.main(str(tmp_path / "a"), n_sequences=1, n_frames=2, image_size=32, seed=5,
                                 n_test_sequences=0)
    b = make_synthetic_co3d.main(str(tmp_path / "b"), n_sequences=1, n_frames=2, image_size=32, seed=5,
                                 n_test_sequences=0)
    c = make_synthetic_co3d.main(str(tmp_path / "c"), n_sequences=1, n_frames=2, image_size=32, seed=6,
                                 n_test_sequences=0)
    files = sorted(p.relative_to(a) for p in Path(a).rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in Path(b).rglob("*") if p.is_file())
    for rel in files:
        assert (Path(a) / rel).read_bytes() == (Path(b) / rel).read_bytes(), rel
    assert (Path(a) / "synthetic/train_000/images/frame000001.jpg").read_bytes() != \
        (Path(c) / "synthetic/train_000/images/frame000001.jpg").read_bytes()
    assert json.load(open(Path(a) / "selected_seqs_test.json")) == {"synthetic": {}}


@pytest.mark.parametrize("kwargs, match", [
    ({"n_frames": 0}, "n_frames"), ({"n_sequences": 0}, "n_sequences"), ({"image_size": (4, 4)}, "image_size"),
    ({"n_boxes": 0}, "n_boxes"), ({"categories": ["a", "a"]}, "categories"), ({"arc_deg": 0}, "arc_deg"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_co3d.main(str(tmp_path / "x"), **kwargs)


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, str(ROOT / "datasets_preprocess" / "make_synthetic_co3d.py"), "--output_dir",
                    str(out), "--n_sequences", "1", "--n_frames", "2", "--image_size", "32", "24",
                    "--categories", "cat", "dog"], check=True, capture_output=True, cwd=tmp_path)
    index = json.load(open(out / "selected_seqs_train.json"))
    assert index == {"cat": {"train_000": [1, 2]}, "dog": {"train_000": [1, 2]}}
    assert PIL.Image.open(out / "dog" / "train_000" / "images" / "frame000002.jpg").size == (32, 24)


def test_the_training_command_strings_load_it(synth):
    """The README's --train_dataset / --test_dataset strings (MASt3R namespace) read the synthetic data: every
    keyword reaches its class, views come with correspondences."""
    import importlib

    from dust3r.datasets import parse_dataset

    importlib.import_module("mast3r.datasets")  # registers the 'mast3r' namespace

    train = parse_dataset(f"100 @ Co3d(split='train', ROOT={synth!r}, aug_crop='auto', aug_monocular=0.005, "
                          "aug_rot90='diff', mask_bg='rand', resolution=[(48, 32), (48, 24)], n_corres=64, nneg=0.5, "
                          "transform=ColorJitter)", namespace="mast3r")
    train.set_epoch(0)
    assert len(train) == 100
    for ar_idx, shape in ((0, (32, 48)), (1, (24, 48))):
        v1, v2 = train[(7, ar_idx)]
        assert v1["img"].shape == (3, *shape) and v1["corres"].shape == (64, 2) and v1["label"] == v2["label"]
    test = parse_dataset(f"Co3d(split='test', ROOT={synth!r}, resolution=(48, 32), n_corres=128, seed=777)",
                         namespace="mast3r")
    assert len(test) == 495
    v1, _ = test[0]
    assert v1["valid_corres"].sum() > 64 and v1["is_metric_scale"] is False
