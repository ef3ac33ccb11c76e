"""Waymo Open reader: the processed layout of ``datasets_preprocess/preprocess_waymo.py`` (the original's).

Processed layout under ``ROOT``::

    waymo_pairs.npz                      scenes (S,) str (the .tfrecord file names), frames (F,) str
                                         ("<frame:05d>_<camera 1-5>"), pairs (P, 3) int (scene_id, im1_id, im2_id)
    <scene>/<frame>_<camera>.jpg         RGB, long side 512
    <scene>/<frame>_<camera>.exr         float32 sparse depth from the projected LiDAR points (0 = no point)
    <scene>/<frame>_<camera>.npz         intrinsics (3, 3), cam2world (4, 4) (OpenCV axes), distortion (5,)

LiDAR depth is metric.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import frame_view, index_file, load_npz

__all__ = ["Waymo"]


class Waymo(BaseStereoViewDataset):
    """Pairs of views of Waymo Open driving sequences (5 cameras, LiDAR depth).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        **kwargs: for the base dataset (``split``, ``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/waymo_processed"
    is_metric_scale = True
    preprocess_script = "preprocess_waymo.py"

    def __init__(self, *args, ROOT: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, **kwargs)
        self._load_data()

    def _load_data(self) -> None:
        path = index_file(self, "waymo_pairs.npz")
        data = load_npz(path)
        self.scenes = data["scenes"]
        self.frames = data["frames"]
        self.inv_frames = {str(frame): i for i, frame in enumerate(self.frames)}
        self.pairs = np.asarray(data["pairs"]).reshape(-1, 3)
        if len(self.pairs) and (self.pairs[:, 0].max() >= len(self.scenes)
                                or self.pairs[:, 1:].max() >= len(self.frames)):
            raise ValueError(f"{path!r}: pairs index scenes/frames beyond the lists it holds")

    def __len__(self) -> int:
        return len(self.pairs)

    def get_stats(self) -> str:
        return f"{len(self)} pairs from {len(self.scenes)} scenes"

    def _get_views(self, pair_idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        seq, img1, img2 = self.pairs[pair_idx]
        scene = str(self.scenes[seq])
        seq_path = osp.join(self.ROOT, scene)
        views = []
        for view_index in (img1, img2):
            frame = str(self.frames[view_index])
            views.append(frame_view(self, osp.join(seq_path, frame), resolution, rng, label=scene, instance=frame,
                                    info=(seq_path, frame)))
        return views
