"""File access shared by the dataset readers: index files, ``.npz`` metadata and processed frames.

:func:`load_frame` reads the ``<frame>.jpg`` + ``<frame>.exr`` depth + ``<frame>.npz`` camera triple that the
BlendedMVS, MegaDepth, StaticThings3D and Waymo preprocessing (the original's layouts) and the processed-frames
layout (:mod:`dust3r.datasets.processed_frames`) write, :func:`frame_view` turns one into a cropped view dict
(:func:`cropped_view`); :func:`load_npz` reads any metadata ``.npz``; :func:`index_file` locates a reader's index
under its ``ROOT``. A missing or unreadable sample file raises OSError naming it (the
base dataset then skips the pair); a missing index raises FileNotFoundError naming the preprocessing script.
"""
from __future__ import annotations

import os.path as osp
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dust3r.utils.exr import read_exr
from dust3r.utils.image import imread_cv2

__all__ = ["load_frame", "load_npz", "require_keys", "cropped_view", "frame_view", "index_file", "missing_root_error",
           "CAMERA_KEYS"]

#: the camera arrays of a processed frame ``.npz`` (the layouts that store a cam2world matrix)
CAMERA_KEYS = ("intrinsics", "cam2world")


def load_npz(path: str) -> Dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file; a missing or unreadable file raises OSError naming it."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"metadata file not found: {path!r}") from None
    except (ValueError, EOFError, KeyError, zipfile.BadZipFile, OSError) as err:
        raise OSError(f"cannot read metadata file {path!r}: {err}") from err


def require_keys(arrays: Dict[str, np.ndarray], keys: Sequence[str], path: str, hint: str = "") -> List[np.ndarray]:
    """``[arrays[key] for key in keys]`` of the arrays loaded from ``path``; OSError naming the file and the missing
    keys (then ``hint``) when one is absent."""
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise OSError(f"{path!r} lacks {missing} (has {sorted(arrays)}){hint}")
    return [arrays[key] for key in keys]


def missing_root_error(path: str, dataset: str, script: str) -> FileNotFoundError:
    """The error for a missing processed dataset: names the path and the script that writes it."""
    return FileNotFoundError(f"{dataset}: {path!r} not found; write the processed dataset with "
                             f"`python3 datasets_preprocess/{script} --help`")


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
    camera = require_keys(load_npz(camera_path), keys, camera_path)
    return image, depthmap, [np.float32(array) for array in camera]


def cropped_view(dataset, image, depthmap: np.ndarray, intrinsics: np.ndarray, camera_pose: np.ndarray, resolution,
                 rng: np.random.Generator, label: str, instance: str, info=None) -> Dict[str, Any]:
    """The view dict a reader's ``_get_views`` returns: image, depth and intrinsics through
    ``dataset._crop_resize_if_necessary``, float32 arrays (``camera_pose`` copied), ``dataset`` the reader's
    ``dataset_label`` (its class name when it has none)."""
    image, depthmap, intrinsics = dataset._crop_resize_if_necessary(image, depthmap, intrinsics, resolution, rng=rng,
                                                                    info=info)
    return dict(img=image, depthmap=np.asarray(depthmap, dtype=np.float32),
                camera_pose=np.array(camera_pose, dtype=np.float32),
                camera_intrinsics=np.asarray(intrinsics, dtype=np.float32),
                dataset=getattr(dataset, "dataset_label", None) or type(dataset).__name__, label=label,
                instance=instance)


def frame_view(dataset, stem: str, resolution, rng: np.random.Generator, label: str, instance: str,
               info=None) -> Dict[str, Any]:
    """The view of the frame ``stem`` + ``.jpg`` / ``.exr`` / ``.npz`` (:data:`CAMERA_KEYS`): :func:`load_frame`
    then :func:`cropped_view`. OSError naming the file when one is missing or unreadable."""
    image, depthmap, (intrinsics, cam2world) = load_frame(stem + ".jpg", stem + ".exr", stem + ".npz", CAMERA_KEYS)
    return cropped_view(dataset, image, depthmap, intrinsics, cam2world, resolution, rng, label=label,
                        instance=instance, info=info)


def index_file(dataset, filename: str, folder: Optional[str] = None) -> str:
    """``folder/filename`` (``folder`` defaults to ``dataset.ROOT``); FileNotFoundError naming it and
    ``dataset.preprocess_script`` when it is missing."""
    path = osp.join(dataset.ROOT if folder is None else folder, filename)
    if not osp.isfile(path):
        raise missing_root_error(path, type(dataset).__name__, dataset.preprocess_script)
    return path
