#!/usr/bin/env python3
"""StaticThings3D raw download -> the processed layout read by :class:`dust3r.datasets.StaticThings3D` (the
original's).

Raw layout (robustmvd's ``download_staticthings3d.sh``: frames_cleanpass, frames_finalpass, depths, poses and
intrinsics archives unpacked into one folder)::

    <dir>/frames_cleanpass/TRAIN/<A|B|C>/<seq>/<left|right>/<frame>.png     960x540 RGB
    <dir>/frames_finalpass/TRAIN/<A|B|C>/<seq>/<left|right>/<frame>.png
    <dir>/depths/TRAIN/<A|B|C>/<seq>/<left|right>/<frame>.float3            (H, W) z-depth
    <dir>/poses/TRAIN/<A|B|C>/<seq>/<left|right>/<frame>.float3             (4, 4) world2cam
    <dir>/intrinsics/TRAIN/<A|B|C>/<seq>/<frame>.float3                     (3, 3), shared by both cameras

(``.float3``: LMB's binary array format, see :func:`read_float3`.) Every frame listed in ``intrinsics`` (the
original hard-codes 0006-0015) of both cameras is rescaled (LANCZOS, depth nearest) so that it covers 512x384 and
written as ``<output_dir>/TRAIN/<A|B|C>/<seq>/<camera>/<frame>_clean.jpg``, ``_final.jpg`` (quality 80), ``.exr``
(float32 depth) and ``.npz`` (``intrinsics``, ``cam2world``). A broken frame is reported and skipped.

Pairs ``<output_dir>/staticthings_pairs.npy`` (scene, seq, cam1, im1, cam2, im2): ``--precomputed_pairs`` (naver's
``staticthings_pairs.npy``), or without it every two views (camera, frame) of a sequence; pairs touching a frame that
was not written are dropped. Example::

    python3 datasets_preprocess/preprocess_staticthings3d.py --StaticThings3D_dir /path/to/StaticThings3D \\
        --precomputed_pairs /path/to/staticthings_pairs.npy --output_dir data/staticthings3d_processed
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

import numpy as np

from datasets_preprocess._common import (frame_done, keep_written_pairs, process_samples, report,
                                         write_frame_files)
from dust3r.datasets.staticthings3d import CAMERAS, PAIRS_DTYPE
from dust3r.datasets.utils import cropping
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

__all__ = ["main", "read_float3", "list_sequences", "get_parser"]

OUTPUT_RESOLUTION = (512, 384)
JPEG_QUALITY = 80
SUBSPLITS = ("A", "B", "C")
_CODE = {name: code for code, name in CAMERAS.items()}


def read_float3(path: str) -> np.ndarray:
    """Array of an LMB ``.float3`` file: ``float\\n``, ndim, the dimensions innermost first, float32 data.

    Raises:
        FileNotFoundError: no such file. ValueError: not a float3 file, or truncated.
    """
    with open(path, "rb") as f:
        if f.readline() != b"float\n":
            raise ValueError(f"{path!r} is not a .float3 file (no 'float' header)")
        try:
            ndim = int(f.readline())
            dims = [int(f.readline()) for _ in range(ndim)][::-1]
        except ValueError as err:
            raise ValueError(f"{path!r}: bad .float3 header: {err}") from err
        data = np.frombuffer(f.read(), dtype="<f4")
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path!r}: .float3 data has {data.size} values, its header says {dims}")
    return data.reshape(dims).astype(np.float32)


def list_sequences(root: str) -> List[Tuple[str, str]]:
    """``(subsplit, seq)`` of every TRAIN sequence with intrinsics."""
    found = []
    for sub in SUBSPLITS:
        folder = osp.join(root, "intrinsics", "TRAIN", sub)
        if osp.isdir(folder):
            found += [(sub, seq) for seq in sorted(os.listdir(folder)) if osp.isdir(osp.join(folder, seq))]
    return found


def _frames(root: str, sub: str, seq: str) -> List[str]:
    folder = osp.join(root, "intrinsics", "TRAIN", sub, seq)
    return sorted(f[:-len(".float3")] for f in os.listdir(folder) if f.endswith(".float3"))


def process_frame(root: str, sub: str, seq: str, camera: str, num: str, output_dir: str) -> None:
    rel = osp.join("TRAIN", sub, seq)
    stem = osp.join(output_dir, rel, camera, num)
    if frame_done(stem):
        return
    K = read_float3(osp.join(root, "intrinsics", rel, num + ".float3"))
    world2cam = read_float3(osp.join(root, "poses", rel, camera, num + ".float3"))
    depthmap = read_float3(osp.join(root, "depths", rel, camera, num + ".float3"))
    clean = imread_cv2(osp.join(root, "frames_cleanpass", rel, camera, num + ".png"))
    final = imread_cv2(osp.join(root, "frames_finalpass", rel, camera, num + ".png"))
    if K.shape != (3, 3) or world2cam.shape != (4, 4):
        raise ValueError(f"{rel}/{camera}/{num}: intrinsics {K.shape}, pose {world2cam.shape}")
    if not (clean.shape == final.shape and clean.shape[:2] == depthmap.shape):
        raise ValueError(f"{rel}/{camera}/{num}: clean {clean.shape}, final {final.shape}, depth {depthmap.shape}")
    (clean, final), depthmap, K_out = cropping.rescale_image_depthmap((clean, final), depthmap, K, OUTPUT_RESOLUTION)
    write_frame_files(stem, {"_clean.jpg": clean, "_final.jpg": final}, depthmap, JPEG_QUALITY, intrinsics=K_out,
                      cam2world=np.linalg.inv(world2cam))


def _all_pairs(views: List[Tuple[str, str, str, str]]) -> np.ndarray:
    rows = []
    for (sub, seq, cam1, n1), (sub2, seq2, cam2, n2) in itertools.combinations(views, 2):
        if (sub, seq) == (sub2, seq2):
            rows.append((sub.encode(), int(seq), _CODE[cam1], int(n1), _CODE[cam2], int(n2)))
    return np.array(rows, dtype=PAIRS_DTYPE)


def main(StaticThings3D_dir: str, precomputed_pairs: Optional[str] = None,
         output_dir: str = "data/staticthings3d_processed") -> int:
    """Process every TRAIN sequence into ``output_dir``; returns the exit status (see
    :func:`datasets_preprocess._common.report`)."""
    root = StaticThings3D_dir
    if not osp.isdir(root):
        raise FileNotFoundError(f"StaticThings3D folder not found: {root!r}")
    sequences = list_sequences(root)
    if not sequences:
        raise FileNotFoundError(f"no sequence under {osp.join(root, 'intrinsics', 'TRAIN')!r}")
    views = [(sub, seq, cam, num) for sub, seq in sequences for num in _frames(root, sub, seq)
             for cam in CAMERAS.values()]
    n_done, failures = process_samples(views, lambda v: process_frame(root, *v, output_dir), desc="StaticThings3D",
                                       name=lambda v: osp.join("TRAIN", v[0], v[1], v[2], v[3]))
    pairs = np.load(precomputed_pairs) if precomputed_pairs else _all_pairs(views)

    def stems(row: tuple) -> List[str]:
        scene, seq, cam1, im1, cam2, im2 = row
        folder = osp.join(output_dir, "TRAIN", scene.decode("ascii"), f"{int(seq):04d}")
        return [osp.join(folder, CAMERAS[cam], f"{int(num):04d}") for cam, num in ((cam1, im1), (cam2, im2))]

    os.makedirs(output_dir, exist_ok=True)
    np.save(osp.join(output_dir, "staticthings_pairs.npy"), keep_written_pairs(pairs, stems))
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--StaticThings3D_dir", required=True)
    parser.add_argument("--precomputed_pairs", default=None,
                        help="naver's staticthings_pairs.npy (default: every two views of a sequence)")
    parser.add_argument("--output_dir", default="data/staticthings3d_processed")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.StaticThings3D_dir, args.precomputed_pairs, args.output_dir))
