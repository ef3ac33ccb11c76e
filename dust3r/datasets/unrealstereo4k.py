"""UnrealStereo4K reader: the processed layout of ``datasets_preprocess/preprocess_unrealstereo4k.py``.

The original ships no UnrealStereo4K reader; the data is stored in the processed-frames layout
(:mod:`dust3r.datasets.processed_frames`): one scene folder per scene (``00000`` ...), frames ``<index>_left`` /
``<index>_right``, z-depth from the ground-truth disparity and the stereo baseline (in Unreal's world unit: not
declared metric), OpenCV cam2world. Every scene is ``'train'``; ``split=None`` (the recipe's) serves them all.
"""
from __future__ import annotations

from dust3r.datasets.processed_frames import ProcessedFramesDataset

__all__ = ["UnrealStereo4K"]


class UnrealStereo4K(ProcessedFramesDataset):
    """Pairs of views of UnrealStereo4K scenes (synthetic stereo, indoor and outdoor).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split``, ``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/unrealstereo4k_processed"
    preprocess_script = "preprocess_unrealstereo4k.py"
    dataset_label = "UnrealStereo4K"
    is_metric_scale = False
