"""A tiny fake ARKitScenes raw download + precomputed pairs, rendered from the fake scene with exact ground truth.

``<raw>/Training/<video>/``: ``lowres_wide.traj`` (timestamp, world-to-camera angle-axis and translation per
line, at 10 Hz), ``vga_wide/<video>_<t>.png`` (RGB), ``vga_wide_intrinsics/<video>_<t>.pincam`` (``w h fx fy cx
cy``), ``lowres_depth/<video>_<t>.png`` (uint16 millimetres at half the RGB size). ``<pairs>/Training/scene_list
.json`` and ``<pairs>/Training/<video>/selected_pairs.npz`` (``selection``, ``pairs`` (i, j, score),
``sky_direction_scene``). Video ``41000001`` is held upright (sky UP), ``41000002`` sideways (sky RIGHT: the
device's x axis points up), so the preprocessing must turn it. Frame timestamps fall between trajectory samples.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import cv2
import numpy as np

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, render, write_png

VIDEOS = {"41000001": "UP", "41000002": "RIGHT"}
ROLL = {"UP": np.eye(3), "RIGHT": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])}  # device x up


def _pose_at(t: float, start) -> np.ndarray:
    """Upright OpenCV cam2world of the device path at time ``t`` (seconds; 0.12 m/s sideways)."""
    return camera_path(1, start=np.add(start, (0.0, 0.12 * t, 0.02 * t)))[0]


def _truth_rotated(K: np.ndarray, cam2world: np.ndarray, w: int, h: int, sky: str, scene: str, name: str):
    """Truth of the processed (sky-up) frame: an upright camera, rendered directly."""
    if sky == "UP":
        K_up, pose_up, size = K, cam2world, (w, h)
    else:  # RIGHT: turned counter-clockwise
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        K_up = np.array([[fy, 0, cy], [0, fx, w - 1 - cx], [0, 0, 1]])
        pose_up = cam2world.copy()
        pose_up[:3, :3] = cam2world[:3, :3] @ ROLL["RIGHT"].T
        size = (h, w)
    rgb, depth, sky_mask = render(K_up, pose_up, *size)
    return TruthFrame(scene, name, K_up, pose_up, depth, sky_mask, rgb)


def write_fake_arkitscenes(raw: str, pairs_dir: str, n_frames: int = 4, width: int = 96, height: int = 72
                           ) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download and pairs; returns ``{(video, frame basename): TruthFrame of the processed frame}``."""
    K = np.array([[0.8 * width, 0, width / 2 - 1.3], [0, 0.8 * width, height / 2 + 0.9], [0, 0, 1]])
    truths = {}
    split_pairs = os.path.join(pairs_dir, "Training")
    for v, (video, sky) in enumerate(VIDEOS.items()):
        scene_dir = os.path.join(raw, "Training", video)
        for sub in ("vga_wide", "vga_wide_intrinsics", "lowres_depth"):
            os.makedirs(os.path.join(scene_dir, sub), exist_ok=True)
        start = (-2.6, -0.4 + 0.5 * v, 1.25)
        lines = []
        for k in range(int(n_frames * 1.5) + 2):  # trajectory at 10 Hz from t = 100.0
            t = 100.0 + 0.1 * k
            device = _pose_at(t - 100.0, start)
            device[:3, :3] = device[:3, :3] @ ROLL[sky]
            world2cam = np.linalg.inv(device)
            rvec = cv2.Rodrigues(world2cam[:3, :3])[0].ravel()
            lines.append(" ".join(f"{x:.9f}" for x in [t, *rvec, *world2cam[:3, 3]]))
        with open(os.path.join(scene_dir, "lowres_wide.traj"), "w") as f:
            f.write("\n".join(lines) + "\n")
        selection = []
        for i in range(n_frames):
            t = 100.0 + 0.1 * i + (0.05 if i % 2 else 0.0)  # odd frames between two trajectory samples
            name = f"{video}_{t:.3f}.png"
            device = _pose_at(t - 100.0, start)
            device[:3, :3] = device[:3, :3] @ ROLL[sky]
            rgb, depth, _ = render(K, device, width, height)
            write_png(os.path.join(scene_dir, "vga_wide", name), rgb)
            K_low = K.copy()
            K_low[:2] = K[:2] / 2.0
            K_low[:2, 2] = (K[:2, 2] + 0.5) / 2.0 - 0.5
            _, depth_low, _ = render(K_low, device, width // 2, height // 2)
            cv2.imwrite(os.path.join(scene_dir, "lowres_depth", name), np.rint(depth_low * 1000).astype(np.uint16))
            with open(os.path.join(scene_dir, "vga_wide_intrinsics", f"{video}_{t:.3f}.pincam"), "w") as f:
                f.write(f"{width} {height} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
            selection.append(name[:-4] + ".png")
            truths[video, name] = _truth_rotated(K, device, width, height, sky, video, name)
        os.makedirs(os.path.join(split_pairs, video), exist_ok=True)
        pairs = np.array([[i, j, 0.5] for i in range(n_frames) for j in range(i + 1, n_frames)], dtype=np.float64)
        np.savez(os.path.join(split_pairs, video, "selected_pairs.npz"), selection=np.array(selection), pairs=pairs,
                 sky_direction_scene=np.array([sky]))
    with open(os.path.join(split_pairs, "scene_list.json"), "w") as f:
        json.dump(list(VIDEOS), f)
    return truths
