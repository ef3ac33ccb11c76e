"""The "processed frames" layout shared by the readers whose original has no preprocessing script.

TartanAir, UnrealStereo4K, VirtualKitti (VKITTI 2), NianticMapFree and DL3DV are named by the MASt3R training
recipe but the original code ships neither their readers nor their preprocessing. Their
``datasets_preprocess/preprocess_<name>.py`` scripts all write this one layout, in the spirit of the original's
BlendedMVS / ScanNet++ layouts (per-scene folders, JPEG + EXR depth + per-frame camera npz, one index)::

    <ROOT>/index.npz                 scenes        (S,) str    scene folders, relative to ROOT ('/'-separated)
                                     scene_splits  (S,) str    'train' / 'val' / 'test' of each scene
                                     frames        (F,) str    frame names (file stem inside the scene folder)
                                     frame_scenes  (F,) int32  scene index of each frame
                                     pairs         (P, 2) int32 frame indices of the pairs (same scene)
    <ROOT>/<scene>/<frame>.jpg       RGB image
    <ROOT>/<scene>/<frame>.exr       float32 depth (H, W): z in the camera frame (not the ray length), in the
                                     dataset's unit (metres for the metric ones); 0 = invalid, -1 = sky
    <ROOT>/<scene>/<frame>.npz       intrinsics (3, 3) float32, pixel centres at integer coordinates (OpenCV);
                                     cam2world (4, 4) float32, OpenCV camera axes (x right, y down, z forward)

Every dataset-specific convention (NED / OpenGL camera axes, world-to-camera poses, quaternion orders, disparity,
centimetres, COLMAP's half-pixel principal point) is resolved by the preprocessing script, so the reader is one
class. Sky pixels (-1) become sky (depth < 0) with ``mask_sky=True`` and invalid (0) otherwise
(:meth:`BaseStereoViewDataset.apply_sky`).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import CAMERA_KEYS, cropped_view, index_file, load_frame, load_npz, require_keys

__all__ = ["ProcessedFramesDataset", "INDEX_FILE", "INDEX_KEYS", "SKY_DEPTH"]

#: the index file of the layout, under ROOT
INDEX_FILE = "index.npz"
#: the arrays ``index.npz`` holds
INDEX_KEYS = ("scenes", "scene_splits", "frames", "frame_scenes", "pairs")
#: depth value the processed EXR files store for sky pixels
SKY_DEPTH = -1.0


class ProcessedFramesDataset(BaseStereoViewDataset):
    """Pairs of views read from the processed-frames layout (see the module docstring).

    Subclasses set :attr:`DEFAULT_ROOT`, :attr:`preprocess_script`, :attr:`dataset_label` and
    :attr:`is_metric_scale`, and may narrow the pairs (:meth:`_select_pairs`) or the intrinsics
    (:meth:`_adjust_intrinsics`).

    Args:
        ROOT: the processed dataset (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        **kwargs: for the base dataset (``split``: None = every pair, else the pairs of the scenes of that split;
            ``resolution``, ``transform``, ``aug_crop``, ``seed``, ``mask_sky``, ...).

    Raises:
        FileNotFoundError: no ``index.npz`` under ROOT (names it and the preprocessing script).
        ValueError: ``split`` names no scene of the index.
    """

    DEFAULT_ROOT = ""
    preprocess_script = ""
    dataset_label = ""

    def __init__(self, *args, ROOT: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else os.fspath(ROOT)
        super().__init__(*args, **kwargs)
        self._load_index()

    def _load_index(self) -> None:
        path = index_file(self, INDEX_FILE)
        scenes, scene_splits, frames, frame_scenes, pairs = require_keys(
            load_npz(path), INDEX_KEYS, path, hint=f"; rewrite it with datasets_preprocess/{self.preprocess_script}")
        self.scenes = scenes.astype(str)
        self.scene_splits = scene_splits.astype(str)
        self.frames = frames.astype(str)
        self.frame_scenes = frame_scenes.astype(np.int64)
        pairs = pairs.astype(np.int64).reshape(-1, 2)
        self.pairs = pairs[self._select_pairs(pairs)]

    def _pair_scenes(self, pairs: np.ndarray) -> np.ndarray:
        """(P,) scene index of each pair (both frames of a pair share their scene)."""
        return self.frame_scenes[pairs[:, 0]]

    def _select_pairs(self, pairs: np.ndarray) -> np.ndarray:
        """(P,) bool: the pairs this instance serves (the scenes of ``self.split``; every pair for None)."""
        if self.split is None:
            return np.ones(len(pairs), dtype=bool)
        available = sorted(set(self.scene_splits.tolist()))
        if self.split not in available:
            raise ValueError(f"{type(self).__name__}: split {self.split!r} has no scene in {self.ROOT!r} "
                             f"(splits there: {available}; None = all)")
        return self.scene_splits[self._pair_scenes(pairs)] == self.split

    def __len__(self) -> int:
        return len(self.pairs)

    def get_stats(self) -> str:
        n_scenes = len(np.unique(self._pair_scenes(self.pairs))) if len(self.pairs) else 0
        return f"{len(self)} pairs from {n_scenes} scenes"

    def _adjust_intrinsics(self, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
        """Hook: the intrinsics of a (height, width) frame as the reader serves them (unchanged here)."""
        return intrinsics

    def frame_paths(self, frame: int) -> Tuple[str, str, str]:
        """``(scene, frame name, path stem)`` of frame index ``frame``; the files are ``stem + .jpg/.exr/.npz``."""
        scene = str(self.scenes[self.frame_scenes[frame]])
        name = str(self.frames[frame])
        return scene, name, osp.join(self.ROOT, *scene.split("/"), name)

    def read_frame(self, frame: int) -> Dict[str, Any]:
        """One frame at its stored resolution: ``img`` (H, W, 3) uint8, ``depthmap`` (H, W) float32 (sky
        handled by ``mask_sky``), ``camera_intrinsics`` (3, 3), ``camera_pose`` (4, 4) cam2world, names.

        Raises:
            OSError: a file is missing or unreadable, or the depth does not match the image.
        """
        scene, name, stem = self.frame_paths(frame)
        image, depthmap, (intrinsics, cam2world) = load_frame(stem + ".jpg", stem + ".exr", stem + ".npz", CAMERA_KEYS)
        depthmap = np.where(np.isfinite(depthmap), depthmap, 0.0).astype(np.float32)
        depthmap = self.apply_sky(depthmap, depthmap < 0)
        intrinsics = self._adjust_intrinsics(intrinsics, *image.shape[:2])
        return dict(img=image, depthmap=depthmap, camera_intrinsics=np.float32(intrinsics), camera_pose=cam2world,
                    dataset=self.dataset_label, label=scene, instance=name)

    def _get_views(self, idx: int, resolution: Tuple[int, int], rng: np.random.Generator) -> List[Dict[str, Any]]:
        views = []
        for frame in self.pairs[idx]:
            view = self.read_frame(int(frame))
            views.append(cropped_view(self, view["img"], view["depthmap"], view["camera_intrinsics"],
                                      view["camera_pose"], resolution, rng, label=view["label"],
                                      instance=view["instance"], info=self.frame_paths(int(frame))[2]))
        return views
