#!/usr/bin/env python3
"""Synthetic training data in the Co3d PROCESSED layout: the no-download quick start of training.

Each sequence is a :func:`dust3r.synthetic.make_scene` room (textured walls, floor, ceiling and a few textured
boxes) seen by ``n_frames`` cameras on a circular arc around the boxes, like a CO3D capture orbits its object.
Depth, intrinsics and poses are exact; the object mask is the boxes. The files are exactly what
``datasets_preprocess/preprocess_co3d.py`` writes, so :class:`dust3r.datasets.Co3d` (and MASt3R's) reads them::

    <output_dir>/selected_seqs_train.json            {category: {sequence: [frame numbers]}}
    <output_dir>/selected_seqs_test.json
    <output_dir>/<category>/selected_seqs_{train,test}.json   {sequence: [frame numbers]}
    <output_dir>/<category>/<sequence>/images/frame000001.jpg   RGB
    <output_dir>/<category>/<sequence>/images/frame000001.npz   camera_intrinsics (3, 3) f32, camera_pose (4, 4)
                                                                f32 cam2world (OpenCV axes), maximum_depth f32
    <output_dir>/<category>/<sequence>/depths/frame000001.jpg.geometric.png   uint16 depth / maximum_depth * 65535
    <output_dir>/<category>/<sequence>/masks/frame000001.png    uint8 object mask (255 on the boxes)

Frames are numbered from 1 as in CO3D. Train and test sequences are different scenes. Everything depends only on
the arguments (``seed`` included): two runs write identical files.

Quick start::

    python3 datasets_preprocess/make_synthetic_co3d.py --output_dir data/synthetic_co3d
    torchrun --nproc_per_node=2 train.py --train_dataset "1000 @ Co3d(split='train', ROOT='data/synthetic_co3d', ...)"

or from Python: ``main('data/synthetic_co3d', n_sequences=2, n_frames=12, image_size=(128, 96), seed=0)``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import zlib
from typing import Sequence, Tuple, Union

import numpy as np

from dust3r.synthetic import SyntheticScene, make_scene

logger = logging.getLogger(__name__)

#: radius of :func:`make_scene`'s orbit layout, metres
_ORBIT_RADIUS = 2.8
#: default orbit arc of a sequence, degrees
DEFAULT_ARC_DEG = 60.0


def _image_size(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``(W, H)`` from an int (W, with H = 3/4 W) or a (W, H) pair."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        W, H = int(image_size), int(image_size) * 3 // 4
    else:
        W, H = (int(v) for v in image_size)
    if W < 8 or H < 8:
        raise ValueError(f"image_size must be at least 8x8 pixels, got {image_size!r}")
    return W, H


def sequence_seed(seed: int, category: str, split: str, index: int) -> int:
    """Scene seed of one sequence: depends on the global seed, the category, the split and the index only."""
    return zlib.crc32(f"synthetic-co3d/{int(seed)}/{category}/{split}/{index}".encode()) & 0x7FFFFFFF


def _baseline(n_frames: int, arc_deg: float) -> float:
    """Distance between consecutive camera centres for ``n_frames`` spread over ``arc_deg`` of the orbit."""
    step = np.deg2rad(arc_deg) / max(n_frames - 1, 1)
    return max(float(2.0 * _ORBIT_RADIUS * np.sin(step / 2.0)), 1e-3)


def render_sequence(scene_seed: int, n_frames: int, W: int, H: int, arc_deg: float = DEFAULT_ARC_DEG,
                    n_boxes: int = 3) -> SyntheticScene:
    """The scene of one sequence: ``n_frames`` orbit views spread over ``arc_deg`` degrees (exact ground truth)."""
    return make_scene(n_views=n_frames, height=H, width=W, seed=scene_seed, layout="orbit",
                      baseline=_baseline(n_frames, arc_deg), n_boxes=n_boxes)


def write_sequence(seq_dir: str, scene_seed: int, n_frames: int, W: int, H: int, arc_deg: float,
                   n_boxes: int, jpeg_quality: int = 95) -> list:
    """Render one sequence and write its frames in the Co3d processed layout under ``seq_dir``.

    Returns:
        the frame numbers written (1..n_frames).
    """
    import cv2
    import PIL.Image

    scene = render_sequence(scene_seed, n_frames, W, H, arc_deg, n_boxes)
    for sub in ("images", "depths", "masks"):
        os.makedirs(os.path.join(seq_dir, sub), exist_ok=True)
    frames = []
    for i in range(n_frames):
        number = i + 1
        name = f"frame{number:06d}"
        depth = scene.depth[i].astype(np.float32)
        max_depth = np.float32(depth.max())
        PIL.Image.fromarray(scene.images[i]).save(os.path.join(seq_dir, "images", f"{name}.jpg"),
                                                  quality=jpeg_quality)
        depth_u16 = np.rint(depth / max_depth * 65535).astype(np.uint16)
        cv2.imwrite(os.path.join(seq_dir, "depths", f"{name}.jpg.geometric.png"), depth_u16)
        mask = np.where(scene.surface_id[i] > 0, 255, 0).astype(np.uint8)
        cv2.imwrite(os.path.join(seq_dir, "masks", f"{name}.png"), mask)
        np.savez(os.path.join(seq_dir, "images", f"{name}.npz"),
                 camera_intrinsics=scene.K[i].astype(np.float32),
                 camera_pose=scene.cam2world[i].astype(np.float32), maximum_depth=max_depth)
        frames.append(number)
    return frames


def main(output_dir: str, n_sequences: int = 2, n_frames: int = 12,
         image_size: Union[int, Sequence[int]] = (128, 96), seed: int = 0,
         categories: Sequence[str] = ("synthetic",), n_test_sequences: int = 1, arc_deg: float = DEFAULT_ARC_DEG,
         n_boxes: int = 3) -> str:
    """Write a synthetic dataset in the Co3d processed layout.

    Args:
        output_dir: root to write (the ``ROOT`` of ``Co3d(...)``); created if needed.
        n_sequences: train sequences per category.
        n_frames: frames per sequence (numbered 1..n_frames).
        image_size: ``(W, H)`` in pixels, or an int W (H = 3/4 W).
        seed: global seed; every file depends only on the arguments.
        categories: category folder names.
        n_test_sequences: test sequences per category (different scenes from the train ones; 0 for none, which
            writes an empty ``selected_seqs_test.json``).
        arc_deg: the orbit arc the frames of a sequence span, degrees (CO3D's full turn is 360 over ~100
            frames; the default 60 keeps every pair the Co3d reader draws well overlapping: with 12 frames,
            frames 4 apart still see ~70 % of each other).
        n_boxes: boxes per scene (1 to 6), the masked foreground object.

    Returns:
        ``output_dir``.
    """
    W, H = _image_size(image_size)
    for value, label, low in ((n_sequences, "n_sequences", 1), (n_frames, "n_frames", 1),
                              (n_test_sequences, "n_test_sequences", 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if not 1 <= n_boxes <= 6:
        raise ValueError(f"n_boxes must be in [1, 6] (the boxes are the masked object), got {n_boxes}")
    if not 0 < arc_deg <= 360:
        raise ValueError(f"arc_deg must be in (0, 360], got {arc_deg}")
    categories = [categories] if isinstance(categories, str) else list(categories)
    if not categories or len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct names, got {categories!r}")

    os.makedirs(output_dir, exist_ok=True)
    for split, count in (("train", int(n_sequences)), ("test", int(n_test_sequences))):
        selected = {}
        for category in categories:
            per_category = {}
            for k in range(count):
                sequence = f"{split}_{k:03d}"
                scene_seed = sequence_seed(seed, category, split, k)
                per_category[sequence] = write_sequence(os.path.join(output_dir, category, sequence), scene_seed,
                                                        int(n_frames), W, H, arc_deg, n_boxes)
            os.makedirs(os.path.join(output_dir, category), exist_ok=True)
            with open(os.path.join(output_dir, category, f"selected_seqs_{split}.json"), "w") as f:
                json.dump(per_category, f)
            selected[category] = per_category
        with open(os.path.join(output_dir, f"selected_seqs_{split}.json"), "w") as f:
            json.dump(selected, f)
        logger.info("%s: %d sequences x %d frames of %dx%d in %s", split, count * len(categories), n_frames, W, H,
                    output_dir)
    return output_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write synthetic scenes in the Co3d processed layout "
                                                 "(train with Co3d(ROOT=<output_dir>, ...)).")
    parser.add_argument("--output_dir", default="data/synthetic_co3d")
    parser.add_argument("--n_sequences", type=int, default=2, help="train sequences per category")
    parser.add_argument("--n_test_sequences", type=int, default=1, help="test sequences per category")
    parser.add_argument("--n_frames", type=int, default=12, help="frames per sequence")
    parser.add_argument("--image_size", type=int, nargs=2, default=(128, 96), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", nargs="+", default=["synthetic"])
    parser.add_argument("--arc_deg", type=float, default=DEFAULT_ARC_DEG,
                        help="orbit arc spanned by a sequence (degrees)")
    parser.add_argument("--n_boxes", type=int, default=3)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = get_parser().parse_args()
    main(args.output_dir, n_sequences=args.n_sequences, n_frames=args.n_frames, image_size=args.image_size,
         seed=args.seed, categories=args.categories, n_test_sequences=args.n_test_sequences, arc_deg=args.arc_deg,
         n_boxes=args.n_boxes)
