#!/usr/bin/env python3
"""ScanNet++ -> the processed layout :class:`dust3r.datasets.ScanNetpp` reads (the original script's output).

Usage (as the original)::

    python3 datasets_preprocess/preprocess_scannetpp.py --scannetpp_dir /path/to/scannetpp \
        --precomputed_pairs /path/to/scannetpp_pairs --output_dir data/scannetpp_processed

Raw input (the ScanNet++ download) and the precomputed pairs released with DUSt3R::

    <scannetpp_dir>/data/<scene>/dslr/colmap/{cameras,images}.txt     COLMAP text model (OPENCV_FISHEYE camera)
    <scannetpp_dir>/data/<scene>/dslr/resized_images/DSC01234.JPG      RGB
    <scannetpp_dir>/data/<scene>/dslr/resized_anon_masks/DSC01234.png  255 = usable pixel
    <scannetpp_dir>/data/<scene>/iphone/colmap/{cameras,images}.txt   COLMAP text model (OPENCV camera)
    <scannetpp_dir>/data/<scene>/iphone/rgb/frame_000120.jpg, iphone/rgb_masks/frame_000120.png
    <scannetpp_dir>/data/<scene>/scans/mesh_aligned_0.05.ply          the laser-scan mesh
    <precomputed_pairs>/scene_list.json, <precomputed_pairs>/<scene>/selected_pairs.npz (selection, pairs)

Each selected image is undistorted (OpenCV fisheye / pinhole models, as the original), rescaled to cover
``(target_resolution, 3/4 target_resolution)`` and its depth rendered from the mesh (znear 0.05, zfar 20 m, in
millimetres, 0 where the anonymisation mask is below 255). Rendering uses ``pyrender`` when it is installed (the
original's renderer, needs OpenGL: ``--pyopengl-platform egl``) and otherwise a vectorised numpy z-buffer
(:func:`rasterize_depth`, exact at pixel centres, slower on full scans). Intrinsics are stored in COLMAP's
convention as the original stores them. A broken image is reported and dropped with its pairs, a broken scene is
reported and skipped. Output: see :mod:`dust3r.datasets.scannetpp`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from datasets_preprocess._common import process_samples, report
from datasets_preprocess.preprocess_arkitscenes import SceneFrames, write_all_metadata, write_scene_metadata
from dust3r.export.colmap import read_cameras_txt, read_images_txt

logger = logging.getLogger(__name__)

ZNEAR, ZFAR = 0.05, 20.0  # ScanNet++'s render.yml defaults, as the original
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
_FRAME_ID = {"dslr": re.compile(r"^.*DSC(?P<frameid>\d+)\.JPG$"),
             "iphone": re.compile(r".*frame_(?P<frameid>\d+)\.jpg$")}


@dataclass
class ColmapImage:
    """One image of a COLMAP text model: camera ``[model, width, height, params...]``, name, cam2world."""

    camera: list
    name: str
    cam2world: np.ndarray


def load_colmap_images(sfm_dir: str, cam_type: str) -> Dict[str, ColmapImage]:
    """``{image name (without 'iphone/' / 'video/' prefix): ColmapImage}`` of ``cameras.txt`` + ``images.txt``."""
    cameras = read_cameras_txt(osp.join(sfm_dir, "cameras.txt"))
    images = {}
    for image in read_images_txt(osp.join(sfm_dir, "images.txt")).values():
        name = image.name
        for prefix in ("iphone/", "video/"):
            name = name[len(prefix):] if name.startswith(prefix) else name
        if not _FRAME_ID[cam_type].match(name):
            raise ValueError(f"{sfm_dir}: unexpected {cam_type} image name {name!r}")
        cam = cameras[image.camera_id]
        images[name] = ColmapImage([cam.model, cam.width, cam.height, *cam.params], name, image.cam2world())
    return images


def undistort(camera: list, rgb: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undistorted ``(K OpenCV (3, 3), rgb, mask)`` of a COLMAP OPENCV_FISHEYE / OPENCV / PINHOLE camera (the
    original's choices: fisheye ``balance=0`` with the principal point at the image centre, pinhole
    ``getOptimalNewCameraMatrix(alpha=1)``; masked-out border = 255)."""
    import cv2

    model, width, height = camera[0], int(camera[1]), int(camera[2])
    fx, fy, cx, cy = camera[3:7]
    dist = np.array(camera[7:], dtype=np.float64)
    K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])  # COLMAP -> OpenCV
    size = (width, height)
    if model == "OPENCV_FISHEYE":
        if dist.shape != (4,):
            raise ValueError(f"OPENCV_FISHEYE needs 4 distortion parameters, got {len(dist)}")
        new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(K, dist, size, np.eye(3), balance=0.0)
        new_K[0, 2], new_K[1, 2] = width / 2.0, height / 2.0
        maps = cv2.fisheye.initUndistortRectifyMap(K, dist, np.eye(3), new_K, size, cv2.CV_32FC1)
    elif model in ("OPENCV", "PINHOLE"):
        dist = dist if len(dist) else np.zeros(4)
        new_K = cv2.getOptimalNewCameraMatrix(K, dist, size, 1, size, True)[0]
        maps = cv2.initUndistortRectifyMap(K, dist, np.eye(3), new_K, size, cv2.CV_32FC1)
    else:
        raise ValueError(f"unsupported camera model {model!r}")
    rgb = cv2.remap(rgb, *maps, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.remap(mask, *maps, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    return new_K, rgb, mask


# ----------------------------------------------------------------------------------------------
# depth from the mesh
# ----------------------------------------------------------------------------------------------
def _clip_near(tri: np.ndarray, znear: float) -> np.ndarray:
    """Camera-frame triangles (T, 3, 3) clipped to ``z >= znear`` (a triangle with one vertex behind becomes two)."""
    front = tri[:, :, 2] >= znear
    n_front = front.sum(axis=1)
    out = [tri[n_front == 3]]
    for n, pick in ((2, np.argmin), (1, np.argmax)):  # roll the odd vertex (behind / in front) to position 0
        part = tri[n_front == n]
        if not len(part):
            continue
        first = pick(front[n_front == n], axis=1)
        order = (first[:, None] + np.arange(3)) % 3
        a, b, c = (np.take_along_axis(part, order[:, k, None, None], axis=1)[:, 0] for k in range(3))

        def cut(p, q):
            t = (znear - p[:, 2]) / (q[:, 2] - p[:, 2])
            return p + (q - p) * t[:, None]

        ab, ac = cut(a, b), cut(a, c)
        if n == 2:  # a behind: the quad ab, b, c, ac
            out += [np.stack([ab, b, c], 1), np.stack([ab, c, ac], 1)]
        else:  # only a in front
            out.append(np.stack([a, ab, ac], 1))
    return np.concatenate(out)


def rasterize_depth(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, cam2world: np.ndarray, width: int,
                    height: int, znear: float = ZNEAR, zfar: float = ZFAR, chunk: int = 1 << 22) -> np.ndarray:
    """Z-buffer depth (H, W) float32 of a triangle mesh seen by an OpenCV camera, sampled at pixel centres
    (0 where no triangle; triangles clipped at the near plane, both faces drawn).

    Args:
        vertices: (V, 3) world points; faces: (F, 3) vertex indices.
        K: (3, 3) OpenCV intrinsics; cam2world: (4, 4).
        chunk: most pixel candidates handled at once (memory bound).
    """
    world2cam = np.linalg.inv(cam2world)
    tri_cam = _clip_near((vertices @ world2cam[:3, :3].T + world2cam[:3, 3])[faces], znear)
    tri_z = tri_cam[:, :, 2]
    tri = tri_cam[:, :, :2] / tri_z[:, :, None] * np.diag(K)[:2] + K[:2, 2]  # (T, 3, 2) pixels
    lo = np.clip(np.ceil(tri.min(axis=1)), 0, [width, height]).astype(np.int64)
    hi = np.clip(np.floor(tri.max(axis=1)), -1, [width - 1, height - 1]).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    counts = span[:, 0] * span[:, 1]
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 1, 1] - tri[:, 0, 1]) * (tri[:, 2, 0] - tri[:, 0, 0]))
    todo = np.flatnonzero((counts > 0) & (np.abs(area) > 1e-12))
    zbuf = np.full(width * height, np.inf)
    cumulative = np.cumsum(counts[todo])
    cuts = np.searchsorted(cumulative, np.arange(chunk, cumulative[-1] if len(todo) else 0, chunk), side="right")
    for part in np.split(todo, np.unique(cuts)):
        if not len(part):
            continue
        t = np.repeat(part, counts[part])
        local = np.arange(len(t)) - np.repeat(np.cumsum(counts[part]) - counts[part], counts[part])
        px = lo[t, 0] + local % span[t, 0]
        py = lo[t, 1] + local // span[t, 0]
        a, b, c = tri[t, 0], tri[t, 1], tri[t, 2]
        w0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) / area[t]
        w1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) / area[t]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        depth = 1.0 / (w0 / tri_z[t, 0] + w1 / tri_z[t, 1] + w2 / tri_z[t, 2])
        ok = inside & (depth < zfar)
        np.minimum.at(zbuf, py[ok] * width + px[ok], depth[ok])
    zbuf[~np.isfinite(zbuf)] = 0.0
    return zbuf.reshape(height, width).astype(np.float32)


class MeshDepthRenderer:
    """Depth of a scene mesh for OpenCV cameras: pyrender when installed (the original's renderer), else
    :func:`rasterize_depth`."""

    def __init__(self, ply_path: str):
        import trimesh

        if not osp.isfile(ply_path):
            raise FileNotFoundError(f"missing mesh {ply_path!r}")
        mesh = trimesh.load(ply_path, process=False, force="mesh")
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        if not len(self.faces):
            raise ValueError(f"{ply_path}: the mesh has no faces")
        self._pyrender = None
        try:
            import pyrender
        except ImportError:
            logger.debug("pyrender not installed: rendering depth with the numpy rasterizer")
        else:
            self._pyrender = (pyrender, pyrender.OffscreenRenderer(1, 1), pyrender.Scene())
            self._pyrender[2].add(pyrender.Mesh.from_trimesh(mesh, smooth=False))

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W) float32 depth in metres (0 = nothing), pixel centres at integer coordinates."""
        if self._pyrender is None:
            return rasterize_depth(self.vertices, self.faces, K, cam2world, width, height)
        pyrender, renderer, scene = self._pyrender
        renderer.viewport_width, renderer.viewport_height = width, height
        # OpenGL puts pixel centres at +0.5: pyrender takes the principal point in COLMAP's convention
        camera = pyrender.camera.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, znear=ZNEAR,
                                                  zfar=ZFAR)
        node = scene.add(camera, pose=cam2world @ OPENGL_TO_OPENCV)
        try:
            _, depth = renderer.render(scene, flags=pyrender.RenderFlags.SKIP_CULL_FACES)
        finally:
            scene.remove_node(node)
        return depth.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------------------------
def convert_image(info: ColmapImage, rgb_dir: str, mask_dir: str, out_dir: str, renderer: MeshDepthRenderer,
                  target_resolution: int) -> np.ndarray:
    """Undistort, rescale, render and write one image; returns its intrinsics (COLMAP convention)."""
    import cv2

    from dust3r.datasets.utils.cropping import rescale_image_depthmap
    from dust3r.utils.image import imread_cv2

    rgb = imread_cv2(osp.join(rgb_dir, info.name))
    mask = imread_cv2(osp.join(mask_dir, info.name[:-3] + "png"), cv2.IMREAD_UNCHANGED)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if mask.shape != rgb.shape[:2] or rgb.shape[:2] != (int(info.camera[2]), int(info.camera[1])):
        raise ValueError(f"{info.name}: image {rgb.shape[:2]}, mask {mask.shape} and camera "
                         f"{info.camera[1:3]} sizes differ")
    K, rgb, mask = undistort(info.camera, rgb, mask)
    image, mask, K = rescale_image_depthmap(rgb, mask, K, (target_resolution, target_resolution * 3.0 / 4))
    W, H = image.size
    depth_mm = np.rint(renderer.render(K, info.cam2world, W, H) * 1000).astype(np.uint16)
    depth_mm[mask < 255] = 0
    stem = info.name[:-len(".jpg")]
    image.save(osp.join(out_dir, "images", stem + ".jpg"))
    cv2.imwrite(osp.join(out_dir, "depth", stem + ".png"), depth_mm)
    K_colmap = K.copy()
    K_colmap[:2, 2] += 0.5  # stored in COLMAP's convention, as the original
    return K_colmap


def convert_scene(root: str, pairs_dir: str, output_dir: str, scene: str, target_resolution: int
                  ) -> Tuple[SceneFrames, List[Tuple[str, str]]]:
    """Convert one scene; returns its frames and the images that were skipped."""
    data_dir = osp.join(root, "data", scene)
    with np.load(osp.join(pairs_dir, scene, "selected_pairs.npz")) as selected:
        selection = [str(s) for s in selected["selection"]]
        pairs = np.asarray(selected["pairs"])
    cams = {"dslr": (load_colmap_images(osp.join(data_dir, "dslr", "colmap"), "dslr"),
                     osp.join(data_dir, "dslr", "resized_images"), osp.join(data_dir, "dslr", "resized_anon_masks")),
            "iphone": (load_colmap_images(osp.join(data_dir, "iphone", "colmap"), "iphone"),
                       osp.join(data_dir, "iphone", "rgb"), osp.join(data_dir, "iphone", "rgb_masks"))}
    renderer = MeshDepthRenderer(osp.join(data_dir, "scans", "mesh_aligned_0.05.ply"))
    out_dir = osp.join(output_dir, scene)
    for sub in ("images", "depth"):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    done: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def convert(k: int) -> None:
        name = selection[k]
        cam_type, ext = ("iphone", ".jpg") if "frame_" in name else ("dslr", ".JPG")
        if cam_type == "dslr" and "DSC" not in name:
            raise ValueError(f"invalid image name {name!r}")
        images, rgb_dir, mask_dir = cams[cam_type]
        if name + ext not in images:
            raise KeyError(f"{name + ext} is not in the {cam_type} COLMAP model")
        info = images[name + ext]
        done[k] = (convert_image(info, rgb_dir, mask_dir, out_dir, renderer, target_resolution), info.cam2world)

    _, failures = process_samples(range(len(selection)), convert, desc=scene,
                                  name=lambda k: f"{scene}/{selection[k]}")
    return write_scene_metadata(out_dir, scene, selection, done, pairs), failures


def main(scannetpp_dir: str, precomputed_pairs: str, output_dir: str = "data/scannetpp_processed",
         target_resolution: int = 920, pyopengl_platform: Optional[str] = None) -> int:
    """Preprocess ScanNet++ (see the module docstring). Returns the exit status (0: images were written)."""
    if pyopengl_platform:
        os.environ["PYOPENGL_PLATFORM"] = pyopengl_platform
    os.makedirs(output_dir, exist_ok=True)
    with open(osp.join(precomputed_pairs, "scene_list.json")) as f:
        scene_list = json.load(f)
    converted: Dict[str, SceneFrames] = {}
    failures: List[Tuple[str, str]] = []

    def do_scene(scene: str) -> None:
        frames, image_failures = convert_scene(scannetpp_dir, precomputed_pairs, output_dir, scene, target_resolution)
        failures.extend(image_failures)
        converted[scene] = frames

    _, scene_failures = process_samples(scene_list, do_scene, desc="scannetpp scenes")
    failures.extend(scene_failures)
    if converted:
        write_all_metadata(osp.join(output_dir, "all_metadata.npz"), converted)
    return report(sum(len(f.images) for f in converted.values()), failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ScanNet++ -> the processed layout of dust3r.datasets.ScanNetpp")
    parser.add_argument("--scannetpp_dir", required=True)
    parser.add_argument("--precomputed_pairs", required=True)
    parser.add_argument("--output_dir", default="data/scannetpp_processed")
    parser.add_argument("--target_resolution", default=920, type=int, help="images resolution")
    parser.add_argument("--pyopengl-platform", type=str, default="", help="PyOpenGL env variable")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = get_parser().parse_args()
    raise SystemExit(main(args.scannetpp_dir, args.precomputed_pairs, args.output_dir, args.target_resolution,
                          args.pyopengl_platform.strip() or None))
