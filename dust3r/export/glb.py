"""GLB (binary glTF) scene: coloured point cloud or per-image grid mesh, plus one frustum per camera.

Geometry names in the file: ``points`` (point cloud) or ``mesh``; ``camera_{i:03d}`` (frustum wireframe made
of thin double-sided ribbons, in the camera colour) and ``camera_{i:03d}_image`` (the image shown on the
frustum's far plane, unless ``transparent_cams``).

Viewer orientation (as the original demos): with ``align_to_first_camera=True`` every vertex is mapped by
``diag(-1, -1, 1) @ world2cam[0]``, i.e. into the first camera's frame rotated by 180 degrees about its optical
axis: x left, y UP, z forward (glTF viewers are y-up, so the scene appears upright, seen along +z from the first
camera's side). With False the file is in the reconstruction's world frame.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._common import atomic_file, check_out_path
from .scene_data import SceneData, require_scene_data

logger = logging.getLogger(__name__)

#: default camera colours (RGB), cycled over the cameras
CAM_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75), (0, 130, 200), (60, 180, 75), (145, 30, 180), (245, 130, 48), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (128, 128, 0), (0, 0, 128), (128, 128, 128))

#: camera frame (OpenCV) -> viewer frame used by the original demo: 180 degrees about the optical axis
_VIEWER_FROM_CAM0 = np.diag([-1.0, -1.0, 1.0, 1.0])


def viewer_transform(data: SceneData, align_to_first_camera: bool = True) -> np.ndarray:
    """(4, 4) transform applied to world coordinates before writing the GLB (see module docstring)."""
    if not align_to_first_camera:
        return np.eye(4)
    return _VIEWER_FROM_CAM0 @ np.linalg.inv(data.cam2world[0])


def _apply(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ T[:3, :3].T + T[:3, 3]


def grid_mesh(pts3d: np.ndarray, valid: np.ndarray, colors: np.ndarray,
              double_sided: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate a pointmap on its pixel grid.

    Each 2x2 block of pixels ``a b / c d`` gives triangles ``(a, c, b)`` and ``(b, c, d)`` (counter-clockwise,
    i.e. facing the camera) when their three pixels are valid; ``double_sided`` adds the reversed triangles
    (viewers cull back faces).

    Args:
        pts3d: (H, W, 3) points.
        valid: (H, W) bool.
        colors: (H, W, 3) uint8.

    Returns:
        vertices (V, 3) float32 (only valid pixels, row-major), faces (F, 3) int64, vertex colours (V, 3) uint8;
        ``F = 2 * n_valid_triangles`` (double-sided) or ``n_valid_triangles``.
    """
    H, W = valid.shape
    index = np.full((H, W), -1, dtype=np.int64)
    index[valid] = np.arange(int(valid.sum()))
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    faces = tris[(tris >= 0).all(axis=1)]
    if double_sided:
        faces = np.concatenate([faces, faces[:, ::-1]])
    return pts3d[valid].astype(np.float32), faces, colors[valid]


def _frustum_corners(K: np.ndarray, width: int, height: int, cam_size: float) -> Tuple[np.ndarray, float]:
    """Image-corner rays at the depth where the image plane is ``cam_size`` wide: (4, 3) camera coords
    (top-left, top-right, bottom-right, bottom-left) and that depth."""
    depth = cam_size * K[0, 0] / width
    uv = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones(4)], 1) * depth, depth


def _ribbons(starts: np.ndarray, ends: np.ndarray, thickness: float) -> Tuple[np.ndarray, np.ndarray]:
    """Thin double-sided cross-shaped ribbons along segments (E, 3) -> vertices (8E, 3), faces (16E, 3)."""
    d = ends - starts
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
    helper = np.where(np.abs(d[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    n1 = np.cross(d, helper)
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
    n2 = np.cross(d, n1)
    verts, faces = [], []
    for k, (p, q) in enumerate(zip(starts, ends)):
        for j, n in enumerate((n1[k], n2[k])):
            base = 8 * k + 4 * j
            h = 0.5 * thickness * n
            verts.extend([p - h, q - h, q + h, p + h])
            quad = np.array([[0, 1, 2], [0, 2, 3]]) + base
            faces.extend([quad, quad[:, ::-1]])
    return np.asarray(verts), np.concatenate(faces)


def camera_frustum(cam2world: np.ndarray, K: np.ndarray, width: int, height: int, cam_size: float
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wireframe frustum of one camera in world coordinates.

    Returns:
        ribbon vertices (V, 3), ribbon faces (F, 3), and the 4 far-plane corners (4, 3) (top-left, top-right,
        bottom-right, bottom-left of the image) for texturing.
    """
    corners_cam, _ = _frustum_corners(K, width, height, cam_size)
    corners = _apply(cam2world, corners_cam)
    centre = cam2world[:3, 3]
    starts = np.concatenate([np.repeat(centre[None], 4, 0), corners])
    ends = np.concatenate([corners, np.roll(corners, -1, axis=0)])
    verts, faces = _ribbons(starts, ends, thickness=0.03 * cam_size)
    return verts, faces, corners


def _rgba(color: Sequence[float]) -> np.ndarray:
    c = np.asarray(color, dtype=np.float64).reshape(-1)
    if c.shape not in ((3,), (4,)) or not np.all(np.isfinite(c)):
        raise ValueError(f"cam_color entries must be RGB(A) triplets, got {color!r}")
    if c.max() <= 1.0 and np.issubdtype(np.asarray(color).dtype, np.floating):
        c = c * 255
    c = np.clip(np.round(c), 0, 255).astype(np.uint8)
    return np.concatenate([c, [255]]) if len(c) == 3 else c


def build_glb_scene(data: SceneData, as_pointcloud: bool = True, cam_size: float = 0.05,
                    transparent_cams: bool = False,
                    cam_color: Union[None, Sequence[float], List[Sequence[float]]] = None,
                    align_to_first_camera: bool = True, double_sided: bool = True, show_cameras: bool = True):
    """The ``trimesh.Scene`` written by :func:`export_glb` (see there for the arguments)."""
    try:
        import trimesh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("GLB export needs trimesh: pip install trimesh") from e
    import PIL.Image

    if not (np.isfinite(cam_size) and cam_size > 0):
        raise ValueError(f"cam_size must be a positive number, got {cam_size!r}")
    T = viewer_transform(data, align_to_first_camera)
    scene = trimesh.Scene()
    if as_pointcloud:
        pts, cols = data.points_and_colors()
        rgba = np.concatenate([cols, np.full((len(cols), 1), 255, np.uint8)], axis=1)
        if len(pts):
            scene.add_geometry(trimesh.PointCloud(_apply(T, pts.astype(np.float64)), colors=rgba),
                               geom_name="points")
    else:
        verts, faces, cols = [], [], []
        offset = 0
        for i in range(data.n):
            v, f, c = grid_mesh(data.pts3d[i], data.masks[i], data.image_u8(i), double_sided)
            verts.append(v)
            faces.append(f + offset)
            cols.append(c)
            offset += len(v)
        v = np.concatenate(verts).astype(np.float64)
        if len(v):
            c = np.concatenate(cols)
            rgba = np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)
            mesh = trimesh.Trimesh(vertices=_apply(T, v), faces=np.concatenate(faces), vertex_colors=rgba,
                                   process=False)
            scene.add_geometry(mesh, geom_name="mesh")

    if show_cameras:
        per_cam = isinstance(cam_color, list)
        if per_cam and len(cam_color) != data.n:
            raise ValueError(f"cam_color has {len(cam_color)} colours for {data.n} cameras")
        for i in range(data.n):
            if per_cam:
                color = _rgba(cam_color[i])
            elif cam_color is not None:
                color = _rgba(cam_color)
            else:
                color = _rgba(CAM_COLORS[i % len(CAM_COLORS)])
            w, h = data.network_size(i)
            verts, faces, corners = camera_frustum(data.cam2world[i], data.K[i], w, h, cam_size)
            frustum = trimesh.Trimesh(vertices=_apply(T, verts), faces=faces, process=False)
            frustum.visual.face_colors = np.tile(color, (len(faces), 1))
            scene.add_geometry(frustum, geom_name=f"camera_{i:03d}")
            if not transparent_cams:
                # uv origin at the bottom-left of the texture (trimesh / OBJ convention)
                uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
                quad = trimesh.Trimesh(vertices=_apply(T, corners), faces=[[0, 3, 2], [0, 2, 1], [0, 1, 2],
                                                                           [0, 2, 3]], process=False)
                quad.visual = trimesh.visual.TextureVisuals(uv=uv, image=PIL.Image.fromarray(data.image_u8(i)))
                scene.add_geometry(quad, geom_name=f"camera_{i:03d}_image")
    return scene


def export_glb(data: SceneData, path: Any, as_pointcloud: bool = True, cam_size: float = 0.05,
               transparent_cams: bool = False, cam_color: Optional[Any] = None, align_to_first_camera: bool = True,
               double_sided: bool = True, show_cameras: bool = True) -> str:
    """Write the scene as a GLB file (needs ``trimesh``).

    Args:
        data: the scene snapshot; points / mesh vertices where ``data.masks`` is True, coloured by their pixel.
        path: output ``.glb`` path (parent folders created; written atomically).
        as_pointcloud: point cloud (True) or one grid mesh per image (False; faces between valid neighbours).
        cam_size: width of each frustum's far plane in scene units.
        transparent_cams: draw only the frustum wireframes, without the images.
        cam_color: one RGB colour for all cameras, a list of N colours, or None (palette); integers in
            [0, 255] or floats in [0, 1].
        align_to_first_camera: apply the original demo's orientation fix (see module docstring).
        double_sided: mesh mode: also write back faces.
        show_cameras: draw the cameras at all.

    Returns:
        the absolute path written.
    """
    data = require_scene_data(data, "export_glb")
    path = check_out_path(path)
    scene = build_glb_scene(data, as_pointcloud, cam_size, transparent_cams, cam_color, align_to_first_camera,
                            double_sided, show_cameras)
    blob = scene.export(file_type="glb")
    with atomic_file(path) as f:
        f.write(blob)
    return path
