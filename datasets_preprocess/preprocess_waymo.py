#!/usr/bin/env python3
"""Waymo Open (Perception v1.4.2) ``.tfrecord`` files -> the processed layout read by
:class:`dust3r.datasets.Waymo` (the original's).

Two stages, as in the original:

1. **extract** (needs ``tensorflow`` and ``waymo-open-dataset``, imported only here: ``python3 -m pip install gcsfs
   waymo-open-dataset-tf-2-12-0==1.6.4``): each ``<waymo_dir>/<name>.tfrecord`` is decoded into
   ``<output_dir>/tmp/<name>.tfrecord/``: ``calib.json`` (per camera: width, height, intrinsics
   ``[f1, f2, cx, cy, k1, k2, p1, p2, k3]``, camera-to-vehicle extrinsics) and per image ``<frame:05d>_<camera>.jpg``
   + ``.npz`` (``pose`` vehicle-to-world, ``pixels`` (N, 2) and ``pts3d`` (N, 3, vehicle frame) of the LiDAR points
   projected into it, ``timestamp``). A sequence already extracted (its ``calib.json`` exists) is not decoded again.
2. **crop**: each image is rescaled to a long side of 512 (LANCZOS) and its LiDAR points, moved to the OpenCV
   camera frame (Waymo cameras: x forward, y left, z up), give a sparse depth map; written as
   ``<output_dir>/<name>.tfrecord/<frame:05d>_<camera>.jpg`` (quality 80), ``.exr`` (float32, 0 = no point) and
   ``.npz`` (``intrinsics``, ``cam2world`` = pose @ extrinsics @ axes^-1, ``distortion``).

A broken sequence or image is reported and skipped. Pairs ``<output_dir>/waymo_pairs.npz`` (``scenes``, ``frames``,
``pairs`` (scene_id, im1_id, im2_id)): ``--precomputed_pairs`` (naver's ``waymo_pairs.npz``) or, without it, the same
camera ``--gaps`` frames apart; pairs touching an image that was not written are dropped. ``tmp`` is removed at the
end unless ``--keep_tmp``.

Tested here: stage 2, pairs and reporting, on the stage-1 layout (tests/helpers/fake_raw/waymo.py). Not tested:
stage 1 (no tensorflow / waymo_open_dataset, no real .tfrecord). Example::

    python3 datasets_preprocess/preprocess_waymo.py --waymo_dir /path/to/waymo/training \\
        --precomputed_pairs /path/to/waymo_pairs.npz --output_dir data/waymo_processed
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import PIL.Image

from datasets_preprocess._common import (frame_done, keep_written_pairs, process_samples, report,
                                         write_frame_files)
from dust3r.datasets.frame_io import load_npz
from dust3r.datasets.utils import cropping
from dust3r.utils.geometry import geotrf
from dust3r.utils.image import imread_cv2

logger = logging.getLogger(__name__)

__all__ = ["main", "extract_sequence", "crop_frame", "load_calib", "AXES_TRANSFORMATION", "get_parser"]

#: OpenCV camera axes (x right, y down, z forward) from Waymo's camera axes (x forward, y left, z up)
AXES_TRANSFORMATION = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
RESOLUTION = 512
JPEG_QUALITY = 80
DEFAULT_GAPS = (1, 2, 3)


# ------------------------------------------------------------------------------------------ stage 1: extract
def _import_waymo():
    try:
        import tensorflow as tf
        from waymo_open_dataset import dataset_pb2
        from waymo_open_dataset.utils import frame_utils
    except ImportError as err:
        raise ImportError("decoding Waymo .tfrecord files needs tensorflow and waymo_open_dataset: "
                          "python3 -m pip install gcsfs waymo-open-dataset-tf-2-12-0==1.6.4 "
                          f"(missing: {err.name})") from err
    return tf, dataset_pb2, frame_utils


def extract_sequence(tfrecord: str, out_dir: str) -> None:
    """Decode one ``.tfrecord`` into ``out_dir`` (see stage 1 of the module docstring)."""
    tf, dataset_pb2, frame_utils = _import_waymo()
    calib = None
    os.makedirs(out_dir, exist_ok=True)
    for f, record in enumerate(tf.data.TFRecordDataset(tfrecord, compression_type="")):
        frame = dataset_pb2.Frame()
        frame.ParseFromString(bytearray(record.numpy()))
        if calib is None:
            calib = [(cam.name, dict(width=cam.width, height=cam.height, intrinsics=list(cam.intrinsic),
                                     extrinsics=list(cam.extrinsic.transform)))
                     for cam in frame.context.camera_calibrations]
        range_images, projections, _, top_pose = frame_utils.parse_range_image_and_camera_projection(frame)
        points, cp_points = frame_utils.convert_range_image_to_point_cloud(frame, range_images, projections, top_pose)
        points_all = np.concatenate(points, axis=0)  # vehicle frame
        cp_all = np.concatenate(cp_points, axis=0)  # (camera name, x, y, ...) of each point
        for image in frame.images:
            seen = cp_all[:, 0] == image.name
            rgb = tf.image.decode_jpeg(image.image).numpy()
            stem = osp.join(out_dir, f"{f:05d}_{image.name}")
            PIL.Image.fromarray(rgb).save(stem + ".jpg")
            np.savez(stem + ".npz", pose=np.asarray(image.pose.transform).reshape(4, 4),
                     pixels=cp_all[seen, 1:3].round().astype(np.int16), pts3d=points_all[seen],
                     timestamp=image.pose_timestamp)
    with open(osp.join(out_dir, "calib.json"), "w") as fh:  # written last: marks a finished extraction
        json.dump(calib, fh)


# ------------------------------------------------------------------------------------------ stage 2: crop
def load_calib(path: str) -> Dict[str, dict]:
    """camera name (str) -> ``K`` (3, 3), ``distortion`` (5,), ``size`` (w, h), ``cam_to_car`` (4, 4)."""
    with open(path) as f:
        calib = json.load(f)
    cams = {}
    for cam, info in calib:
        f1, f2, cx, cy, k1, k2, p1, p2, k3 = info["intrinsics"]
        cams[str(cam)] = dict(K=np.array([[f1, 0, cx], [0, f2, cy], [0, 0, 1.0]]),
                              distortion=np.array([k1, k2, p1, p2, k3], dtype=np.float64),
                              size=(int(info["width"]), int(info["height"])),
                              cam_to_car=np.asarray(info["extrinsics"], dtype=np.float64).reshape(4, 4))
    return cams


def crop_frame(seq_dir: str, out_dir: str, frame: str, calib: Dict[str, dict], resolution: int = RESOLUTION) -> None:
    """Stage 2 for one extracted image ``<frame:05d>_<camera>`` of ``seq_dir``."""
    stem = osp.join(out_dir, frame)
    if frame_done(stem):
        return
    cam = frame.rsplit("_", 1)[-1]
    if cam not in calib:
        raise KeyError(f"camera {cam!r} of {frame!r} is not in calib.json")
    info = calib[cam]
    data = load_npz(osp.join(seq_dir, frame + ".npz"))
    car_to_world = np.asarray(data["pose"], np.float64)
    pixels = np.asarray(data["pixels"]).round().astype(np.float64).reshape(-1, 2)
    pts_cam = geotrf(AXES_TRANSFORMATION @ np.linalg.inv(info["cam_to_car"]), np.asarray(data["pts3d"], np.float64))
    image = imread_cv2(osp.join(seq_dir, frame + ".jpg"))
    H, W = image.shape[:2]
    target = (resolution, 1) if W > H else (1, resolution)
    image, _, K_out = cropping.rescale_image_depthmap(image, None, info["K"], target)
    W2, H2 = image.size
    depthmap = np.zeros((H2, W2), dtype=np.float32)
    xy = np.rint(geotrf(K_out @ np.linalg.inv(info["K"]), pixels)).astype(np.int64)
    depthmap[xy[:, 1].clip(0, H2 - 1), xy[:, 0].clip(0, W2 - 1)] = pts_cam[:, 2]
    write_frame_files(stem, {".jpg": image}, depthmap, JPEG_QUALITY, intrinsics=K_out,
                      cam2world=car_to_world @ info["cam_to_car"] @ np.linalg.inv(AXES_TRANSFORMATION),
                      distortion=info["distortion"])


def _gap_pairs(frames_by_seq: Dict[str, List[str]], gaps: Sequence[int]):
    scenes = sorted(frames_by_seq)
    names = sorted({name for frames in frames_by_seq.values() for name in frames})
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for s, seq in enumerate(scenes):
        present = set(frames_by_seq[seq])
        for name in sorted(present):
            num, cam = name.split("_")
            for gap in gaps:
                other = f"{int(num) + gap:05d}_{cam}"
                if other in present:
                    rows.append((s, index[name], index[other]))
    return np.array(scenes, dtype=str), np.array(names, dtype=str), np.array(rows, dtype=np.int64).reshape(-1, 3)


def main(waymo_dir: str, precomputed_pairs: Optional[str] = None, output_dir: str = "data/waymo_processed",
         gaps: Sequence[int] = DEFAULT_GAPS, keep_tmp: bool = False) -> int:
    """Both stages for every ``.tfrecord`` of ``waymo_dir``; returns the exit status (see
    :func:`datasets_preprocess._common.report`)."""
    if not osp.isdir(waymo_dir):
        raise FileNotFoundError(f"Waymo folder not found: {waymo_dir!r}")
    sequences = sorted(f for f in os.listdir(waymo_dir) if f.endswith(".tfrecord"))
    if not sequences:
        raise FileNotFoundError(f"no .tfrecord file in {waymo_dir!r}")
    tmp_dir = osp.join(output_dir, "tmp")
    todo = [seq for seq in sequences if not osp.isfile(osp.join(tmp_dir, seq, "calib.json"))]
    _, failures = process_samples(todo, lambda seq: extract_sequence(osp.join(waymo_dir, seq), osp.join(tmp_dir, seq)),
                                  desc="Waymo extract", name=lambda seq: osp.join(waymo_dir, seq))
    calibs: Dict[str, Dict[str, dict]] = {}
    extracted = [seq for seq in sequences if osp.isfile(osp.join(tmp_dir, seq, "calib.json"))]
    _, calib_failures = process_samples(
        extracted, lambda seq: calibs.__setitem__(seq, load_calib(osp.join(tmp_dir, seq, "calib.json"))),
        desc="Waymo calibrations", name=lambda seq: osp.join(tmp_dir, seq, "calib.json"))
    failures += calib_failures
    jobs: List[Tuple[str, str]] = [(seq, f[:-4]) for seq in sorted(calibs)
                                   for f in sorted(os.listdir(osp.join(tmp_dir, seq))) if f.endswith(".jpg")]
    n_done, crop_failures = process_samples(
        jobs, lambda job: crop_frame(osp.join(tmp_dir, job[0]), osp.join(output_dir, job[0]), job[1], calibs[job[0]]),
        desc="Waymo crops", name=lambda job: osp.join(tmp_dir, *job))
    failures += crop_failures

    if precomputed_pairs:
        with np.load(precomputed_pairs) as data:
            scenes, frames, pairs = (np.asarray(data[k]) for k in ("scenes", "frames", "pairs"))
    else:
        written = {seq: [f for s, f in jobs if s == seq and osp.isfile(osp.join(output_dir, seq, f + ".npz"))]
                   for seq in calibs}
        scenes, frames, pairs = _gap_pairs(written, gaps)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    kept = keep_written_pairs(pairs, lambda row: [osp.join(output_dir, str(scenes[row[0]]), str(frames[i]))
                                                  for i in row[1:]], what="image")
    np.savez(osp.join(output_dir, "waymo_pairs.npz"), scenes=scenes.astype(str), frames=frames.astype(str),
             pairs=kept)
    if not keep_tmp:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waymo_dir", required=True, help="folder of the training/*.tfrecord files")
    parser.add_argument("--precomputed_pairs", default=None,
                        help="naver's waymo_pairs.npz (default: same-camera frames --gaps apart)")
    parser.add_argument("--output_dir", default="data/waymo_processed")
    parser.add_argument("--workers", type=int, default=1, help="accepted for compatibility (runs sequentially)")
    parser.add_argument("--gaps", type=int, nargs="+", default=list(DEFAULT_GAPS))
    parser.add_argument("--keep_tmp", action="store_true", help="keep the extracted frames of stage 1")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.waymo_dir, args.precomputed_pairs, args.output_dir, args.gaps, args.keep_tmp))
