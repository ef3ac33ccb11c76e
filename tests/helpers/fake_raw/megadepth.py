"""A tiny fake MegaDepth in its released layout (MegaDepth_v1 dense reconstructions + MegaDepth_v1_SfM models in one
folder, as ``preprocess_megadepth.py`` expects them)::

    <root>/<scene>/dense<sub>/imgs/<name>.jpg                   undistorted RGB
    <root>/<scene>/dense<sub>/depths/<name stem>.h5             HDF5 dataset 'depth' float32 (0 = no depth)
    <root>/<scene>/sparse/manhattan/<sub>/cameras.txt           COLMAP text, one SIMPLE_RADIAL camera per image
    <root>/<scene>/sparse/manhattan/<sub>/images.txt            COLMAP text: world2cam quaternion (w, x, y, z)
    <root>/<scene>/sparse/manhattan/<sub>/points3D.txt            + translation, POINTS2D with 3D point ids

Scenes ``0015`` (a validation scene of the original split) and ``0100``, sub-model 0. The SfM camera is the
distorted one (``imsize_pre``, focal, COLMAP principal point, k = 0); the dense image is the undistorted one whose
intrinsics are ``cv2.getOptimalNewCameraMatrix(..., centerPrincipalPoint=True)`` of it (how the original models
MegaDepth's undistortion), so the scene is rendered with exactly those intrinsics. ``broken``: an image whose depth
file is missing.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import h5py
import numpy as np
import PIL.Image

from dust3r.export.colmap import rotmat_to_qvec
from dust3r.synthetic import SyntheticScene, make_scene

SCENES = ("0015", "0100")
IMSIZE_PRE = (170, 128)  # (width, height) of the SfM (distorted) camera
IMSIZE_POST = (160, 120)  # the undistorted dense image


@dataclass
class FakeMegaDepth:
    root: str
    scenes: Dict[str, SyntheticScene]
    names: Dict[str, List[str]]
    broken: Tuple[str, str]  # (scene, image name) whose depth .h5 is missing


def _k_pre(focal: float) -> np.ndarray:
    """The SfM camera as cameras.txt holds it (COLMAP pixels: the image centre is (W / 2, H / 2))."""
    return np.array([[focal, 0, IMSIZE_PRE[0] / 2], [0, focal, IMSIZE_PRE[1] / 2], [0, 0, 1.0]])


def _k_post(K_pre: np.ndarray) -> np.ndarray:
    return cv2.getOptimalNewCameraMatrix(K_pre, np.zeros(4), IMSIZE_PRE, alpha=0, newImgSize=IMSIZE_POST,
                                         centerPrincipalPoint=True)[0]


def _observations(scene: SyntheticScene, step: int = 8):
    """3D points (grid samples of every view) and, per view, (pixel xy, point id) of those it sees."""
    pts = np.concatenate([scene.pts3d[i][::step, ::step].reshape(-1, 3) for i in range(scene.n_views)])
    obs = []
    for i in range(scene.n_views):
        xy, z = scene.project(i, pts)
        inside = ((z > 0) & (xy[:, 0] > 0) & (xy[:, 0] < scene.width - 1)
                  & (xy[:, 1] > 0) & (xy[:, 1] < scene.height - 1))
        c = np.clip(np.rint(xy[:, 0]), 0, scene.width - 1).astype(int)
        r = np.clip(np.rint(xy[:, 1]), 0, scene.height - 1).astype(int)
        seen = inside & (np.abs(scene.depth[i][r, c] - z) < 0.02 * z)
        obs.append((xy[seen] + 0.5, np.flatnonzero(seen) + 1))  # COLMAP pixels, ids from 1
    return pts, obs


def write_colmap_text(folder: str, scene: SyntheticScene, names: List[str], K_pre: np.ndarray) -> None:
    os.makedirs(folder, exist_ok=True)
    pts, obs = _observations(scene)
    with open(osp.join(folder, "cameras.txt"), "w") as f:
        f.write("# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                f"# Number of cameras: {len(names)}\n")
        for k in range(len(names)):
            f.write(f"{k + 1} SIMPLE_RADIAL {IMSIZE_PRE[0]} {IMSIZE_PRE[1]} {float(K_pre[0, 0])!r} "
                    f"{float(K_pre[0, 2])!r} {float(K_pre[1, 2])!r} 0\n")
    with open(osp.join(folder, "images.txt"), "w") as f:
        f.write("# Image list with two lines of data per image:\n"
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                f"# Number of images: {len(names)}, mean observations per image: 1\n")
        for k, name in enumerate(names):
            world2cam = np.linalg.inv(scene.cam2world[k])
            q, t = rotmat_to_qvec(world2cam[:3, :3]), world2cam[:3, 3]
            f.write(f"{k + 1} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" {k + 1} {name}\n")
            xy, ids = obs[k]
            f.write(" ".join(f"{x:.3f} {y:.3f} {i}" for (x, y), i in zip(xy, ids)) + "\n")
    with open(osp.join(folder, "points3D.txt"), "w") as f:
        f.write("# 3D point list with one line of data per point:\n"
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        for pid, p in enumerate(pts, start=1):
            track = [(k + 1, int(np.flatnonzero(obs[k][1] == pid)[0])) for k in range(len(names))
                     if pid in obs[k][1]]
            if track:
                f.write(f"{pid} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} 128 128 128 0.5 "
                        + " ".join(f"{a} {b}" for a, b in track) + "\n")


def make_fake_megadepth(root: str, n_views: int = 4) -> FakeMegaDepth:
    scenes, names = {}, {}
    for s, scene_name in enumerate(SCENES):
        K_pre = _k_pre(focal=150.0 + 10 * s)
        K_post = _k_post(K_pre)
        scene = make_scene(n_views=n_views, height=IMSIZE_POST[1], width=IMSIZE_POST[0], seed=20 + s,
                           focal=float(K_post[0, 0]))
        assert np.allclose(scene.K[0], K_post), "the fake renders with the undistorted intrinsics"
        scenes[scene_name] = scene
        names[scene_name] = [f"{1000 * (s + 1) + k}_{scene_name}abc_o.jpg" for k in range(n_views)]
        dense = osp.join(root, scene_name, "dense0")
        os.makedirs(osp.join(dense, "imgs"), exist_ok=True)
        os.makedirs(osp.join(dense, "depths"), exist_ok=True)
        for k, name in enumerate(names[scene_name]):
            PIL.Image.fromarray(scene.images[k]).save(osp.join(dense, "imgs", name), quality=95)
            with h5py.File(osp.join(dense, "depths", osp.splitext(name)[0] + ".h5"), "w") as h5:
                h5.create_dataset("depth", data=scene.depth[k].astype(np.float32))
        write_colmap_text(osp.join(root, scene_name, "sparse", "manhattan", "0"), scene, names[scene_name], K_pre)
    broken = (SCENES[1], names[SCENES[1]][2])
    os.remove(osp.join(root, broken[0], "dense0", "depths", osp.splitext(broken[1])[0] + ".h5"))
    return FakeMegaDepth(root=root, scenes=scenes, names=names, broken=broken)
