#!/usr/bin/env python3
"""CO3Dv2 -> the processed layout :class:`dust3r.datasets.Co3d` reads (the original script's output).

Usage (the original README's)::

    python3 datasets_preprocess/preprocess_co3d.py --co3d_dir /path/to/co3d --output_dir data/co3d_processed
    python3 datasets_preprocess/preprocess_co3d.py --co3d_dir /path/to/co3d_subset \
        --output_dir data/co3d_subset_processed --single_sequence_subset

Raw input (the CO3Dv2 download), per category folder::

    <category>/frame_annotations.jgz      gzipped JSON list: sequence_name, frame_number, image {path, size [H, W]},
                                          depth {path, scale_adjustment}, mask {path}, viewpoint {R, T,
                                          focal_length, principal_point} in PyTorch3D's NDC convention
    <category>/sequence_annotations.jgz   gzipped JSON list: sequence_name, viewpoint_quality_score, ...
    <category>/set_lists/set_lists_fewview_train.json, set_lists_manyview_dev_0.json, ...
                                          {"train": [[sequence, frame_number, image path], ...], "test": [...]}
    <category>/<sequence>/images/frame000001.jpg, depths/frame000001.jpg.geometric.png (float16 bits in a
                                          16-bit PNG), masks/frame000001.png, depth_masks/...

Per split (train, test) and category: the sequences of the set lists (``fewview_train``, or ``manyview_dev``
with ``--single_sequence_subset``) with a viewpoint quality above ``--min_quality``, at most
``--num_sequences_per_object`` of them (drawn like the original: ``random.Random(seed + category index)``). Each
frame is cropped around its principal point, resized so that its short side is ``img_size * 3/4`` (or its long
side ``img_size``), and written as the reader expects (see :mod:`dust3r.datasets.co3d`). A frame whose files are
missing or unreadable is reported and left out of ``selected_seqs_<split>.json``; a category whose annotations are
missing is reported and skipped. Existing per-category index files are reused (resuming an interrupted run).
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import os.path as osp
import random
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from datasets_preprocess._common import process_samples, report
from dust3r.datasets.utils import cropping
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

CATEGORIES = [
    "apple", "backpack", "ball", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "book", "bottle",
    "bowl", "broccoli", "cake", "car", "carrot", "cellphone", "chair", "couch", "cup", "donut", "frisbee",
    "hairdryer", "handbag", "hotdog", "hydrant", "keyboard", "kite", "laptop", "microwave", "motorcycle", "mouse",
    "orange", "parkingmeter", "pizza", "plant", "remote", "sandwich", "skateboard", "stopsign", "suitcase",
    "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck", "tv", "umbrella", "vase",
    "wineglass",
]
CATEGORIES_IDX = {cat: i for i, cat in enumerate(CATEGORIES)}  # seeds the sequence draw, as in the original
SINGLE_SEQUENCE_CATEGORIES = sorted(set(CATEGORIES) - {"microwave", "stopsign", "tv"})


# ----------------------------------------------------------------------------------------------
# CO3D camera conventions
# ----------------------------------------------------------------------------------------------
def ndc_to_pinhole(focal_length: Sequence[float], principal_point: Sequence[float], image_size_hw: Sequence[int]
                   ) -> np.ndarray:
    """(3, 3) pixel intrinsics of a PyTorch3D NDC-isotropic camera (CO3Dv2 ``viewpoint``) for an (H, W) image.

    NDC units are half the short image side; NDC x points left and y up, so the principal point in pixels is
    ``(W / 2, H / 2) - principal_point * min(H, W) / 2``.
    """
    size_wh = np.array([image_size_hw[1], image_size_hw[0]], dtype=np.float64)
    scale = size_wh.min() / 2.0
    focal = np.asarray(focal_length, dtype=np.float64) * scale
    centre = size_wh / 2.0 - np.asarray(principal_point, dtype=np.float64) * scale
    return np.array([[focal[0], 0.0, centre[0]], [0.0, focal[1], centre[1]], [0.0, 0.0, 1.0]])


def pytorch3d_to_cam2world(R: Sequence[Sequence[float]], T: Sequence[float]) -> np.ndarray:
    """(4, 4) OpenCV cam2world of a PyTorch3D camera (``X_cam = X_world @ R + T``, camera x left, y up).

    OpenCV's world2cam is ``diag(-1, -1, 1) @ [R.T | T]``.
    """
    flip = np.diag([-1.0, -1.0, 1.0])
    world2cam = np.eye(4)
    world2cam[:3, :3] = flip @ np.asarray(R, dtype=np.float64).T
    world2cam[:3, 3] = flip @ np.asarray(T, dtype=np.float64)
    return np.linalg.inv(world2cam)


def read_co3d_depth(path: str) -> np.ndarray:
    """(H, W) float32 depth of a CO3D ``.geometric.png`` (float16 bit patterns stored in a 16-bit PNG)."""
    import cv2

    raw = imread_cv2(path, cv2.IMREAD_UNCHANGED)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"{path!r} is not a 16-bit single-channel depth PNG ({raw.dtype}, {raw.shape})")
    return raw.view(np.float16).astype(np.float32)


def output_resolution(W: int, H: int, img_size: int) -> np.ndarray:
    """(w, h) the original aims for: short side ``img_size * 3 // 4``, or long side ``img_size`` if that is larger.

    Computed from the raw (uncropped) size as the original does; the crop is then rescaled to cover it.
    """
    scale = (img_size * 3 // 4) / min(H, W) + 1e-8
    out = np.floor(np.array([W, H]) * scale).astype(int)
    if max(out) < img_size:
        out = np.floor(np.array([W, H]) * (img_size / max(H, W) + 1e-8)).astype(int)
    return out


def crop_resize_frame(image, depth: np.ndarray, mask: np.ndarray, K: np.ndarray, img_size: int):
    """Crop around the rounded principal point, then rescale (see :func:`output_resolution`).

    Returns ``(image PIL, depth (h, w), mask (h, w), K (3, 3))``.
    """
    H, W = depth.shape
    cx, cy = np.round(K[:2, 2]).astype(int)
    mx, my = min(cx, W - cx), min(cy, H - cy)
    if mx <= 0 or my <= 0:
        raise ValueError(f"principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) outside the {W}x{H} image")
    depth_mask = np.stack([depth, mask.astype(np.float32)], axis=-1)
    image, depth_mask, K = cropping.crop_image_depthmap(image, depth_mask, K, (cx - mx, cy - my, cx + mx, cy + my))
    image, depth_mask, K = cropping.rescale_image_depthmap(image, depth_mask, K, output_resolution(W, H, img_size))
    return image, depth_mask[..., 0], depth_mask[..., 1], K


# ----------------------------------------------------------------------------------------------
# one category
# ----------------------------------------------------------------------------------------------
def _load_jgz(path: str):
    if not osp.isfile(path):
        raise FileNotFoundError(f"missing annotation file {path!r}")
    try:
        with gzip.open(path, "rt") as f:
            return json.load(f)
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path!r}: {err}") from err


def get_set_list(category_dir: str, split: str, single_sequence_subset: bool = False) -> List[list]:
    """``[[sequence, frame_number, image path], ...]`` of ``split`` over the subset's set-list files."""
    set_dir = osp.join(category_dir, "set_lists")
    if not osp.isdir(set_dir):
        raise FileNotFoundError(f"missing set lists folder {set_dir!r}")
    key = "manyview_dev" if single_sequence_subset else "fewview_train"
    entries = []
    for name in sorted(os.listdir(set_dir)):
        if key in name:
            with open(osp.join(set_dir, name)) as f:
                entries.extend(json.load(f).get(split, []))
    return entries


@dataclass
class FrameJob:
    """One frame to convert: its set-list entry and annotation."""

    sequence: str
    filepath: str
    annotation: dict


def process_frame(job: FrameJob, co3d_dir: str, output_dir: str, img_size: int) -> None:
    """Convert one CO3D frame (raises on a missing or broken file; nothing is written then)."""
    import cv2
    import PIL.Image

    ann = job.annotation
    viewpoint = ann["viewpoint"]
    K = ndc_to_pinhole(viewpoint["focal_length"], viewpoint["principal_point"], ann["image"]["size"])
    cam2world = pytorch3d_to_cam2world(viewpoint["R"], viewpoint["T"])
    image_path = osp.join(co3d_dir, job.filepath)
    mask_rel = job.filepath.replace("images", "masks").replace(".jpg", ".png")
    depth_rel = ann["depth"]["path"]
    if not osp.isfile(image_path):
        raise FileNotFoundError(f"missing image {image_path!r}")
    with PIL.Image.open(image_path) as img:
        image = img.convert("RGB")
    mask = imread_cv2(osp.join(co3d_dir, mask_rel), cv2.IMREAD_UNCHANGED)
    mask = (mask[..., 0] if mask.ndim == 3 else mask).astype(np.float32) / (65535.0 if mask.dtype == np.uint16
                                                                              else 255.0)
    depth = read_co3d_depth(osp.join(co3d_dir, depth_rel)) * float(ann["depth"].get("scale_adjustment", 1.0))
    depth[~np.isfinite(depth)] = 0.0
    if depth.shape != mask.shape or image.size != depth.shape[::-1]:
        raise ValueError(f"{job.filepath}: image {image.size[::-1]}, depth {depth.shape}, mask {mask.shape} differ")
    image, depth, mask, K = crop_resize_frame(image, depth, mask, K, img_size)

    out_image = osp.join(output_dir, job.filepath)
    out_depth, out_mask = osp.join(output_dir, depth_rel), osp.join(output_dir, mask_rel)
    for path in (out_image, out_depth, out_mask):
        os.makedirs(osp.dirname(path), exist_ok=True)
    max_depth = np.float32(depth.max())
    image.save(out_image)
    scaled = depth / max_depth * 65535 if max_depth > 0 else np.zeros_like(depth)
    cv2.imwrite(out_depth, np.rint(scaled).astype(np.uint16))
    cv2.imwrite(out_mask, np.rint(np.clip(mask, 0, 1) * 255).astype(np.uint8))
    np.savez(out_image[:-len(".jpg")] + ".npz", camera_intrinsics=K.astype(np.float32),
             camera_pose=cam2world.astype(np.float32), maximum_depth=max_depth)


def category_seed(seed: int, category: str) -> int:
    """The original's per-category seed (``seed + index``), a stable hash for categories outside CO3D's list."""
    return seed + CATEGORIES_IDX.get(category, zlib.crc32(category.encode()))


def prepare_sequences(category: str, co3d_dir: str, output_dir: str, img_size: int, split: str,
                      min_quality: float, max_num_sequences_per_object: int, seed: int,
                      single_sequence_subset: bool = False) -> Tuple[Dict[str, List[int]], List[Tuple[str, str]]]:
    """Convert the selected sequences of one category and split.

    Returns:
        ``({sequence: [frame numbers written]}, failures)`` (failures: ``(frame, why)`` of each skipped frame).
    """
    category_dir = osp.join(co3d_dir, category)
    entries = get_set_list(category_dir, split, single_sequence_subset)
    frames = _load_jgz(osp.join(category_dir, "frame_annotations.jgz"))
    sequences = _load_jgz(osp.join(category_dir, "sequence_annotations.jgz"))
    annotations: Dict[str, Dict[int, dict]] = {}
    for ann in frames:
        annotations.setdefault(ann["sequence_name"], {})[ann["frame_number"]] = ann
    good = {s["sequence_name"] for s in sequences if s.get("viewpoint_quality_score", 0.0) > min_quality}
    names = [name for name in sorted({e[0] for e in entries}) if name in good]
    if len(names) >= max_num_sequences_per_object:
        names = random.Random(seed).sample(names, max_num_sequences_per_object)
    selected = {name: [] for name in names}

    jobs = []
    for sequence, frame_number, filepath in entries:
        if sequence in selected:
            jobs.append(FrameJob(sequence, filepath, annotations.get(sequence, {}).get(frame_number)))

    def convert(job: FrameJob) -> None:
        if job.annotation is None:
            raise KeyError(f"{job.filepath}: no frame annotation")
        process_frame(job, co3d_dir, output_dir, img_size)
        selected[job.sequence].append(int(osp.basename(job.filepath)[len("frame"):-len(".jpg")]))

    _, failures = process_samples(jobs, convert, desc=f"{category} {split}", name=lambda job: job.filepath)
    return selected, failures


def main(co3d_dir: str, output_dir: str = "data/co3d_processed", single_sequence_subset: bool = False,
         category: Optional[str] = None, num_sequences_per_object: int = 50, seed: int = 42,
         min_quality: float = 0.5, img_size: int = 512) -> int:
    """Preprocess CO3Dv2 (see the module docstring). Returns the exit status (0: the index lists frames)."""
    if osp.abspath(co3d_dir) == osp.abspath(output_dir):
        raise ValueError("--output_dir must differ from --co3d_dir (the raw files would be overwritten)")
    if category is not None:
        categories = [category]
    else:
        known = SINGLE_SEQUENCE_CATEGORIES if single_sequence_subset else CATEGORIES
        categories = [c for c in known if osp.isdir(osp.join(co3d_dir, c))]
        missing = sorted(set(known) - set(categories))
        if missing:
            logger.info("categories not in %s (skipped): %s", co3d_dir, ", ".join(missing))
    os.makedirs(output_dir, exist_ok=True)

    def prepare(cat: str, split: str) -> Tuple[Dict[str, List[int]], List[Tuple[str, str]]]:
        return prepare_sequences(cat, co3d_dir, output_dir, img_size, split, min_quality, num_sequences_per_object,
                                 category_seed(seed, cat), single_sequence_subset)

    return report(*write_split_indices(output_dir, categories, ("train", "test"), prepare))


PrepareFn = Callable[[str, str], Tuple[Dict[str, List[int]], List[Tuple[str, str]]]]


def write_split_indices(output_dir: str, categories: Sequence[str], splits: Sequence[str], prepare: PrepareFn
                        ) -> Tuple[int, List[Tuple[str, str]]]:
    """Write ``selected_seqs_<split>.json`` (root, ``{category: {sequence: [frames]}}``) and per category
    (``{sequence: [frames]}``) for the object-centric layouts (CO3D, WildRGB-D), as the original scripts do.

    ``prepare(category, split)`` converts one category and returns ``({sequence: [frames]}, failures)``. An existing
    root index skips its split, an existing category index is reused (resuming an interrupted run); a category
    whose ``prepare`` raises a sample error is reported and left out.

    Returns:
        ``(number of frames the indices list, failures)`` for :func:`datasets_preprocess._common.report`.
    """
    n_done, failures = 0, []
    for split in splits:
        index_path = osp.join(output_dir, f"selected_seqs_{split}.json")
        if osp.isfile(index_path):
            logger.info("%s exists, split %s skipped", index_path, split)
            with open(index_path) as f:
                n_done += sum(len(v) for seqs in json.load(f).values() for v in seqs.values())
            continue
        selected_all: Dict[str, Dict[str, List[int]]] = {}

        def do_category(cat: str) -> None:
            cat_index = osp.join(output_dir, cat, f"selected_seqs_{split}.json")
            if osp.isfile(cat_index):
                with open(cat_index) as f:
                    selected_all[cat] = json.load(f)
                return
            selected, sample_failures = prepare(cat, split)
            failures.extend(sample_failures)
            os.makedirs(osp.dirname(cat_index), exist_ok=True)
            with open(cat_index, "w") as f:
                json.dump(selected, f)
            selected_all[cat] = selected

        _, category_failures = process_samples(list(categories), do_category, desc=f"{split} categories")
        failures.extend(category_failures)
        with open(index_path, "w") as f:
            json.dump(selected_all, f)
        n_done += sum(len(v) for seqs in selected_all.values() for v in seqs.values())
    return n_done, failures


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CO3Dv2 -> the processed layout of dust3r.datasets.Co3d")
    parser.add_argument("--category", type=str, default=None)
    parser.add_argument("--single_sequence_subset", default=False, action="store_true",
                        help="prepare the single_sequence_subset instead.")
    parser.add_argument("--output_dir", type=str, default="data/co3d_processed")
    parser.add_argument("--co3d_dir", type=str, required=True)
    parser.add_argument("--num_sequences_per_object", type=int, default=50)
    parser.add_argument("--min_quality", type=float, default=0.5, help="Minimum viewpoint quality score.")
    add_seed_and_size_arguments(parser)
    return parser


def add_seed_and_size_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed`` (sequence draw) and ``--img_size`` (output size) of the object-centric scripts."""
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--img_size", type=int, default=512,
                        help="lower dimension will be >= img_size * 3/4, and max dimension will be >= img_size")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = get_parser().parse_args()
    raise SystemExit(main(args.co3d_dir, args.output_dir, args.single_sequence_subset, args.category,
                          args.num_sequences_per_object, args.seed, args.min_quality, args.img_size))
