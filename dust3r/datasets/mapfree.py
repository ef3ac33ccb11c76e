"""Niantic Map-free reader: the processed layout of ``datasets_preprocess/preprocess_mapfree.py``.

The original ships no NianticMapFree reader; the data is stored in the processed-frames layout
(:mod:`dust3r.datasets.processed_frames`): scenes ``<split>/<scene>`` (``train/s00000`` ...), frames
``seq<k>_frame_XXXXX`` (540x720 portrait), depth in metres from the per-frame depth files the preprocessing was
pointed at (the release's DPT estimates by default), OpenCV cam2world in the metric frame of the first map image.
``split`` selects the scenes of the Map-free split ('train' in the recipe).
"""
from __future__ import annotations

from dust3r.datasets.processed_frames import ProcessedFramesDataset

__all__ = ["NianticMapFree"]


class NianticMapFree(ProcessedFramesDataset):
    """Pairs of frames of Map-free relocalization scenes (phone captures of outdoor places, metric poses).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split``: 'train' / 'val' / None; ``resolution``, ``aug_crop``, ...).
    """

    DEFAULT_ROOT = "data/mapfree_processed"
    preprocess_script = "preprocess_mapfree.py"
    dataset_label = "NianticMapFree"
    is_metric_scale = True
