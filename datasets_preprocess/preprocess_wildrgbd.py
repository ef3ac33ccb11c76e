#!/usr/bin/env python3
"""WildRGB-D -> the processed layout :class:`dust3r.datasets.WildRgbd` reads (the original script's output).

Usage::

    python3 datasets_preprocess/preprocess_wildrgbd.py --wildrgbd_dir /path/to/wildrgbd \
        --output_dir data/wildrgbd_processed

Raw input (the WildRGB-D download), per category folder (a folder holding ``scenes/``)::

    <category>/camera_eval_list.json, nvs_list.json    {"train": [sequence, ...], "val": [...]}
    <category>/scenes/scene_000/rgb/00000.png           RGB
    <category>/scenes/scene_000/depth/00000.png         uint16 depth in millimetres
    <category>/scenes/scene_000/masks/00000.png         object mask
    <category>/scenes/scene_000/metadata                JSON: K (9 values, column-major), w, h
    <category>/scenes/scene_000/cam_poses.txt           per frame: index, then the 4x4 cam2world (row-major)

Train sequences are those in the "train" list of both list files, test sequences every other listed one (the
original's rule); at most ``--train_num_sequences_per_object`` / ``--test_num_sequences_per_object`` per category,
drawn as the original does. ``--num_frames`` frames evenly spread over each sequence (all of them when it has
fewer) are cropped around the principal point and resized like CO3D's
(:func:`datasets_preprocess.preprocess_co3d.crop_resize_frame`). A broken frame or sequence is reported and left out.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
import random
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from datasets_preprocess._common import process_samples, report
from datasets_preprocess.preprocess_co3d import add_seed_and_size_arguments, crop_resize_frame, write_split_indices
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

LIST_FILES = ("camera_eval_list.json", "nvs_list.json")
#: the original seeds every category with ``seed + int("category".encode('ascii').hex(), 16)`` (the literal word)
CATEGORY_SEED_OFFSET = int("category".encode("ascii").hex(), 16)


def get_set_list(category_dir: str, split: str) -> Set[str]:
    """Sequences of ``split``: 'train' = in the train list of every list file, else the other listed ones."""
    lists: Dict[str, List[Set[str]]] = {"train": [], "val": []}
    for name in LIST_FILES:
        with open(osp.join(category_dir, name)) as f:
            data = json.load(f)
        for key in lists:
            lists[key].append(set(data.get(key, [])))
    train = set.intersection(*lists["train"])
    if split == "train":
        return train
    return set.union(*lists["train"], *lists["val"]) - train


def read_sequence_cameras(scene_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(K (3, 3), cam2world (N, 4, 4))`` of a raw sequence; ValueError when the files disagree with the format."""
    with open(osp.join(scene_dir, "metadata")) as f:
        metadata = json.load(f)
    K = np.array(metadata["K"], dtype=np.float64).reshape(3, 3).T
    poses = np.loadtxt(osp.join(scene_dir, "cam_poses.txt"), ndmin=2)
    if poses.shape[1] != 17 or not np.array_equal(poses[:, 0], np.arange(len(poses))):
        raise ValueError(f"{scene_dir}/cam_poses.txt: expected rows 'index + 16 pose values' numbered 0..N-1")
    return K, poses[:, 1:].reshape(-1, 4, 4)


def process_frame(scene_dir: str, out_dir: str, frame_id: int, K: np.ndarray, cam2world: np.ndarray,
                  img_size: int) -> None:
    """Convert one raw frame (raises on a missing or broken file; nothing is written then)."""
    import cv2
    import PIL.Image

    name = f"{frame_id:05d}"
    rgb_path = osp.join(scene_dir, "rgb", name + ".png")
    if not osp.isfile(rgb_path):
        raise FileNotFoundError(f"missing image {rgb_path!r}")
    with PIL.Image.open(rgb_path) as img:
        image = img.convert("RGB")
    mask = imread_cv2(osp.join(scene_dir, "masks", name + ".png"), cv2.IMREAD_UNCHANGED)
    mask = (mask[..., 0] if mask.ndim == 3 else mask).astype(np.float32) / np.iinfo(mask.dtype).max
    depth = imread_cv2(osp.join(scene_dir, "depth", name + ".png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    if depth.shape != mask.shape or image.size != depth.shape[::-1]:
        raise ValueError(f"{scene_dir} frame {name}: image {image.size[::-1]}, depth {depth.shape}, "
                         f"mask {mask.shape} differ")
    image, depth, mask, K_out = crop_resize_frame(image, depth, mask, K, img_size)
    paths = {sub: osp.join(out_dir, sub, name + ext) for sub, ext in
             (("rgb", ".jpg"), ("depth", ".png"), ("masks", ".png"), ("metadata", ".npz"))}
    for path in paths.values():
        os.makedirs(osp.dirname(path), exist_ok=True)
    image.save(paths["rgb"])
    cv2.imwrite(paths["depth"], np.rint(depth).astype(np.uint16))  # millimetres
    cv2.imwrite(paths["masks"], np.rint(np.clip(mask, 0, 1) * 255).astype(np.uint8))
    np.savez(paths["metadata"], camera_intrinsics=K_out.astype(np.float32),
             camera_pose=cam2world.astype(np.float32))


def prepare_sequences(category: str, wildrgbd_dir: str, output_dir: str, img_size: int, split: str,
                      max_num_sequences_per_object: int, output_num_frames: int, seed: int
                      ) -> Tuple[Dict[str, List[int]], List[Tuple[str, str]]]:
    """Convert the selected sequences of one category and split: ``({sequence: [frames]}, failures)``."""
    category_dir = osp.join(wildrgbd_dir, category)
    sequences = []
    for name in sorted(get_set_list(category_dir, split)):
        if osp.isdir(osp.join(category_dir, name)):
            sequences.append(name)
        else:
            logger.info("%s does not exist, skipped", osp.join(category_dir, name))
    if len(sequences) > max_num_sequences_per_object:
        sequences = random.Random(seed).sample(sequences, max_num_sequences_per_object)

    selected: Dict[str, List[int]] = {}
    failures: List[Tuple[str, str]] = []

    def convert_sequence(sequence: str) -> None:
        scene_dir = osp.join(category_dir, sequence)
        K, cam2world = read_sequence_cameras(scene_dir)
        n = len(cam2world)
        frames = np.round(np.linspace(0, n - 1, min(output_num_frames, n))).astype(int).tolist()
        if n < output_num_frames:
            logger.info("%s has %d frames (< %d): all used", scene_dir, n, output_num_frames)
        done: List[int] = []

        def convert_frame(frame_id: int) -> None:
            process_frame(scene_dir, osp.join(output_dir, category, sequence), frame_id, K, cam2world[frame_id],
                          img_size)
            done.append(frame_id)

        _, frame_failures = process_samples(frames, convert_frame, desc=sequence,
                                            name=lambda f: osp.join(scene_dir, f"{f:05d}"))
        failures.extend(frame_failures)
        selected[sequence] = done

    _, sequence_failures = process_samples(sequences, convert_sequence, desc=f"{category} {split}",
                                           name=lambda s: osp.join(category_dir, s))
    return selected, failures + sequence_failures


def main(wildrgbd_dir: str, output_dir: str = "data/wildrgbd_processed", train_num_sequences_per_object: int = 50,
         test_num_sequences_per_object: int = 10, num_frames: int = 100, seed: int = 42, img_size: int = 512,
         categories: Optional[List[str]] = None) -> int:
    """Preprocess WildRGB-D (see the module docstring). Returns the exit status (0: the index lists frames)."""
    if osp.abspath(wildrgbd_dir) == osp.abspath(output_dir):
        raise ValueError("--output_dir must differ from --wildrgbd_dir (the raw files would be overwritten)")
    if categories is None:
        categories = sorted(d for d in os.listdir(wildrgbd_dir) if osp.isdir(osp.join(wildrgbd_dir, d, "scenes")))
    os.makedirs(output_dir, exist_ok=True)
    max_sequences = {"train": train_num_sequences_per_object, "test": test_num_sequences_per_object}

    def prepare(category: str, split: str) -> Tuple[Dict[str, List[int]], List[Tuple[str, str]]]:
        return prepare_sequences(category, wildrgbd_dir, output_dir, img_size, split, max_sequences[split],
                                 num_frames, seed + CATEGORY_SEED_OFFSET)

    return report(*write_split_indices(output_dir, categories, ("train", "test"), prepare))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="WildRGB-D -> the processed layout of dust3r.datasets.WildRgbd")
    parser.add_argument("--output_dir", type=str, default="data/wildrgbd_processed")
    parser.add_argument("--wildrgbd_dir", type=str, required=True)
    parser.add_argument("--train_num_sequences_per_object", type=int, default=50)
    parser.add_argument("--test_num_sequences_per_object", type=int, default=10)
    parser.add_argument("--num_frames", type=int, default=100)
    add_seed_and_size_arguments(parser)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = get_parser().parse_args()
    raise SystemExit(main(args.wildrgbd_dir, args.output_dir, args.train_num_sequences_per_object,
                          args.test_num_sequences_per_object, args.num_frames, args.seed, args.img_size))
