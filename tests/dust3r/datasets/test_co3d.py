"""dust3r.datasets.co3d: the Co3d reader on synthetic data in the processed layout (exact geometry)."""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from datasets_preprocess import make_synthetic_co3d
from dust3r.datasets.co3d import Co3d, co3d_pair_slots, slot_to_position
from dust3r.datasets.utils.transforms import ColorJitter

W, H, N_FRAMES, SEED = 64, 48, 6, 11


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_co3d.main(str(tmp_path_factory.mktemp("co3d") / "synth"), n_sequences=2,
                                    n_frames=N_FRAMES, image_size=(W, H), seed=SEED)


def _scene(split, k):
    return make_synthetic_co3d.render_sequence(make_synthetic_co3d.sequence_seed(SEED, "synthetic", split, k),
                                               N_FRAMES, W, H)


class TestPairRule:
    def test_slots_are_the_originals(self):
        slots = co3d_pair_slots()
        assert len(slots) == 495 and slots[0] == (0, 5) and slots[-1] == (94, 99)
        assert {j - i for i, j in slots} == {5, 10, 15, 20, 25, 30}

    def test_long_sequences_index_directly(self):
        assert [slot_to_position(s, 150) for s in (-3, 0, 42, 99, 103)] == [0, 0, 42, 99, 103]
        assert slot_to_position(103, 100) == 99

    def test_short_sequences_scale(self):
        assert [slot_to_position(s, 12) for s in (-4, 0, 9, 50, 99, 103)] == [0, 0, 1, 6, 11, 11]
        assert slot_to_position(77, 1) == 0

    def test_len(self, root):
        assert len(Co3d(split="train", ROOT=root, resolution=(W, H))) == 2 * 495
        assert len(Co3d(split="test", ROOT=root, resolution=(W, H))) == 495


def test_views_match_the_scene(root):
    """Native resolution, no augmentation: depth, cameras and pts3d are the renderer's, and view 1's points land in
    view 2 where the scene's true correspondences say."""
    ds = Co3d(split="train", ROOT=root, mask_bg=False, resolution=(W, H), seed=3)
    for idx in (0, 495 + 200):
        v1, v2 = ds[idx]
        k = 0 if idx < 495 else 1
        assert v1["label"] == f"synthetic/train_{k:03d}" and v1["dataset"] == "Co3d_v2"
        i, j = (int(v["instance"][5:11]) - 1 for v in (v1, v2))
        scene = _scene("train", k)
        np.testing.assert_allclose(v1["depthmap"], scene.depth[i], atol=2e-4 * scene.depth.max())
        np.testing.assert_allclose(v2["camera_pose"], scene.cam2world[j], atol=1e-5)
        np.testing.assert_allclose(v1["pts3d"], scene.pts3d[i], atol=2e-3)
        assert v1["valid_mask"].all() and v1["is_metric_scale"] is False
        w2c = np.linalg.inv(v2["camera_pose"].astype(np.float64))
        uv = (v1["pts3d"].astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]) @ v2["camera_intrinsics"].T
        xy = uv[..., :2] / uv[..., 2:]
        xy_true, visible = scene.correspondences(i, j)
        assert visible.mean() > 0.4
        np.testing.assert_allclose(xy[visible], xy_true[visible], atol=0.05)


def test_mask_bg(root):
    on = Co3d(split="train", ROOT=root, mask_bg=True, resolution=(W, H), seed=3)
    off = Co3d(split="train", ROOT=root, mask_bg=False, resolution=(W, H), seed=3)
    v_on, v_off = on[10][0], off[10][0]
    assert v_on["instance"] == v_off["instance"]
    scene = _scene("train", 0)
    objects = scene.surface_id[int(v_on["instance"][5:11]) - 1] > 0
    np.testing.assert_array_equal(v_on["valid_mask"], objects)
    assert v_off["valid_mask"].all()
    rand = Co3d(split="train", ROOT=root, mask_bg="rand", resolution=(W, H), seed=3)
    masked = [not rand[i][0]["valid_mask"].all() for i in range(0, 400, 20)]
    assert 0 < sum(masked) < len(masked)
    with pytest.raises(ValueError, match="mask_bg"):
        Co3d(split="train", ROOT=root, mask_bg="sometimes", resolution=(W, H))


def test_train_command_arguments_and_resolutions(root):
    ds = Co3d(split="train", ROOT=root, aug_crop="auto", mask_bg="rand", resolution=[(48, 36), (48, 24)],
              transform=ColorJitter)
    for ar_idx, shape in ((0, (36, 48)), (1, (24, 48))):
        v1, v2 = ds[(123, ar_idx)]
        assert v1["img"].shape == (3, *shape) and tuple(v2["true_shape"]) == shape
        assert v1["pts3d"].shape == (*shape, 3) and v1["camera_intrinsics"].dtype == np.float32


def test_seeded_items_repeat(root):
    ds = Co3d(split="test", ROOT=root, resolution=(W, H), seed=777)
    a, b = ds[42], ds[42]
    for va, vb in zip(a, b):
        assert va["instance"] == vb["instance"] and va["rng"] == vb["rng"]
        np.testing.assert_array_equal(va["depthmap"], vb["depthmap"])


def test_frame_without_depth_is_replaced(tmp_path):
    root = make_synthetic_co3d.main(str(tmp_path / "s"), n_sequences=1, n_frames=4, image_size=(32, 24), seed=0,
                                    n_test_sequences=0)
    mask = os.path.join(root, "synthetic", "train_000", "masks", "frame000001.png")
    cv2.imwrite(mask, np.zeros((24, 32), np.uint8))
    ds = Co3d(split="train", ROOT=root, mask_bg=True, resolution=(32, 24), seed=1)
    for idx in range(0, 60, 3):  # slots 0..~30 map onto frames 1-2: frame 1 is hit, flagged, never served
        for view in ds[idx]:
            assert view["instance"] != "frame000001.jpg" and view["valid_mask"].any()
    assert any(any(flags) for flags in ds.invalidate["synthetic", "train_000"].values())


def test_missing_file_is_skipped_with_a_warning(tmp_path, caplog):
    root = make_synthetic_co3d.main(str(tmp_path / "s"), n_sequences=2, n_frames=3, image_size=(32, 24), seed=0,
                                    n_test_sequences=0)
    broken = os.path.join(root, "synthetic", "train_000", "depths", "frame000001.jpg.geometric.png")
    os.remove(broken)
    with open(os.path.join(root, "synthetic", "train_000", "images", "frame000002.npz"), "wb") as f:
        f.write(b"not a zip")
    ds = Co3d(split="train", ROOT=root, mask_bg=False, resolution=(32, 24), seed=5)
    with caplog.at_level(logging.WARNING):
        served = [ds[i] for i in range(0, 495, 15)]
    assert all(len(views) == 2 for views in served)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "frame000001.jpg.geometric.png" in messages and "frame000002.npz" in messages
    assert any(views[0]["label"] == "synthetic/train_001" for views in served)


def test_metadata_without_maximum_depth_is_a_bad_sample(tmp_path):
    root = make_synthetic_co3d.main(str(tmp_path / "s"), n_sequences=1, n_frames=3, image_size=(32, 24), seed=0,
                                    n_test_sequences=0)
    path = os.path.join(root, "synthetic", "train_000", "images", "frame000001.npz")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files if key != "maximum_depth"}
    np.savez(path, **arrays)
    ds = Co3d(split="train", ROOT=root, mask_bg=False, resolution=(32, 24), seed=5)
    with pytest.raises(OSError, match=r"frame000001.*lacks \['maximum_depth'\]"):
        ds._load_frame("synthetic", "train_000", 1, False, (32, 24), np.random.default_rng(0))


def test_missing_root_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess_co3d.py") as err:
        Co3d(split="train", ROOT=str(tmp_path / "nowhere"), resolution=(W, H))
    assert "selected_seqs_train.json" in str(err.value)
    assert Co3d.DEFAULT_ROOT == "data/co3d_processed"
