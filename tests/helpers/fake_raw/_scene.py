"""The 3D scene behind every fake raw dataset: a textured room with two boxes, rendered exactly.

Fake raw writers place OpenCV cameras in it (:func:`camera_path`), render them (:func:`render`) and store the result
in their dataset's own raw conventions; they return the ground truth (:class:`TruthFrame`) the tests compare the
processed data and the loaded views with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from dust3r.synthetic import SceneBox, look_at
from dust3r.synthetic.render import cast_rays, texture

#: the room (8 x 8 x 3 m, floor z = 0) and two boxes near the origin
OBJECTS = [
    SceneBox(center=np.array([0.0, 0.0, 1.5]), half_size=np.array([4.0, 4.0, 1.5]), inside=True, name="room"),
    SceneBox(center=np.array([0.3, -0.4, 0.4]), half_size=np.array([0.35, 0.3, 0.4]), yaw=0.4, name="box0"),
    SceneBox(center=np.array([-0.4, 0.6, 0.6]), half_size=np.array([0.25, 0.4, 0.6]), yaw=1.1, name="box1"),
]
PALETTE = np.array([[0.08, 0.35], [0.55, 0.8], [0.85, 0.7]])


@dataclass
class TruthFrame:
    """Ground truth of one fake frame, in the processed conventions: the processed ``scene`` / ``name`` it must
    become, ``K`` (3, 3) OpenCV pixels, ``cam2world`` (4, 4) OpenCV axes (the fake world frame), ``depth`` (H, W)
    z-depth of the scene (sky pixels included), ``sky`` (H, W) bool (the ceiling plays the sky), ``rgb`` (H, W, 3)
    uint8 the pinhole rendering."""
    scene: str
    name: str
    K: np.ndarray
    cam2world: np.ndarray
    depth: np.ndarray
    sky: np.ndarray
    rgb: np.ndarray


def camera_path(n: int, start: Tuple[float, float, float] = (-2.6, -0.3, 1.3), step=(0.0, 0.12, 0.02),
                target=(0.0, 0.0, 0.6)) -> List[np.ndarray]:
    """``n`` OpenCV cam2world poses moving by ``step`` metres per frame, all looking at ``target``."""
    return [look_at(np.add(start, np.multiply(k, step)), target) for k in range(n)]


def stereo_partner(left: np.ndarray, camera: int, baseline: float) -> np.ndarray:
    """cam2world of stereo camera ``camera`` (0 = left itself, 1 = ``baseline`` metres along the left camera's x)."""
    pose = np.array(left, dtype=np.float64)
    pose[:3, 3] += camera * baseline * pose[:3, 0]
    return pose


def render(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8, z-depth (H, W) float64 and sky mask (H, W) bool (the ceiling) of a camera."""
    depth, pts, surface, normals = cast_rays(np.asarray(K, np.float64), cam2world, width, height, OBJECTS)
    rgb = texture(pts.reshape(-1, 3), normals.reshape(-1, 3), surface.reshape(-1), OBJECTS, PALETTE, salt=7)
    rgb = np.clip(np.round(rgb.reshape(height, width, 3) * 255), 0, 255).astype(np.uint8)
    sky = (surface == 0) & (normals[..., 2] < -0.5)
    return rgb, depth, sky


def truth(scene: str, name: str, K, cam2world, width: int, height: int) -> Tuple[np.ndarray, TruthFrame]:
    """Render a camera: its RGB and its :class:`TruthFrame`."""
    rgb, depth, sky = render(K, cam2world, width, height)
    return rgb, TruthFrame(scene, name, np.asarray(K, np.float64), np.asarray(cam2world, np.float64), depth, sky, rgb)


def write_png(path: str, rgb: np.ndarray) -> None:
    """Save an RGB uint8 image (PNG or JPEG by extension)."""
    import cv2
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def corrupt(path: str) -> None:
    """Overwrite a file with bytes no decoder accepts (the broken sample of a fake dataset)."""
    with open(path, "wb") as f:
        f.write(b"\x00not an image\x00")
