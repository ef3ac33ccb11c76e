#!/usr/bin/env python3
"""ARKitScenes -> the processed layout :class:`dust3r.datasets.ARKitScenes` reads (the original script's output).

Usage (as the original)::

    python3 datasets_preprocess/preprocess_arkitscenes.py --arkitscenes_dir /path/to/arkitscenes/raw \
        --precomputed_pairs /path/to/arkitscenes_pairs --output_dir data/arkitscenes_processed

Raw input (the ARKitScenes "raw" download) and the precomputed pairs released with DUSt3R::

    <arkitscenes_dir>/<Training|Test>/<video>/lowres_wide.traj       per line: timestamp, world-to-camera
                                                                       rotation (angle-axis, 3), translation (3)
    <arkitscenes_dir>/<Training|Test>/<video>/vga_wide/<video>_<timestamp>.png              RGB
    <arkitscenes_dir>/<Training|Test>/<video>/vga_wide_intrinsics/<video>_<timestamp>.pincam  w h fx fy cx cy
    <arkitscenes_dir>/<Training|Test>/<video>/lowres_depth/<video>_<timestamp>.png          uint16 millimetres
    <precomputed_pairs>/<Training|Test>/scene_list.json
    <precomputed_pairs>/<Training|Test>/<video>/selected_pairs.npz   selection (frame names), pairs (P, >= 2),
                                                                       sky_direction_scene

Each scene is turned so that the sky is up (the direction is found from the average device axes, as the
original does, and must agree with ``sky_direction_scene``): images and depth rotated, intrinsics rotated exactly
(the original swapped fx/fy and cx/cy only), poses right-multiplied by the rotation. Poses at frame timestamps are
interpolated from the trajectory (positions linearly, rotations by slerp; the original used squad, which gives the
same pose at trajectory timestamps). Depth is resized to the RGB size (nearest). A broken frame is reported and
dropped with its pairs; a broken scene is reported and skipped. Output: see :mod:`dust3r.datasets.arkitscenes`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Dict, List, Tuple

import numpy as np

from datasets_preprocess._common import process_samples, report

logger = logging.getLogger(__name__)

SPLIT_DIRS = ("Test", "Training")
#: camera -> rotated-camera rotation about the optical axis for each sky direction (degrees, as the original)
SKY_ROTATION_DEG = {"UP": 0.0, "LEFT": 90.0, "RIGHT": -90.0, "DOWN": 180.0}


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def read_traj(traj_path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(timestamps (T,) rounded to ms, cam2world (T, 4, 4))`` of a ``.traj`` file (world-to-camera per line)."""
    import cv2

    rows = np.loadtxt(traj_path, ndmin=2)
    if rows.shape[1] != 7:
        raise ValueError(f"{traj_path}: expected 7 columns (timestamp, angle-axis, translation), got {rows.shape[1]}")
    stamps = np.array([float(Decimal(repr(float(t))).quantize(Decimal("1e-3"), rounding=ROUND_HALF_UP))
                       for t in rows[:, 0]])
    poses = np.zeros((len(rows), 4, 4))
    for k, row in enumerate(rows):
        world2cam = np.eye(4)
        world2cam[:3, :3] = cv2.Rodrigues(row[1:4])[0]
        world2cam[:3, 3] = row[4:7]
        poses[k] = np.linalg.inv(world2cam)
    return stamps, poses


def find_sky_direction(cam2world: np.ndarray) -> str:
    """'UP', 'DOWN', 'LEFT' or 'RIGHT': where the sky is in the images, from the average device up (-y) and
    right (x) axes against world up (+z)."""
    up = -cam2world[:, :3, 1].mean(axis=0)
    right = cam2world[:, :3, 0].mean(axis=0)
    up_angle = np.degrees(np.arccos(np.clip(up[2], -1.0, 1.0)))
    right_angle = np.degrees(np.arccos(np.clip(right[2], -1.0, 1.0)))
    if abs(up_angle - 90.0) < abs(right_angle - 90.0):  # the device's up axis is horizontal: a sideways device
        if abs(up_angle - 90.0) >= 45.0:
            raise ValueError("cannot tell the scene orientation (device axes far from horizontal)")
        return "LEFT" if right_angle > 90.0 else "RIGHT"
    if abs(right_angle - 90.0) >= 45.0:
        raise ValueError("cannot tell the scene orientation (device axes far from horizontal)")
    return "DOWN" if up_angle > 90.0 else "UP"


def interpolate_poses(stamps: np.ndarray, cam2world: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(Q, 4, 4) poses at ``query`` timestamps: positions linear, rotations slerp (ValueError outside the range)."""
    from scipy.spatial.transform import Rotation, Slerp

    if np.any(query < stamps[0]) or np.any(query > stamps[-1]):
        raise ValueError(f"frame timestamps outside the trajectory [{stamps[0]}, {stamps[-1]}]")
    out = np.tile(np.eye(4), (len(query), 1, 1))
    out[:, :3, :3] = Slerp(stamps, Rotation.from_matrix(cam2world[:, :3, :3]))(query).as_matrix()
    for axis in range(3):
        out[:, axis, 3] = np.interp(query, stamps, cam2world[:, axis, 3])
    return out


def rotate_intrinsics(w: float, h: float, fx: float, fy: float, cx: float, cy: float, sky: str) -> np.ndarray:
    """(3, 3) intrinsics of the image turned sky-up (pixel centres at integers)."""
    if sky == "RIGHT":  # turned 90 degrees counter-clockwise: (x, y) -> (y, w - 1 - x)
        fx, fy, cx, cy = fy, fx, cy, w - 1 - cx
    elif sky == "LEFT":  # clockwise: (x, y) -> (h - 1 - y, x)
        fx, fy, cx, cy = fy, fx, h - 1 - cy, cx
    elif sky == "DOWN":
        cx, cy = w - 1 - cx, h - 1 - cy
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def rotate_image_array(arr: np.ndarray, sky: str) -> np.ndarray:
    """Turn an (H, W, ...) array so that the sky is up."""
    return {"UP": arr, "RIGHT": np.rot90(arr, 1), "LEFT": np.rot90(arr, -1), "DOWN": np.rot90(arr, 2)}[sky]


def read_pincam(scene_dir: str, video: str, stamp: str) -> np.ndarray:
    """``(w, h, fx, fy, cx, cy)`` of a frame (the file of its timestamp, or of +-1 ms as the original allows)."""
    folder = osp.join(scene_dir, "vga_wide_intrinsics")
    for name in (stamp, f"{float(stamp) - 0.001:.3f}", f"{float(stamp) + 0.001:.3f}"):
        path = osp.join(folder, f"{video}_{name}.pincam")
        if osp.isfile(path):
            values = np.loadtxt(path).ravel()
            if values.shape != (6,):
                raise ValueError(f"{path}: expected 'w h fx fy cx cy'")
            return values
    raise FileNotFoundError(f"no intrinsics file for {video}_{stamp} in {folder!r}")


@dataclass
class SceneFrames:
    """The converted frames of a scene: names, (N, 3, 3) intrinsics, (N, 4, 4) cam2world, pairs."""

    images: List[str]
    intrinsics: np.ndarray
    trajectories: np.ndarray
    pairs: np.ndarray


def convert_frame(scene_dir: str, out_dir: str, basename: str, sky: str) -> Tuple[int, int]:
    """Write one frame turned sky-up; returns its (w, h) before turning."""
    import cv2

    from dust3r.utils.image import imread_cv2

    rgb = imread_cv2(osp.join(scene_dir, "vga_wide", basename))
    depth = imread_cv2(osp.join(scene_dir, "lowres_depth", basename), cv2.IMREAD_UNCHANGED)
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"{basename}: depth is not a 16-bit single-channel PNG")
    H, W = rgb.shape[:2]
    rgb, depth = rotate_image_array(rgb, sky), rotate_image_array(depth, sky)
    depth = cv2.resize(np.ascontiguousarray(depth), (rgb.shape[1], rgb.shape[0]),
                       interpolation=cv2.INTER_NEAREST_EXACT)
    for sub in ("vga_wide", "lowres_depth"):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    cv2.imwrite(osp.join(out_dir, "vga_wide", basename.replace(".png", ".jpg")),
                cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    cv2.imwrite(osp.join(out_dir, "lowres_depth", basename), depth)
    return W, H


def convert_scene(raw_split_dir: str, pairs_split_dir: str, out_split_dir: str, scene: str
                  ) -> Tuple[SceneFrames, List[Tuple[str, str]]]:
    """Convert one scene; returns its frames and the frames that were skipped."""
    scene_dir = osp.join(raw_split_dir, scene)
    with np.load(osp.join(pairs_split_dir, scene, "selected_pairs.npz")) as selected:
        selection = [str(s) for s in selected["selection"]]
        pairs = np.asarray(selected["pairs"])
        expected_sky = str(selected["sky_direction_scene"].ravel()[0]) if "sky_direction_scene" in selected else None
    if not selection or not len(pairs):
        raise ValueError(f"{scene}: no selected frames or pairs")
    stamps, traj = read_traj(osp.join(scene_dir, "lowres_wide.traj"))
    sky = find_sky_direction(traj)
    if expected_sky is not None and expected_sky != sky:
        raise ValueError(f"{scene}: sky direction {sky} disagrees with the precomputed {expected_sky}")
    frame_stamps = [name[:-len(".png")].split("_")[1] for name in selection]
    poses = interpolate_poses(stamps, traj, np.array([float(s) for s in frame_stamps]))
    poses[:, :3, :3] = poses[:, :3, :3] @ np.linalg.inv(_rot_z(SKY_ROTATION_DEG[sky]))

    out_dir = osp.join(out_split_dir, scene)
    done: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def convert(k: int) -> None:
        w, h, fx, fy, cx, cy = read_pincam(scene_dir, scene, frame_stamps[k])
        W, H = convert_frame(scene_dir, out_dir, selection[k], sky)
        if (W, H) != (round(w), round(h)):
            logger.info("%s: image is %dx%d, intrinsics say %dx%d", selection[k], W, H, w, h)
        done[k] = (rotate_intrinsics(W, H, fx, fy, cx, cy, sky), poses[k])

    _, failures = process_samples(range(len(selection)), convert, desc=scene,
                                  name=lambda k: osp.join(scene_dir, "vga_wide", selection[k]))
    return write_scene_metadata(out_dir, scene, selection, done, pairs), failures


def write_scene_metadata(out_dir: str, scene: str, selection: List[str],
                         done: Dict[int, Tuple[np.ndarray, np.ndarray]], pairs: np.ndarray) -> SceneFrames:
    """The frames of a scene that were written (``done``: selection index -> (intrinsics (3, 3), cam2world
    (4, 4))), with the ``pairs`` (P, >= 2) over ``selection`` remapped to them; writes ``scene_metadata.npz``.

    Raises:
        ValueError: no frame of the scene was written.
    """
    kept = sorted(done)
    if not kept:
        raise ValueError(f"{scene}: no readable frame")
    frames = SceneFrames([selection[k] for k in kept], np.stack([done[k][0] for k in kept]),
                         np.stack([done[k][1] for k in kept]), remap_pairs(pairs, len(selection), kept))
    np.savez(osp.join(out_dir, "scene_metadata.npz"), trajectories=frames.trajectories,
             intrinsics=frames.intrinsics, images=np.array(frames.images), pairs=frames.pairs)
    return frames


def remap_pairs(pairs: np.ndarray, n_frames: int, kept: List[int]) -> np.ndarray:
    """Pairs ``(P, >= 2)`` over ``n_frames`` frames -> pairs over the ``kept`` ones (renumbered in order); pairs
    with a dropped frame are removed, extra columns (scores) kept."""
    new_index = -np.ones(n_frames, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    first, second = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    keep = (new_index[first] >= 0) & (new_index[second] >= 0)
    out = pairs[keep].copy()
    out[:, 0], out[:, 1] = new_index[first[keep]], new_index[second[keep]]
    return out


def write_all_metadata(path: str, scenes: Dict[str, SceneFrames]) -> None:
    """Concatenate scenes into one ``all_metadata.npz`` (pairs offset to global image indices)."""
    offsets = np.cumsum([0] + [len(f.images) for f in scenes.values()])[:-1]
    pairs = []
    for offset, frames in zip(offsets, scenes.values()):
        p = frames.pairs.copy()
        p[:, :2] += offset
        pairs.append(p)
    np.savez(path, counts=offsets, scenes=np.array(list(scenes)),
             sceneids=np.concatenate([[k] * len(f.images) for k, f in enumerate(scenes.values())]).astype(np.int64),
             images=np.concatenate([f.images for f in scenes.values()]),
             intrinsics=np.concatenate([f.intrinsics for f in scenes.values()]),
             trajectories=np.concatenate([f.trajectories for f in scenes.values()]),
             pairs=np.concatenate(pairs))


def main(arkitscenes_dir: str, precomputed_pairs: str, output_dir: str = "data/arkitscenes_processed") -> int:
    """Preprocess ARKitScenes (see the module docstring). Returns the exit status (0: frames were written)."""
    if osp.abspath(arkitscenes_dir) == osp.abspath(output_dir):
        raise ValueError("--output_dir must differ from --arkitscenes_dir")
    n_done, failures = 0, []
    for split in SPLIT_DIRS:
        if not osp.isdir(osp.join(arkitscenes_dir, split)):
            continue
        out_split = osp.join(output_dir, split)
        os.makedirs(out_split, exist_ok=True)
        with open(osp.join(precomputed_pairs, split, "scene_list.json")) as f:
            scene_list = json.load(f)
        converted: Dict[str, SceneFrames] = {}

        def do_scene(scene: str) -> None:
            frames, frame_failures = convert_scene(osp.join(arkitscenes_dir, split),
                                                   osp.join(precomputed_pairs, split), out_split, scene)
            failures.extend(frame_failures)
            converted[scene] = frames

        _, scene_failures = process_samples(scene_list, do_scene, desc=f"arkitscenes {split}")
        failures.extend(scene_failures)
        with open(osp.join(out_split, "scene_list.json"), "w") as f:
            json.dump(list(converted), f)
        if converted:
            write_all_metadata(osp.join(out_split, "all_metadata.npz"), converted)
        n_done += sum(len(f.images) for f in converted.values())
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ARKitScenes -> the processed layout of dust3r.datasets.ARKitScenes")
    parser.add_argument("--arkitscenes_dir", required=True)
    parser.add_argument("--precomputed_pairs", required=True)
    parser.add_argument("--output_dir", default="data/arkitscenes_processed")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = get_parser().parse_args()
    raise SystemExit(main(args.arkitscenes_dir, args.precomputed_pairs, args.output_dir))
