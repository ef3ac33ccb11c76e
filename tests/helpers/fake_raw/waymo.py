"""A tiny fake Waymo Open sequence AFTER decoding: the intermediate layout the original's ``preprocess_waymo.py``
extracts from each ``.tfrecord`` (with tensorflow + waymo_open_dataset, unavailable here) into ``<output>/tmp``::

    <output>/tmp/<name>.tfrecord/calib.json        [[camera, {width, height, intrinsics: [f1, f2, cx, cy, k1, k2,
                                                    p1, p2, k3], extrinsics: 16 values of camera-to-vehicle}], ...]
    <output>/tmp/<name>.tfrecord/<frame:05d>_<camera>.jpg
    <output>/tmp/<name>.tfrecord/<frame:05d>_<camera>.npz   pose (4, 4) vehicle-to-world at the image's time,
                                                            pixels (N, 2) int16 (x, y) of the LiDAR points seen,
                                                            pts3d (N, 3) those points in the vehicle frame,
                                                            timestamp

plus an empty ``<waymo_dir>/<name>.tfrecord`` per sequence (the raw file, already extracted). Waymo camera axes are
x forward, y left, z up. Two cameras (1 = FRONT, 2 = FRONT_LEFT) with fixed camera-to-vehicle extrinsics, three
frames each; the LiDAR points are every 3rd pixel of the rendered depth. ``broken``: a frame whose ``.npz`` is
corrupt.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import PIL.Image

from dust3r.synthetic import SyntheticScene, make_scene

SEQUENCE = "segment-1234567890_with_camera_labels.tfrecord"
CAMERAS = (1, 2)
N_FRAMES = 3
#: OpenCV camera axes from Waymo's (x forward, y left, z up): the original's ``axes_transformation``
AXES = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


@dataclass
class FakeWaymo:
    waymo_dir: str
    output_dir: str
    scene: SyntheticScene  # view k = frame k // 2, camera CAMERAS[k % 2]
    frames: Dict[str, int]  # "<frame:05d>_<camera>" -> scene view
    broken: Tuple[str, str]  # (sequence, frame name)


def _cam_to_car(camera: int) -> np.ndarray:
    yaw = 0.0 if camera == 1 else np.pi / 5
    mat = np.eye(4)
    mat[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    mat[:3, 3] = [1.5, 0.1 * camera, 2.0]
    return mat


def make_fake_waymo(waymo_dir: str, output_dir: str, height: int = 128, width: int = 192) -> FakeWaymo:
    scene = make_scene(n_views=len(CAMERAS) * N_FRAMES, height=height, width=width, seed=50, layout="forward",
                       baseline=0.3)
    os.makedirs(waymo_dir, exist_ok=True)
    open(osp.join(waymo_dir, SEQUENCE), "wb").close()
    tmp = osp.join(output_dir, "tmp", SEQUENCE)
    os.makedirs(tmp, exist_ok=True)
    calib = [[cam, dict(width=width, height=height,
                        intrinsics=[scene.K[0][0, 0], scene.K[0][1, 1], scene.K[0][0, 2], scene.K[0][1, 2],
                                    0, 0, 0, 0, 0],
                        extrinsics=_cam_to_car(cam).reshape(-1).tolist())] for cam in CAMERAS]
    with open(osp.join(tmp, "calib.json"), "w") as f:
        json.dump(calib, f)
    frames = {}
    ys, xs = np.mgrid[0:height:3, 0:width:3]
    for k in range(scene.n_views):
        cam, name = CAMERAS[k % 2], f"{k // 2:05d}_{CAMERAS[k % 2]}"
        frames[name] = k
        # cam2world (OpenCV) = car_to_world @ cam_to_car @ inv(AXES)
        car_to_world = scene.cam2world[k] @ AXES @ np.linalg.inv(_cam_to_car(cam))
        pts_world = scene.pts3d[k][ys, xs].reshape(-1, 3).astype(np.float64)
        world_to_car = np.linalg.inv(car_to_world)
        pts_car = pts_world @ world_to_car[:3, :3].T + world_to_car[:3, 3]
        PIL.Image.fromarray(scene.images[k]).save(osp.join(tmp, name + ".jpg"), quality=95)
        np.savez(osp.join(tmp, name + ".npz"), pose=car_to_world,
                 pixels=np.stack([xs.reshape(-1), ys.reshape(-1)], -1).astype(np.int16),
                 pts3d=pts_car.astype(np.float32), timestamp=1e6 + k)
    broken = (SEQUENCE, f"{2:05d}_{CAMERAS[0]}")
    with open(osp.join(tmp, broken[1] + ".npz"), "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    return FakeWaymo(waymo_dir=waymo_dir, output_dir=output_dir, scene=scene, frames=frames, broken=broken)
