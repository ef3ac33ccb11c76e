#!/usr/bin/env python3
"""MegaDepth raw download -> the processed layout read by :class:`dust3r.datasets.MegaDepth` (the original's).

Raw layout (MegaDepth_v1 and MegaDepth_v1_SfM merged into one folder, as the original script expects)::

    <megadepth_dir>/<scene>/dense<sub>/imgs/<name>.jpg              undistorted RGB
    <megadepth_dir>/<scene>/dense<sub>/depths/<name stem>.h5        HDF5 dataset 'depth' (0 = no depth)
    <megadepth_dir>/<scene>/sparse/manhattan/<sub>/cameras.txt      COLMAP text (SIMPLE_RADIAL: f cx cy k)
    <megadepth_dir>/<scene>/sparse/manhattan/<sub>/images.txt       COLMAP text (world2cam qvec + tvec)
    <megadepth_dir>/<scene>/sparse/manhattan/<sub>/points3D.txt

Each image's intrinsics are those of the undistorted image, ``cv2.getOptimalNewCameraMatrix(K, (k, 0, 0, 0),
sfm_size, alpha=0, newImgSize=image_size, centerPrincipalPoint=True)`` (the original's model of MegaDepth's
undistortion); images larger than 800x600 (600x800 portrait) are downscaled (LANCZOS; depth nearest) and written as
``<output_dir>/<scene>/<sub>/<name>.jpg`` (quality 90; ``<name>`` keeps its ``.jpg``, so ``x.jpg.jpg``), ``.exr``
(float32 depth) and ``.npz`` (``intrinsics``, ``cam2world``). A broken image (missing or unreadable image / depth,
no SfM pose) is reported and skipped.

Index ``<output_dir>/all_metadata.npz`` (``scenes`` "<scene> <sub>", ``images``, ``pairs`` (scene_id, im1_id,
im2_id, score)): from ``--precomputed_pairs`` (naver's ``megadepth_pairs.npz``, the original's only source), or,
without it, from the SfM co-visibility: every two images of a sub-model sharing at least ``--min_shared_points``
3D points, scored by the shared fraction of the smaller track set. Pairs touching an image that was not written
are dropped. Example::

    python3 datasets_preprocess/preprocess_megadepth.py --megadepth_dir /path/to/megadepth \\
        --precomputed_pairs /path/to/megadepth_pairs.npz --output_dir data/megadepth_processed
"""
from __future__ import annotations

import argparse
import collections
import itertools
import logging
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from datasets_preprocess._common import (frame_done, keep_written_pairs, process_samples, report,
                                         write_frame_files)
from dust3r.datasets.megadepth import PAIRS_DTYPE
from dust3r.datasets.utils import cropping
from dust3r.export.colmap import read_colmap_model
from dust3r.utils.image import imread_cv2
from dust3r.utils.safe_pickle import safe_load_npz

logger = logging.getLogger(__name__)

__all__ = ["main", "load_sfm", "read_h5_depth", "undistorted_intrinsics", "covisibility_pairs", "get_parser"]

OUTPUT_RESOLUTION = (800, 600)
JPEG_QUALITY = 90


class SfmModel(collections.namedtuple("SfmModel", "cameras world2cam point_ids")):
    """Per image name: ``cameras`` ((width, height), K (3, 3) COLMAP values, distortion (4,)), ``world2cam``
    (4, 4), ``point_ids`` (set of observed 3D point ids)."""


def load_sfm(megadepth_dir: str, scene: str, sub: str) -> SfmModel:
    """The SfM model of ``<scene>/sparse/manhattan/<sub>`` (ValueError when missing or malformed)."""
    folder = osp.join(megadepth_dir, scene, "sparse", "manhattan", sub)
    if not osp.isdir(folder):
        raise ValueError(f"no SfM model at {folder!r}")
    cameras, images, _ = read_colmap_model(folder, ext=".txt")
    cams, poses, points = {}, {}, {}
    for im in images.values():
        cam = cameras[im.camera_id]
        k = float(cam.params[3]) if len(cam.params) > 3 else 0.0
        cams[im.name] = ((cam.width, cam.height), cam.K(), (k, 0.0, 0.0, 0.0))
        poses[im.name] = im.world2cam()
        points[im.name] = set(int(i) for i in im.point3D_ids if i >= 0)
    return SfmModel(cams, poses, points)


def undistorted_intrinsics(camera, image_size: Tuple[int, int]) -> np.ndarray:
    """(3, 3) intrinsics of the undistorted ``image_size`` (w, h) image of an SfM ``camera`` (see module doc)."""
    import cv2

    imsize_pre, K_pre, distortion = camera
    return cv2.getOptimalNewCameraMatrix(np.asarray(K_pre, np.float64), np.asarray(distortion, np.float64),
                                         tuple(int(s) for s in imsize_pre), alpha=0,
                                         newImgSize=tuple(int(s) for s in image_size), centerPrincipalPoint=True)[0]


def read_h5_depth(path: str) -> np.ndarray:
    """(H, W) float32 depth of a MegaDepth ``.h5`` (dataset ``'depth'``); FileNotFoundError / OSError / KeyError."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"depth file not found: {path!r}")
    try:
        import h5py
    except ImportError as err:
        raise ImportError("MegaDepth depth maps are HDF5 files: pip install h5py") from err
    with h5py.File(path, "r") as h5:
        if "depth" not in h5:
            raise KeyError(f"{path!r} has no 'depth' dataset (has {list(h5.keys())})")
        return np.asarray(h5["depth"], dtype=np.float32)


def process_image(megadepth_dir: str, scene: str, sub: str, name: str, sfm: SfmModel, output_dir: str) -> None:
    stem = osp.join(output_dir, scene, sub, name)
    if frame_done(stem):
        return
    if name not in sfm.world2cam:
        raise KeyError(f"image {name!r} has no pose in {scene}/sparse/manhattan/{sub}/images.txt")
    in_dir = osp.join(megadepth_dir, scene, "dense" + sub)
    image = imread_cv2(osp.join(in_dir, "imgs", name))
    depthmap = read_h5_depth(osp.join(in_dir, "depths", osp.splitext(name)[0] + ".h5"))
    H, W = image.shape[:2]
    if depthmap.shape != (H, W):
        raise ValueError(f"{scene}/{sub}/{name}: depth {depthmap.shape} does not match the image {(H, W)}")
    K = undistorted_intrinsics(sfm.cameras[name], (W, H))
    target = sorted(OUTPUT_RESOLUTION)[::+1 if W < H else -1]
    image, depthmap, K_out = cropping.rescale_image_depthmap(image, depthmap, K, target, force=False)
    write_frame_files(stem, {".jpg": image}, depthmap, JPEG_QUALITY, intrinsics=np.asarray(K_out, np.float64),
                      cam2world=np.linalg.inv(sfm.world2cam[name]))


def covisibility_pairs(point_ids: Dict[str, set], min_shared: int) -> List[Tuple[str, str, float]]:
    """``(name1, name2, score)`` for every two images sharing ``>= min_shared`` 3D points (score: shared count over
    the smaller set)."""
    pairs = []
    for a, b in itertools.combinations(sorted(point_ids), 2):
        shared = len(point_ids[a] & point_ids[b])
        if shared >= min_shared:
            pairs.append((a, b, shared / max(1, min(len(point_ids[a]), len(point_ids[b])))))
    return pairs


def _list_submodels(megadepth_dir: str) -> List[Tuple[str, str]]:
    found = []
    for scene in sorted(os.listdir(megadepth_dir)):
        sparse = osp.join(megadepth_dir, scene, "sparse", "manhattan")
        if osp.isdir(sparse):
            found += [(scene, sub) for sub in sorted(os.listdir(sparse)) if osp.isdir(osp.join(sparse, sub))]
    return found


def _load_pairs(pairs_path: Optional[str], megadepth_dir: str, sfms: Dict[Tuple[str, str], SfmModel],
                min_shared: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scenes, images, pairs)`` from naver's pairs file, or from the SfM co-visibility."""
    if pairs_path:
        data = safe_load_npz(pairs_path)  # its name arrays are pickled str objects: unpickled with an allow-list
        return (np.asarray(data["scenes"]).astype(str), np.asarray(data["images"]).astype(str),
                np.asarray(data["pairs"]))
    scenes = [f"{scene} {sub}" for scene, sub in sorted(sfms)]
    images: Dict[str, int] = {}
    rows = []
    for s, key in enumerate(sorted(sfms)):
        for a, b, score in covisibility_pairs(sfms[key].point_ids, min_shared):
            rows.append((s, images.setdefault(a, len(images)), images.setdefault(b, len(images)), score))
    return np.array(scenes, dtype=str), np.array(list(images), dtype=str), np.array(rows, dtype=PAIRS_DTYPE)


def main(megadepth_dir: str, precomputed_pairs: Optional[str] = None, output_dir: str = "data/megadepth_processed",
         min_shared_points: int = 100) -> int:
    """Process the images of the pairs (of ``precomputed_pairs`` or of the SfM co-visibility) into ``output_dir``;
    returns the exit status (see :func:`datasets_preprocess._common.report`)."""
    if not osp.isdir(megadepth_dir):
        raise FileNotFoundError(f"MegaDepth folder not found: {megadepth_dir!r}")
    sfms: Dict[Tuple[str, str], SfmModel] = {}
    submodels = _list_submodels(megadepth_dir)
    if not submodels and not precomputed_pairs:
        raise FileNotFoundError(f"no <scene>/sparse/manhattan/<sub> SfM model in {megadepth_dir!r}")
    _, failures = process_samples(submodels, lambda key: sfms.__setitem__(key, load_sfm(megadepth_dir, *key)),
                                  desc="MegaDepth SfM models", name=lambda key: "/".join(key))
    scenes, images, pairs = _load_pairs(precomputed_pairs, megadepth_dir, sfms, min_shared_points)

    todo = collections.defaultdict(set)  # the images the pairs need, per sub-model
    for scene_id, im1, im2, _ in pairs.tolist():
        todo[str(scenes[scene_id])].update((int(im1), int(im2)))
    jobs = []
    for scene_sub in sorted(todo):
        scene, sub = scene_sub.split()
        if (scene, sub) not in sfms:
            failures.append((scene_sub, "no readable SfM model"))
            continue
        jobs += [(scene, sub, str(images[i])) for i in sorted(todo[scene_sub])]
    n_done, image_failures = process_samples(
        jobs, lambda job: process_image(megadepth_dir, *job, sfms[job[:2]], output_dir), desc="MegaDepth images",
        name=lambda job: osp.join(megadepth_dir, job[0], "dense" + job[1], "imgs", job[2]))
    failures += image_failures

    kept = keep_written_pairs(pairs, lambda row: [osp.join(output_dir, *str(scenes[row[0]]).split(), str(images[im]))
                                                  for im in row[1:3]], what="image")
    os.makedirs(output_dir, exist_ok=True)
    kept = np.array([tuple(row) for row in kept.tolist()], dtype=PAIRS_DTYPE)
    np.savez(osp.join(output_dir, "all_metadata.npz"), scenes=scenes, images=images, pairs=kept)
    logger.info("saved %d pairs of %d sub-models to %s", len(kept), len(scenes),
                osp.join(output_dir, "all_metadata.npz"))
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megadepth_dir", required=True, help="MegaDepth_v1 + MegaDepth_v1_SfM in one folder")
    parser.add_argument("--precomputed_pairs", default=None,
                        help="naver's megadepth_pairs.npz (default: pairs from the SfM co-visibility)")
    parser.add_argument("--output_dir", default="data/megadepth_processed")
    parser.add_argument("--min_shared_points", type=int, default=100,
                        help="co-visibility pairs: minimum number of shared SfM points")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.megadepth_dir, args.precomputed_pairs, args.output_dir, args.min_shared_points))
