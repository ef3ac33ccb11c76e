"""The reconstruction snapshot every exporter consumes (:class:`SceneData`) and what it can be built from.

:meth:`SceneData.from_scene` reads an aligner's result through the interface spelled out by the protocols
:class:`DenseSceneLike` (DUSt3R's dense global alignment, :mod:`dust3r.cloud_opt`) and :class:`SparseSceneLike`
(MASt3R's ``SparseGA`` or any object with ``get_dense_pts3d``); it never modifies the scene.

Frames and pixels (repository conventions):

* ``cam2world``: 4x4, OpenCV camera axes (x right, y down, z forward), world frame of the reconstruction;
* pixels ``(x, y)`` with integer coordinates at pixel centres; ``K`` maps camera coordinates to those
  pixels at the *network* resolution unless a name says "original";
* "original" quantities refer to the image file as decoded by :func:`dust3r.utils.image.load_images`
  (after EXIF transposition), reached through the resize/crop record kept in ``views_meta``.

Example::

    from dust3r.export import SceneData, export_ply
    data = SceneData.from_scene(scene, min_conf_thr=1.5)     # a SparseGA or a dense aligner
    export_ply(data, "out/scene.ply")
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from dust3r.utils.views import GEOMETRY_KEYS

from ._checks import (_as_list, _clean_meta, _pair, _unique_names, as_numpy, check_cam2world, check_finite,
                      check_intrinsics, meta_has_geometry, safe_name)

logger = logging.getLogger(__name__)

__all__ = ["SceneData", "SceneLike", "DenseSceneLike", "SparseSceneLike", "as_scene_data", "require_scene_data"]

#: demo defaults of the confidence threshold (MASt3R sparse demo 1.5, DUSt3R dense demo 3)
SPARSE_MIN_CONF_THR = 1.5
DENSE_MIN_CONF_THR = 3.0


# ----------------------------------------------------------------------------------------------
# what SceneData.from_scene accepts
# ----------------------------------------------------------------------------------------------
@runtime_checkable
class SceneLike(Protocol):
    """What every scene given to :meth:`SceneData.from_scene` provides (N images).

    Required: ``imgs`` (N (H, W, 3) float images in [0, 1], numpy or torch), ``get_im_poses()`` ((N, 4, 4)
    cam2world, OpenCV axes) and ``get_focals()`` ((N,) or (N, 1) or (N, 2) focals, network pixels).
    Optional, used when present: ``get_intrinsics()`` ((N, 3, 3), preferred over the focals),
    ``get_principal_points()`` ((N, 2); default the image centres), ``views_meta`` (N ``load_images`` resize
    records or None) or else ``img_paths`` (N file paths).
    """

    imgs: Any

    def get_im_poses(self) -> Any: ...

    def get_focals(self) -> Any: ...


@runtime_checkable
class SparseSceneLike(SceneLike, Protocol):
    """A sparse scene (MASt3R ``SparseGA``): dense points come from the scene itself.

    ``get_dense_pts3d(clean_depth=..., subsample=...)`` returns ``(pts3d, depths, confs)``: N (H*W, 3) world
    points, N (H*W,) z-depths and N (H, W) confidences. A scene that can refine its depths by TSDF fusion
    accepts ``tsdf_thresh=`` as well (``SparseGA`` does); ``subsample`` may be absent from the signature.
    """

    def get_dense_pts3d(self, clean_depth: bool = True, subsample: Any = None) -> Tuple[Any, Any, Any]: ...


@runtime_checkable
class DenseSceneLike(SceneLike, Protocol):
    """A dense scene (DUSt3R ``BasePCOptimizer`` / ``PairViewer``).

    Required: ``get_pts3d()`` (N (H, W, 3) world points) and ``get_masks()`` (N (H, W) bool). Optional:
    ``im_conf`` (N (H, W) raw confidences) with ``conf_trf`` (the confidence transform): when present the mask is
    ``im_conf > conf_trf(min_conf_thr)`` (as the original DUSt3R demo), else ``get_masks()`` as the scene has it;
    ``get_depthmaps()`` (N (H, W)); ``clean_pointcloud()`` and ``mask_sky()``, each returning a cleaned copy.
    """

    def get_pts3d(self) -> Any: ...

    def get_masks(self) -> Any: ...


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
        pts3d: N arrays (H, W, 3) float32 world points of every pixel; non-finite values are allowed only where
            ``masks`` is False (or, without ``masks``, they mark the invalid pixels).
        masks: N arrays (H, W) bool, pixels to export (confident); default: the pixels with finite points.
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
        if self.masks is None:
            self.masks = [np.isfinite(p).all(axis=-1) for p in self.pts3d]
        self._check_points()
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

    def validate(self) -> None:
        """Check the fields again (the exporters call it: fields may have been reassigned or edited in place):
        names, finite intrinsics and rigid poses, finite points wherever ``masks`` is True."""
        self.check_names()
        check_intrinsics(self.K, "K", self.n)
        check_cam2world(self.cam2world, "cam2world", self.n)
        self._check_points()

    def _check_points(self) -> None:
        if not isinstance(self.pts3d, list) or not isinstance(self.masks, list) or \
                not len(self.pts3d) == len(self.masks) == len(self.images):
            raise ValueError(f"pts3d and masks must be lists of {len(self.images)} arrays")
        for i, (p, m) in enumerate(zip(self.pts3d, self.masks)):
            bad = int(np.count_nonzero(m & ~np.isfinite(p).all(axis=-1)))
            if bad:
                raise ValueError(f"pts3d[{i}] has {bad} non-finite point(s) (NaN or inf) where masks[{i}] is True")

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
        """Snapshot a sparse (:class:`SparseSceneLike`, e.g. MASt3R ``SparseGA``) or dense
        (:class:`DenseSceneLike`, e.g. DUSt3R ``BasePCOptimizer``) scene; ``scene`` is not modified.

        Args:
            scene: the aligner's result. Sparse scenes (recognised by ``get_dense_pts3d``): the mask is
                ``confs[i] > min_conf_thr`` (MASt3R demo). Dense scenes: the mask is raw
                ``im_conf > conf_trf(min_conf_thr)`` exactly as the original DUSt3R demo (with ``conf='log'`` a
                threshold of 3 keeps raw confidences above log 3), or ``get_masks()`` when the scene has no
                ``im_conf``.
            min_conf_thr: confidence threshold (None: the demo default of the scene kind, 1.5 sparse, 3 dense).
            clean_depth: sparse: passed to ``get_dense_pts3d``; dense: uses ``scene.clean_pointcloud()`` (a copy)
                when the scene has it.
            mask_sky: dense: uses ``scene.mask_sky()`` (a copy) when present; otherwise ignored with a warning.
            tsdf_thresh: sparse, > 0: ``get_dense_pts3d(..., tsdf_thresh=tsdf_thresh)`` refines the depths by
                TSDF fusion (skipped with a warning for a scene whose ``get_dense_pts3d`` has no such option).
            subsample: sparse: ``subsample`` argument of ``get_dense_pts3d`` (when it takes one).
            names: optional image names (default from ``views_meta`` file paths).

        Returns:
            SceneData with network-resolution intrinsics and the scene's ``views_meta``.
        """
        if scene is None:
            raise ValueError("scene is None: run the reconstruction first")
        sparse = callable(getattr(scene, "get_dense_pts3d", None))
        if not sparse and not isinstance(scene, DenseSceneLike):
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
            pts3d, masks, confs, depths = _sparse_points(scene, min_conf_thr, clean_depth, mask_sky, tsdf_thresh,
                                                         subsample)
        else:
            pts3d, masks, confs, depths = _dense_points(scene, min_conf_thr, clean_depth, mask_sky, tsdf_thresh)
        return cls(images=imgs, K=K, cam2world=cam2world, pts3d=pts3d, masks=masks, confs=confs, depths=depths,
                   views_meta=views_meta, names=None if names is None else list(names))


def _f32(values: Any) -> List[np.ndarray]:
    return [np.asarray(as_numpy(v), dtype=np.float32) for v in values]


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


def _accepts(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes a keyword ``name`` (True for exotic callables without a signature)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _sparse_points(scene: Any, min_conf_thr: Optional[float], clean_depth: bool, mask_sky: bool,
                   tsdf_thresh: float, subsample: int):
    """``(pts3d, masks, confs, depths)`` of a :class:`SparseSceneLike` scene through its own ``get_dense_pts3d``."""
    thr = SPARSE_MIN_CONF_THR if min_conf_thr is None else float(min_conf_thr)
    fn = scene.get_dense_pts3d
    kw: Dict[str, Any] = {"clean_depth": clean_depth}
    if _accepts(fn, "subsample"):
        kw["subsample"] = subsample
    if tsdf_thresh and tsdf_thresh > 0:
        if _accepts(fn, "tsdf_thresh"):
            kw["tsdf_thresh"] = tsdf_thresh
        else:
            logger.warning("tsdf_thresh=%g ignored: %s.get_dense_pts3d has no tsdf_thresh option",
                           tsdf_thresh, type(scene).__name__)
    if mask_sky:
        logger.warning("mask_sky is not supported for sparse scenes (as in the MASt3R demo); ignored")
    pts3d, depths, confs = fn(**kw)
    confs = _f32(confs)
    return _f32(pts3d), [c > thr for c in confs], confs, _f32(depths)


def _dense_points(scene: Any, min_conf_thr: Optional[float], clean_depth: bool, mask_sky: bool,
                  tsdf_thresh: float):
    """``(pts3d, masks, confs, depths)`` of a :class:`DenseSceneLike` scene; cleaning works on copies."""
    thr = DENSE_MIN_CONF_THR if min_conf_thr is None else float(min_conf_thr)
    if clean_depth and hasattr(scene, "clean_pointcloud"):
        scene = scene.clean_pointcloud() or scene
    if mask_sky:
        if hasattr(scene, "mask_sky"):
            scene = scene.mask_sky() or scene
        else:
            logger.warning("mask_sky requested but %s has no mask_sky(); ignored", type(scene).__name__)
    if tsdf_thresh and tsdf_thresh > 0:
        logger.warning("tsdf_thresh is only used with sparse scenes; ignored")
    im_conf = getattr(scene, "im_conf", None)
    if im_conf is not None:
        import torch
        conf_trf = getattr(scene, "conf_trf", None)
        # the original demo sets scene.min_conf_thr = conf_trf(thr) and compares the RAW im_conf with it
        raw_thr = float(conf_trf(torch.tensor(thr))) if conf_trf is not None else thr
        masks = [np.asarray(as_numpy(torch.as_tensor(c) > raw_thr), dtype=bool) for c in im_conf]
        confs = _f32(im_conf)
    else:
        if min_conf_thr is not None:
            logger.warning("%s has no im_conf: min_conf_thr=%g ignored, using its get_masks()",
                           type(scene).__name__, thr)
        masks = [np.asarray(as_numpy(m), dtype=bool) for m in scene.get_masks()]
        confs = None
    depths = _f32(scene.get_depthmaps()) if hasattr(scene, "get_depthmaps") else None
    return _f32(scene.get_pts3d()), masks, confs, depths


def as_scene_data(scene_or_data: Any, **from_scene_kw: Any) -> SceneData:
    """A :class:`SceneData` as is, or :meth:`SceneData.from_scene` of an aligner scene."""
    if isinstance(scene_or_data, SceneData):
        if from_scene_kw:
            logger.debug("ignoring scene options %s for an existing SceneData", sorted(from_scene_kw))
        return scene_or_data
    return SceneData.from_scene(scene_or_data, **from_scene_kw)


def require_scene_data(data: Any, func: str) -> SceneData:
    """``data`` if it is a valid :class:`SceneData` (checked again: its fields may have been reassigned), else
    ValueError naming ``func`` and the bad field."""
    if not isinstance(data, SceneData):
        raise ValueError(f"{func}: data must be a SceneData (use SceneData.from_scene(scene)), got "
                         f"{type(data).__name__}")
    data.validate()
    return data
