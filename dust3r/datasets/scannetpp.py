"""ScanNet++ reader: the layout ``datasets_preprocess/preprocess_scannetpp.py`` writes (the original script's).

Processed layout under ``ROOT``::

    all_metadata.npz        scenes (S,) str, sceneids (N,) int, images (N,) str (``DSC01234`` / ``frame_000120``,
                            no extension), intrinsics (N, 3, 3) in COLMAP's convention (pixel corners at integers),
                            trajectories (N, 4, 4) cam2world (OpenCV axes), pairs (P, >= 2), counts (S,)
    <scene>/images/<image>.jpg      undistorted RGB (DSLR and iPhone frames)
    <scene>/depth/<image>.png       uint16 depth in millimetres rendered from the scan mesh (0 = invalid)
    <scene>/scene_metadata.npz      the per-scene part of all_metadata.npz

The stored intrinsics keep the original's COLMAP convention; this reader shifts the principal point by half a
pixel to the OpenCV convention the rest of the code uses (the original reader used them unshifted). Only a
``split='train'`` exists (the original's rule).
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

import numpy as np

from dust3r.datasets.arkitscenes import MetadataPairsDataset

__all__ = ["ScanNetpp"]


class ScanNetpp(MetadataPairsDataset):
    """Pairs of ScanNet++ frames (indoor DSLR and iPhone captures, metric depth rendered from the mesh).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`).
        **kwargs: for the base dataset (``split`` must be 'train', ``resolution``, ``transform``, ...).
    """

    DEFAULT_ROOT = "data/scannetpp_processed"
    preprocess_script = "preprocess_scannetpp.py"
    dataset_label = "ScanNet++"

    def __init__(self, *args, ROOT: Optional[str] = None, **kwargs):
        split = kwargs.get("split")
        if split != "train":
            raise ValueError(f"ScanNetpp only has split='train', got {split!r}")
        super().__init__(*args, ROOT=ROOT, **kwargs)

    def _convert_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        intrinsics = intrinsics.copy()
        intrinsics[:, :2, 2] -= 0.5  # COLMAP (pixel corners) -> OpenCV (pixel centres)
        return intrinsics

    def _frame_paths(self, scene_dir: str, basename: str):
        return osp.join(scene_dir, "images", basename + ".jpg"), osp.join(scene_dir, "depth", basename + ".png")
