"""A tiny DL3DV-10K download in the real raw layout, plus a depth source (see
``datasets_preprocess/preprocess_dl3dv.py``).

``1K/<hash>/transforms.json`` (nerfstudio: full-resolution COLMAP intrinsics with the half-pixel principal point,
OpenGL camera-to-world ``transform_matrix``, ``file_path`` 'images/frame_00001.png') and ``1K/<hash>/images_4/``
(the quarter-resolution frames, 96x54). The second scene has OPENCV lens distortion (its frames are distorted) and a
half-resolution depth source. Depth source: ``<depth_root>/1K/<hash>/frame_00001.npy`` float32 z-depth, +inf on the
sky (the room's ceiling here). One depth file is corrupt: the broken sample.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import cv2
import numpy as np

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, corrupt, truth, write_png

W, H = 96, 54  # images_4 of a 384x216 capture
FULL = 4
K = np.array([[50.0, 0.0, 47.0], [0.0, 50.0, 26.5], [0.0, 0.0, 1.0]])  # OpenCV pixels of the 96x54 frames
SCENES = {"1K/0a1b2c3d": (3, None), "1K/9f8e7d6c": (2, (-0.08, 0.01, 0.001, -0.001))}
BROKEN_DEPTH = "1K/0a1b2c3d/frame_00002.npy"


def distort(image: np.ndarray, K: np.ndarray, coeffs, interpolation: int) -> np.ndarray:
    """What a lens with OPENCV ``coeffs`` (k1 k2 p1 p2) sees of a pinhole ``image`` (resampled at the undistorted
    position of every distorted pixel)."""
    h, w = image.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([xs.ravel(), ys.ravel()], -1)[:, None]
    undist = cv2.undistortPoints(pts, K, np.array(coeffs, np.float64), R=None, P=K,
                                 criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9))
    maps = undist.reshape(h, w, 2).astype(np.float32)
    return cv2.remap(image, maps[..., 0], maps[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def write_fake_dl3dv(root: str, depth_root: str) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download under ``root`` and its depth source under ``depth_root``; returns the truth by
    (processed scene, frame name) (undistorted: the processed frames are pinhole)."""
    frames = {}
    for s, (scene, (n, coeffs)) in enumerate(SCENES.items()):
        folder = os.path.join(root, *scene.split("/"))
        os.makedirs(os.path.join(folder, "images_4"))
        os.makedirs(os.path.join(depth_root, *scene.split("/")))
        meta = {"w": W * FULL, "h": H * FULL, "fl_x": K[0, 0] * FULL, "fl_y": K[1, 1] * FULL,
                "cx": (K[0, 2] + 0.5) * FULL, "cy": (K[1, 2] + 0.5) * FULL,  # COLMAP: pixel corners
                "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "camera_model": "OPENCV", "frames": []}
        if coeffs is not None:
            meta.update(zip(("k1", "k2", "p1", "p2"), coeffs))
        for k, pose in enumerate(camera_path(n, start=(-2.5, -0.4 + 0.5 * s, 1.3), step=(0.1, 0.15, 0.0),
                                             target=(0.0, 0.0, 1.1))):
            name = f"frame_{k + 1:05d}"
            rgb, frame = truth(scene, name, K, pose, W, H)
            depth = np.where(frame.sky, np.inf, frame.depth).astype(np.float32)
            if coeffs is not None:
                rgb = distort(rgb, K, coeffs, cv2.INTER_LINEAR)
                depth = distort(depth, K, coeffs, cv2.INTER_NEAREST)[::2, ::2]
            write_png(os.path.join(folder, "images_4", name + ".png"), rgb)
            np.save(os.path.join(depth_root, *scene.split("/"), name + ".npy"), depth)
            gl = pose.copy()
            gl[:3, 1:3] *= -1  # OpenGL camera axes: y up, z backward
            meta["frames"].append({"file_path": f"images/{name}.png", "transform_matrix": gl.tolist(),
                                   "colmap_im_id": k + 1})
            frames[scene, name] = frame
        meta["frames"].reverse()  # transforms.json does not list frames in file order
        with open(os.path.join(folder, "transforms.json"), "w") as f:
            json.dump(meta, f)
    corrupt(os.path.join(depth_root, *BROKEN_DEPTH.split("/")))
    return frames
