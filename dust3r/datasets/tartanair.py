"""TartanAir reader: the processed layout of ``datasets_preprocess/preprocess_tartanair.py``.

The original ships no TartanAir reader; the data is stored in the processed-frames layout
(:mod:`dust3r.datasets.processed_frames`): one scene folder per trajectory, ``<env>/<Easy|Hard>/<P00x>``, frames
``000000`` ... of the left camera, metric z-depth, cam2world in OpenCV axes (the raw NED body frame converted by the
preprocessing; the world frame stays TartanAir's NED world). TartanAir has no official split: every scene is
``'train'`` and ``split=None`` (the recipe's) serves them all.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from dust3r.datasets.processed_frames import ProcessedFramesDataset

__all__ = ["TartanAir"]


class TartanAir(ProcessedFramesDataset):
    """Pairs of frames of TartanAir trajectories (synthetic, metric).

    Args:
        pairs_subset: '' = every pair; otherwise comma-separated names, a pair is kept when one of them is a
            component of its scene path, e.g. ``'Hard'``, ``'abandonedfactory,amusement'`` or ``'P001'``.
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split``, ``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/tartanair_processed"
    preprocess_script = "preprocess_tartanair.py"
    dataset_label = "TartanAir"
    is_metric_scale = True

    def __init__(self, *args, pairs_subset: str = "", ROOT: Optional[str] = None, **kwargs):
        if not isinstance(pairs_subset, str):
            raise ValueError(f"TartanAir: pairs_subset must be a string, got {pairs_subset!r}")
        self.pairs_subset = pairs_subset
        super().__init__(*args, ROOT=ROOT, **kwargs)

    def _select_pairs(self, pairs: np.ndarray) -> np.ndarray:
        keep = super()._select_pairs(pairs)
        wanted = {name.strip() for name in self.pairs_subset.split(",") if name.strip()}
        if not wanted:
            return keep
        in_subset = np.array([bool(wanted & set(scene.split("/"))) for scene in self.scenes], dtype=bool)
        keep = keep & in_subset[self._pair_scenes(pairs)]
        if not keep.any():
            raise ValueError(f"TartanAir: pairs_subset={self.pairs_subset!r} matches no pair in {self.ROOT!r}")
        return keep
