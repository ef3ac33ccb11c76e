"""A tiny Virtual KITTI 2 download in the real raw layout (see ``datasets_preprocess/preprocess_virtualkitti.py``).

``Scene01/<variation>/frames/rgb/Camera_<c>/rgb_00000.jpg``, ``frames/depth/Camera_<c>/depth_00000.png`` (uint16
centimetres, 65535 on the sky: the room's ceiling here), ``intrinsic.txt`` / ``extrinsic.txt`` (world-to-camera,
OpenCV axes) with their header lines. Camera_1 sits 0.532725 m to the right of Camera_0 (VKITTI 2's baseline).
Images are 311x94, the VKITTI 2 aspect at a quarter of its size, principal point at the centre. One depth PNG is
corrupt: the broken sample.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import cv2
import numpy as np

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, corrupt, stereo_partner, truth, write_png

W, H = 311, 94
K = np.array([[181.25, 0.0, (W - 1) / 2], [0.0, 181.25, (H - 1) / 2], [0.0, 0.0, 1.0]])
BASELINE = 0.532725
VARIATIONS = {"clone": 3, "fog": 2}
BROKEN = "Scene01/fog/frames/depth/Camera_1/depth_00001.png"


def write_fake_virtualkitti(root: str) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download under ``root``; returns the truth by (processed scene, frame name)."""
    frames = {}
    for v, (variation, n) in enumerate(VARIATIONS.items()):
        base = os.path.join(root, "Scene01", variation)
        intr = ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"]
        extr = ["frame cameraID r1,1 r1,2 r1,3 t1 r2,1 r2,2 r2,3 t2 r3,1 r3,2 r3,3 t3 0 0 0 1"]
        for f, left in enumerate(camera_path(n, start=(-2.7, -0.6 + 0.3 * v, 1.0), step=(0.15, 0.05, 0.0),
                                             target=(0.0, 0.0, 1.6))):
            for cam in (0, 1):
                pose = stereo_partner(left, cam, BASELINE)
                rgb, frame = truth(f"Scene01/{variation}", f"{f:05d}_Camera_{cam}", K, pose, W, H)
                for kind in ("rgb", "depth"):
                    os.makedirs(os.path.join(base, "frames", kind, f"Camera_{cam}"), exist_ok=True)
                write_png(os.path.join(base, "frames", "rgb", f"Camera_{cam}", f"rgb_{f:05d}.jpg"), rgb)
                depth_cm = np.where(frame.sky, 65535, np.round(frame.depth * 100)).astype(np.uint16)
                cv2.imwrite(os.path.join(base, "frames", "depth", f"Camera_{cam}", f"depth_{f:05d}.png"), depth_cm)
                intr.append(f"{f} {cam} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}")
                extr.append(f"{f} {cam} " + " ".join(f"{x:.10f}" for x in np.linalg.inv(pose).ravel()))
                frames[frame.scene, frame.name] = frame
        with open(os.path.join(base, "intrinsic.txt"), "w") as fh:
            fh.write("\n".join(intr) + "\n")
        with open(os.path.join(base, "extrinsic.txt"), "w") as fh:
            fh.write("\n".join(extr) + "\n")
    corrupt(os.path.join(root, *BROKEN.split("/")))
    return frames
