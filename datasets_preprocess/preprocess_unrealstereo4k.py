#!/usr/bin/env python3
"""UnrealStereo4K raw download -> the processed-frames layout read by :class:`dust3r.datasets.UnrealStereo4K`.

Raw layout (the SMD-Nets release, Tosi et al. CVPR 2021; one folder per scene ``00000`` ... ``00008``)::

    <scene>/Image0/00000.png        left RGB (3840x2160)         <scene>/Image1/00000.png   right RGB
    <scene>/Disp0/00000.npy         float32 left disparity (px)  <scene>/Disp1/00000.npy    right disparity (px)
    <scene>/Extrinsics0/00000.txt   line 1: the 3x3 intrinsics, row-major; line 2: the 3x4 world-to-camera [R|t]
    <scene>/Extrinsics1/00000.txt   the same for the right camera

Conventions: OpenCV camera axes, so ``cam2world = inv([R|t])``; the stereo baseline is the x coordinate of the right
camera in the left camera's frame, ``b = (inv(c2w_left) @ c2w_right)[0, 3]``, and ``depth = fx * b / disparity``
(disparity <= 0 -> invalid), in the unit of the extrinsics' translations (Unreal's world unit: the dataset is not
declared metric). Frames are downscaled to ``--max_side`` pixels (default 1920, half the 4K width). Frames
``<index>_left`` / ``<index>_right``; pairs: the stereo pair of every index and frames ``i, i + g`` of one camera for
every ``g`` of ``--gaps``. Every scene is split ``'train'``.

Example::

    python3 datasets_preprocess/preprocess_unrealstereo4k.py --unrealstereo4k_dir data/UnrealStereo4K \\
        --output_dir data/unrealstereo4k_processed
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from datasets_preprocess._frames import (FrameData, FrameJob, PreprocessResult, SceneJob, convert_dataset,
                                         gap_pairs, load_npy)
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

CAMERAS = ("left", "right")
DEFAULT_GAPS = (1, 2)
DEFAULT_MAX_SIDE = 1920


def read_extrinsics(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(K (3, 3), cam2world (4, 4))`` of one UnrealStereo4K ``Extrinsics{0,1}/<index>.txt`` file."""
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    if len(lines) < 2 or len(lines[0]) != 9 or len(lines[1]) != 12:
        raise ValueError(f"{path}: expected a line of 9 intrinsics and a line of 12 extrinsics values")
    world2cam = np.eye(4)
    world2cam[:3] = np.array(lines[1], dtype=np.float64).reshape(3, 4)
    return np.array(lines[0], dtype=np.float64).reshape(3, 3), np.linalg.inv(world2cam)


def depth_from_disparity(disparity: np.ndarray, focal: float, baseline: float) -> np.ndarray:
    """float32 ``focal * baseline / disparity``; 0 where the disparity is not positive (or not finite)."""
    valid = np.isfinite(disparity) & (disparity > 0)
    return np.where(valid, focal * baseline / np.where(valid, disparity, 1.0), 0.0).astype(np.float32)


def find_scenes(root: str) -> List[str]:
    """Scene folders (holding ``Image0``) directly under ``root``, sorted."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "Image0")))


def main(unrealstereo4k_dir: str, output_dir: str, gaps: Sequence[int] = DEFAULT_GAPS,
         max_side: Optional[int] = DEFAULT_MAX_SIDE) -> PreprocessResult:
    """Convert every scene of ``unrealstereo4k_dir`` into ``output_dir`` (see the module docstring)."""
    if not os.path.isdir(unrealstereo4k_dir):
        raise FileNotFoundError(f"UnrealStereo4K folder not found: {unrealstereo4k_dir!r}")

    def parse_scene(scene: str) -> SceneJob:
        folder = os.path.join(unrealstereo4k_dir, scene)
        indices = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "Image0")) if f.endswith(".png"))
        frames = [FrameJob(scene, f"{i}_{side}", os.path.join(folder, f"Image{c}", f"{i}.png"), (folder, i, c))
                  for c, side in enumerate(CAMERAS) for i in indices]
        pairs = [(f"{i}_left", f"{i}_right") for i in indices]
        pairs += [pair for side in CAMERAS for pair in gap_pairs([f"{i}_{side}" for i in indices], gaps)]
        return SceneJob(scene, "train", frames, pairs)

    def load_frame(job: FrameJob) -> FrameData:
        folder, index, cam = job.data
        calib = [read_extrinsics(os.path.join(folder, f"Extrinsics{c}", f"{index}.txt")) for c in (0, 1)]
        baseline = (np.linalg.inv(calib[0][1]) @ calib[1][1])[0, 3]
        if not baseline > 0:
            raise ValueError(f"{folder} {index}: the right camera is not right of the left one (baseline {baseline})")
        K, cam2world = calib[cam]
        disparity = load_npy(os.path.join(folder, f"Disp{cam}", f"{index}.npy"))
        return FrameData(imread_cv2(job.source), depth_from_disparity(disparity, K[0, 0], baseline), K, cam2world)

    return convert_dataset(find_scenes(unrealstereo4k_dir), parse_scene, load_frame, output_dir, "UnrealStereo4K",
                           max_side=max_side)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--unrealstereo4k_dir", required=True, help="the raw UnrealStereo4K download")
    parser.add_argument("--output_dir", default="data/unrealstereo4k_processed")
    parser.add_argument("--gaps", type=int, nargs="+", default=list(DEFAULT_GAPS),
                        help="index gaps of the pairs of one camera")
    parser.add_argument("--max_side", type=int, default=DEFAULT_MAX_SIDE,
                        help="downscale frames to this longer side (0: keep 3840x2160)")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = get_parser().parse_args()
    sys.exit(main(args.unrealstereo4k_dir, args.output_dir, args.gaps, args.max_side or None).exit_code)
