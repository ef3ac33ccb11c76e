#!/usr/bin/env python3
"""BlendedMVS raw download -> the processed layout read by :class:`dust3r.datasets.BlendedMVS` (the original's).

Raw layout (``BlendedMVS.zip``, ``BlendedMVS+.zip``, ``BlendedMVS++.zip`` unzipped into one folder)::

    <blendedmvs_dir>/<24 hex digits>/blended_images/<8 digits>.jpg         768x576 RGB
    <blendedmvs_dir>/<24 hex digits>/cams/<8 digits>_cam.txt                "extrinsic" + world2cam 4x4,
                                                                           "intrinsic" + 3x3 (MVSNet format)
    <blendedmvs_dir>/<24 hex digits>/cams/pair.txt                          MVSNet view selection
    <blendedmvs_dir>/<24 hex digits>/rendered_depth_maps/<8 digits>.pfm     float depth, PFM rows bottom-up

Each frame is rescaled (LANCZOS) to 512x384 (384x512 for a portrait frame) and written as
``<output_dir>/<sequence>/<frame>.jpg`` (quality 80), ``.exr`` (float32 depth) and ``.npz`` (``intrinsics``,
``R_cam2world``, ``t_cam2world``). A frame whose files are missing or unreadable is reported and skipped.

Pairs: ``--precomputed_pairs`` is naver's ``blendedmvs_pairs.npy``; without it the pairs come from each sequence's
``cams/pair.txt`` (every reference view with its scored source views, one row per unordered pair, best score).
Pairs touching a frame that was not written are dropped, the rest saved as ``<output_dir>/blendedmvs_pairs.npy``
(where the reader looks for it; the original left copying it there to the user). Example::

    python3 datasets_preprocess/preprocess_blendedmvs.py --blendedmvs_dir /path/to/blendedMVS \\
        --precomputed_pairs /path/to/blendedmvs_pairs.npy --output_dir data/blendedmvs_processed
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import re
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from datasets_preprocess._common import (frame_done, keep_written_pairs, process_samples, report,
                                         write_frame_files)
from dust3r.datasets.blendedmvs import PAIRS_DTYPE, sequence_name, split_sequences
from dust3r.datasets.utils import cropping
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

__all__ = ["main", "load_pfm_file", "load_cam_txt", "pairs_from_pair_txt", "process_frame", "get_parser"]

OUTPUT_RESOLUTION = (512, 384)
JPEG_QUALITY = 80


def load_pfm_file(path: str) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 image of a PFM file (rows flipped back to top-down).

    Raises:
        FileNotFoundError: no such file. ValueError: not a PFM file, or truncated.
    """
    with open(path, "rb") as f:
        header = f.readline().decode("ascii", "replace").strip()
        if header not in ("PF", "Pf"):
            raise ValueError(f"{path!r} is not a PFM file (header {header!r})")
        dims = re.match(r"^\s*(\d+)\s+(\d+)\s*$", f.readline().decode("ascii", "replace"))
        if not dims:
            raise ValueError(f"{path!r}: invalid PFM size line")
        width, height = map(int, dims.groups())
        scale = float(f.readline().decode("ascii", "replace").strip())
        payload = f.read()
    shape = (height, width, 3) if header == "PF" else (height, width)
    if len(payload) != 4 * int(np.prod(shape)):
        raise ValueError(f"{path!r}: PFM data has {len(payload)} bytes, its header says {shape} floats")
    data = np.frombuffer(payload, dtype="<f4" if scale < 0 else ">f4")
    return np.ascontiguousarray(data.reshape(shape)[::-1], dtype=np.float32)


def load_cam_txt(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(K (3, 3), cam2world (4, 4))`` float64 of an MVSNet ``*_cam.txt`` (its extrinsic is world2cam)."""
    with open(path, "r") as f:
        lines = [line.strip() for line in f]
    try:
        ext = lines.index("extrinsic") + 1
        intr = lines.index("intrinsic") + 1
        world2cam = np.array([lines[ext + k].split() for k in range(4)], dtype=np.float64)
        K = np.array([lines[intr + k].split() for k in range(3)], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path!r} is not an MVSNet camera file: {err}") from err
    if world2cam.shape != (4, 4) or K.shape != (3, 3) or not np.isfinite(world2cam).all():
        raise ValueError(f"{path!r}: bad extrinsic {world2cam.shape} / intrinsic {K.shape}")
    return K, np.linalg.inv(world2cam)


def pairs_from_pair_txt(path: str) -> List[Tuple[int, int, float]]:
    """``(img1 < img2, score)`` of an MVSNet ``pair.txt``, one per unordered pair (best score kept)."""
    with open(path, "r") as f:
        tokens = f.read().split()
    n_views, pos, best = int(tokens[0]), 1, {}
    for _ in range(n_views):
        ref, n_src = int(tokens[pos]), int(tokens[pos + 1])
        srcs = tokens[pos + 2: pos + 2 + 2 * n_src]
        pos += 2 + 2 * n_src
        for src, score in zip(srcs[::2], srcs[1::2]):
            key = (min(ref, int(src)), max(ref, int(src)))
            best[key] = max(best.get(key, -np.inf), float(score))
    return [(a, b, s) for (a, b), s in sorted(best.items())]


def process_frame(blendedmvs_dir: str, seq: str, frame: str, output_dir: str,
                  resolution: Sequence[int] = OUTPUT_RESOLUTION) -> None:
    """Rescale one frame and write its ``.jpg`` / ``.exr`` / ``.npz`` (the ``.npz`` last: it marks a done frame)."""
    stem = osp.join(output_dir, seq, frame)
    if frame_done(stem):
        return
    root = osp.join(blendedmvs_dir, seq)
    K, cam2world = load_cam_txt(osp.join(root, "cams", frame + "_cam.txt"))
    image = imread_cv2(osp.join(root, "blended_images", frame + ".jpg"))
    depthmap = load_pfm_file(osp.join(root, "rendered_depth_maps", frame + ".pfm"))
    if depthmap.shape != image.shape[:2]:
        raise ValueError(f"{seq}/{frame}: depth {depthmap.shape} does not match the image {image.shape[:2]}")
    H, W = image.shape[:2]
    target = tuple(sorted(resolution)[::-1] if W >= H else sorted(resolution))
    image, depthmap, K_out = cropping.rescale_image_depthmap(image, depthmap, K, target)
    write_frame_files(stem, {".jpg": image}, depthmap, JPEG_QUALITY, intrinsics=np.float32(K_out),
                      R_cam2world=np.float32(cam2world[:3, :3]), t_cam2world=np.float32(cam2world[:3, 3]))


def _list_frames(blendedmvs_dir: str, sequences: Sequence[str]) -> List[Tuple[str, str]]:
    frames = []
    for seq in sequences:
        cam_dir = osp.join(blendedmvs_dir, seq, "cams")
        names = sorted(f[:-len("_cam.txt")] for f in os.listdir(cam_dir) if f.endswith("_cam.txt")) \
            if osp.isdir(cam_dir) else []
        if not names:
            logger.warning("sequence %s has no cams/*_cam.txt: skipped", seq)
        frames += [(seq, name) for name in names]
    return frames


def _pairs_from_sequences(blendedmvs_dir: str, sequences: Sequence[str]) -> np.ndarray:
    rows = []
    for seq in sequences:
        path = osp.join(blendedmvs_dir, seq, "cams", "pair.txt")
        if not osp.isfile(path):
            logger.warning("sequence %s has no cams/pair.txt: no pairs from it", seq)
            continue
        high, low = split_sequences(seq)
        rows += [(high, low, a, b, score) for a, b, score in pairs_from_pair_txt(path)]
    return np.array(rows, dtype=PAIRS_DTYPE)


def main(blendedmvs_dir: str, precomputed_pairs: Optional[str] = None,
         output_dir: str = "data/blendedmvs_processed", resolution: Sequence[int] = OUTPUT_RESOLUTION) -> int:
    """Process every sequence of ``blendedmvs_dir`` into ``output_dir``; returns the exit status (see
    :func:`datasets_preprocess._common.report`)."""
    if not osp.isdir(blendedmvs_dir):
        raise FileNotFoundError(f"BlendedMVS folder not found: {blendedmvs_dir!r}")
    sequences = sorted(f for f in os.listdir(blendedmvs_dir)
                       if len(f) == 24 and osp.isdir(osp.join(blendedmvs_dir, f)))
    if not sequences:
        raise FileNotFoundError(f"no BlendedMVS sequence (24-hex-digit folder) in {blendedmvs_dir!r}")
    logger.info("found %d sequences in %s", len(sequences), blendedmvs_dir)

    frames = _list_frames(blendedmvs_dir, sequences)
    n_done, failures = process_samples(
        frames, lambda item: process_frame(blendedmvs_dir, item[0], item[1], output_dir, resolution),
        desc="BlendedMVS frames", name=lambda item: osp.join(blendedmvs_dir, *item))

    pairs = np.load(precomputed_pairs) if precomputed_pairs else _pairs_from_sequences(blendedmvs_dir, sequences)
    kept = keep_written_pairs(pairs, lambda row: [osp.join(output_dir, sequence_name(row[0], row[1]), f"{img:08n}")
                                                  for img in row[2:4]])
    os.makedirs(output_dir, exist_ok=True)
    np.save(osp.join(output_dir, "blendedmvs_pairs.npy"), kept)
    logger.info("saved %d pairs to %s", len(kept), osp.join(output_dir, "blendedmvs_pairs.npy"))
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blendedmvs_dir", required=True, help="the unzipped BlendedMVS, + and ++ downloads")
    parser.add_argument("--precomputed_pairs", default=None,
                        help="naver's blendedmvs_pairs.npy (default: pairs from each sequence's cams/pair.txt)")
    parser.add_argument("--output_dir", default="data/blendedmvs_processed")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.blendedmvs_dir, args.precomputed_pairs, args.output_dir))
