"""Habitat reader: the renderings of the original's habitat-sim stage, indexed by
``datasets_preprocess/preprocess_habitat.py`` (the original's ``find_scenes.py``).

Layout under ``ROOT`` (what ``datasets_preprocess/habitat`` of the original renders from naver's metadata)::

    Habitat_{size}_scenes_{split}.txt           one sub-scene per line: "<scene dir>/<key>" (relative to ROOT)
    <scene dir>/<key>_<1..5>.jpeg               RGB renderings (512x512 for the released metadata)
    <scene dir>/<key>_<1..5>_depth.exr          depth (z, metres; half floats)
    <scene dir>/<key>_<1..5>_camera_params.json {"camera_intrinsics": 3x3, "R_cam2world": 3x3,
                                                 "t_cam2world": 3, "size": [w, h]} (OpenCV axes)

A sub-scene is five views; view 1 sees what views 2-5 see, so a pair is view 1 and one of views 2-5 drawn with the
item's rng. Non-finite depth (rays that left the mesh) reads as 0 (invalid). A view whose pose is not
finite is replaced by the next one (as in the original). Depth is metric.

``Habitat512`` (named by MASt3R's training recipe, absent from the original code) reads the same layout: the
renderings of the released metadata already are 512x512 crops.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import PIL.Image

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import index_file
from dust3r.utils.exr import read_exr

__all__ = ["Habitat", "Habitat512", "N_VIEWS", "scene_list_name", "view_files"]

#: views per rendered sub-scene
N_VIEWS = 5


def scene_list_name(size: int, split: str) -> str:
    """File name of the list of ``size`` sub-scenes of ``split`` (the original's naming)."""
    return f"Habitat_{int(size)}_scenes_{split}.txt"


def view_files(data_path: str, key: str, view_number: int) -> Tuple[str, str, str]:
    """``(image, depth, camera json)`` paths of view ``view_number`` (1-based) of sub-scene ``key``."""
    stem = osp.join(data_path, f"{key}_{view_number}")
    return stem + ".jpeg", stem + "_depth.exr", stem + "_camera_params.json"


def read_camera_params(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(intrinsics (3, 3), cam2world (4, 4))`` float32 of a renderer ``*_camera_params.json``; OSError if the
    file is missing, not JSON or lacks a key."""
    try:
        with open(path, "r") as f:
            params = json.load(f)
        intrinsics = np.float32(params["camera_intrinsics"])
        camera_pose = np.eye(4, dtype=np.float32)
        camera_pose[:3, :3] = params["R_cam2world"]
        camera_pose[:3, 3] = params["t_cam2world"]
    except FileNotFoundError:
        raise FileNotFoundError(f"camera file not found: {path!r}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise OSError(f"cannot read camera file {path!r}: {type(err).__name__}: {err}") from err
    return intrinsics, camera_pose


class Habitat(BaseStereoViewDataset):
    """Pairs of views of habitat-sim renderings (HM3D, Gibson, ScanNet, Replica, ... meshes).

    Args:
        size: which scene list to read (``Habitat_{size}_scenes_{split}.txt``), e.g. 1_000_000.
        ROOT: the renderings (default :attr:`DEFAULT_ROOT`, relative to the working directory).
        **kwargs: for the base dataset; ``split`` is required (``'train'`` or ``'val'``).
    """

    DEFAULT_ROOT = "data/habitat_processed"
    is_metric_scale = True
    preprocess_script = "preprocess_habitat.py"

    def __init__(self, size: int, *args, ROOT: Optional[str] = None, **kwargs):
        self.ROOT = self.DEFAULT_ROOT if ROOT is None else ROOT
        super().__init__(*args, **kwargs)
        if self.split is None:
            raise ValueError(f"{type(self).__name__} needs a split ('train' or 'val')")
        path = index_file(self, scene_list_name(size, self.split))
        with open(path) as f:
            self.scenes = [line for line in f.read().splitlines() if line.strip()]
        self.instances = list(range(1, N_VIEWS))

    def __len__(self) -> int:
        return len(self.scenes)

    def get_stats(self) -> str:
        return f"{len(self)} pairs from {len(self.scenes)} sub-scenes"

    def filter_scene(self, label: str, instance: Optional[str] = None) -> None:
        """Keep the sub-scenes under ``label``; ``instance`` ``"<key>_<view>"`` also fixes the second view."""
        if instance:
            subscene, view = instance.split("_")
            label += "/" + subscene
            self.instances = [int(view) - 1]
        kept = [scene for scene in self.scenes if scene.startswith(label)]
        if not kept:
            raise ValueError(f"no scene was selected for label={label!r} instance={instance!r}")
        self.scenes = kept

    def _get_views(self, idx: int, resolution, rng: np.random.Generator) -> List[Dict[str, Any]]:
        scene = self.scenes[idx]
        data_path, key = osp.split(osp.join(self.ROOT, scene))
        views = []
        for view_index in (0, rng.choice(self.instances)):  # view 0 overlaps with every other view
            for k in range(view_index, view_index + N_VIEWS):  # a view with a broken pose: take the next one
                image, depthmap, intrinsics, camera_pose = self._load_one_view(data_path, key, k % N_VIEWS,
                                                                               resolution, rng)
                if np.isfinite(camera_pose).all():
                    break
            views.append(dict(img=image, depthmap=depthmap, camera_pose=camera_pose, camera_intrinsics=intrinsics,
                              dataset=type(self).__name__, label=osp.relpath(data_path, self.ROOT),
                              instance=f"{key}_{view_index}"))
        return views

    def _load_one_view(self, data_path: str, key: str, view_index: int, resolution, rng):
        impath, depthpath, campath = view_files(data_path, key, view_index + 1)  # files count from 1
        try:
            with PIL.Image.open(impath) as im:
                image = im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {impath!r}") from None
        depthmap = read_exr(depthpath)
        depthmap[~np.isfinite(depthmap)] = 0  # rays that escaped the mesh: no depth
        intrinsics, camera_pose = read_camera_params(campath)
        image, depthmap, intrinsics = self._crop_resize_if_necessary(
            image, depthmap, intrinsics, resolution, rng=rng, info=impath)
        return image, depthmap, intrinsics, camera_pose


class Habitat512(Habitat):
    """:class:`Habitat` under the name of MASt3R's recipe (``Habitat512(1_000_000, split='train', ...)``)."""

