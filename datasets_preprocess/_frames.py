"""Writer of the processed-frames layout (:mod:`dust3r.datasets.processed_frames`) and the camera conventions the
preprocessing scripts of TartanAir, UnrealStereo4K, VirtualKitti, Map-free and DL3DV share.

A script lists its raw scenes, turns each into a :class:`SceneJob` (frames + pairs, parsing the scene's metadata)
and loads one frame at a time into a :class:`FrameData` in the processed conventions (depth as z, OpenCV pixels and
axes, cam2world). :func:`convert_dataset` runs both steps through :func:`datasets_preprocess._common.process_samples`
(a broken scene or frame is logged, named and skipped; the pairs touching it are dropped) and writes ``index.npz``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch

from croco.utils.misc import atomic_write
from datasets_preprocess._common import process_samples, report, write_frame_files
from dust3r.datasets.frame_io import load_npz, require_keys
from dust3r.datasets.processed_frames import INDEX_FILE, INDEX_KEYS
from dust3r.datasets.utils.cropping import rescale_image_depthmap
from dust3r.utils.geometry import quat_to_rotmat
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

__all__ = ["FrameJob", "SceneJob", "FrameData", "PreprocessResult", "convert_dataset", "gap_pairs",
           "quaternion_to_rotation", "rigid", "load_npy", "OPENGL_TO_OPENCV", "JPEG_QUALITY"]

#: JPEG quality of re-encoded images (JPEG sources are copied byte for byte)
JPEG_QUALITY = 95
#: right-multiplying an OpenGL cam2world (x right, y up, z backward) gives the OpenCV one (x right, y down, z fwd)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class FrameJob:
    """One raw frame to convert: processed ``scene`` / ``name``, the raw ``source`` file that names it in reports,
    and the script's own ``data`` (paths, calibration, pose)."""
    scene: str
    name: str
    source: str
    data: Any = None


@dataclass
class SceneJob:
    """A raw scene: processed folder ``name`` (may contain '/'), its ``split``, its frames and the frame-name pairs."""
    name: str
    split: str
    frames: List[FrameJob]
    pairs: List[Tuple[str, str]]


@dataclass
class FrameData:
    """A frame in the processed conventions.

    Attributes:
        image: (H, W, 3) uint8 RGB, or the path of a JPEG file stored as it is.
        depth: (H, W) z-depth (0 invalid, -1 sky). intrinsics: (3, 3) OpenCV pixels. cam2world: (4, 4) OpenCV axes.
    """
    image: Union[np.ndarray, str]
    depth: np.ndarray
    intrinsics: np.ndarray
    cam2world: np.ndarray


@dataclass
class PreprocessResult:
    """What a run wrote: its scenes and frames, the pairs of the (merged) index, the ``(sample, reason)`` of every
    skipped scene or frame, and the script's exit code (0 when at least one frame was written)."""
    output_dir: str
    n_scenes: int
    n_frames: int
    n_pairs: int
    failures: List[Tuple[str, str]] = field(default_factory=list)
    exit_code: int = 0


# ----------------------------------------------------------------------------------------------- conventions
def quaternion_to_rotation(quat: Sequence[float], order: str) -> np.ndarray:
    """(3, 3) float64 rotation of a quaternion given as ``order`` 'xyzw' (scalar last) or 'wxyz' (scalar first)."""
    q = np.asarray(quat, dtype=np.float64)
    if order == "wxyz":
        q = q[[1, 2, 3, 0]]
    elif order != "xyzw":
        raise ValueError(f"quaternion order must be 'xyzw' or 'wxyz', got {order!r}")
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-8:
        raise ValueError(f"not a quaternion: {quat!r}")
    return quat_to_rotmat(torch.from_numpy(q)).numpy()


def rigid(rotation: np.ndarray, translation: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 ``[[R, t], [0, 1]]``."""
    mat = np.eye(4)
    mat[:3, :3] = rotation
    mat[:3, 3] = translation
    return mat


def gap_pairs(names: Sequence[str], gaps: Iterable[int]) -> List[Tuple[str, str]]:
    """Pairs ``(names[i], names[i + g])`` for every gap ``g`` of ``gaps`` (frames in capture order)."""
    return [(names[i], names[i + g]) for g in sorted(set(int(g) for g in gaps)) if g > 0
            for i in range(len(names) - g)]


def load_npy(path: str) -> np.ndarray:
    """A raw ``.npy`` array (depth, disparity); FileNotFoundError / ValueError naming the file when unreadable."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path!r}") from None
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"cannot read {path!r}: {err}") from err


# ----------------------------------------------------------------------------------------------- writing
def _check_frame(data: FrameData, shape: Tuple[int, int], source: str) -> None:
    K, pose = np.asarray(data.intrinsics, np.float64), np.asarray(data.cam2world, np.float64)
    if data.depth.shape != shape:
        raise ValueError(f"{source}: depth is {data.depth.shape}, the image {shape}")
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{source}: bad intrinsics {K.tolist()}")
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"{source}: bad cam2world {pose.tolist()}")
    if not np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-4) or np.linalg.det(pose[:3, :3]) < 0:
        raise ValueError(f"{source}: the camera rotation is not a rotation")


def write_frame(output_dir: str, job: FrameJob, data: FrameData, max_side: Optional[int] = None) -> None:
    """Write ``<scene>/<name>.jpg/.exr/.npz`` of one frame (checked first: a broken frame writes nothing).

    ``max_side``: frames whose longer side exceeds it are downscaled (image LANCZOS, depth nearest, intrinsics
    rescaled with :func:`dust3r.datasets.utils.cropping.rescale_image_depthmap`)."""
    image = imread_cv2(data.image) if isinstance(data.image, str) else np.asarray(data.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{job.source}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    depth = np.asarray(data.depth, dtype=np.float32)
    K = np.asarray(data.intrinsics, dtype=np.float64)
    _check_frame(FrameData(image, depth, K, data.cam2world), image.shape[:2], job.source)
    copy_jpeg = isinstance(data.image, str) and data.image.lower().endswith((".jpg", ".jpeg"))
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        size = (int(image.shape[1] * scale), int(image.shape[0] * scale))
        pil, depth, K = rescale_image_depthmap(PIL.Image.fromarray(image), depth, K, size)
        image, copy_jpeg = np.asarray(pil), False
    stem = os.path.join(output_dir, *job.scene.split("/"), job.name)
    write_frame_files(stem, {".jpg": data.image if copy_jpeg else PIL.Image.fromarray(image)}, depth, JPEG_QUALITY,
                      intrinsics=np.float32(K), cam2world=np.float32(data.cam2world))


#: scene -> (split, frame names, (P, 2) pairs of indices into those names)
SceneRecords = Dict[str, Tuple[str, List[str], np.ndarray]]


def _split_by(values: np.ndarray, groups: np.ndarray, n_groups: int) -> List[np.ndarray]:
    """``values`` split into ``n_groups`` arrays by their group index (order kept within a group)."""
    order = np.argsort(groups, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(groups, minlength=n_groups))[:-1])


def _read_index(path: str) -> SceneRecords:
    """The scene records of an existing index ({} when there is none)."""
    if not os.path.isfile(path):
        return {}
    arrays = dict(zip(INDEX_KEYS, require_keys(load_npz(path), INDEX_KEYS, path)))
    n_scenes = len(arrays["scenes"])
    frame_scenes = arrays["frame_scenes"].astype(np.int64)
    pairs = arrays["pairs"].astype(np.int64).reshape(-1, 2)
    members = _split_by(np.arange(len(frame_scenes)), frame_scenes, n_scenes)
    local = np.zeros(len(frame_scenes), dtype=np.int64)
    for m in members:
        local[m] = np.arange(len(m))
    scene_pairs = _split_by(local[pairs], frame_scenes[pairs[:, 0]], n_scenes)
    return {str(scene): (str(split), arrays["frames"][m].astype(str).tolist(), p)
            for scene, split, m, p in zip(arrays["scenes"], arrays["scene_splits"], members, scene_pairs)}


def write_index(output_dir: str, scenes: SceneRecords) -> int:
    """Write ``index.npz`` (atomically) from the scene records, merged with the scenes of an existing index that
    this run did not write (e.g. another split processed earlier). Returns the number of pairs of the index."""
    path = os.path.join(output_dir, INDEX_FILE)
    merged = _read_index(path)
    merged.update(scenes)
    names = sorted(merged)
    counts = [len(merged[scene][1]) for scene in names]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    pairs = [np.asarray(merged[scene][2], dtype=np.int64).reshape(-1, 2) + offset
             for scene, offset in zip(names, offsets)]
    arrays = dict(scenes=np.array(names, dtype=str), scene_splits=np.array([merged[n][0] for n in names], dtype=str),
                  frames=np.array([f for n in names for f in merged[n][1]], dtype=str),
                  frame_scenes=np.repeat(np.arange(len(names)), counts).astype(np.int32),
                  pairs=np.concatenate(pairs or [np.zeros((0, 2), np.int64)]).astype(np.int32))

    def _save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, _save)
    return len(arrays["pairs"])


# ----------------------------------------------------------------------------------------------- the run
def convert_dataset(scene_sources: Sequence[Any], parse_scene: Callable[[Any], SceneJob],
                    load_frame: Callable[[FrameJob], FrameData], output_dir: str, desc: str,
                    max_side: Optional[int] = None) -> PreprocessResult:
    """Parse every raw scene, convert every frame, write the index; broken scenes / frames are reported and skipped.

    Args:
        scene_sources: the raw scenes (whatever ``parse_scene`` takes; ``str()`` names them in reports).
        parse_scene: raw scene -> :class:`SceneJob` (raises on broken metadata: the scene is skipped).
        load_frame: :class:`FrameJob` -> :class:`FrameData` (raises on a broken file: the frame is skipped).
        output_dir: the processed dataset root.
        desc: progress-bar label (the dataset).
        max_side: downscale frames whose longer side exceeds it (None: keep the raw resolution).
    """
    os.makedirs(output_dir, exist_ok=True)
    scenes: List[SceneJob] = []
    _, failures = process_samples(scene_sources, lambda src: scenes.append(parse_scene(src)), desc=f"{desc} scenes")
    jobs = [job for scene in scenes for job in scene.frames]
    written = set()

    def _convert(job: FrameJob) -> None:
        write_frame(output_dir, job, load_frame(job), max_side)
        written.add((job.scene, job.name))

    n_frames, frame_failures = process_samples(jobs, _convert, desc=f"{desc} frames", name=lambda j: j.source)
    failures += frame_failures
    records = {}
    for scene in scenes:
        names = [job.name for job in scene.frames if (scene.name, job.name) in written]
        position = {name: k for k, name in enumerate(names)}
        pairs = [(position[a], position[b]) for a, b in scene.pairs if a in position and b in position]
        if names:
            records[scene.name] = (scene.split, names, np.array(pairs, dtype=np.int64).reshape(-1, 2))
    n_pairs = write_index(output_dir, records)
    code = report(n_frames, failures)
    logger.info("%s: %d scenes, %d frames, %d pairs in the index of %s", desc, len(records), n_frames, n_pairs,
                output_dir)
    return PreprocessResult(output_dir, len(records), n_frames, n_pairs, failures, code)
