"""A tiny fake StaticThings3D in its released layout (robustmvd's ``download_staticthings3d.sh``: frames_cleanpass,
frames_finalpass, depths, poses, intrinsics archives unpacked into one folder)::

    <root>/frames_cleanpass/TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.png
    <root>/frames_finalpass/TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.png
    <root>/depths/TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.float3      (H, W) z-depth
    <root>/poses/TRAIN/<A|B|C>/<seq:04d>/<left|right>/<frame:04d>.float3       (4, 4) world2cam (OpenCV axes)
    <root>/intrinsics/TRAIN/<A|B|C>/<seq:04d>/<frame:04d>.float3              (3, 3), both cameras

``.float3`` is LMB's binary array format: ``float\\n``, the number of dimensions, each dimension innermost first
(one per line), then little-endian float32 values. Frames 0006-0008 of sequences ``A/0000`` and ``B/0001``, 192x108
(16:9 like the 960x540 originals); the scene is scaled by :data:`SCALE` so that the far walls lie beyond the
``mask_bg`` threshold (depth 200). ``broken``: a frame whose depth file is truncated.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import PIL.Image
import PIL.ImageFilter

from dust3r.synthetic import SyntheticScene, make_scene

SEQUENCES = (("A", "0000"), ("B", "0001"))
FRAMES = (6, 7, 8)
CAMERAS = ("left", "right")
SCALE = 30.0  # scene units: depths ~60-255


@dataclass
class FakeStaticThings3D:
    root: str
    scenes: Dict[Tuple[str, str], SyntheticScene]  # view index = 2 * frame position + (camera == 'right')
    broken: Tuple[str, str, str, str]  # (subsplit, seq, camera, frame)


def write_float3(path: str, array: np.ndarray) -> None:
    array = np.asarray(array, dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"float\n" + f"{array.ndim}\n".encode() + "".join(f"{d}\n" for d in array.shape[::-1]).encode())
        f.write(array.tobytes())


def view_index(frame: int, camera: str) -> int:
    return 2 * FRAMES.index(frame) + CAMERAS.index(camera)


def make_fake_staticthings3d(root: str, height: int = 108, width: int = 192) -> FakeStaticThings3D:
    scenes = {}
    for s, (sub, seq) in enumerate(SEQUENCES):
        scene = make_scene(n_views=2 * len(FRAMES), height=height, width=width, seed=30 + s, layout="forward",
                           baseline=0.3)
        scenes[sub, seq] = scene
        rel = osp.join("TRAIN", sub, seq)
        os.makedirs(osp.join(root, "intrinsics", rel), exist_ok=True)
        for frame in FRAMES:
            num = f"{frame:04d}"
            write_float3(osp.join(root, "intrinsics", rel, num + ".float3"), scene.K[view_index(frame, "left")])
            for cam in CAMERAS:
                k = view_index(frame, cam)
                for kind in ("frames_cleanpass", "frames_finalpass", "depths", "poses"):
                    os.makedirs(osp.join(root, kind, rel, cam), exist_ok=True)
                image = PIL.Image.fromarray(scene.images[k])
                image.save(osp.join(root, "frames_cleanpass", rel, cam, num + ".png"))
                image.filter(PIL.ImageFilter.GaussianBlur(1)).save(osp.join(root, "frames_finalpass", rel, cam,
                                                                              num + ".png"))
                write_float3(osp.join(root, "depths", rel, cam, num + ".float3"), SCALE * scene.depth[k])
                world2cam = np.linalg.inv(scene.cam2world[k])
                world2cam[:3, 3] *= SCALE
                write_float3(osp.join(root, "poses", rel, cam, num + ".float3"), world2cam)
    broken = ("B", "0001", "right", f"{FRAMES[1]:04d}")
    with open(osp.join(root, "depths", "TRAIN", broken[0], broken[1], broken[2], broken[3] + ".float3"), "r+b") as f:
        f.truncate(200)
    return FakeStaticThings3D(root=root, scenes=scenes, broken=broken)
