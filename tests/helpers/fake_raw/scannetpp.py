"""A tiny fake ScanNet++ download + precomputed pairs, from the fake scene with exact ground truth.

``<raw>/data/<scene>/``: ``scans/mesh_aligned_0.05.ply`` (the fake scene's boxes as a triangle mesh),
``dslr/colmap/{cameras,images,points3D}.txt`` (COLMAP text, one OPENCV_FISHEYE camera, world-to-camera
quaternions, principal points in COLMAP's pixel-corner convention), ``dslr/resized_images/DSC0000k.JPG`` (true
equidistant-fisheye renderings), ``dslr/resized_anon_masks/DSC0000k.png`` (255 except an anonymised blob),
``iphone/colmap/...`` (OPENCV camera without distortion, image names prefixed ``video/``), ``iphone/rgb/
frame_0000k0.jpg``, ``iphone/rgb_masks/frame_0000k0.png``. ``<pairs>/scene_list.json`` and ``<pairs>/<scene>/
selected_pairs.npz`` (``selection`` without extensions, ``pairs`` (i, j, score)).
"""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import cv2
import numpy as np

from tests.helpers.fake_raw._scene import OBJECTS, TruthFrame, camera_path, render, write_png

SCENES = ("0a5c013435", "1b75758486")
N_DSLR, N_IPHONE = 2, 2
_HEADER = {"cameras.txt": ["# Camera list with one line of data per camera:",
                           "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]", "# Number of cameras: 1"],
           "images.txt": ["# Image list with two lines of data per image:",
                          "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                          "#   POINTS2D[] as (X, Y, POINT3D_ID)"],
           "points3D.txt": ["# 3D point list with one line of data per point:",
                            "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]}


def box_mesh() -> Tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertices and (F, 3) faces of the fake scene's boxes (room included)."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    vertices = [(corners * b.half_size) @ b.rotation.T + b.center for b in OBJECTS]
    return np.concatenate(vertices), np.concatenate([faces + 8 * k for k in range(len(OBJECTS))])


def _colmap_image_line(k: int, cam2world: np.ndarray, name: str) -> str:
    from scipy.spatial.transform import Rotation

    world2cam = np.linalg.inv(cam2world)
    qx, qy, qz, qw = Rotation.from_matrix(world2cam[:3, :3]).as_quat()
    t = world2cam[:3, 3]
    return f"{k} {qw:.12f} {qx:.12f} {qy:.12f} {qz:.12f} {t[0]:.12f} {t[1]:.12f} {t[2]:.12f} 1 {name}"


def _write_colmap(folder: str, camera_line: str, image_lines) -> None:
    os.makedirs(folder, exist_ok=True)
    contents = {"cameras.txt": [camera_line], "images.txt": [x for line in image_lines for x in (line, "")],
                "points3D.txt": []}
    for name, lines in contents.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write("\n".join(_HEADER[name] + lines) + "\n")


def _fisheye_image(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
    """An equidistant-fisheye (OpenCV fisheye model, zero coefficients) rendering, resampled from a wide pinhole."""
    ref_K = np.array([[K[0, 0], 0, 1.6 * width], [0, K[1, 1], 1.6 * height], [0, 0, 1]])
    ref, _, _ = render(ref_K, cam2world, int(3.2 * width), int(3.2 * height))
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([xs, ys], -1).reshape(-1, 1, 2)
    norm = cv2.fisheye.undistortPoints(pts, K, np.zeros(4)).reshape(height, width, 2)
    map_x = (norm[..., 0] * ref_K[0, 0] + ref_K[0, 2]).astype(np.float32)
    map_y = (norm[..., 1] * ref_K[1, 1] + ref_K[1, 2]).astype(np.float32)
    return cv2.remap(ref, map_x, map_y, interpolation=cv2.INTER_LINEAR)


def write_fake_scannetpp(raw: str, pairs_dir: str, dslr_size=(80, 60), iphone_size=(64, 48)
                         ) -> Dict[Tuple[str, str], TruthFrame]:
    """Write the fake download; returns ``{(scene, image name without extension): TruthFrame}`` where the truth is
    a pinhole reference camera with the image's pose (the tests look the served rays up in it)."""
    import trimesh

    vertices, faces = box_mesh()
    truths = {}
    os.makedirs(pairs_dir, exist_ok=True)
    for s, scene in enumerate(SCENES):
        data = os.path.join(raw, "data", scene)
        os.makedirs(os.path.join(data, "scans"), exist_ok=True)
        trimesh.Trimesh(vertices, faces, process=False).export(os.path.join(data, "scans", "mesh_aligned_0.05.ply"))
        poses = camera_path(N_DSLR + N_IPHONE, start=(-2.5, -0.5 + 0.4 * s, 1.3), step=(0.05, 0.15, 0.0))
        selection = []
        for cam_type, (w, h), names, model, params in (
                ("dslr", dslr_size, [f"DSC{k + 1:05d}.JPG" for k in range(N_DSLR)], "OPENCV_FISHEYE", "0 0 0 0"),
                ("iphone", iphone_size, [f"frame_{10 * k:06d}.jpg" for k in range(N_IPHONE)], "OPENCV", "0 0 0 0")):
            K = np.array([[0.75 * w, 0, w / 2 - 1.2], [0, 0.75 * w, h / 2 + 0.8], [0, 0, 1]])
            rgb_dir, mask_dir = (("resized_images", "resized_anon_masks") if cam_type == "dslr"
                                 else ("rgb", "rgb_masks"))
            for sub in (rgb_dir, mask_dir):
                os.makedirs(os.path.join(data, cam_type, sub), exist_ok=True)
            lines = []
            for k, name in enumerate(names):
                pose = poses[k if cam_type == "dslr" else N_DSLR + k]
                rgb = _fisheye_image(K, pose, w, h) if cam_type == "dslr" else render(K, pose, w, h)[0]
                write_png(os.path.join(data, cam_type, rgb_dir, name), rgb)
                mask = np.full((h, w), 255, np.uint8)
                mask[h // 2 - 3:h // 2 + 3, 2:8] = 0  # an anonymised blob
                cv2.imwrite(os.path.join(data, cam_type, mask_dir, name[:-3] + "png"), mask)
                lines.append(_colmap_image_line(k + 1, pose, ("video/" if cam_type == "iphone" else "") + name))
                ref_K = np.array([[K[0, 0], 0, 1.6 * w], [0, K[1, 1], 1.6 * h], [0, 0, 1]])
                ref_rgb, depth, sky = render(ref_K, pose, int(3.2 * w), int(3.2 * h))
                truths[scene, name[:-4]] = TruthFrame(scene, name[:-4], ref_K, pose, depth, sky, ref_rgb)
                selection.append(name[:-4])
            camera_line = f"1 {model} {w} {h} {K[0, 0]} {K[1, 1]} {K[0, 2] + 0.5} {K[1, 2] + 0.5} {params}"
            _write_colmap(os.path.join(data, cam_type, "colmap"), camera_line, lines)
        os.makedirs(os.path.join(pairs_dir, scene), exist_ok=True)
        n = len(selection)
        pairs = np.array([[i, j, 0.7] for i in range(n) for j in range(i + 1, n)])
        np.savez(os.path.join(pairs_dir, scene, "selected_pairs.npz"), selection=np.array(selection), pairs=pairs)
    with open(os.path.join(pairs_dir, "scene_list.json"), "w") as f:
        json.dump(list(SCENES), f)
    return truths
