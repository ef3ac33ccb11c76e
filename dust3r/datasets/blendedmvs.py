"""BlendedMVS reader: the processed layout of ``datasets_preprocess/preprocess_blendedmvs.py`` (the original's).

Processed layout under ``ROOT``::

    blendedmvs_pairs.npy                 structured array, one row per pair:
                                         (seq_high, seq_low, img1, img2, score); the 24-hex-digit sequence name
                                         is f"{seq_high:08x}{seq_low:016x}", frames are f"{img:08n}"
    <sequence>/<frame>.jpg               RGB (512x384 for the 768x576 originals)
    <sequence>/<frame>.exr               float32 depth (0 = invalid)
    <sequence>/<frame>.npz               intrinsics (3, 3), R_cam2world (3, 3), t_cam2world (3,) (OpenCV axes)

Splits (the original's rule): ``'val'`` = sequences whose ``seq_low % 10 == 0``, ``'train'`` the others, ``None``
all pairs. Depth comes from meshes reconstructed at an arbitrary scale: not metric.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import cropped_view, index_file, load_frame

__all__ = ["BlendedMVS", "PAIRS_DTYPE", "sequence_name", "split_sequences"]

#: one row of ``blendedmvs_pairs.npy``
PAIRS_DTYPE = np.dtype([("seq_high", "<u4"), ("seq_low", "<u8"), ("img1", "<u4"), ("img2", "<u4"),
                        ("score", "<f4")])


def sequence_name(seq_high: int, seq_low: int) -> str:
    """The 24 hex digits of a BlendedMVS sequence from the two integers of a pairs row."""
    return f"{int(seq_high):08x}{int(seq_low):016x}"


def split_sequences(seq: str) -> tuple:
    """``(seq_high, seq_low)`` of a 24-hex-digit sequence name (inverse of :func:`sequence_name`)."""
    if len(seq) != 24:
        raise ValueError(f"a BlendedMVS sequence name has 24 hex digits, got {seq!r}")
    return int(seq[:8], 16), int(seq[8:], 16)


class BlendedMVS(BaseStereoViewDataset):
    """Pairs of views of BlendedMVS scenes (rendered meshes blended with real images).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        split: ``'train'``, ``'val'`` or None (all pairs).
        **kwargs: for the base dataset (``resolution``, ``transform``, ``aug_crop``, ``seed``, ``mask_sky``, ...).
    """

    DEFAULT_ROOT = "data/blendedmvs_processed"
    is_metric_scale = False
    preprocess_script = "preprocess_blendedmvs.py"

    def __init__(self, *args, ROOT: Optional[str] = None, split: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, split=split, **kwargs)
        self._load_data(split)

    def _load_data(self, split: Optional[str]) -> None:
        path = index_file(self, "blendedmvs_pairs.npy")
        pairs = np.load(path)
        if split is None:
            selection = np.ones(len(pairs), dtype=bool)
        elif split == "train":
            selection = (pairs["seq_low"] % 10) > 0
        elif split == "val":
            selection = (pairs["seq_low"] % 10) == 0
        else:
            raise ValueError(f"BlendedMVS: split must be 'train', 'val' or None, got {split!r}")
        self.pairs = pairs[selection]
        self.scenes = np.unique(self.pairs["seq_low"])  # the low part is unique enough

    def __len__(self) -> int:
        return len(self.pairs)

    def get_stats(self) -> str:
        return f"{len(self)} pairs from {len(self.scenes)} scenes"

    def _get_views(self, pair_idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        seqh, seql, img1, img2, _score = self.pairs[pair_idx]
        seq = sequence_name(seqh, seql)
        seq_path = osp.join(self.ROOT, seq)
        views = []
        for view_index in (img1, img2):
            frame = f"{int(view_index):08n}"
            prefix = osp.join(seq_path, frame)
            image, depthmap, (intrinsics, rot, trans) = load_frame(
                prefix + ".jpg", prefix + ".exr", prefix + ".npz", ("intrinsics", "R_cam2world", "t_cam2world"))
            camera_pose = np.eye(4, dtype=np.float32)
            camera_pose[:3, :3] = rot
            camera_pose[:3, 3] = trans
            views.append(cropped_view(self, image, depthmap, intrinsics, camera_pose, resolution, rng,
                                      label=seq, instance=frame, info=(seq_path, frame)))
        return views
