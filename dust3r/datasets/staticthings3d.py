"""StaticThings3D reader: the processed layout of ``datasets_preprocess/preprocess_staticthings3d.py`` (the
original's).

Processed layout under ``ROOT``::

    staticthings_pairs.npy                         structured array, one row per pair:
                                                   (scene b'A'|b'B'|b'C', seq, cam1 b'l'|b'r', im1, cam2, im2)
    TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>_clean.jpg   clean-pass render (512x384 crop of 960x540)
    TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>_final.jpg   final-pass render (motion blur, lighting)
    TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.exr         float32 depth
    TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.npz         intrinsics (3, 3), cam2world (4, 4) (OpenCV axes)

Each view shows the clean or the final pass (one ``rng.choice(2)`` per view). ``mask_bg``: True drops the far
background (depth > 200) of both views, False keeps it, ``'rand'`` draws one or the other per pair. Synthetic
scenes in arbitrary units: not metric. There is no split (``split`` must stay None, as in the original).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import CAMERA_KEYS, cropped_view, index_file, load_frame

__all__ = ["StaticThings3D", "PAIRS_DTYPE", "CAMERAS", "BACKGROUND_DEPTH"]

#: one row of ``staticthings_pairs.npy``
PAIRS_DTYPE = np.dtype([("scene", "S1"), ("seq", "<u2"), ("cam1", "S1"), ("im1", "<u2"), ("cam2", "S1"),
                        ("im2", "<u2")])
#: camera code of a pairs row -> folder
CAMERAS = {b"l": "left", b"r": "right"}
#: depth above which ``mask_bg`` drops a pixel
BACKGROUND_DEPTH = 200.0


class StaticThings3D(BaseStereoViewDataset):
    """Pairs of views of StaticThings3D scenes (FlyingThings3D objects, static scenes, several cameras).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory); first
            positional argument, as in the original.
        mask_bg: True, False or ``'rand'`` (see the module docstring).
        **kwargs: for the base dataset (``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/staticthings3d_processed"
    is_metric_scale = False
    preprocess_script = "preprocess_staticthings3d.py"

    def __init__(self, ROOT: Optional[str] = None, *args, mask_bg: Any = "rand", **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, **kwargs)
        if not (mask_bg is True or mask_bg is False or mask_bg == "rand"):
            raise ValueError(f"mask_bg must be True, False or 'rand', got {mask_bg!r}")
        self.mask_bg = mask_bg
        if self.split is not None:
            raise ValueError(f"StaticThings3D has no split (pairs come from TRAIN), got split={self.split!r}")
        path = index_file(self, "staticthings_pairs.npy")
        self.pairs = np.load(path)

    def __len__(self) -> int:
        return len(self.pairs)

    def get_stats(self) -> str:
        return f"{len(self)} pairs"

    def _get_views(self, pair_idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        scene, seq, cam1, im1, cam2, im2 = self.pairs[pair_idx]
        seq_path = osp.join("TRAIN", scene.decode("ascii"), f"{int(seq):04d}")
        mask_bg = self.draw_mask_bg(rng)
        views = []
        for cam, idx in ((CAMERAS[cam1], im1), (CAMERAS[cam2], im2)):
            num = f"{int(idx):04n}"
            img = num + ("_clean.jpg" if rng.choice(2) else "_final.jpg")
            folder = osp.join(self.ROOT, seq_path, cam)
            image, depthmap, (intrinsics, camera_pose) = load_frame(
                osp.join(folder, img), osp.join(folder, num + ".exr"), osp.join(folder, num + ".npz"),
                CAMERA_KEYS)
            if mask_bg:
                depthmap[depthmap > BACKGROUND_DEPTH] = 0
            views.append(cropped_view(self, image, depthmap, intrinsics, camera_pose, resolution, rng,
                                      label=seq_path, instance=f"{cam}_{img}", info=(seq_path, cam, img)))
        return views
