"""One processed frame of the original layouts: ``<frame>.jpg`` + ``<frame>.exr`` depth + ``<frame>.npz`` camera.

Shared by the readers whose preprocessing writes that triple (BlendedMVS, MegaDepth, StaticThings3D, Waymo).
A missing or unreadable file raises OSError naming it (the base dataset then skips the pair).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from dust3r.datasets.co3d import load_npz, missing_root_error
from dust3r.utils.exr import read_exr
from dust3r.utils.image import imread_cv2

__all__ = ["load_frame", "cropped_view", "index_file"]


def load_frame(image_path: str, depth_path: str, camera_path: str, keys: Sequence[str]
               ) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
    """``(rgb (H, W, 3) uint8, depth (H, W) float32, [float32 camera arrays named by keys])``.

    Raises:
        OSError (FileNotFoundError for a missing file): a file is missing or unreadable, the depth does not
        match the image, or the camera ``.npz`` lacks one of ``keys``.
    """
    image = imread_cv2(image_path)
    depthmap = read_exr(depth_path)
    if depthmap.shape != image.shape[:2]:
        raise OSError(f"depth {depth_path!r} is {depthmap.shape}, its image {image.shape[:2]}")
    camera = load_npz(camera_path)
    missing = [key for key in keys if key not in camera]
    if missing:
        raise OSError(f"camera file {camera_path!r} lacks {missing} (has {sorted(camera)})")
    return image, depthmap, [np.float32(camera[key]) for key in keys]


def cropped_view(dataset, image, depthmap: np.ndarray, intrinsics: np.ndarray, camera_pose: np.ndarray, resolution,
                 rng: np.random.Generator, label: str, instance: str, info=None) -> Dict[str, Any]:
    """The view dict a reader's ``_get_views`` returns: image, depth and intrinsics through
    ``dataset._crop_resize_if_necessary``, ``dataset`` named after the reader class."""
    image, depthmap, intrinsics = dataset._crop_resize_if_necessary(image, depthmap, intrinsics, resolution, rng=rng,
                                                                    info=info)
    return dict(img=image, depthmap=depthmap, camera_pose=np.float32(camera_pose), camera_intrinsics=intrinsics,
                dataset=type(dataset).__name__, label=label, instance=instance)


def index_file(dataset, filename: str) -> str:
    """``dataset.ROOT/filename``; FileNotFoundError naming it and ``dataset.preprocess_script`` when it is missing."""
    path = osp.join(dataset.ROOT, filename)
    if not osp.isfile(path):
        raise missing_root_error(path, type(dataset).__name__, dataset.preprocess_script)
    return path
