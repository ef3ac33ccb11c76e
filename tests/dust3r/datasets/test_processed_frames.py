"""dust3r.datasets.processed_frames: the reader shared by TartanAir, UnrealStereo4K, VirtualKitti, NianticMapFree
and DL3DV (index loading, splits, sky, unreadable files)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from datasets_preprocess import _frames
from datasets_preprocess._frames import FrameData, FrameJob, SceneJob
from dust3r.datasets.processed_frames import INDEX_FILE, ProcessedFramesDataset
from dust3r.utils.exr import read_exr

K = np.array([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]])


class Tiny(ProcessedFramesDataset):
    DEFAULT_ROOT = "data/tiny_processed"
    preprocess_script = "preprocess_tiny.py"
    dataset_label = "Tiny"


@pytest.fixture
def root(tmp_path):
    depth = np.full((24, 32), 3.0, np.float32)
    depth[:4] = -1.0  # sky
    depth[4:6] = 0.0  # invalid

    def scene_job(scene):
        split = "val" if scene.endswith("v") else "train"
        return SceneJob(scene, split, [FrameJob(scene, f"{k:03d}", f"raw/{k}", k) for k in range(3)],
                        _frames.gap_pairs([f"{k:03d}" for k in range(3)], (1,)))

    def load(job):
        pose = np.eye(4)
        pose[0, 3] = 0.1 * job.data
        return FrameData(np.full((24, 32, 3), 60 * job.data, np.uint8), depth, K, pose)

    out = str(tmp_path / "tiny")
    _frames.convert_dataset(["a/t", "b/v"], scene_job, load, out, "tiny")
    return out


class TestProcessedFramesDataset:
    def test_splits_and_stats(self, root):
        assert len(Tiny(ROOT=root, resolution=16)) == 4
        ds = Tiny(ROOT=root, split="val", resolution=16)
        assert len(ds) == 2 and "2 pairs from 1 scenes" in repr(ds)
        with pytest.raises(ValueError, match=r"split 'test'.*\['train', 'val'\]"):
            Tiny(ROOT=root, split="test", resolution=16)

    @pytest.mark.parametrize("mask_sky", [True, False])
    def test_sky_and_invalid(self, root, mask_sky):
        frame = Tiny(ROOT=root, resolution=16, mask_sky=mask_sky).read_frame(0)
        assert (frame["depthmap"][:4] == (-1 if mask_sky else 0)).all() and (frame["depthmap"][4:6] == 0).all()
        assert (frame["depthmap"][6:] == 3).all() and frame["label"] == "a/t" and frame["instance"] == "000"
        assert read_exr(f"{root}/a/t/000.exr")[0, 0] == -1  # stored as sky whatever the reader's choice

    def test_views(self, root):
        views = Tiny(ROOT=root, resolution=(32, 24), seed=1)[0]
        assert [v["instance"] for v in views] == ["000", "001"]
        np.testing.assert_allclose(views[1]["camera_pose"][0, 3], 0.1)
        np.testing.assert_allclose(views[0]["camera_intrinsics"], K, atol=1e-5)
        assert views[0]["valid_mask"].sum() == 18 * 32

    def test_missing_root(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"Tiny.*index\.npz.*preprocess_tiny\.py"):
            Tiny(ROOT=str(tmp_path), resolution=16)

    def test_index_without_pairs_key(self, root):
        np.savez(f"{root}/{INDEX_FILE}", scenes=np.array(["a"]))
        with pytest.raises(OSError, match="lacks"):
            Tiny(ROOT=root, resolution=16)

    def test_corrupt_camera_file_is_skipped(self, root, caplog):
        with open(f"{root}/a/t/001.npz", "wb") as f:
            f.write(b"not a zip")
        ds = Tiny(ROOT=root, split="train", resolution=16, seed=3)
        with pytest.raises(OSError, match="001.npz"):
            ds.read_frame(1)
        with caplog.at_level(logging.WARNING):
            for _ in range(3):  # both train pairs use frame 001: nothing readable is left in the split
                with pytest.raises(RuntimeError, match="unreadable samples"):
                    ds[0]
        assert sum("001.npz" in r.getMessage() for r in caplog.records) == 1
