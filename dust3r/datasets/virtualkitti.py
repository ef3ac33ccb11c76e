"""Virtual KITTI 2 reader: the processed layout of ``datasets_preprocess/preprocess_virtualkitti.py``.

The original ships no VirtualKitti reader; the data is stored in the processed-frames layout
(:mod:`dust3r.datasets.processed_frames`): scenes ``<SceneXX>/<variation>``, frames ``<frame>_Camera_<c>`` of both
stereo cameras, metric z-depth (sky = -1, see ``mask_sky``), OpenCV cam2world (``inv`` of VKITTI's world-to-camera
extrinsics). Every scene is ``'train'``; ``split=None`` (the recipe's) serves them all.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from dust3r.datasets.processed_frames import ProcessedFramesDataset

__all__ = ["VirtualKitti"]


class VirtualKitti(ProcessedFramesDataset):
    """Pairs of frames of Virtual KITTI 2 driving sequences (synthetic, metric).

    Args:
        optical_center_is_centered: True -> the principal point is placed exactly at the image centre,
            ``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at integers), so that the crop around it keeps the whole
            width; VKITTI 2's calibration already says so (620.5, 187.0 at 1242x375): the flag guarantees it
            for every frame. False -> the calibrated principal point as stored.
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split``, ``resolution``, ``transform``, ``aug_crop``, ``mask_sky``, ...).
    """

    DEFAULT_ROOT = "data/virtualkitti_processed"
    preprocess_script = "preprocess_virtualkitti.py"
    dataset_label = "VirtualKitti"
    is_metric_scale = True

    def __init__(self, *args, optical_center_is_centered: bool = False, ROOT: Optional[str] = None, **kwargs):
        self.optical_center_is_centered = bool(optical_center_is_centered)
        super().__init__(*args, ROOT=ROOT, **kwargs)

    def _adjust_intrinsics(self, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
        if not self.optical_center_is_centered:
            return intrinsics
        intrinsics = intrinsics.copy()
        intrinsics[0, 2], intrinsics[1, 2] = (width - 1) / 2, (height - 1) / 2
        return intrinsics
