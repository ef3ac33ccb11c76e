#!/usr/bin/env python3
"""DL3DV-10K raw download + a depth source -> the processed-frames layout read by :class:`dust3r.datasets.DL3DV`.

Raw layout (the DL3DV-10K release: one folder per scene, named by its hash, anywhere below ``--dl3dv_dir``, e.g.
``1K/<hash>``; the benchmark's ``<hash>/nerfstudio`` folders work too)::

    <scene>/transforms.json          nerfstudio: w, h, fl_x, fl_y, cx, cy, k1, k2, p1, p2 (full resolution; a frame
                                     may override them) and frames[] with file_path ('images/frame_00001.png') and
                                     transform_matrix (4x4 camera-to-world, OpenGL axes)
    <scene>/images_4/frame_00001.png the frames at a reduced resolution (``--images``: images_2, images_4, images_8)

Depth: DL3DV has no ground-truth depth. ``--depth_dir`` holds one depth map per frame that the user computed for
the poses of transforms.json (e.g. COLMAP multi-view stereo, or a depth network aligned to the poses):
``<depth_dir>/<scene>/<frame stem>.npy``, float32 z-depth in the unit of the transforms (any resolution of the same
aspect ratio, resized with nearest neighbour), 0 or NaN = invalid, +inf or negative = sky (stored as -1: sky with
``mask_sky=True``, invalid otherwise). Depth maps are aligned with the raw (distorted) frames.

Conventions: nerfstudio's camera-to-world has OpenGL axes (x right, y up, z backward), so
``cam2world = transform_matrix @ diag(1, -1, -1, 1)`` (the world frame, with nerfstudio's applied_transform, is
kept); the intrinsics are COLMAP's (pixel corners: the centre of the top-left pixel at (0.5, 0.5)), scaled by the
image / (w, h) ratio then shifted by -0.5 to OpenCV pixel centres. Frames with OPENCV distortion (k1, k2, p1, p2)
are undistorted (image bilinear, depth nearest) to the same pinhole intrinsics. Scenes are the scene folders'
relative paths, all of split ``--split`` (merged into an existing index: process DL3DV-10K with 'train' and the
benchmark with 'test' into the same output); frames are the image stems; pairs: frames ``i, i + g`` in file order
for every ``g`` of ``--gaps``. Poses come from COLMAP: not metric.

Example::

    python3 datasets_preprocess/preprocess_dl3dv.py --dl3dv_dir data/DL3DV-10K --depth_dir data/dl3dv_depth \\
        --output_dir data/dl3dv_processed
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from datasets_preprocess._frames import (OPENGL_TO_OPENCV, FrameData, FrameJob, PreprocessResult,
                                         SceneJob, convert_dataset, gap_pairs, load_npy)
from dust3r.datasets.processed_frames import SKY_DEPTH
from dust3r.utils.geometry import colmap_to_opencv_intrinsics
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

DEFAULT_GAPS = (1, 2, 4, 8)
DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")
CAMERA_KEYS = ("w", "h", "fl_x", "fl_y", "cx", "cy") + DISTORTION_KEYS


def find_scenes(dl3dv_dir: str) -> List[str]:
    """Folders holding a ``transforms.json`` below ``dl3dv_dir``, relative, '/'-separated, sorted."""
    found = [os.path.relpath(folder, dl3dv_dir).replace(os.sep, "/")
             for folder, _, files in os.walk(dl3dv_dir) if "transforms.json" in files]
    return sorted(found)


def scene_name(folder: str) -> str:
    """Processed scene of a raw scene folder ('<hash>/nerfstudio' -> '<hash>')."""
    return folder[: -len("/nerfstudio")] if folder.endswith("/nerfstudio") else folder


def camera_of(meta: Dict[str, Any], frame: Dict[str, Any], width: int, height: int):
    """``(K (3, 3) OpenCV pixels of a (width, height) image, distortion (5,) k1 k2 p1 p2 k3)`` of a frame."""
    cam = {key: float(frame.get(key, meta.get(key, 0.0))) for key in CAMERA_KEYS}
    if cam["w"] <= 0 or cam["h"] <= 0 or cam["fl_x"] <= 0 or cam["fl_y"] <= 0:
        raise ValueError(f"transforms.json lacks w / h / fl_x / fl_y (got {cam})")
    sx, sy = width / cam["w"], height / cam["h"]
    K = np.array([[cam["fl_x"] * sx, 0.0, cam["cx"] * sx], [0.0, cam["fl_y"] * sy, cam["cy"] * sy], [0.0, 0.0, 1.0]])
    return colmap_to_opencv_intrinsics(K), np.array([cam[key] for key in DISTORTION_KEYS])


def read_depth_source(path: str, height: int, width: int) -> np.ndarray:
    """float32 (height, width) depth of the depth source: invalid -> 0, sky (+inf / negative) -> -1."""
    raw = load_npy(path)
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected an (H, W) depth map, got shape {raw.shape}")
    if abs(raw.shape[1] / raw.shape[0] - width / height) > 0.01:
        raise ValueError(f"{path}: depth {raw.shape} and image {(height, width)} differ in aspect ratio")
    sky = (raw == np.inf) | (raw < 0)
    depth = np.where(np.isfinite(raw) & ~sky, raw, 0.0).astype(np.float32)
    depth[sky] = SKY_DEPTH
    if depth.shape != (height, width):
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)
    return depth


def undistort(image: np.ndarray, depth: np.ndarray, K: np.ndarray, distortion: np.ndarray):
    """Image (bilinear) and depth (nearest) resampled to the pinhole camera ``K`` without ``distortion``."""
    H, W = depth.shape
    map_x, map_y = cv2.initUndistortRectifyMap(K, distortion, None, K, (W, H), cv2.CV_32FC1)
    image = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    depth = cv2.remap(depth, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return image, depth


def main(dl3dv_dir: str, depth_dir: str, output_dir: str, images: str = "images_4", split: str = "train",
         gaps: Sequence[int] = DEFAULT_GAPS) -> PreprocessResult:
    """Convert every scene of ``dl3dv_dir`` with the depth maps of ``depth_dir`` (see the module docstring)."""
    for folder in (dl3dv_dir, depth_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"DL3DV folder not found: {folder!r}")

    def parse_scene(folder: str) -> SceneJob:
        raw = os.path.join(dl3dv_dir, *folder.split("/"))
        with open(os.path.join(raw, "transforms.json")) as f:
            meta = json.load(f)
        scene = scene_name(folder)
        frames = []
        for frame in sorted(meta["frames"], key=lambda fr: os.path.basename(fr["file_path"])):
            stem = os.path.splitext(os.path.basename(frame["file_path"]))[0]
            c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
            if c2w.shape != (4, 4):
                raise ValueError(f"{raw}: transform_matrix of {stem} is not 4x4")
            frames.append(FrameJob(scene, stem, os.path.join(raw, images, os.path.basename(frame["file_path"])),
                                   (meta, frame, c2w @ OPENGL_TO_OPENCV,
                                    os.path.join(depth_dir, *scene.split("/"), stem + ".npy"))))
        return SceneJob(scene, split, frames, gap_pairs([job.name for job in frames], gaps))

    def load_frame(job: FrameJob) -> FrameData:
        meta, frame, cam2world, depth_path = job.data
        image = imread_cv2(job.source)
        K, distortion = camera_of(meta, frame, image.shape[1], image.shape[0])
        depth = read_depth_source(depth_path, *image.shape[:2])
        if np.any(distortion != 0):
            image, depth = undistort(image, depth, K, distortion)
        return FrameData(image, depth, K, cam2world)

    return convert_dataset(find_scenes(dl3dv_dir), parse_scene, load_frame, output_dir, "DL3DV")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--dl3dv_dir", required=True, help="the raw DL3DV download (folders with transforms.json)")
    parser.add_argument("--depth_dir", required=True, help="<depth_dir>/<scene>/<frame>.npy depth maps (see --help)")
    parser.add_argument("--output_dir", default="data/dl3dv_processed")
    parser.add_argument("--images", default="images_4", help="the image folder of a scene: images_2/4/8")
    parser.add_argument("--split", default="train", help="split of the scenes of this run ('train', 'test', ...)")
    parser.add_argument("--gaps", type=int, nargs="+", default=list(DEFAULT_GAPS), help="frame gaps of the pairs")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = get_parser().parse_args()
    sys.exit(main(args.dl3dv_dir, args.depth_dir, args.output_dir, args.images, args.split, args.gaps).exit_code)
