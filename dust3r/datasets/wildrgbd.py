"""WildRGB-D reader: the layout ``datasets_preprocess/preprocess_wildrgbd.py`` writes (the original script's).

Processed layout under ``ROOT`` (``<sequence>`` is the raw ``scenes/scene_XXX`` path of the sequence)::

    selected_seqs_{train,test}.json                    {category: {sequence: [frame numbers]}}
    <category>/<sequence>/rgb/00012.jpg                 RGB, cropped around the principal point and resized
    <category>/<sequence>/depth/00012.png               uint16 depth in millimetres
    <category>/<sequence>/masks/00012.png               uint8 object mask
    <category>/<sequence>/metadata/00012.npz            camera_intrinsics (3, 3), camera_pose (4, 4) cam2world

Pairs, ``mask_bg`` and the handling of frames without depth are :class:`~dust3r.datasets.co3d.Co3d`'s (100 frames
per sequence by default preprocessing, so the original pair rule applies unchanged). Depth is metric.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict

import numpy as np

from dust3r.datasets.co3d import Co3d
from dust3r.utils.image import imread_cv2

__all__ = ["WildRgbd", "WildRGBD"]


class WildRgbd(Co3d):
    """Pairs of frames of WildRGB-D sequences (object-centric RGB-D videos, metric depth).

    Args: as :class:`~dust3r.datasets.co3d.Co3d` (``mask_bg`` first, then ``ROOT`` and the base keywords).
    """

    DEFAULT_ROOT = "data/wildrgbd_processed"
    is_metric_scale = True
    dataset_label = "WildRGBD"
    preprocess_script = "preprocess_wildrgbd.py"

    def _get_metadatapath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "metadata", f"{view_idx:05d}.npz")

    def _get_impath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "rgb", f"{view_idx:05d}.jpg")

    def _get_depthpath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "depth", f"{view_idx:05d}.png")

    def _get_maskpath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "masks", f"{view_idx:05d}.png")

    def _read_depthmap(self, depthpath: str, input_metadata: Dict[str, np.ndarray]) -> np.ndarray:
        """(H, W) float32 depth in metres (the PNG stores millimetres)."""
        import cv2

        return imread_cv2(depthpath, cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0


#: the original's spelling
WildRGBD = WildRgbd
