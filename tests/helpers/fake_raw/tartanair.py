"""A tiny TartanAir download in the real raw layout (see ``datasets_preprocess/preprocess_tartanair.py``).

``<env>/<Easy|Hard>/<P00x>/image_left/000000_left.png``, ``depth_left/000000_left_depth.npy`` (float32 metres),
``pose_left.txt`` (``tx ty tz qx qy qz qw``, camera-to-world, NED body axes x forward / y right / z down), at
TartanAir's fixed intrinsics (fx = fy = 320, cx = 320, cy = 240, 640x480). One image is corrupt: the broken sample.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, corrupt, truth, write_png

K = np.array([[320.0, 0.0, 320.0], [0.0, 320.0, 240.0], [0.0, 0.0, 1.0]])
TRAJECTORIES = {"abandonedfactory/Easy/P000": 3, "abandonedfactory/Hard/P001": 2}
#: the raw file made unreadable
BROKEN = "abandonedfactory/Hard/P001/image_left/000001_left.png"


def ned_line(cam2world_opencv: np.ndarray) -> str:
    """The pose_left.txt line of an OpenCV cam2world: body axes NED x = OpenCV z, NED y = OpenCV x, NED z = OpenCV y."""
    R_cv, t = cam2world_opencv[:3, :3], cam2world_opencv[:3, 3]
    R_ned = np.stack([R_cv[:, 2], R_cv[:, 0], R_cv[:, 1]], axis=1)
    qx, qy, qz, qw = Rotation.from_matrix(R_ned).as_quat()
    return " ".join(f"{v:.10f}" for v in (*t, qx, qy, qz, qw))


def write_fake_tartanair(root: str) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download under ``root``; returns the truth of every frame by (processed scene, frame name)."""
    frames = {}
    for t, (scene, n) in enumerate(TRAJECTORIES.items()):
        folder = os.path.join(root, *scene.split("/"))
        os.makedirs(os.path.join(folder, "image_left"))
        os.makedirs(os.path.join(folder, "depth_left"))
        lines = []
        for k, pose in enumerate(camera_path(n, start=(-2.6, -0.3 + 0.5 * t, 1.3))):
            rgb, frame = truth(scene, f"{k:06d}", K, pose, 640, 480)
            write_png(os.path.join(folder, "image_left", f"{k:06d}_left.png"), rgb)
            np.save(os.path.join(folder, "depth_left", f"{k:06d}_left_depth.npy"), frame.depth.astype(np.float32))
            lines.append(ned_line(pose))
            frames[scene, frame.name] = frame
        with open(os.path.join(folder, "pose_left.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    corrupt(os.path.join(root, *BROKEN.split("/")))
    return frames
