"""A tiny fake BlendedMVS in its released layout (``BlendedMVS.zip`` / ``BlendedMVS+`` / ``BlendedMVS++``)::

    <root>/<24 hex digits>/blended_images/<8 digits>.jpg          (and <8 digits>_masked.jpg)
    <root>/<24 hex digits>/cams/<8 digits>_cam.txt                 MVSNet camera: "extrinsic" world2cam 4x4,
                                                                  "intrinsic" 3x3, "<depth_min> <depth_interval>"
    <root>/<24 hex digits>/cams/pair.txt                           MVSNet view selection (ref + scored sources)
    <root>/<24 hex digits>/rendered_depth_maps/<8 digits>.pfm      'Pf' float depth, rows stored bottom-up

Each sequence renders a :func:`dust3r.synthetic.make_scene` (4:3 images, 160x120 instead of 768x576). The frame
``broken`` of the first sequence has a truncated depth map (a broken raw sample).
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import PIL.Image

from dust3r.synthetic import SyntheticScene, make_scene

#: sequence names: the first has seq_low % 10 == 0 (the 'val' split), the second not ('train')
SEQUENCES = ("5a3ca9cb270f8d000000000a", "5a3cb4e4270f8d0000000003")


@dataclass
class FakeBlendedMVS:
    root: str
    scenes: Dict[str, SyntheticScene]
    broken: Tuple[str, str]  # (sequence, frame) whose depth map is corrupt


def write_pfm(path: str, array: np.ndarray) -> None:
    """A greyscale PFM ('Pf', little-endian, rows bottom-up) as BlendedMVS ships its depth maps."""
    array = np.asarray(array, dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"Pf\n" + f"{array.shape[1]} {array.shape[0]}\n".encode() + b"-1\n")
        f.write(np.ascontiguousarray(array[::-1]).tobytes())


def write_cam_txt(path: str, world2cam: np.ndarray, K: np.ndarray, depth_min: float, depth_interval: float) -> None:
    lines = ["extrinsic"] + [" ".join(f"{v:.10f}" for v in row) for row in world2cam] + ["", "intrinsic"]
    lines += [" ".join(f"{v:.10f}" for v in row) for row in K] + ["", f"{depth_min:.6f} {depth_interval:.6f}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_pair_txt(path: str, n_views: int) -> None:
    lines = [str(n_views)]
    for ref in range(n_views):
        srcs = [s for s in range(n_views) if s != ref]
        lines += [str(ref), f"{len(srcs)} " + " ".join(f"{s} {100.0 / (1 + abs(s - ref)):.2f}" for s in srcs)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_fake_blendedmvs(root: str, n_views: int = 4, height: int = 120, width: int = 160) -> FakeBlendedMVS:
    scenes = {}
    for k, seq in enumerate(SEQUENCES):
        scene = make_scene(n_views=n_views, height=height, width=width, seed=10 + k)
        scenes[seq] = scene
        for sub in ("blended_images", "cams", "rendered_depth_maps"):
            os.makedirs(osp.join(root, seq, sub), exist_ok=True)
        for i in range(n_views):
            name = f"{i:08d}"
            PIL.Image.fromarray(scene.images[i]).save(osp.join(root, seq, "blended_images", name + ".jpg"), quality=95)
            PIL.Image.fromarray(scene.images[i]).save(osp.join(root, seq, "blended_images", name + "_masked.jpg"))
            write_cam_txt(osp.join(root, seq, "cams", name + "_cam.txt"), np.linalg.inv(scene.cam2world[i]),
                          scene.K[i], float(scene.depth[i].min()), 0.01)
            write_pfm(osp.join(root, seq, "rendered_depth_maps", name + ".pfm"), scene.depth[i])
        write_pair_txt(osp.join(root, seq, "cams", "pair.txt"), n_views)
    broken = (SEQUENCES[0], f"{n_views - 1:08d}")
    pfm = osp.join(root, broken[0], "rendered_depth_maps", broken[1] + ".pfm")
    with open(pfm, "r+b") as f:
        f.truncate(100)
    os.makedirs(osp.join(root, "not_a_sequence"), exist_ok=True)  # other folders of the download are ignored
    return FakeBlendedMVS(root=root, scenes=scenes, broken=broken)
