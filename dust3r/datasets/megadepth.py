"""MegaDepth reader: the processed layout of ``datasets_preprocess/preprocess_megadepth.py`` (the original's).

Processed layout under ``ROOT``::

    all_metadata.npz                     scenes (S,) str "<scene> <subscene>" (e.g. "0015 0"),
                                         images (I,) str raw image names (with their extension),
                                         pairs (P,) structured (scene_id, im1_id, im2_id, score)
    <scene>/<subscene>/<image>.jpg       RGB, downscaled to fit 800x600 (e.g. "1234_abc.jpg.jpg")
    <scene>/<subscene>/<image>.exr       float32 depth (0 = invalid)
    <scene>/<subscene>/<image>.npz       intrinsics (3, 3), cam2world (4, 4) (OpenCV axes)

Splits (the original's rule): ``'val'`` = scenes 0015 and 0022, ``'train'`` every other scene, ``None`` all.
Depth comes from multi-view stereo on SfM reconstructions: scale per scene arbitrary, not metric.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import frame_view, index_file, load_npz

__all__ = ["MegaDepth", "PAIRS_DTYPE", "VAL_SCENES"]

#: one row of ``all_metadata.npz['pairs']``
PAIRS_DTYPE = np.dtype([("scene_id", "<i4"), ("im1_id", "<i4"), ("im2_id", "<i4"), ("score", "<f4")])
#: the scenes the original holds out for validation
VAL_SCENES = ("0015", "0022")


class MegaDepth(BaseStereoViewDataset):
    """Pairs of views of MegaDepth scenes (internet photos, SfM + MVS depth).

    Args:
        split: ``'train'`` (all scenes but :data:`VAL_SCENES`), ``'val'`` (those) or None (all).
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        **kwargs: for the base dataset (``resolution``, ``transform``, ``aug_crop``, ``seed``, ``mask_sky``, ...).
    """

    DEFAULT_ROOT = "data/megadepth_processed"
    is_metric_scale = False
    preprocess_script = "preprocess_megadepth.py"

    def __init__(self, *args, split: Optional[str] = None, ROOT: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, split=split, **kwargs)
        self._load_data()
        if split == "train":
            self.select_scene(VAL_SCENES, opposite=True)
        elif split == "val":
            self.select_scene(VAL_SCENES)
        elif split is not None:
            raise ValueError(f"MegaDepth: split must be 'train', 'val' or None, got {split!r}")

    def _load_data(self) -> None:
        path = index_file(self, "all_metadata.npz")
        data = load_npz(path)
        self.all_scenes = data["scenes"]
        self.all_images = data["images"]
        self.pairs = data["pairs"]

    def __len__(self) -> int:
        return len(self.pairs)

    def get_stats(self) -> str:
        return f"{len(self)} pairs from {len(self.all_scenes)} scenes"

    def select_scene(self, scene: Union[str, Sequence[str]], *instances: str, opposite: bool = False) -> None:
        """Keep the pairs of the scenes whose name starts with ``scene`` (one or several prefixes); with
        ``instances``, of those images (both of a pair when two are given, either otherwise); ``opposite`` keeps
        the complement. ValueError when nothing matches."""
        prefixes = (scene,) if isinstance(scene, str) else tuple(scene)
        scene_ids = np.flatnonzero([str(s).startswith(prefixes) for s in self.all_scenes])
        if not len(scene_ids):
            raise ValueError(f"MegaDepth: no scene starts with {prefixes} in {self.ROOT!r}")
        valid = np.isin(self.pairs["scene_id"], scene_ids)
        if instances:
            image_ids = np.flatnonzero([str(i).startswith(instances) for i in self.all_images])
            if not len(image_ids):
                raise ValueError(f"MegaDepth: no image starts with {instances}")
            in1, in2 = np.isin(self.pairs["im1_id"], image_ids), np.isin(self.pairs["im2_id"], image_ids)
            valid &= (in1 & in2) if len(instances) == 2 else (in1 | in2)
        if opposite:
            valid = ~valid
        if not valid.any():
            raise ValueError(f"MegaDepth: no pair left after selecting {prefixes} (opposite={opposite})")
        self.pairs = self.pairs[valid]

    def _get_views(self, pair_idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        scene_id, im1_id, im2_id, _score = self.pairs[pair_idx]
        scene, subscene = str(self.all_scenes[scene_id]).split()
        seq_path = osp.join(self.ROOT, scene, subscene)
        views = []
        for im_id in (im1_id, im2_id):
            img = str(self.all_images[im_id])
            views.append(frame_view(self, osp.join(seq_path, img), resolution, rng, label=osp.join(scene, subscene),
                                    instance=img, info=(seq_path, img)))
        return views
