#!/usr/bin/env python3
"""TartanAir (v1) raw download -> the processed-frames layout read by :class:`dust3r.datasets.TartanAir`.

Raw layout (the TartanAir release, one folder per trajectory, found anywhere below ``--tartanair_dir``)::

    <env>/<Easy|Hard>/<P00x>/image_left/000000_left.png         640x480 RGB
    <env>/<Easy|Hard>/<P00x>/depth_left/000000_left_depth.npy   float32 (480, 640) z-depth, metres
    <env>/<Easy|Hard>/<P00x>/pose_left.txt                      one line per frame: tx ty tz qx qy qz qw

Conventions (TartanAir's documentation): the pose is the camera-to-world transform in the NED frame, the camera body
axes being x forward, y right, z down, quaternion scalar last; the pinhole intrinsics are fixed, fx = fy = 320,
cx = 320, cy = 240 at 640x480. The OpenCV camera axes are (x right, y down, z forward) = (NED y, NED z, NED x), so
``cam2world_opencv = pose_ned @ [[0,0,1,0],[1,0,0,0],[0,1,0,0],[0,0,0,1]]`` (the world frame stays TartanAir's NED
world). Only the left camera is converted. Pairs: frames ``i, i + g`` of a trajectory for every gap ``g`` of
``--gaps``. Every scene is split ``'train'`` (TartanAir has no official split).

Output: ``<output_dir>/<env>/<Easy|Hard>/<P00x>/<frame>.jpg/.exr/.npz`` and ``index.npz``
(:mod:`dust3r.datasets.processed_frames`). Example::

    python3 datasets_preprocess/preprocess_tartanair.py --tartanair_dir data/tartanair \\
        --output_dir data/tartanair_processed
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Sequence

import numpy as np

from datasets_preprocess._frames import (FrameData, FrameJob, PreprocessResult, SceneJob, convert_dataset,
                                         gap_pairs, load_npy, quaternion_to_rotation, rigid)
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

#: TartanAir's fixed pinhole intrinsics at 640x480
INTRINSICS = np.array([[320.0, 0.0, 320.0], [0.0, 320.0, 240.0], [0.0, 0.0, 1.0]])
#: columns: the OpenCV camera axes (right, down, forward) in TartanAir's NED body frame (x fwd, y right, z down)
OPENCV_IN_NED = rigid(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.zeros(3))
DEFAULT_GAPS = (1, 2, 4, 8)


def ned_pose_to_opencv(line: Sequence[float]) -> np.ndarray:
    """(4, 4) OpenCV cam2world of one ``tx ty tz qx qy qz qw`` NED pose line."""
    values = np.asarray(line, dtype=np.float64)
    if values.shape != (7,):
        raise ValueError(f"a TartanAir pose line has 7 numbers (tx ty tz qx qy qz qw), got {len(values)}")
    return rigid(quaternion_to_rotation(values[3:], "xyzw"), values[:3]) @ OPENCV_IN_NED


def find_trajectories(tartanair_dir: str) -> List[str]:
    """Trajectory folders (holding ``pose_left.txt``) below ``tartanair_dir``, relative, '/'-separated, sorted."""
    found = []
    for folder, _, files in os.walk(tartanair_dir):
        if "pose_left.txt" in files:
            found.append(os.path.relpath(folder, tartanair_dir).replace(os.sep, "/"))
    return sorted(found)


def main(tartanair_dir: str, output_dir: str, gaps: Sequence[int] = DEFAULT_GAPS) -> PreprocessResult:
    """Convert every trajectory of ``tartanair_dir`` into ``output_dir`` (see the module docstring)."""
    if not os.path.isdir(tartanair_dir):
        raise FileNotFoundError(f"TartanAir folder not found: {tartanair_dir!r}")

    def parse_scene(scene: str) -> SceneJob:
        folder = os.path.join(tartanair_dir, *scene.split("/"))
        poses = np.loadtxt(os.path.join(folder, "pose_left.txt"), ndmin=2)
        frames = [FrameJob(scene, f"{k:06d}", os.path.join(folder, "image_left", f"{k:06d}_left.png"),
                           (os.path.join(folder, "depth_left", f"{k:06d}_left_depth.npy"), ned_pose_to_opencv(p)))
                  for k, p in enumerate(poses)]
        return SceneJob(scene, "train", frames, gap_pairs([f.name for f in frames], gaps))

    def load_frame(job: FrameJob) -> FrameData:
        depth_path, cam2world = job.data
        return FrameData(imread_cv2(job.source), load_npy(depth_path), INTRINSICS, cam2world)

    return convert_dataset(find_trajectories(tartanair_dir), parse_scene, load_frame, output_dir, "TartanAir")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--tartanair_dir", required=True, help="the raw TartanAir download")
    parser.add_argument("--output_dir", default="data/tartanair_processed")
    parser.add_argument("--gaps", type=int, nargs="+", default=list(DEFAULT_GAPS),
                        help="frame gaps of the pairs within a trajectory")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = get_parser().parse_args()
    sys.exit(main(args.tartanair_dir, args.output_dir, args.gaps).exit_code)
