"""DL3DV reader: the processed layout of ``datasets_preprocess/preprocess_dl3dv.py``.

The original ships no DL3DV reader; the data is stored in the processed-frames layout
(:mod:`dust3r.datasets.processed_frames`): one scene folder per DL3DV scene (its hash, under the subset folder it
came from), frames named like the raw images (``frame_00001``), depth from the depth source given to the
preprocessing (DL3DV has no ground-truth depth) with the sky stored as -1, OpenCV cam2world converted from
nerfstudio's OpenGL transforms (COLMAP scale: not metric). ``mask_sky=True`` (the recipe's) serves the sky as sky
(depth < 0), otherwise as invalid; ``split`` selects the scenes the preprocessing tagged with it.
"""
from __future__ import annotations

from dust3r.datasets.processed_frames import ProcessedFramesDataset

__all__ = ["DL3DV"]


class DL3DV(ProcessedFramesDataset):
    """Pairs of frames of DL3DV-10K scenes (real videos of scenes, COLMAP poses).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split``, ``mask_sky``, ``resolution``, ``transform``, ``aug_crop``, ...).
    """

    DEFAULT_ROOT = "data/dl3dv_processed"
    preprocess_script = "preprocess_dl3dv.py"
    dataset_label = "DL3DV"
    is_metric_scale = False
