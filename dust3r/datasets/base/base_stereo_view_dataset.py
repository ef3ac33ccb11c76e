"""Base class of the DUSt3R training datasets: pairs of views with image, depth, camera and 3D points.

A reader subclasses :class:`BaseStereoViewDataset` and implements ``__len__`` and
``_get_views(idx, resolution, rng)`` returning two view dicts (``img`` PIL RGB, ``depthmap`` float32 (H, W) with
0 = invalid and < 0 = sky, ``camera_pose`` float32 (4, 4) cam2world, ``camera_intrinsics`` float32 (3, 3),
``dataset``, ``label``, ``instance``), each passed through :meth:`_crop_resize_if_necessary`. ``__getitem__`` adds
``idx``, ``true_shape``, the transformed ``img``, ``pts3d`` (world frame), ``valid_mask``, ``sky_mask``,
``is_metric_scale`` and ``rng``, and turns portrait views to landscape (:func:`transpose_to_landscape`).

A sample file that is missing or unreadable (``OSError`` from ``_get_views``) is logged once and replaced by
another pair drawn from the item's rng, so an epoch never stops on a bad sample.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import PIL.Image
import torch

from dust3r.datasets.base.easy_dataset import EasyDataset
from dust3r.datasets.utils import cropping, transforms
from dust3r.datasets.utils.transforms import ImgNorm
from dust3r.utils.geometry import depthmap_to_absolute_camera_coordinates

logger = logging.getLogger(__name__)

__all__ = ["BaseStereoViewDataset", "is_good_type", "view_name", "transpose_to_landscape", "MAX_SAMPLE_SKIPS"]

#: how many substitute pairs ``__getitem__`` tries after unreadable samples before giving up
MAX_SAMPLE_SKIPS = 16

_GOOD_DTYPES = (np.float32, torch.float32, bool, np.int32, np.int64, np.uint8)

Resolution = Union[int, Tuple[int, int]]


class BaseStereoViewDataset(EasyDataset):
    """Pairs of views for stereo training (see the module docstring for what a reader implements).

    Args (keyword only):
        split: 'train' / 'val' / 'test' / ... (reader-specific meaning).
        resolution: ``size``, ``(width, height)`` or a list of them, each landscape (width >= height); the
            aspect-ratio index of ``ds[(idx, ar_idx)]`` picks one.
        transform: image -> (3, H, W) tensor (default :data:`ImgNorm`; ``ColorJitter`` for training).
        aug_crop: int: rescale to ``resolution + rng.integers(0, aug_crop)`` before the centred crop.
        seed: truthy -> every item ``idx`` uses ``default_rng(seed + idx)`` (reproducible test sets); otherwise one
            generator seeded from ``torch.initial_seed()`` (distinct per DataLoader worker) serves all items.
        mask_sky: readers that know the sky mark its pixels as sky (depth < 0) when set, as invalid (0) otherwise
            (see :meth:`apply_sky`).
    """

    #: True for datasets whose depth is in metres (the '?avg_dis' losses keep their scale)
    is_metric_scale: bool = False

    def __init__(self, *, split: Optional[str] = None, resolution: Union[Resolution, List[Resolution]] = None,
                 transform=ImgNorm, aug_crop: Union[bool, int, str] = False, seed: Optional[int] = None,
                 mask_sky: bool = False):
        self.num_views = 2
        self.split = split
        self._set_resolutions(resolution)
        if isinstance(transform, str):
            transform = _transform_by_name(transform)
        self.transform = transform
        self.aug_crop = aug_crop
        self.seed = seed
        self.mask_sky = mask_sky

    # ------------------------------------------------------------------ reader interface
    def __len__(self) -> int:
        return len(self.scenes)

    def _get_views(self, idx: int, resolution: Tuple[int, int], rng: np.random.Generator) -> List[Dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _get_views(idx, resolution, rng)")

    def get_stats(self) -> str:
        return f"{len(self)} pairs"

    def __repr__(self) -> str:
        res = "[" + ";".join(f"{w}x{h}" for w, h in self._resolutions) + "]"
        return (f"{type(self).__name__}({self.get_stats()}, split={self.split!r}, seed={self.seed!r}, "
                f"resolutions={res}, transform={self.transform!r})")

    # ------------------------------------------------------------------ hooks for readers
    def draw_mask_bg(self, rng: np.random.Generator) -> bool:
        """Whether to blank the background of this pair: ``self.mask_bg`` True -> always, 'rand' -> one
        ``rng.choice(2)`` draw, False / absent -> never (the original Co3d / WildRGBD rule)."""
        mode = getattr(self, "mask_bg", False)
        if mode == "rand":
            return bool(rng.choice(2))
        if mode not in (True, False):
            raise ValueError(f"mask_bg must be True, False or 'rand', got {mode!r}")
        return bool(mode)

    def apply_sky(self, depthmap: np.ndarray, sky: np.ndarray) -> np.ndarray:
        """Depth map with the pixels of the boolean ``sky`` mask set to -1 (sky) if ``mask_sky``, else 0 (invalid)."""
        depthmap = depthmap.copy()
        depthmap[sky] = -1.0 if self.mask_sky else 0.0
        return depthmap

    # ------------------------------------------------------------------ item assembly
    def _set_resolutions(self, resolutions) -> None:
        if resolutions is None:
            raise ValueError("undefined resolution: pass resolution=(width, height) or a list of them")
        if not isinstance(resolutions, list):
            resolutions = [resolutions]
        self._resolutions = []
        for res in resolutions:
            width, height = (res, res) if isinstance(res, int) else res
            if not (isinstance(width, int) and isinstance(height, int)):
                raise ValueError(f"resolution sides must be int, got {res!r}")
            if width < height:
                raise ValueError(f"resolutions are given landscape (width >= height), got {res!r}")
            self._resolutions.append((width, height))

    def _item_rng(self, idx: int) -> np.random.Generator:
        if self.seed:  # reseeded for every item (seed=0 counts as no seed, as in the original)
            self._rng = np.random.default_rng(seed=self.seed + idx)
        elif not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(seed=torch.initial_seed())  # differs per DataLoader worker
        return self._rng

    def _split_index(self, idx) -> Tuple[int, int]:
        if isinstance(idx, tuple):
            return int(idx[0]), int(idx[1])
        if len(self._resolutions) != 1:
            raise ValueError(f"{type(self).__name__} has {len(self._resolutions)} resolutions: index it with "
                             "(idx, aspect_ratio_idx)")
        return int(idx), 0

    def _load_views(self, idx: int, resolution, rng) -> Tuple[List[Dict[str, Any]], int]:
        """``_get_views`` with the bad-sample rule: an OSError is logged once per file and another pair,
        ``rng.integers(len(self))``, is served instead. Returns the views and the index actually served."""
        for _ in range(MAX_SAMPLE_SKIPS + 1):
            try:
                views = self._get_views(idx, resolution, rng)
            except OSError as err:
                self._report_bad_sample(idx, err)
                idx = int(rng.integers(len(self)))
                continue
            if len(views) != self.num_views:
                raise ValueError(f"{type(self).__name__}._get_views returned {len(views)} views, "
                                 f"expected {self.num_views}")
            return views, idx
        raise RuntimeError(f"{type(self).__name__}: {MAX_SAMPLE_SKIPS + 1} unreadable samples in a row; "
                           "check the dataset root (see the warnings above)")

    def _report_bad_sample(self, idx: int, err: OSError) -> None:
        what = getattr(err, "filename", None) or str(err)
        reported = self.__dict__.setdefault("_reported_bad_samples", set())
        if what not in reported:
            reported.add(what)
            logger.warning("%s: skipping pair %d, unreadable sample file %s (%s)", type(self).__name__, idx, what,
                           err.strerror or err)

    def _encode_image(self, view: Dict[str, Any], rng) -> None:
        width, height = view["img"].size
        view["true_shape"] = np.int32((height, width))
        if getattr(self.transform, "uses_rng", False):
            view["img"] = self.transform(view["img"], rng=rng)
        else:
            view["img"] = self.transform(view["img"])

    def _add_geometry(self, view: Dict[str, Any], idx: int, ar_idx: int, v: int) -> None:
        """Checks a raw view and adds ``idx``, ``is_metric_scale``, ``pts3d`` and ``valid_mask``."""
        if "pts3d" in view or "valid_mask" in view:
            raise ValueError(f"pts3d / valid_mask are computed from depth + intrinsics, do not set them "
                             f"(view {view_name(view)})")
        if "camera_intrinsics" not in view:
            raise ValueError(f"view {view_name(view)} has no camera_intrinsics")
        view["idx"] = (idx, ar_idx, v)
        view["is_metric_scale"] = self.is_metric_scale
        if "camera_pose" not in view:
            view["camera_pose"] = np.full((4, 4), np.nan, dtype=np.float32)
        elif not np.isfinite(view["camera_pose"]).all():
            raise ValueError(f"NaN in camera pose for view {view_name(view)}")
        if not np.isfinite(view["depthmap"]).all():
            raise ValueError(f"NaN in depthmap for view {view_name(view)}")
        set_pts3d(view)

    def __getitem__(self, idx):
        idx, ar_idx = self._split_index(idx)
        rng = self._item_rng(idx)
        resolution = self._resolutions[ar_idx]  # the sampler's aspect-ratio index
        views, idx = self._load_views(idx, resolution, rng)
        for v, view in enumerate(views):
            self._add_geometry(view, idx, ar_idx, v)
            self._encode_image(view, rng)
            view["sky_mask"] = view["depthmap"] < 0
            check_types(view)
        for view in views:
            transpose_to_landscape(view)
            view["rng"] = int.from_bytes(rng.bytes(4), "big")  # tells whether the rng state is reproduced
        return views

    def _crop_resize_if_necessary(self, image, depthmap: np.ndarray, intrinsics: np.ndarray, resolution,
                                  rng: Optional[np.random.Generator] = None, info=None):
        """Crop around the principal point, orient, rescale (LANCZOS) and centre-crop to ``resolution`` (w, h).

        1. the largest window centred on the rounded principal point;
        2. portrait images get the transposed resolution, square-ish ones a random one (``rng.integers(2)``);
        3. rescale so that ``resolution (+ rng.integers(0, aug_crop) with an int aug_crop > 1)`` fits;
        4. centred crop of ``resolution``.

        Returns ``(image PIL, depthmap, intrinsics)`` consistent with each other.
        """
        if not isinstance(image, PIL.Image.Image):
            image = PIL.Image.fromarray(image)
        W, H = image.size
        cx, cy = intrinsics[:2, 2].round().astype(int)
        mx, my = min(cx, W - cx), min(cy, H - cy)
        image, depthmap, intrinsics = cropping.crop_image_depthmap(image, depthmap, intrinsics,
                                                                   (cx - mx, cy - my, cx + mx, cy + my))
        resolution = cropping.choose_orientation(image.size, resolution, rng)
        extra = 0
        if not isinstance(self.aug_crop, str) and self.aug_crop > 1:
            extra = rng.integers(0, self.aug_crop)
        return cropping.centred_crop_resize(image, depthmap, intrinsics, resolution, extra=extra)


def _transform_by_name(name: str):
    if name not in ("ImgNorm", "ColorJitter"):
        raise ValueError(f"unknown transform {name!r}: expected 'ImgNorm' or 'ColorJitter'")
    return getattr(transforms, name)


def set_pts3d(view: Dict[str, Any]) -> None:
    """``view['pts3d']`` (H, W, 3) world points and ``view['valid_mask']`` (depth > 0 and finite points)."""
    pts3d, valid = depthmap_to_absolute_camera_coordinates(view["depthmap"], view["camera_intrinsics"],
                                                           view["camera_pose"])
    view["pts3d"] = pts3d
    view["valid_mask"] = valid & np.isfinite(pts3d).all(axis=-1)


def is_good_type(key: str, v: Any) -> Tuple[bool, Optional[str]]:
    """``(ok, error message)``: strings, ints, tuples and arrays / tensors of the collatable dtypes are ok."""
    if isinstance(v, (str, int, tuple)):
        return True, None
    if getattr(v, "dtype", None) not in _GOOD_DTYPES:
        return False, f"bad dtype {getattr(v, 'dtype', type(v).__name__)} for {key!r}"
    return True, None


def check_types(view: Dict[str, Any]) -> None:
    """TypeError naming the key and the view when a value would not collate."""
    for key, val in view.items():
        ok, msg = is_good_type(key, val)
        if not ok:
            raise TypeError(f"{msg} in view {view_name(view)}")


def view_name(view: Dict[str, Any], batch_index=None) -> str:
    """``dataset/label/instance`` of a view (or of element ``batch_index`` of a collated batch)."""
    def sel(x):
        return x[batch_index] if batch_index not in (None, slice(None)) else x
    return f"{sel(view.get('dataset', '?'))}/{sel(view.get('label', '?'))}/{sel(view.get('instance', '?'))}"


_LANDSCAPE_KEYS_2D = ("valid_mask", "sky_mask", "depthmap")


def transpose_to_landscape(view: Dict[str, Any], revert: bool = False) -> None:
    """Transpose a portrait view (``true_shape`` H > W) in place so that every view of a batch is landscape.

    Swaps the image axes, the masks, depth and pts3d, rows 0/1 of the intrinsics and the (x, y) of ``corres``.
    ``revert=True`` undoes it for a view whose arrays are already landscape.
    """
    height, width = view["true_shape"]
    if width >= height:
        return
    if revert:
        height, width = width, height
    if tuple(view["img"].shape) != (3, height, width):
        raise ValueError(f"img shape {tuple(view['img'].shape)} does not match true_shape for {view_name(view)}")
    view["img"] = view["img"].swapaxes(1, 2)
    for key in _LANDSCAPE_KEYS_2D:
        if key in view:
            if view[key].shape != (height, width):
                raise ValueError(f"{key} shape {view[key].shape} does not match true_shape for {view_name(view)}")
            view[key] = view[key].swapaxes(0, 1)
    if view["pts3d"].shape != (height, width, 3):
        raise ValueError(f"pts3d shape {view['pts3d'].shape} does not match true_shape for {view_name(view)}")
    view["pts3d"] = view["pts3d"].swapaxes(0, 1)
    view["camera_intrinsics"] = view["camera_intrinsics"][[1, 0, 2]]
    if "corres" in view:
        view["corres"] = view["corres"][:, [1, 0]]
