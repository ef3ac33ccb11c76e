#!/usr/bin/env python3
"""Niantic Map-free relocalization raw download -> the processed-frames layout read by
:class:`dust3r.datasets.NianticMapFree`.

Raw layout (the Map-free release, https://research.nianticlabs.com/mapfree-reloc-benchmark)::

    <split>/<scene>/seq0/frame_00000.jpg      540x720 RGB (seq0: the map sequence, seq1: the query sequence)
    <split>/<scene>/seq0/frame_00000.<depth>.png   uint16 depth in millimetres (the provided monocular estimates,
                                              ``dptkitti`` or ``dptnyu``, or any depth stored the same way)
    <split>/<scene>/intrinsics.txt            ``seq0/frame_00000.jpg fx fy cx cy W H`` per frame
    <split>/<scene>/poses.txt                 ``seq0/frame_00000.jpg qw qx qy qz tx ty tz`` per frame ('#' comments)
    <split>/<scene>/overlaps.npz              train scenes: ``idxs`` (N, 4) = (seqA, frameA, seqB, frameB) and their
                                              ``overlaps`` (N,)

Conventions (the Map-free documentation): the pose maps world to camera, ``X_cam = R(q) X_world + t`` with a
scalar-first quaternion, OpenCV camera axes, metric units, the world being the first map frame; so
``cam2world = inv([R(q) | t])``. Frames without a pose (the hidden test queries) are left out. Depth: the Map-free
release ships no ground-truth depth; ``--depth_suffix`` picks the per-frame depth files (default ``dptkitti``, the
DPT-KITTI estimates of the release; a metric multi-view depth written as ``frame_XXXXX.<suffix>.png`` in the same
millimetre encoding can replace them). Pairs: train scenes, the ``overlaps.npz`` pairs whose overlap lies in
``[--min_overlap, --max_overlap]`` (at most ``--max_pairs_per_scene``, evenly subsampled); scenes without it (val),
the first map frame with every other frame, as in the benchmark. Scenes are ``<split>/<scene>``, split ``<split>``;
frames ``seq<k>_frame_XXXXX``.

Example::

    python3 datasets_preprocess/preprocess_mapfree.py --mapfree_dir data/mapfree --output_dir data/mapfree_processed
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np

from datasets_preprocess._frames import (FrameData, FrameJob, PreprocessResult, SceneJob, convert_dataset,
                                         quaternion_to_rotation, rigid)
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def read_frame_table(path: str, n_values: int) -> Dict[str, np.ndarray]:
    """``{'seq0/frame_00000.jpg': values}`` of intrinsics.txt / poses.txt ('#' lines skipped)."""
    table = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or line.lstrip().startswith("#"):
                continue
            if len(fields) != 1 + n_values:
                raise ValueError(f"{path}: expected a name and {n_values} values per line, got {line.strip()!r}")
            table[fields[0]] = np.array(fields[1:], dtype=np.float64)
    return table


def pose_to_cam2world(values: np.ndarray) -> np.ndarray:
    """(4, 4) cam2world of a ``qw qx qy qz tx ty tz`` world-to-camera pose."""
    return np.linalg.inv(rigid(quaternion_to_rotation(values[:4], "wxyz"), values[4:]))


def frame_name(image: str) -> str:
    """Processed frame name of a raw image path: 'seq0/frame_00000.jpg' -> 'seq0_frame_00000'."""
    return os.path.splitext(image)[0].replace("/", "_")


def overlap_pairs(path: str, min_overlap: float, max_overlap: float, max_pairs: int) -> List[Tuple[str, str]]:
    """Image-path pairs of a train scene's ``overlaps.npz`` within the overlap range, evenly subsampled."""
    with np.load(path) as data:
        idxs, overlaps = data["idxs"].astype(np.int64).reshape(-1, 4), data["overlaps"].reshape(-1)
    keep = np.flatnonzero((overlaps >= min_overlap) & (overlaps <= max_overlap))
    if len(keep) > max_pairs:
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, max_pairs).round().astype(int))]
    return [(f"seq{a}/frame_{i:05d}.jpg", f"seq{b}/frame_{j:05d}.jpg") for a, i, b, j in idxs[keep]]


def main(mapfree_dir: str, output_dir: str, depth_suffix: str = "dptkitti", min_overlap: float = 0.1,
         max_overlap: float = 0.9, max_pairs_per_scene: int = 2000) -> PreprocessResult:
    """Convert every posed frame of every scene of ``mapfree_dir`` (its train / val / test folders)."""
    if not os.path.isdir(mapfree_dir):
        raise FileNotFoundError(f"Map-free folder not found: {mapfree_dir!r}")
    scenes = [f"{split}/{scene}" for split in SPLITS if os.path.isdir(os.path.join(mapfree_dir, split))
              for scene in sorted(os.listdir(os.path.join(mapfree_dir, split)))
              if os.path.isfile(os.path.join(mapfree_dir, split, scene, "poses.txt"))]

    def parse_scene(scene: str) -> SceneJob:
        folder = os.path.join(mapfree_dir, *scene.split("/"))
        intrinsics = read_frame_table(os.path.join(folder, "intrinsics.txt"), 6)
        poses = read_frame_table(os.path.join(folder, "poses.txt"), 7)
        images = sorted(name for name in poses if name in intrinsics)
        frames = []
        for image in images:
            fx, fy, cx, cy, _, _ = intrinsics[image]
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            depth = os.path.join(folder, os.path.splitext(image)[0] + f".{depth_suffix}.png")
            frames.append(FrameJob(scene, frame_name(image), os.path.join(folder, image),
                                   (depth, K, pose_to_cam2world(poses[image]))))
        overlaps = os.path.join(folder, "overlaps.npz")
        if os.path.isfile(overlaps):
            pairs = overlap_pairs(overlaps, min_overlap, max_overlap, max_pairs_per_scene)
        else:
            pairs = [(images[0], other) for other in images[1:]] if images else []
        return SceneJob(scene, scene.split("/")[0], frames, [(frame_name(a), frame_name(b)) for a, b in pairs])

    def load_frame(job: FrameJob) -> FrameData:
        depth_path, K, cam2world = job.data
        depth_mm = imread_cv2(depth_path, cv2.IMREAD_UNCHANGED)
        if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
            raise ValueError(f"{depth_path}: expected a uint16 millimetre depth PNG, got {depth_mm.dtype} "
                             f"{depth_mm.shape}")
        return FrameData(job.source, depth_mm.astype(np.float32) / 1000.0, K, cam2world)

    return convert_dataset(scenes, parse_scene, load_frame, output_dir, "NianticMapFree")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--mapfree_dir", required=True, help="the raw Map-free download (train/, val/, test/)")
    parser.add_argument("--output_dir", default="data/mapfree_processed")
    parser.add_argument("--depth_suffix", default="dptkitti",
                        help="depth files frame_XXXXX.<suffix>.png (uint16 mm): dptkitti, dptnyu, ...")
    parser.add_argument("--min_overlap", type=float, default=0.1)
    parser.add_argument("--max_overlap", type=float, default=0.9)
    parser.add_argument("--max_pairs_per_scene", type=int, default=2000)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = get_parser().parse_args()
    sys.exit(main(args.mapfree_dir, args.output_dir, args.depth_suffix, args.min_overlap, args.max_overlap,
                  args.max_pairs_per_scene).exit_code)
