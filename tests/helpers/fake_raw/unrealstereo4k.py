"""A tiny UnrealStereo4K download in the real raw layout (see ``datasets_preprocess/preprocess_unrealstereo4k.py``).

``<scene>/Image{0,1}/00000.png``, ``Disp{0,1}/00000.npy`` (float32 disparity of the left / right image),
``Extrinsics{0,1}/00000.txt`` (a line of the 3x3 intrinsics, a line of the 3x4 world-to-camera matrix), at 192x108
(the 16:9 of the 4K frames), the right camera ``BASELINE`` to the right of the left one. One right image is corrupt:
the broken sample.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np

from tests.helpers.fake_raw._scene import TruthFrame, camera_path, corrupt, stereo_partner, truth, write_png

W, H = 192, 108
K = np.array([[110.0, 0.0, 96.0], [0.0, 110.0, 54.0], [0.0, 0.0, 1.0]])
BASELINE = 0.25
SCENES = {"00000": 3, "00001": 2}
BROKEN = "00001/Image1/00001.png"


def write_fake_unrealstereo4k(root: str) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download under ``root``; returns the truth by (processed scene, frame name)."""
    frames = {}
    for s, (scene, n) in enumerate(SCENES.items()):
        for sub in ("Image0", "Image1", "Disp0", "Disp1", "Extrinsics0", "Extrinsics1"):
            os.makedirs(os.path.join(root, scene, sub))
        for i, left in enumerate(camera_path(n, start=(-2.5, -0.5 + 0.6 * s, 1.4), step=(0.1, 0.1, 0.0))):
            for cam, side in enumerate(("left", "right")):
                pose = stereo_partner(left, cam, BASELINE)
                rgb, frame = truth(scene, f"{i:05d}_{side}", K, pose, W, H)
                write_png(os.path.join(root, scene, f"Image{cam}", f"{i:05d}.png"), rgb)
                np.save(os.path.join(root, scene, f"Disp{cam}", f"{i:05d}.npy"),
                        (K[0, 0] * BASELINE / frame.depth).astype(np.float32))
                world2cam = np.linalg.inv(pose)[:3]
                with open(os.path.join(root, scene, f"Extrinsics{cam}", f"{i:05d}.txt"), "w") as f:
                    f.write(" ".join(f"{v:.10f}" for v in K.ravel()) + "\n")
                    f.write(" ".join(f"{v:.10f}" for v in world2cam.ravel()) + "\n")
                frames[scene, frame.name] = frame
    corrupt(os.path.join(root, *BROKEN.split("/")))
    return frames
