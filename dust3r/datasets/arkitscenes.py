"""ARKitScenes reader: the layout ``datasets_preprocess/preprocess_arkitscenes.py`` writes (the original script's).

Processed layout under ``ROOT``::

    Training/all_metadata.npz    scenes (S,) str, sceneids (N,) int, images (N,) str (``<video>_<timestamp>.png``),
                                 intrinsics (N, 3, 3), trajectories (N, 4, 4) cam2world (OpenCV axes, images
                                 turned sky-up), pairs (P, >= 2) image indices (+ a score column), counts (S,)
    Training/scene_list.json     the scenes kept
    Training/<scene>/vga_wide/<video>_<timestamp>.jpg       RGB (turned so that the sky is up)
    Training/<scene>/lowres_depth/<video>_<timestamp>.png   uint16 depth in millimetres, at the RGB size
    Training/<scene>/scene_metadata.npz                     the per-scene part of all_metadata.npz
    Test/...                                                the same for split='test'

:class:`MetadataPairsDataset` is the reader of this "all_metadata.npz" family (ScanNet++ shares it).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import cropped_view, index_file, load_npz, require_keys
from dust3r.utils.image import imread_cv2

__all__ = ["ARKitScenes", "MetadataPairsDataset", "METADATA_KEYS"]

#: arrays of an ``all_metadata.npz`` the readers use
METADATA_KEYS = ("scenes", "sceneids", "images", "intrinsics", "trajectories", "pairs")


class MetadataPairsDataset(BaseStereoViewDataset):
    """Pairs listed in one ``all_metadata.npz`` (the original ARKitScenes / ScanNet++ processed layouts).

    Subclasses give :attr:`DEFAULT_ROOT`, :attr:`preprocess_script`, :attr:`dataset_label`, the folder of the
    split (:meth:`_split_dir`) and the file names of a frame (:meth:`_frame_paths`).
    """

    DEFAULT_ROOT = ""
    preprocess_script = ""
    dataset_label = ""
    is_metric_scale = True

    def __init__(self, *args, ROOT: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else os.fspath(ROOT)
        super().__init__(*args, **kwargs)
        self._load_data()

    def _split_dir(self) -> str:
        return self.ROOT

    def _frame_paths(self, scene_dir: str, basename: str):
        raise NotImplementedError

    def _load_data(self) -> None:
        path = index_file(self, "all_metadata.npz", folder=self._split_dir())
        scenes, sceneids, images, intrinsics, trajectories, pairs = require_keys(load_npz(path), METADATA_KEYS, path)
        self.scenes = scenes
        self.sceneids = sceneids.astype(np.int64)
        self.images = images
        self.intrinsics = self._convert_intrinsics(intrinsics.astype(np.float32))
        self.trajectories = trajectories.astype(np.float32)
        self.pairs = pairs[:, :2].astype(np.int64)

    def _convert_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        """(N, 3, 3) stored intrinsics -> OpenCV convention (pixel centres at integers)."""
        return intrinsics

    def __len__(self) -> int:
        return len(self.pairs)

    def _get_views(self, idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        views = []
        for view_idx in self.pairs[idx]:
            scene = str(self.scenes[self.sceneids[view_idx]])
            basename = str(self.images[view_idx])
            impath, depthpath = self._frame_paths(osp.join(self._split_dir(), scene), basename)
            image = imread_cv2(impath)
            depthmap = self._read_depth(depthpath)
            if depthmap.shape != image.shape[:2]:
                raise OSError(f"depth map {depthpath!r} is {depthmap.shape}, its image {image.shape[:2]}")
            views.append(cropped_view(self, image, depthmap, self.intrinsics[view_idx], self.trajectories[view_idx],
                                      resolution, rng, label=f"{scene}_{basename}", instance=f"{idx}_{view_idx}",
                                      info=impath))
        return views

    @staticmethod
    def _read_depth(depthpath: str) -> np.ndarray:
        """(H, W) float32 metres from a uint16 millimetre PNG; non-finite values invalid (0)."""
        import cv2

        depthmap = imread_cv2(depthpath, cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
        depthmap[~np.isfinite(depthmap)] = 0.0
        return depthmap


class ARKitScenes(MetadataPairsDataset):
    """Pairs of ARKitScenes frames (indoor iPad scans, metric depth).

    Args:
        split: 'train' (the ``Training`` folder) or 'test' (``Test``).
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/arkitscenes_processed"
    preprocess_script = "preprocess_arkitscenes.py"
    dataset_label = "arkitscenes"
    SPLIT_DIRS = {"train": "Training", "test": "Test"}

    def __init__(self, *args, split: str, ROOT: Optional[str] = None, **kwargs):
        if split not in self.SPLIT_DIRS:
            raise ValueError(f"ARKitScenes split must be one of {sorted(self.SPLIT_DIRS)}, got {split!r}")
        super().__init__(*args, ROOT=ROOT, split=self.SPLIT_DIRS[split], **kwargs)

    def _split_dir(self) -> str:
        return osp.join(self.ROOT, self.split)

    def _frame_paths(self, scene_dir: str, basename: str):
        return (osp.join(scene_dir, "vga_wide", basename.replace(".png", ".jpg")),
                osp.join(scene_dir, "lowres_depth", basename))
