"""Visualisation helpers of DUSt3R that need no GUI: sky segmentation and small mesh utilities.

``segment_sky`` is the heuristic behind the demo's "Mask sky" option (``scene.mask_sky()``): a pixel is a
sky candidate when it looks like a clear sky (blue >= green >= red, bright) or like a bright overcast sky
(low saturation, high value). Small blobs are removed by a morphological opening and only the dominant
8-connected regions are kept (those at least half as large as the largest one).

OpenCV is used, when installed, for the opening and the connected components; otherwise numpy / scipy give
the same mask (tests check both paths agree).

Mesh helpers (``pts3d_to_trimesh``, ``cat_meshes``) return plain dicts of arrays that ``trimesh.Trimesh(**mesh)``
accepts. The scene helpers of the original (``add_scene_cam``, ``SceneViz``, ``show_raw_pointcloud``) build
``trimesh.Scene`` objects; trimesh is imported when they are called, never at import time, and only ``show``
opens a window.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .utils.image import rgb  # noqa: F401  (the original exposed rgb here too)

logger = logging.getLogger(__name__)

__all__ = ["segment_sky", "sky_colour_mask", "binary_opening_square", "keep_dominant_components",
           "pts3d_to_trimesh", "cat_meshes", "cat_3d", "uint8", "auto_cam_size", "OPENGL", "CAM_COLORS",
           "add_scene_cam", "SceneViz", "show_raw_pointcloud", "rgb"]

#: OpenCV camera axes (x right, y down, z forward) -> OpenGL axes (x right, y up, z backward)
OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])

#: default camera colours (RGB uint8), cycled over the cameras
CAM_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (255, 204, 0), (0, 204, 204),
    (128, 255, 255), (255, 128, 255), (255, 255, 128), (0, 0, 0), (128, 128, 128))

# Sky colour rule. Clear sky: blue >= green >= red with value (max channel) >= _CLEAR_SKY_MIN_VALUE.
# Overcast sky: (max saturation, min value) pairs, both on the 0..255 scale of 8-bit HSV, where saturation is
# round(255 * (max - min) / max); a pixel qualifies when saturation < s_max and value > v_min for any pair.
_CLEAR_SKY_MIN_VALUE = 100
_OVERCAST_RULES: Tuple[Tuple[int, int], ...] = ((10, 150), (30, 180), (50, 220))


# ================================================================================================ input checks
def _to_rgb_uint8(image: Any) -> np.ndarray:
    """Any supported image -> (H, W, 3) uint8 RGB array.

    Accepts a ``PIL.Image`` (converted to RGB), or an (H, W, 3) numpy array / torch tensor that is either
    uint8 / integer in [0, 255] or floating point in [0, 1] (clipped, then scaled by 255 and truncated).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is a hard dependency of the project
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"segment_sky: image must be a PIL image, numpy array or torch tensor, "
                         f"got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"segment_sky: image must have shape (H, W, 3) (RGB, channels last), "
                         f"got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"segment_sky: image is empty, shape {tuple(image.shape)}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("segment_sky: float image contains NaN or inf values")
        return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 255:
            raise ValueError(f"segment_sky: integer image must be in [0, 255], got values in "
                             f"[{image.min()}, {image.max()}]")
        return image.astype(np.uint8)
    raise ValueError(f"segment_sky: unsupported image dtype {image.dtype} (expected uint8 or float in [0, 1])")


# ================================================================================================ colour rule
def sky_colour_mask(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel sky colour test.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
    Returns:
        (H, W) bool, True where the colour is a clear-sky blue or a bright, weakly saturated grey/white.
    """
    channels = rgb.astype(np.int32)
    red, green, blue = channels[..., 0], channels[..., 1], channels[..., 2]
    value = channels.max(axis=-1)
    spread = value - channels.min(axis=-1)

    clear = (blue >= green) & (green >= red) & (blue >= _CLEAR_SKY_MIN_VALUE)

    # saturation (rounded to 8 bits) < s_max  <=>  255 * spread / value < s_max - 0.5  (integer arithmetic)
    overcast = np.zeros_like(clear)
    for s_max, v_min in _OVERCAST_RULES:
        overcast |= (510 * spread < (2 * s_max - 1) * value) & (value > v_min)
    return clear | overcast


# ================================================================================================ morphology
def _cv2_or_none() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _square_filter_numpy(mask: np.ndarray, size: int, reduce: Any) -> np.ndarray:
    """Separable min / max filter over a ``size`` x ``size`` centred window, pixels outside the image ignored."""
    half = size // 2
    out = mask
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (half, size - 1 - half)
        padded = np.pad(out, pad, mode="edge")  # replicating the edge == ignoring outside pixels for min/max
        windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=axis)
        out = reduce(windows, axis=-1)
    return out


def binary_opening_square(mask: np.ndarray, size: int = 5) -> np.ndarray:
    """Morphological opening (erosion then dilation) by a ``size`` x ``size`` square.

    Pixels outside the image do not take part (a region touching the image border is not eaten from it),
    which is OpenCV's default border handling.

    Args:
        mask: (H, W) bool.
        size: side of the square structuring element (>= 1).
    Returns:
        (H, W) bool.
    """
    if size < 1:
        raise ValueError(f"binary_opening_square: size must be >= 1, got {size}")
    mask = np.asarray(mask, dtype=bool)
    if size == 1:
        return mask.copy()
    cv2 = _cv2_or_none()
    if cv2 is not None:
        kernel = np.ones((size, size), np.uint8)
        opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
        return opened.astype(bool)
    eroded = _square_filter_numpy(mask, size, np.min)
    return _square_filter_numpy(eroded, size, np.max)


# ================================================================================================ components
def _label_components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """8-connected components of a (H, W) bool mask.

    Returns:
        labels (H, W) int (0 = background, 1..N = components), areas (N + 1,) int (areas[0] = background).
    """
    cv2 = _cv2_or_none()
    if cv2 is not None:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        return labels, stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    from scipy import ndimage
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def keep_dominant_components(mask: np.ndarray, min_relative_area: float = 0.5) -> np.ndarray:
    """Keep the 8-connected components whose area is more than ``min_relative_area`` x the largest one's.

    Args:
        mask: (H, W) bool.
        min_relative_area: fraction of the largest component's area a component must exceed (the largest is
            always kept).
    Returns:
        (H, W) bool (all False when ``mask`` is empty).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    labels, areas = _label_components(mask)
    areas = areas.copy()
    areas[0] = 0  # background never kept
    keep = areas > min_relative_area * areas.max()
    keep[int(areas.argmax())] = True
    return keep[labels]


# ================================================================================================ sky
def segment_sky(image: Any, opening_size: int = 5, min_relative_area: float = 0.5) -> torch.Tensor:
    """Heuristic sky segmentation of one RGB image.

    Steps: per-pixel colour rule (``sky_colour_mask``), opening by a ``opening_size`` square to remove
    small blobs and thin bridges, then only the dominant connected regions (area > ``min_relative_area``
    x the largest region's) are kept.

    Args:
        image: (H, W, 3) RGB image, channels last: uint8 (or integer in [0, 255]) or float in [0, 1]
            (numpy array or torch tensor), or a ``PIL.Image``.
        opening_size: side of the square structuring element of the opening.
        min_relative_area: area ratio to the largest sky region below which a region is dropped.
    Returns:
        (H, W) bool torch tensor (CPU), True on sky pixels.
    Raises:
        ValueError: unsupported type, shape, dtype or value range.
    """
    rgb = _to_rgb_uint8(image)
    candidates = sky_colour_mask(rgb)
    opened = binary_opening_square(candidates, opening_size)
    sky = keep_dominant_components(opened, min_relative_area)
    return torch.from_numpy(np.ascontiguousarray(sky))


# ================================================================================================ meshes
def cat_3d(vecs: Any) -> np.ndarray:
    """Concatenate one or several (..., 3) arrays / tensors into one (N, 3) numpy array."""
    if isinstance(vecs, (np.ndarray, torch.Tensor)):
        vecs = [vecs]
    arrays = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in vecs]
    return np.concatenate([a.reshape(-1, 3) for a in arrays])


def pts3d_to_trimesh(img: np.ndarray, pts3d: np.ndarray, valid: Optional[np.ndarray] = None
                     ) -> Dict[str, np.ndarray]:
    """Triangle mesh of a pointmap on its pixel grid (every vertex kept, invalid faces dropped).

    Each 2x2 pixel block ``a b / c d`` gives triangles ``(a, b, c)`` coloured like ``a`` and ``(b, c, d)``
    coloured like ``d``, each also added reversed so that no viewer culls it.

    Args:
        img: (H, W, 3) colours (any dtype, copied to ``face_colors``).
        pts3d: (H, W, 3) points.
        valid: optional (H, W) bool; faces with any invalid corner are removed.
    Returns:
        dict(vertices=(H*W, 3), faces=(F, 3) int64, face_colors=(F, 3)).
    """
    img, pts3d = np.asarray(img), np.asarray(pts3d)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"pts3d_to_trimesh: img must be (H, W, 3), got shape {img.shape}")
    if pts3d.shape != img.shape:
        raise ValueError(f"pts3d_to_trimesh: pts3d shape {pts3d.shape} differs from img shape {img.shape}")
    H, W, _ = img.shape
    grid = np.arange(H * W).reshape(H, W)
    a, b = grid[:-1, :-1].ravel(), grid[:-1, 1:].ravel()
    c, d = grid[1:, :-1].ravel(), grid[1:, 1:].ravel()
    first, second = np.stack([a, b, c], 1), np.stack([b, c, d], 1)
    faces = np.concatenate([first, first[:, ::-1], second, second[:, ::-1]])
    col_a, col_d = img[:-1, :-1].reshape(-1, 3), img[1:, 1:].reshape(-1, 3)
    face_colors = np.concatenate([col_a, col_a, col_d, col_d])
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (H, W):
            raise ValueError(f"pts3d_to_trimesh: valid must have shape {(H, W)}, got {valid.shape}")
        keep = valid.ravel()[faces].all(axis=1)
        faces, face_colors = faces[keep], face_colors[keep]
    return dict(vertices=pts3d.reshape(-1, 3), faces=faces, face_colors=face_colors)


def cat_meshes(meshes: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Merge meshes from ``pts3d_to_trimesh`` into one (face indices offset; the inputs are not modified)."""
    if len(meshes) == 0:
        raise ValueError("cat_meshes: need at least one mesh")
    offsets = np.cumsum([0] + [len(m["vertices"]) for m in meshes[:-1]])
    return dict(vertices=np.concatenate([m["vertices"] for m in meshes]),
                faces=np.concatenate([np.asarray(m["faces"]) + off for m, off in zip(meshes, offsets)]),
                face_colors=np.concatenate([m["face_colors"] for m in meshes]))


def uint8(colors: Any) -> np.ndarray:
    """Colours as uint8: floats are taken in [0, 1] and scaled by 255; values must end up in [0, 255]."""
    colors = np.array(colors)  # copy: the caller's array is never scaled in place
    if np.issubdtype(colors.dtype, np.floating):
        colors = colors * 255
    if colors.size and (colors.min() < 0 or colors.max() >= 256):
        raise ValueError(f"uint8: colours out of range [0, 255]: [{colors.min()}, {colors.max()}]")
    return colors.astype(np.uint8)


def auto_cam_size(im_poses: Any) -> float:
    """Camera marker size: 10% of the median distance between camera centres (poses: list of 4x4 cam2world)."""
    from .utils.geometry import get_med_dist_between_poses
    return 0.1 * get_med_dist_between_poses(im_poses)


# ================================================================================================ trimesh scenes
def _trimesh() -> Any:
    try:
        import trimesh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dust3r.viz scenes need trimesh: pip install trimesh") from exc
    return trimesh


def _as_array(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _image_u8(image: Any) -> np.ndarray:
    """(H, W, 3) image, uint8 or float in [0, 1] (clipped) -> uint8."""
    image = np.asarray(_as_array(image))
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"camera image must have shape (H, W, 3), got {image.shape}")
    if np.issubdtype(image.dtype, np.floating):
        image = np.clip(image, 0.0, 1.0)
    return uint8(image)


def add_scene_cam(scene: Any, pose_c2w: Any, edge_color: Any, image: Any = None, focal: Any = None,
                  imsize: Optional[Tuple[int, int]] = None, screen_width: float = 0.03) -> List[str]:
    """Add one camera to a ``trimesh.Scene``: its frustum, and its image on the far plane when given.

    The frustum is the one the GLB export draws (:func:`dust3r.export.glb.camera_frustum`): apex at the camera
    centre, far plane ``screen_width * W / H`` wide and ``screen_width`` high at depth
    ``focal * screen_width / H`` (the proportions of the original's pyramid), principal point at the centre.

    Args:
        scene: the ``trimesh.Scene`` to add to (modified in place).
        pose_c2w: (4, 4) cam2world, OpenCV axes (x right, y down, z forward); array or tensor.
        edge_color: RGB colour of the frustum (uint8 values, or floats in [0, 1]).
        image: optional (H, W, 3) image (uint8, or float in [0, 1]) shown on the far plane; gives W and H.
        focal: focal length in pixels (a scalar, or an array whose first entry is used);
            default ``1.1 * min(H, W)``.
        imsize: ``(W, H)`` when no image is given; without both, ``W = H = focal / 1.1`` (or 1).
        screen_width: height of the far plane in scene units.

    Returns:
        the names of the geometries added (frustum first, then the image quad if any).
    """
    from .export.glb import camera_frustum

    trimesh = _trimesh()
    pose = np.asarray(_as_array(pose_c2w), dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"add_scene_cam: pose_c2w must be a finite (4, 4) matrix, got shape {pose.shape}")
    if focal is not None:
        focal = float(np.asarray(_as_array(focal), dtype=np.float64).reshape(-1)[0])
    if image is not None:
        image = _image_u8(image)
        H, W = image.shape[:2]
    elif imsize is not None:
        W, H = imsize
    else:
        H = W = focal / 1.1 if focal is not None else 1.0
    if focal is None:
        focal = 1.1 * min(H, W)
    if not (focal > 0 and W > 0 and H > 0 and screen_width > 0):
        raise ValueError(f"add_scene_cam: focal, image size and screen_width must be positive, got focal={focal}, "
                         f"(W, H)=({W}, {H}), screen_width={screen_width}")
    K = np.array([[focal, 0.0, W / 2 - 0.5], [0.0, focal, H / 2 - 0.5], [0.0, 0.0, 1.0]])
    verts, faces, corners = camera_frustum(pose, K, W, H, screen_width * W / H)
    frustum = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
    color = uint8(np.asarray(edge_color).reshape(-1)[:3])
    frustum.visual.face_colors = np.tile(np.append(color, 255).astype(np.uint8), (len(faces), 1))
    names = [scene.add_geometry(frustum)]
    if image is not None:
        # corners: top-left, top-right, bottom-right, bottom-left; texture v axis points up
        quad = trimesh.Trimesh(vertices=corners, faces=[[0, 3, 2], [0, 2, 1], [0, 1, 2], [0, 2, 3]], process=False)
        uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
        from PIL import Image
        quad.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
        names.append(scene.add_geometry(quad))
    return names


def _per_image(x: Any, image_ndim: int = 3) -> List[np.ndarray]:
    """Per-image arrays from a list / tuple, or from an array / tensor holding one image (``image_ndim`` axes)
    or a stack of them."""
    if isinstance(x, (list, tuple)):
        return [np.asarray(_as_array(v)) for v in x]
    arr = np.asarray(_as_array(x))
    return [arr] if arr.ndim <= image_ndim else list(arr)


def _point_colors(colors: Any, n_points: int) -> np.ndarray:
    """(N, 3) uint8 from one RGB colour or per-point colours (uint8 or floats in [0, 1])."""
    single = not isinstance(colors, (list, tuple)) or (len(colors) == 3 and all(np.ndim(c) == 0 for c in colors))
    if single and np.shape(_as_array(colors)) == (3,):
        return np.broadcast_to(uint8(np.asarray(_as_array(colors))), (n_points, 3))
    arr = cat_3d(colors)
    if len(arr) != n_points:
        raise ValueError(f"got {len(arr)} colours for {n_points} points")
    return uint8(np.clip(arr, 0.0, 1.0) if np.issubdtype(arr.dtype, np.floating) else arr)


def show_raw_pointcloud(pts3d: Any, colors: Any, point_size: int = 2) -> Any:
    """Show points with their colours in trimesh's viewer (needs a display); returns the scene shown.

    Args:
        pts3d: (..., 3) array / tensor, or a list of them (flattened and concatenated).
        colors: per-point colours in the same layout (uint8, or floats in [0, 1]), or one RGB colour.
        point_size: viewer point size in pixels.
    """
    trimesh = _trimesh()
    pts = cat_3d(pts3d)
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(pts, colors=_point_colors(colors, len(pts))))
    scene.show(line_settings={"point_size": point_size})
    return scene


class SceneViz:
    """A ``trimesh.Scene`` (``self.scene``) assembled with chained calls, then shown or exported.

    ``SceneViz().add_pointcloud(pts3d, imgs, masks).add_cameras(poses, focals, images=imgs).show()``
    """

    def __init__(self) -> None:
        self.scene = _trimesh().Scene()

    def add_pointcloud(self, pts3d: Any, color: Any = (0, 0, 0), mask: Any = None) -> "SceneViz":
        """Add the points of one or several pointmaps.

        Args:
            pts3d: (H, W, 3) or (N, H, W, 3) (array / tensor) or a list of (H_i, W_i, 3).
            color: one RGB colour, or per-pixel colours in the layout of ``pts3d`` (uint8 or floats in [0, 1]).
            mask: optional (H, W) / (N, H, W) / list of bool masks selecting the points (and their colours).
        """
        trimesh = _trimesh()
        pts = _per_image(pts3d)
        masks = [np.ones(p.shape[:-1], dtype=bool) for p in pts] if mask is None else _per_image(mask, 2)
        if len(masks) != len(pts):
            raise ValueError(f"add_pointcloud: {len(masks)} masks for {len(pts)} pointmaps")
        points = np.concatenate([p[m.astype(bool)].reshape(-1, 3) for p, m in zip(pts, masks)])
        if np.asarray(_as_array(color)).shape == (3,):
            cols = _point_colors(color, len(points))
        else:
            cols = _point_colors([c[m.astype(bool)] for c, m in zip(_per_image(color), masks)], len(points))
        self.scene.add_geometry(trimesh.PointCloud(points, colors=cols))
        return self

    def add_camera(self, pose_c2w: Any, focal: Any = None, color: Any = (0, 0, 0), image: Any = None,
                   imsize: Optional[Tuple[int, int]] = None, cam_size: float = 0.03) -> "SceneViz":
        """Add one camera (see :func:`add_scene_cam`; ``cam_size`` is its ``screen_width``)."""
        add_scene_cam(self.scene, pose_c2w, color, image, focal, imsize=imsize, screen_width=cam_size)
        return self

    def add_cameras(self, poses: Any, focals: Any = None, images: Any = None, imsizes: Any = None,
                    colors: Any = None, **kw: Any) -> "SceneViz":
        """Add several cameras; ``focals``, ``images``, ``imsizes``, ``colors`` are per-camera sequences or None
        (default colours: :data:`CAM_COLORS`, cycled)."""
        for i, pose in enumerate(poses):
            color = CAM_COLORS[i % len(CAM_COLORS)] if colors is None else colors[i]
            self.add_camera(pose, None if focals is None else focals[i], color=color,
                            image=None if images is None else images[i],
                            imsize=None if imsizes is None else imsizes[i], **kw)
        return self

    def show(self, point_size: int = 2) -> None:
        """Open trimesh's viewer (needs a display)."""
        self.scene.show(line_settings={"point_size": point_size})
