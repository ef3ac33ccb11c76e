"""Co3d (CO3Dv2) reader: the layout ``datasets_preprocess/preprocess_co3d.py`` writes (the original script's).

Processed layout under ``ROOT`` (also what ``datasets_preprocess/make_synthetic_co3d.py`` writes)::

    selected_seqs_{train,test}.json                 {category: {sequence: [frame numbers]}}
    <category>/<sequence>/images/frame000001.jpg     RGB, cropped around the principal point and resized
    <category>/<sequence>/images/frame000001.npz     camera_intrinsics (3, 3), camera_pose (4, 4) cam2world
                                                     (OpenCV axes), maximum_depth ()
    <category>/<sequence>/depths/frame000001.jpg.geometric.png   uint16: depth / maximum_depth * 65535
    <category>/<sequence>/masks/frame000001.png      uint8 object mask (> 10 % of 255 = object)

Pairs. A CO3D sequence is ~100 frames on a full turn around the object; the original pairs every two of 100 slots
``i < j`` with ``|i - j|`` in {5, 10, ..., 30} (495 pairs per sequence, so ``len = n_sequences * 495``), jitters each
slot by an integer in [-4, 4] and takes that position in the sequence's frame list (clamped to the list). For a
sequence of ``n >= 100`` frames this reader does exactly that. For a shorter one (the original would clamp almost
every slot onto the last frame) the jittered slot, clamped to [0, 99], is scaled onto the list,
``round(slot * (n - 1) / 99)``, so pairs keep spanning up to ~30 % of the sequence. With 12 frames the two frames
of a pair are 1 to 3 positions apart in 83 % of the draws, 4 or 5 in 6 % and the same frame in 11 %; with 24 frames
0 to 9 apart (mostly 1 to 7).

``mask_bg``: True keeps depth on the object only (zero elsewhere), False keeps all depth, ``'rand'`` draws one or the
other per pair. A frame whose depth is empty after masking and cropping is flagged and another frame of the same
sequence is used instead (as the original does).
"""
from __future__ import annotations

import itertools
import json
import logging
import os.path as osp
from collections import deque
from typing import Any, Dict, List, Tuple

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import cropped_view, index_file, load_npz, require_keys
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

__all__ = ["Co3d", "co3d_pair_slots", "slot_to_position"]

#: frame slots of a sequence, the largest slot gap, the gap step and the jitter of the original pair rule
N_SLOTS, MAX_GAP, GAP_STEP, JITTER = 100, 30, 5, 4


def co3d_pair_slots() -> List[Tuple[int, int]]:
    """The 495 slot pairs ``(i, j)``, ``i < j < 100``, with ``j - i`` in {5, 10, ..., 30}, in the original's order."""
    return [(i, j) for i, j in itertools.combinations(range(N_SLOTS), 2)
            if 0 < j - i <= MAX_GAP and (j - i) % GAP_STEP == 0]


def slot_to_position(slot: int, pool_len: int) -> int:
    """Position in a sequence's frame list of a jittered slot (see the module docstring)."""
    if pool_len >= N_SLOTS:
        return max(0, min(int(slot), pool_len - 1))
    return int(round(max(0, min(int(slot), N_SLOTS - 1)) * (pool_len - 1) / (N_SLOTS - 1)))


class Co3d(BaseStereoViewDataset):
    """Pairs of frames of CO3Dv2 sequences (object-centric turntable captures, non-metric scale).

    Args:
        mask_bg: True, False or ``'rand'`` (see the module docstring).
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        **kwargs: for the base dataset (``split``, ``resolution``, ``transform``, ``aug_crop``, ``seed``, ...).
    """

    DEFAULT_ROOT = "data/co3d_processed"
    is_metric_scale = False
    dataset_label = "Co3d_v2"
    preprocess_script = "preprocess_co3d.py"

    def __init__(self, mask_bg: Any = True, *args, ROOT: str = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, **kwargs)
        if not (mask_bg is True or mask_bg is False or mask_bg == "rand"):
            raise ValueError(f"mask_bg must be True, False or 'rand', got {mask_bg!r}")
        self.mask_bg = mask_bg
        self.scenes = self._load_index()
        self.scene_list = list(self.scenes)
        self.combinations = co3d_pair_slots()
        self.invalidate: Dict[Tuple[str, str], Dict[Any, List[bool]]] = {scene: {} for scene in self.scene_list}

    def _load_index(self) -> Dict[Tuple[str, str], List[int]]:
        """``{(category, sequence): [frame numbers]}`` of the split, sequences without frames left out."""
        with open(index_file(self, f"selected_seqs_{self.split}.json")) as f:
            index = json.load(f)
        return {(category, sequence): [int(frame) for frame in frames]
                for category, sequences in index.items() for sequence, frames in sequences.items() if len(frames)}

    def __len__(self) -> int:
        return len(self.scene_list) * len(self.combinations)

    def get_stats(self) -> str:
        return f"{len(self)} pairs from {len(self.scene_list)} sequences"

    # ------------------------------------------------------------------ file names of a frame
    def _get_metadatapath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "images", f"frame{view_idx:06d}.npz")

    def _get_impath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "images", f"frame{view_idx:06d}.jpg")

    def _get_depthpath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "depths", f"frame{view_idx:06d}.jpg.geometric.png")

    def _get_maskpath(self, obj: str, instance: str, view_idx: int) -> str:
        return osp.join(self.ROOT, obj, instance, "masks", f"frame{view_idx:06d}.png")

    def _read_depthmap(self, depthpath: str, input_metadata: Dict[str, np.ndarray]) -> np.ndarray:
        """(H, W) float32 depth: the uint16 PNG scaled back by the frame's ``maximum_depth``."""
        import cv2

        (maximum_depth,) = require_keys(input_metadata, ("maximum_depth",), f"the metadata of {depthpath}")
        depth = imread_cv2(depthpath, cv2.IMREAD_UNCHANGED).astype(np.float32)
        return depth / 65535 * np.nan_to_num(np.float32(maximum_depth))

    def _read_mask(self, maskpath: str) -> np.ndarray:
        """(H, W) bool object mask."""
        import cv2

        mask = imread_cv2(maskpath, cv2.IMREAD_UNCHANGED).astype(np.float32)
        if mask.ndim == 3:
            mask = mask[..., 0]
        return mask / 255.0 > 0.1

    def _load_frame(self, obj: str, instance: str, view_idx: int, mask_bg: bool, resolution, rng):
        """One processed frame cropped to ``resolution``: (view dict, number of valid depth pixels)."""
        impath = self._get_impath(obj, instance, view_idx)
        metapath = self._get_metadatapath(obj, instance, view_idx)
        metadata = load_npz(metapath)
        camera_pose, intrinsics = (np.float32(array) for array in
                                   require_keys(metadata, ("camera_pose", "camera_intrinsics"), metapath))
        rgb_image = imread_cv2(impath)
        depthmap = self._read_depthmap(self._get_depthpath(obj, instance, view_idx), metadata)
        if mask_bg:
            depthmap = depthmap * self._read_mask(self._get_maskpath(obj, instance, view_idx))
        view = cropped_view(self, rgb_image, depthmap, intrinsics, camera_pose, resolution, rng,
                            label=osp.join(obj, instance), instance=osp.basename(impath), info=impath)
        return view, int((view["depthmap"] > 0.0).sum())

    def _get_views(self, idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        obj, instance = self.scene_list[idx // len(self.combinations)]
        image_pool = self.scenes[obj, instance]
        slot1, slot2 = self.combinations[idx % len(self.combinations)]
        key = tuple(resolution) if isinstance(resolution, (list, tuple)) else resolution
        invalid = self.invalidate[obj, instance].setdefault(key, [False] * len(image_pool))

        mask_bg = self.draw_mask_bg(rng)
        # jitter drawn for the second slot first, frames loaded first-slot first (the original's rng order)
        positions = [slot_to_position(slot + rng.integers(-JITTER, JITTER + 1), len(image_pool))
                     for slot in (slot2, slot1)]
        todo = deque(positions)
        views = []
        while todo:
            pos = todo.pop()
            if invalid[pos]:  # a frame known to have no depth: look for a valid one, in a random direction
                direction = 2 * rng.choice(2) - 1
                for offset in range(1, len(image_pool)):
                    candidate = (pos + direction * offset) % len(image_pool)
                    if not invalid[candidate]:
                        pos = candidate
                        break
                else:
                    raise OSError(f"{self.dataset_label}: no frame of {osp.join(self.ROOT, obj, instance)!r} has "
                                  f"valid depth at resolution {resolution}")
            view, n_valid = self._load_frame(obj, instance, image_pool[pos], mask_bg, resolution, rng)
            if n_valid == 0:
                invalid[pos] = True
                todo.append(pos)
                continue
            views.append(view)
        return views
