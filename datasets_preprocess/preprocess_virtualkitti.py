#!/usr/bin/env python3
"""Virtual KITTI 2 raw download -> the processed-frames layout read by :class:`dust3r.datasets.VirtualKitti`.

Raw layout (the VKITTI 2 tarballs ``vkitti_2.0.3_{rgb,depth,textgt}`` extracted into one folder, or given
separately with ``--depth_dir`` / ``--textgt_dir``)::

    Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg         1242x375 RGB (Camera_1: the right stereo camera)
    Scene01/clone/frames/depth/Camera_0/depth_00000.png     uint16 z-depth in centimetres; 65535 (655.35 m) = sky
    Scene01/clone/intrinsic.txt     header + rows ``frame cameraID fx fy cx cy``
    Scene01/clone/extrinsic.txt     header + rows ``frame cameraID`` and the 4x4 world-to-camera matrix, row-major

(a ``textgt/`` sub-folder of the variation holding the two text files is accepted too). Conventions (VKITTI 2
documentation): camera axes x right, y down, z forward, i.e. OpenCV's, so ``cam2world = inv(extrinsic)``; depth
``/ 100`` gives metres; 65535 marks the sky and is stored as -1 (sky). Scenes are ``<SceneXX>/<variation>``
(clone, fog, morning, ...), frames ``<frame>_Camera_<c>``; pairs: frames ``i, i + g`` of one camera for every
``g`` of ``--gaps``, plus the stereo pair of every frame. Every scene is split ``'train'``.

Example::

    python3 datasets_preprocess/preprocess_virtualkitti.py --vkitti_dir data/vkitti2 \\
        --output_dir data/virtualkitti_processed
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

import cv2
import numpy as np

from datasets_preprocess._frames import (FrameData, FrameJob, PreprocessResult, SceneJob, convert_dataset,
                                         gap_pairs)
from dust3r.datasets.processed_frames import SKY_DEPTH
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

#: uint16 depth value of the sky (655.35 m)
SKY_CM = 65535
DEFAULT_GAPS = (1, 2, 4)


def _text_file(variation_dir: str, name: str) -> str:
    """``<variation>/<name>``, or ``<variation>/textgt/<name>`` when only that exists."""
    direct = os.path.join(variation_dir, name)
    nested = os.path.join(variation_dir, "textgt", name)
    return nested if not os.path.isfile(direct) and os.path.isfile(nested) else direct


def read_table(path: str, n_values: int) -> dict:
    """``{(frame, camera): values}`` of a VKITTI 2 text table (one header line, whitespace-separated rows)."""
    rows = np.loadtxt(path, skiprows=1, ndmin=2)
    if rows.shape[1] != 2 + n_values:
        raise ValueError(f"{path}: expected {2 + n_values} columns, got {rows.shape[1]}")
    return {(int(r[0]), int(r[1])): r[2:] for r in rows}


def depth_from_png(depth_cm: np.ndarray) -> np.ndarray:
    """float32 metres of a VKITTI 2 uint16 centimetre depth map; the sky (65535) becomes -1."""
    depth = depth_cm.astype(np.float32) / 100.0
    depth[depth_cm == SKY_CM] = SKY_DEPTH
    return depth


def find_variations(textgt_dir: str) -> List[str]:
    """``<SceneXX>/<variation>`` folders (holding extrinsic.txt, directly or in textgt/), '/'-separated, sorted."""
    found = set()
    for folder, _, files in os.walk(textgt_dir):
        if "extrinsic.txt" in files:
            rel = os.path.relpath(folder, textgt_dir).replace(os.sep, "/")
            found.add(rel[: -len("/textgt")] if rel.endswith("/textgt") else rel)
    return sorted(found)


def main(vkitti_dir: str, output_dir: str, depth_dir: Optional[str] = None, textgt_dir: Optional[str] = None,
         gaps: Sequence[int] = DEFAULT_GAPS) -> PreprocessResult:
    """Convert every ``<SceneXX>/<variation>`` into ``output_dir`` (see the module docstring).

    Args:
        vkitti_dir: the RGB tree (and, by default, the depth and text ground truth).
        depth_dir, textgt_dir: where the depth / text trees are when extracted elsewhere.
    """
    depth_dir = depth_dir or vkitti_dir
    textgt_dir = textgt_dir or vkitti_dir
    for folder in (vkitti_dir, depth_dir, textgt_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Virtual KITTI 2 folder not found: {folder!r}")

    def parse_scene(scene: str) -> SceneJob:
        text = os.path.join(textgt_dir, *scene.split("/"))
        intrinsics = read_table(_text_file(text, "intrinsic.txt"), 4)
        extrinsics = read_table(_text_file(text, "extrinsic.txt"), 16)
        frames, by_camera = [], {}
        for (frame, cam), values in sorted(extrinsics.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if (frame, cam) not in intrinsics:
                raise ValueError(f"{scene}: frame {frame} camera {cam} has an extrinsic but no intrinsic row")
            fx, fy, cx, cy = intrinsics[frame, cam]
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            cam2world = np.linalg.inv(values.reshape(4, 4))
            sub = ("frames", "rgb", f"Camera_{cam}", f"rgb_{frame:05d}.jpg")
            depth = os.path.join(depth_dir, *scene.split("/"), "frames", "depth", f"Camera_{cam}",
                                 f"depth_{frame:05d}.png")
            job = FrameJob(scene, f"{frame:05d}_Camera_{cam}", os.path.join(vkitti_dir, *scene.split("/"), *sub),
                           (depth, K, cam2world))
            frames.append(job)
            by_camera.setdefault(cam, []).append(job.name)
        pairs = [pair for names in by_camera.values() for pair in gap_pairs(names, gaps)]
        stereo = sorted(set(f for f, _ in extrinsics if (f, 0) in extrinsics and (f, 1) in extrinsics))
        pairs += [(f"{f:05d}_Camera_0", f"{f:05d}_Camera_1") for f in stereo]
        return SceneJob(scene, "train", frames, pairs)

    def load_frame(job: FrameJob) -> FrameData:
        depth_path, K, cam2world = job.data
        depth_cm = imread_cv2(depth_path, cv2.IMREAD_UNCHANGED)
        if depth_cm.dtype != np.uint16 or depth_cm.ndim != 2:
            raise ValueError(f"{depth_path}: expected a uint16 single-channel depth PNG, got {depth_cm.dtype} "
                             f"{depth_cm.shape}")
        return FrameData(job.source, depth_from_png(depth_cm), K, cam2world)

    return convert_dataset(find_variations(textgt_dir), parse_scene, load_frame, output_dir, "VirtualKitti")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--vkitti_dir", required=True, help="the raw VKITTI 2 tree (rgb, and depth/textgt by default)")
    parser.add_argument("--depth_dir", default=None, help="the vkitti_2.0.3_depth tree, if extracted elsewhere")
    parser.add_argument("--textgt_dir", default=None, help="the vkitti_2.0.3_textgt tree, if extracted elsewhere")
    parser.add_argument("--output_dir", default="data/virtualkitti_processed")
    parser.add_argument("--gaps", type=int, nargs="+", default=list(DEFAULT_GAPS),
                        help="frame gaps of the pairs of one camera")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = get_parser().parse_args()
    sys.exit(main(args.vkitti_dir, args.output_dir, args.depth_dir, args.textgt_dir, args.gaps).exit_code)
