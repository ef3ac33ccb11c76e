"""A tiny Niantic Map-free download in the real raw layout (see ``datasets_preprocess/preprocess_mapfree.py``).

``<split>/<scene>/seq{0,1}/frame_XXXXX.jpg`` (portrait 54x72, a tenth of 540x720), ``frame_XXXXX.dptkitti.png``
(uint16 millimetres), ``intrinsics.txt`` (``name fx fy cx cy W H``), ``poses.txt`` (``name qw qx qy qz tx ty tz``,
world-to-camera, the world being the first map frame), ``overlaps.npz`` for the train scene. A test scene has query
frames without poses. One depth file is corrupt: the broken sample.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, corrupt, truth, write_png

W, H = 54, 72
K = np.array([[59.0, 0.0, 26.8], [0.0, 59.0, 35.7], [0.0, 0.0, 1.0]])
#: scene -> frames per sequence (seq0, seq1)
SCENES = {"train/s00000": (2, 2), "val/s00460": (1, 2)}
#: train pairs (seqA, frameA, seqB, frameB) and overlaps: the 0.05 and 0.95 ones fall outside [0.1, 0.9]
OVERLAP_IDXS = np.array([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1]])
OVERLAPS = np.array([0.5, 0.3, 0.05, 0.95, 0.6])
BROKEN = "train/s00000/seq1/frame_00001.dptkitti.png"


def pose_line(name: str, world2cam: np.ndarray) -> str:
    qx, qy, qz, qw = Rotation.from_matrix(world2cam[:3, :3]).as_quat()
    return f"{name} " + " ".join(f"{v:.10f}" for v in (qw, qx, qy, qz, *world2cam[:3, 3]))


def write_fake_mapfree(root: str) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download under ``root``; returns the truth by (processed scene, frame name)."""
    frames = {}
    for s, (scene, counts) in enumerate(SCENES.items()):
        folder = os.path.join(root, *scene.split("/"))
        poses = camera_path(sum(counts), start=(-2.4, -0.7 + 0.4 * s, 1.2), step=(0.1, 0.12, 0.02))
        reference = poses[0]  # Map-free's world: the first map frame
        intr, pose_lines = [], ["# format: image_path qw qx qy qz tx ty tz"]
        for k, pose in enumerate(poses):
            seq, i = (0, k) if k < counts[0] else (1, k - counts[0])
            name = f"seq{seq}/frame_{i:05d}.jpg"
            os.makedirs(os.path.join(folder, f"seq{seq}"), exist_ok=True)
            rgb, frame = truth(scene, f"seq{seq}_frame_{i:05d}", K, pose, W, H)
            frame.cam2world = np.linalg.inv(reference) @ pose
            write_png(os.path.join(folder, name), rgb)
            cv2.imwrite(os.path.join(folder, f"seq{seq}", f"frame_{i:05d}.dptkitti.png"),
                        np.round(frame.depth * 1000).astype(np.uint16))
            intr.append(f"{name} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]} 540 720")
            pose_lines.append(pose_line(name, np.linalg.inv(frame.cam2world)))
            frames[scene, frame.name] = frame
        with open(os.path.join(folder, "intrinsics.txt"), "w") as f:
            f.write("\n".join(intr) + "\n")
        with open(os.path.join(folder, "poses.txt"), "w") as f:
            f.write("\n".join(pose_lines) + "\n")
        if scene.startswith("train/"):
            np.savez(os.path.join(folder, "overlaps.npz"), idxs=OVERLAP_IDXS, overlaps=OVERLAPS)
    # a test scene: the map frame has a pose, the queries do not (hidden): only the map frame is kept
    test = os.path.join(root, "test", "s00520")
    os.makedirs(os.path.join(test, "seq0"))
    rgb, frame = truth("test/s00520", "seq0_frame_00000", K, camera_path(1)[0], W, H)
    frame.cam2world = np.eye(4)
    write_png(os.path.join(test, "seq0", "frame_00000.jpg"), rgb)
    cv2.imwrite(os.path.join(test, "seq0", "frame_00000.dptkitti.png"), np.round(frame.depth * 1000).astype(np.uint16))
    frames[frame.scene, frame.name] = frame
    with open(os.path.join(test, "poses.txt"), "w") as f:
        f.write(pose_line("seq0/frame_00000.jpg", np.eye(4)) + "\n")
    with open(os.path.join(test, "intrinsics.txt"), "w") as f:
        for name in ("seq0/frame_00000.jpg", "seq1/frame_00000.jpg"):
            f.write(f"{name} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]} 540 720\n")
    corrupt(os.path.join(root, *BROKEN.split("/")))
    return frames
