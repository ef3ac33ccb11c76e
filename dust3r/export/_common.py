"""Shared pieces of the exporters: the :class:`SceneData` snapshot, input checks, atomic file writing.

Frames and pixels (repository conventions):

* ``cam2world``: 4x4, OpenCV camera axes (x right, y down, z forward), world frame of the reconstruction;
* pixels ``(x, y)`` with integer coordinates at pixel centres; ``K`` maps camera coordinates to those
  pixels at the *network* resolution unless a name says "original";
* "original" quantities refer to the image file as decoded by :func:`dust3r.utils.image.load_images`
  (after EXIF transposition), reached through the resize/crop record kept in ``views_meta``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

#: keys copied from a view dict / views_meta entry (everything else, e.g. the image tensor, is dropped)
META_KEYS: Tuple[str, ...] = ("orig_shape", "resized_shape", "crop_offset", "resize_scale", "filepath",
                              "true_shape", "instance", "idx")
#: keys needed to map network pixels to original pixels
GEOMETRY_KEYS: Tuple[str, ...] = ("orig_shape", "resized_shape", "crop_offset")

_POSE_TOL = 1e-3


# ----------------------------------------------------------------------------------------------
# small conversions and checks
# ----------------------------------------------------------------------------------------------
def as_numpy(x: Any) -> Any:
    """torch tensor -> numpy (detached, on CPU); other values unchanged."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x


def _as_list(value: Any, name: str) -> List[Any]:
    value = as_numpy(value)
    if isinstance(value, np.ndarray):
        return [value[i] for i in range(value.shape[0])] if value.ndim >= 1 else [value]
    if isinstance(value, (list, tuple)):
        return [as_numpy(v) for v in value]
    raise ValueError(f"{name} must be a list of arrays or a stacked array, got {type(value).__name__}")


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _finite_matrices(value: Any, name: str, size: int, n: Optional[int], noun: str) -> np.ndarray:
    """``value`` as a finite float64 (N, size, size) array, N == n when given (errors name ``name``)."""
    arr = np.asarray(as_numpy(value), dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (size, size):
        raise ValueError(f"{name} must have shape (N, {size}, {size}), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} {noun} for {n} images")
    check_finite(arr, name)
    return arr


def check_cam2world(cam2world: Any, name: str = "cam2world", n: Optional[int] = None) -> np.ndarray:
    """Validate (N, 4, 4) rigid cam2world matrices; returns float64 numpy."""
    arr = _finite_matrices(cam2world, name, 4, n, "poses")
    if not np.allclose(arr[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{name}: last row of every pose must be [0, 0, 0, 1]")
    R = arr[:, :3, :3]
    ortho_err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.nonzero((ortho_err > _POSE_TOL) | (np.abs(det - 1) > _POSE_TOL))[0]
    if len(bad):
        raise ValueError(f"{name}[{int(bad[0])}] is not a rigid transform (rotation part not orthonormal "
                         f"with det +1; scaled poses are not supported)")
    return arr


def check_intrinsics(K: Any, name: str = "K", n: Optional[int] = None) -> np.ndarray:
    """Validate (N, 3, 3) pinhole intrinsics (positive focals, zero skew, last row [0, 0, 1])."""
    arr = _finite_matrices(K, name, 3, n, "matrices")
    if not np.allclose(arr[:, 2], [0, 0, 1], atol=1e-9):
        raise ValueError(f"{name}: last row of every matrix must be [0, 0, 1]")
    if np.any(arr[:, 0, 0] <= 0) or np.any(arr[:, 1, 1] <= 0):
        raise ValueError(f"{name}: focal lengths must be positive")
    return arr


def safe_name(name: Any, what: str) -> str:
    """A plain file name (no directory part, no '..', printable, non empty) or ValueError naming ``what``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if (name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name != name.strip()
            or any(ord(c) < 32 for c in name)):
        raise ValueError(f"{what}={name!r} is not a plain file name (no folders, '..', control characters "
                         "or surrounding blanks)")
    return name


def _unique_names(names: Sequence[str]) -> List[str]:
    """Make names unique by suffixing ``_1``, ``_2``... before the extension."""
    seen: Dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        stem, ext = os.path.splitext(name)
        k = seen[name]
        while True:
            k += 1
            candidate = f"{stem}_{k}{ext}"
            if candidate not in taken:
                break
        seen[name] = k
        taken.add(candidate)
        out.append(candidate)
    return out


def unique_stems(names: Sequence[str]) -> List[str]:
    """File stems of ``names`` (extension dropped), kept unique: ``a.png``/``a.jpg`` -> ``a_png``/``a_jpg``."""
    stems = [os.path.splitext(n)[0] or n for n in names]
    counts: Dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [n.replace(".", "_") if counts[s] > 1 else s for n, s in zip(names, stems)]


def _clean_meta(meta: Any, i: int) -> Optional[Dict[str, Any]]:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ValueError(f"views_meta[{i}] must be a dict or None, got {type(meta).__name__}")
    out = {}
    for key in META_KEYS:
        if key in meta:
            value = as_numpy(meta[key])
            out[key] = value
    return out


def _pair(meta: Dict[str, Any], key: str, i: int) -> np.ndarray:
    value = np.asarray(meta[key], dtype=np.float64).reshape(-1)
    if value.shape != (2,):
        raise ValueError(f"views_meta[{i}][{key!r}] must hold 2 numbers, got shape {np.shape(meta[key])}")
    return value


def meta_has_geometry(meta: Optional[Dict[str, Any]]) -> bool:
    return meta is not None and all(k in meta for k in GEOMETRY_KEYS)


# ----------------------------------------------------------------------------------------------
# SceneData
# ----------------------------------------------------------------------------------------------
@dataclass
class SceneData:
    """Plain numpy snapshot of a reconstruction; what every exporter consumes.

    N images, image ``i`` of network size ``(H_i, W_i)`` (sizes may differ between images).

    Attributes:
        images: N arrays (H, W, 3) float32 in [0, 1] (uint8 input is converted).
        K: (N, 3, 3) float64 intrinsics in network pixels (integer coordinates at pixel centres).
        cam2world: (N, 4, 4) float64 camera-to-world, OpenCV axes (x right, y down, z forward).
        pts3d: N arrays (H, W, 3) float32 world points of every pixel (NaN allowed where invalid).
        masks: N arrays (H, W) bool, pixels to export (confident, finite).
        confs: optional N arrays (H, W) float32 confidence.
        depths: optional N arrays (H, W) float32 z-depth in the camera frame; computed from ``pts3d`` when
            not given.
        views_meta: N entries, each ``None`` or a dict with the ``load_images`` resize record (keys
            ``orig_shape``, ``resized_shape``, ``crop_offset``, ``resize_scale``, ``filepath``, ``true_shape``,
            ``instance``); a full view dict is accepted (only these keys are kept).
        names: N unique plain file names used by COLMAP / nerfstudio; default: basename of
            ``views_meta[i]['filepath']`` or ``image_{i:04d}.png``.
    """
    images: List[np.ndarray]
    K: np.ndarray
    cam2world: np.ndarray
    pts3d: List[np.ndarray]
    masks: Optional[List[np.ndarray]] = None
    confs: Optional[List[np.ndarray]] = None
    depths: Optional[List[np.ndarray]] = None
    views_meta: Optional[List[Optional[Dict[str, Any]]]] = None
    names: Optional[List[str]] = None

    def __post_init__(self) -> None:
        self.images = [self._check_image(im, i) for i, im in enumerate(_as_list(self.images, "images"))]
        n = len(self.images)
        if n == 0:
            raise ValueError("images is empty: a scene needs at least one image")
        shapes = [im.shape[:2] for im in self.images]
        self.K = check_intrinsics(self.K, "K", n)
        self.cam2world = check_cam2world(self.cam2world, "cam2world", n)

        pts = _as_list(self.pts3d, "pts3d")
        if len(pts) != n:
            raise ValueError(f"pts3d has {len(pts)} entries for {n} images")
        self.pts3d = []
        for i, (p, hw) in enumerate(zip(pts, shapes)):
            p = np.asarray(p, dtype=np.float32)
            if p.shape == (hw[0] * hw[1], 3):
                p = p.reshape(hw[0], hw[1], 3)
            if p.shape != (*hw, 3):
                raise ValueError(f"pts3d[{i}] must have shape {(*hw, 3)} (or {(hw[0] * hw[1], 3)}) to match "
                                 f"images[{i}], got {p.shape}")
            self.pts3d.append(p)

        self.masks = self._per_pixel(self.masks, "masks", shapes, bool)
        finite = [np.isfinite(p).all(axis=-1) for p in self.pts3d]
        if self.masks is None:
            self.masks = finite
        else:
            self.masks = [m & f for m, f in zip(self.masks, finite)]
        self.confs = self._per_pixel(self.confs, "confs", shapes, np.float32)
        self.depths = self._per_pixel(self.depths, "depths", shapes, np.float32)
        if self.depths is None:
            self.depths = [self._z_depth(i) for i in range(n)]

        metas = [None] * n if self.views_meta is None else list(self.views_meta)
        if len(metas) != n:
            raise ValueError(f"views_meta has {len(metas)} entries for {n} images")
        self.views_meta = [_clean_meta(m, i) for i, m in enumerate(metas)]
        for i, meta in enumerate(self.views_meta):
            if meta is None:
                continue
            if "true_shape" in meta:
                ts = tuple(int(v) for v in _pair(meta, "true_shape", i))
                if ts != shapes[i]:
                    raise ValueError(f"views_meta[{i}]['true_shape']={ts} does not match images[{i}] of shape "
                                     f"{shapes[i]}")
            if meta_has_geometry(meta):
                for key in GEOMETRY_KEYS:
                    _pair(meta, key, i)
                if np.any(_pair(meta, "orig_shape", i) <= 0) or np.any(_pair(meta, "resized_shape", i) <= 0):
                    raise ValueError(f"views_meta[{i}]: orig_shape and resized_shape must be positive")

        if self.names is None:
            names = []
            for i, meta in enumerate(self.views_meta):
                path = meta.get("filepath") if meta else None
                names.append(os.path.basename(os.fspath(path)) if path else f"image_{i:04d}.png")
            self.names = _unique_names(names)
        else:
            names = list(self.names)
            if len(names) != n:
                raise ValueError(f"names has {len(names)} entries for {n} images")
            if len(set(names)) != n:
                raise ValueError("names must be unique")
            self.names = names
        self.check_names()

    def check_names(self) -> None:
        """Validate ``names`` (N unique plain file names); exporters call it again since it may be reassigned."""
        names = self.names
        if not isinstance(names, (list, tuple)) or len(names) != len(self.images):
            raise ValueError(f"names must be a list of {len(self.images)} file names, got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        for i, name in enumerate(names):
            safe_name(name, f"names[{i}]")

    # -- construction helpers ------------------------------------------------------------------
    @staticmethod
    def _check_image(im: Any, i: int) -> np.ndarray:
        im = np.asarray(as_numpy(im))
        if im.ndim != 3 or im.shape[2] != 3 or im.shape[0] < 1 or im.shape[1] < 1:
            raise ValueError(f"images[{i}] must have shape (H, W, 3), got {im.shape}")
        if im.dtype == np.uint8:
            return im.astype(np.float32) / 255
        im = im.astype(np.float32)
        check_finite(im, f"images[{i}]")
        if im.min() < -1e-3 or im.max() > 1 + 1e-3:
            raise ValueError(f"images[{i}] must hold colours in [0, 1] (float) or uint8, got range "
                             f"[{im.min():.3g}, {im.max():.3g}]")
        return im.clip(0, 1)

    @staticmethod
    def _per_pixel(values: Any, name: str, shapes: Sequence[Tuple[int, int]], dtype) -> Optional[List[np.ndarray]]:
        if values is None:
            return None
        items = _as_list(values, name)
        if len(items) != len(shapes):
            raise ValueError(f"{name} has {len(items)} entries for {len(shapes)} images")
        out = []
        for i, (v, hw) in enumerate(zip(items, shapes)):
            v = np.asarray(v)
            if v.shape == (hw[0] * hw[1],):
                v = v.reshape(hw)
            if v.shape != tuple(hw):
                raise ValueError(f"{name}[{i}] must have shape {tuple(hw)} to match images[{i}], got {v.shape}")
            out.append(v.astype(dtype))
        return out

    def _z_depth(self, i: int) -> np.ndarray:
        w2c = np.linalg.inv(self.cam2world[i])
        pts = self.pts3d[i].astype(np.float64)
        z = pts @ w2c[2, :3] + w2c[2, 3]
        return z.astype(np.float32)

    # -- accessors ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def world2cam(self) -> np.ndarray:
        """(N, 4, 4) float64 world-to-camera (OpenCV)."""
        return np.linalg.inv(self.cam2world)

    def network_size(self, i: int) -> Tuple[int, int]:
        """``(W, H)`` of image ``i`` at network resolution."""
        h, w = self.images[i].shape[:2]
        return w, h

    def has_original(self, i: int) -> bool:
        """Whether image ``i`` carries the resize/crop record mapping it to its original file."""
        return meta_has_geometry(self.views_meta[i])

    def original_size(self, i: int) -> Tuple[int, int]:
        """``(W0, H0)`` of the original image (network size when unknown)."""
        if not self.has_original(i):
            return self.network_size(i)
        h0, w0 = (int(v) for v in _pair(self.views_meta[i], "orig_shape", i))
        return w0, h0

    def original_K(self, i: int) -> np.ndarray:
        """(3, 3) intrinsics of image ``i`` in original-image pixels (network K when unknown)."""
        if not self.has_original(i):
            return self.K[i].copy()
        from dust3r.utils.image import intrinsics_to_original
        return np.asarray(intrinsics_to_original(self.K[i], self.views_meta[i]), dtype=np.float64)

    def camera(self, i: int, original: bool) -> Tuple[np.ndarray, int, int]:
        """``(K, W, H)`` of image ``i`` in original pixels if ``original`` and known, else network pixels."""
        if original and self.has_original(i):
            w, h = self.original_size(i)
            return self.original_K(i), w, h
        w, h = self.network_size(i)
        return self.K[i].copy(), w, h

    def source_file(self, i: int) -> Optional[str]:
        """Path of the original image file if recorded and existing."""
        meta = self.views_meta[i]
        path = meta.get("filepath") if meta else None
        if path and os.path.isfile(os.fspath(path)):
            return os.fspath(path)
        return None

    def image_u8(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 network image ``i``."""
        return np.round(self.images[i] * 255).astype(np.uint8)

    def points_and_colors(self) -> Tuple[np.ndarray, np.ndarray]:
        """All valid points (M, 3) float32 (world) and their colours (M, 3) uint8."""
        pts = [p[m] for p, m in zip(self.pts3d, self.masks)]
        cols = [self.image_u8(i)[m] for i, m in enumerate(self.masks)]
        return np.concatenate(pts).reshape(-1, 3), np.concatenate(cols).reshape(-1, 3)

    # -- from an aligner -----------------------------------------------------------------------
    @classmethod
    def from_scene(cls, scene: Any, min_conf_thr: Optional[float] = None, clean_depth: bool = True,
                   mask_sky: bool = False, tsdf_thresh: float = 0.0, subsample: int = 8,
                   names: Optional[Sequence[str]] = None) -> "SceneData":
        """Snapshot a sparse (MASt3R ``SparseGA``) or dense (DUSt3R ``BasePCOptimizer``) scene.

        Args:
            scene: an object following contract B. Sparse scenes are recognised by ``get_dense_pts3d``:
                ``pts3d, depths, confs = scene.get_dense_pts3d(clean_depth=..., subsample=...)`` with
                ``pts3d[i]`` (H*W, 3), and the mask is ``confs[i] > min_conf_thr`` (MASt3R demo; default
                threshold 1.5). Dense scenes (``get_pts3d`` / ``get_masks``): ``scene.min_conf_thr`` is set to
                ``scene.conf_trf(min_conf_thr)`` (raw value if no ``conf_trf``; default threshold 3, DUSt3R
                demo) and the mask is ``get_masks()``, i.e. raw ``im_conf > conf_trf(min_conf_thr)`` exactly as
                the original DUSt3R demo (with ``conf='log'`` a threshold of 3 keeps raw confidences above
                log 3). Note this sets the attribute on ``scene`` (or on the copy returned by
                ``clean_pointcloud()`` / ``mask_sky()``), as the original demo does.
            min_conf_thr: confidence threshold (None: the demo default of the scene kind).
            clean_depth: sparse: passed to ``get_dense_pts3d``; dense: calls ``scene.clean_pointcloud()`` when
                the scene has it.
            mask_sky: dense: calls ``scene.mask_sky()`` when present; otherwise ignored with a warning.
            tsdf_thresh: sparse, > 0: refine depths with ``mast3r.cloud_opt.tsdf_optimizer.TSDFPostProcess``
                when that module exists (skipped with a warning otherwise).
            subsample: sparse: ``subsample`` argument of ``get_dense_pts3d``.
            names: optional image names (default from ``views_meta`` file paths).

        Returns:
            SceneData with network-resolution intrinsics and the scene's ``views_meta``.
        """
        if scene is None:
            raise ValueError("scene is None: run the reconstruction first")
        sparse = hasattr(scene, "get_dense_pts3d")
        if not sparse and not (hasattr(scene, "get_pts3d") and hasattr(scene, "get_masks")):
            raise ValueError("scene must provide get_dense_pts3d() (sparse) or get_pts3d()/get_masks() (dense), "
                             f"got {type(scene).__name__}")
        if not hasattr(scene, "imgs") or not hasattr(scene, "get_im_poses"):
            raise ValueError(f"scene ({type(scene).__name__}) must provide imgs and get_im_poses()")
        imgs = _as_list(scene.imgs, "scene.imgs")
        cam2world = np.asarray(as_numpy(scene.get_im_poses()), dtype=np.float64)
        K = _scene_intrinsics(scene, len(imgs))
        views_meta = getattr(scene, "views_meta", None)
        if views_meta is None and hasattr(scene, "img_paths"):
            views_meta = [{"filepath": p} if isinstance(p, (str, os.PathLike)) else None for p in scene.img_paths]

        if sparse:
            thr = 1.5 if min_conf_thr is None else float(min_conf_thr)
            source = scene
            if tsdf_thresh and tsdf_thresh > 0:
                source = _tsdf_wrapper(scene, tsdf_thresh, subsample) or scene
            pts3d, depths, confs = _dense_pts3d(source, clean_depth, subsample)
            confs = [np.asarray(as_numpy(c), dtype=np.float32) for c in confs]
            masks = [c > thr for c in confs]
            depths = [np.asarray(as_numpy(d), dtype=np.float32) for d in depths]
            pts3d = [np.asarray(as_numpy(p), dtype=np.float32) for p in pts3d]
            if mask_sky:
                logger.warning("mask_sky is not supported for sparse scenes (as in the MASt3R demo); ignored")
        else:
            thr = 3.0 if min_conf_thr is None else float(min_conf_thr)
            if clean_depth and hasattr(scene, "clean_pointcloud"):
                scene = scene.clean_pointcloud() or scene
            if mask_sky:
                if hasattr(scene, "mask_sky"):
                    scene = scene.mask_sky() or scene
                else:
                    logger.warning("mask_sky requested but %s has no mask_sky(); ignored", type(scene).__name__)
            if tsdf_thresh and tsdf_thresh > 0:
                logger.warning("tsdf_thresh is only used with sparse scenes; ignored")
            conf_trf = getattr(scene, "conf_trf", None)
            if conf_trf is not None:
                import torch
                scene.min_conf_thr = float(conf_trf(torch.tensor(thr)))
            else:
                scene.min_conf_thr = thr
            pts3d = [np.asarray(as_numpy(p), dtype=np.float32) for p in scene.get_pts3d()]
            masks = [np.asarray(as_numpy(m), dtype=bool) for m in scene.get_masks()]
            im_conf = getattr(scene, "im_conf", None)
            confs = None if im_conf is None else [np.asarray(as_numpy(c), dtype=np.float32) for c in im_conf]
            depths = None
            if hasattr(scene, "get_depthmaps"):
                depths = [np.asarray(as_numpy(d), dtype=np.float32) for d in scene.get_depthmaps()]
        return cls(images=imgs, K=K, cam2world=cam2world, pts3d=pts3d, masks=masks, confs=confs, depths=depths,
                   views_meta=views_meta, names=None if names is None else list(names))


def _scene_intrinsics(scene: Any, n: int) -> np.ndarray:
    """(N, 3, 3) network intrinsics from ``get_intrinsics()`` or ``get_focals()`` + ``get_principal_points()``."""
    if hasattr(scene, "get_intrinsics"):
        return np.asarray(as_numpy(scene.get_intrinsics()), dtype=np.float64)
    if not hasattr(scene, "get_focals"):
        raise ValueError(f"scene ({type(scene).__name__}) provides neither get_intrinsics() nor get_focals()")
    focals = np.asarray(as_numpy(scene.get_focals()), dtype=np.float64).reshape(n, -1)
    if hasattr(scene, "get_principal_points"):
        pp = np.asarray(as_numpy(scene.get_principal_points()), dtype=np.float64).reshape(n, 2)
    else:
        pp = np.array([[im.shape[1] / 2, im.shape[0] / 2] for im in _as_list(scene.imgs, "scene.imgs")])
    K = np.zeros((n, 3, 3))
    K[:, 0, 0] = focals[:, 0]
    K[:, 1, 1] = focals[:, -1]
    K[:, :2, 2] = pp
    K[:, 2, 2] = 1
    return K


def _dense_pts3d(source: Any, clean_depth: bool, subsample: int) -> Tuple[Any, Any, Any]:
    """``source.get_dense_pts3d``, passing ``subsample`` only where accepted (the TSDF post-process does not)."""
    import inspect
    fn = source.get_dense_pts3d
    try:
        takes_subsample = "subsample" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins / exotic callables
        takes_subsample = True
    if takes_subsample:
        return fn(clean_depth=clean_depth, subsample=subsample)
    return fn(clean_depth=clean_depth)


def _tsdf_wrapper(scene: Any, tsdf_thresh: float, subsample: int) -> Any:
    try:
        from mast3r.cloud_opt.tsdf_optimizer import TSDFPostProcess  # type: ignore
    except ImportError:
        logger.warning("tsdf_thresh=%g requested but mast3r.cloud_opt.tsdf_optimizer is not available; skipped",
                       tsdf_thresh)
        return None
    return TSDFPostProcess(scene, subsample=subsample, TSDF_thresh=tsdf_thresh)


def as_scene_data(scene_or_data: Any, **from_scene_kw: Any) -> SceneData:
    """A :class:`SceneData` as is, or :meth:`SceneData.from_scene` of an aligner scene."""
    if isinstance(scene_or_data, SceneData):
        if from_scene_kw:
            logger.debug("ignoring scene options %s for an existing SceneData", sorted(from_scene_kw))
        return scene_or_data
    return SceneData.from_scene(scene_or_data, **from_scene_kw)


def require_scene_data(data: Any, func: str) -> SceneData:
    if not isinstance(data, SceneData):
        raise ValueError(f"{func}: data must be a SceneData (use SceneData.from_scene(scene)), got "
                         f"{type(data).__name__}")
    data.check_names()
    return data


# ----------------------------------------------------------------------------------------------
# atomic writing
# ----------------------------------------------------------------------------------------------
def check_out_path(path: Any, what: str = "path") -> str:
    """Validate an output file path; creates its parent folder. Returns the absolute path."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path or path.endswith(("/", os.sep)):
        raise ValueError(f"{what}={path!r} must name a file")
    if os.path.isdir(path):
        raise ValueError(f"{what}={path!r} is a folder, expected a file path")
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def check_out_dir(out_dir: Any, what: str = "out_dir") -> str:
    """Validate and create an output folder. Returns the absolute path."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path, got {type(out_dir).__name__}")
    out_dir = os.fspath(out_dir)
    if not out_dir:
        raise ValueError(f"{what} must not be empty")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{what}={out_dir!r} exists and is not a folder")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return out_dir


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary sibling of ``path`` for writing; renamed onto ``path`` only if the block succeeds."""
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def staged_dir(out_dir: str) -> Iterator[str]:
    """Yield a temporary folder inside ``out_dir``; on success its files are moved into ``out_dir`` (same
    relative paths, replacing existing files), on failure it is deleted and ``out_dir`` is left untouched."""
    tmp = tempfile.mkdtemp(prefix=".export-", dir=out_dir)
    try:
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            rel = os.path.relpath(root, tmp)
            dest_root = out_dir if rel == "." else os.path.join(out_dir, rel)
            os.makedirs(dest_root, exist_ok=True)
            for f in files:
                os.replace(os.path.join(root, f), os.path.join(dest_root, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
