"""Base class of the MASt3R training datasets: DUSt3R's views plus ground-truth correspondences and more
augmentations.

On top of :class:`~dust3r.datasets.base.base_stereo_view_dataset.BaseStereoViewDataset`, ``__getitem__``:

1. crops the pair (``aug_crop='auto'`` / int: the best overlapping pair among ``n_tentative_crops`` random crops
   per view, each replicated by a homography so that the principal point stays centred; ``False``: a centred
   crop-resize);
2. optionally swaps the views (``aug_swap``), replaces the pair by two copies of the first view
   (``aug_monocular`` = probability);
3. draws ``n_corres`` correspondences (``corres`` (N, 2) int64 (x, y), ``valid_corres`` (N,) bool), a fraction
   ``nneg`` of them negatives (non-matching pixels);
4. optionally rotates the views by multiples of 90 degrees (``aug_rot90``: False, 'same' or 'diff').

Every random choice comes from the item's numpy Generator (``default_rng(seed + idx)`` with a truthy seed), in the
original's order, so a seeded dataset reproduces the original's items bit for bit: ``_get_views`` (the reader, and
``rng.integers(2)`` per square-ish view in :meth:`_crop_resize_if_necessary`); the crops (per view: the square-ish
orientation draw, ``rng.uniform`` and ``rng.random((n_crops, 2))``); a transform that takes the rng (``ColorJitter``:
a permutation and one uniform per operation, per view; the original drew these from torch instead); the swap
(``rng.random()``); the monocular copy (``rng.random()``); the correspondences (one ``permutation``, two ``choice``);
rot90 (``rng.choice(4)`` once or twice); finally ``rng.bytes(4)`` per view (``view['rng']``).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Union

import numpy as np
import PIL.Image
import torch
from scipy.spatial.transform import Rotation

from dust3r.datasets.base.base_stereo_view_dataset import (BaseStereoViewDataset, check_types, is_good_type,
                                                           transpose_to_landscape, view_name)
from dust3r.datasets.utils import cropping
from dust3r.datasets.utils.transforms import ImgNorm
from dust3r.utils.geometry import depthmap_to_absolute_camera_coordinates, depthmap_to_camera_coordinates, geotrf
from mast3r.datasets.utils.cropping import (crop_to_homography, extract_correspondences_from_pts3d,
                                            gen_random_crops, in2d_rect)

__all__ = ["MASt3RBaseStereoViewDataset", "rotate_90", "transpose_to_landscape", "view_name", "is_good_type"]

_ROT90_MODES = (False, "same", "diff")


class MASt3RBaseStereoViewDataset(BaseStereoViewDataset):
    """Stereo pairs with correspondences (see the module docstring).

    Args (keyword only), besides the base class's ``split, resolution, transform, aug_crop, seed, mask_sky``:
        aug_crop: False, an int (random crops of an image virtually upscaled by up to that many pixels) or
            'auto' (``max(0.1 S, S (S - R) // R)`` with S the image's and R the resolution's short side).
        aug_swap: swap the two views with probability 0.5.
        aug_monocular: probability of serving two copies of the first view.
        aug_portrait_or_landscape: allow the random orientation of square-ish images in the centred crop.
        aug_rot90: False, 'same' (one random multiple of 90 degrees for both views) or 'diff' (one per view).
        n_corres: number of correspondences per pair (0: none).
        nneg: fraction of negatives among them.
        n_tentative_crops: random crops tried per view.
    """

    def __init__(self, *, split: Optional[str] = None, resolution=None, transform=ImgNorm,
                 aug_crop: Union[bool, int, str] = False, aug_swap: bool = False,
                 aug_monocular: Union[bool, float] = False, aug_portrait_or_landscape: bool = True,
                 aug_rot90: Union[bool, str] = False, n_corres: int = 0, nneg: float = 0,
                 n_tentative_crops: int = 4, seed: Optional[int] = None, mask_sky: bool = False):
        super().__init__(split=split, resolution=resolution, transform=transform, aug_crop=aug_crop, seed=seed,
                         mask_sky=mask_sky)
        if aug_rot90 not in _ROT90_MODES:
            raise ValueError(f"aug_rot90 must be False, 'same' or 'diff', got {aug_rot90!r}")
        if isinstance(aug_crop, str) and aug_crop != "auto":
            raise ValueError(f"aug_crop must be False, an int or 'auto', got {aug_crop!r}")
        if isinstance(n_corres, bool) or not isinstance(n_corres, int) or n_corres < 0:
            raise ValueError(f"n_corres must be a non-negative int, got {n_corres!r}")
        if not 0 <= nneg < 1:
            raise ValueError(f"nneg must be in [0, 1), got {nneg!r}")
        self.aug_swap = aug_swap
        self.aug_monocular = aug_monocular
        self.aug_portrait_or_landscape = aug_portrait_or_landscape
        self.aug_rot90 = aug_rot90
        self.n_corres = n_corres
        self.nneg = nneg
        self.n_tentative_crops = n_tentative_crops

    def _swap_view_aug(self, views: List[Dict[str, Any]]) -> None:
        if self._rng.random() < 0.5:
            views.reverse()

    def _crop_resize_if_necessary(self, image, depthmap, intrinsics, resolution, rng=None, info=None):
        """Orient (portrait / random for square-ish images), rescale (LANCZOS) and centre-crop to ``resolution``.

        Unlike DUSt3R's version there is no crop around the principal point first: the homography crops of
        :meth:`generate_crops_from_pair` handle off-centre principal points. Returns ``(image, depthmap, K)``.
        """
        if not isinstance(image, PIL.Image.Image):
            image = PIL.Image.fromarray(image)
        resolution = cropping.choose_orientation(image.size, resolution, rng,
                                                 random_transpose=self.aug_portrait_or_landscape)
        return cropping.centred_crop_resize(image, depthmap, intrinsics, resolution)

    @staticmethod
    def _crop_scale_margin(aug_crop, image_size, resolution) -> float:
        """Pixels of virtual upscaling for the random crops: ``aug_crop`` itself, or the 'auto' rule."""
        if aug_crop != "auto":
            return aug_crop
        S, R = min(image_size), min(resolution)
        return max(0.1 * S, S * (S - R) // R)

    def generate_crops_from_pair(self, view1, view2, resolution, aug_crop_arg, n_crops: int = 4, rng=np.random):
        """Crop both views in place to ``resolution`` (w, h, transposed for portrait views).

        ``aug_crop_arg`` False: :meth:`_crop_resize_if_necessary` on each view. Otherwise ``n_crops`` random crops
        per view (:func:`gen_random_crops`); the pair of crops sharing the most ground-truth matches wins and each
        is applied as a homography (camera rotated by ``R``, principal point centred).
        """
        views = [view1, view2]
        if aug_crop_arg is False:
            for view in views:
                view["img"], view["depthmap"], view["camera_intrinsics"] = self._crop_resize_if_necessary(
                    view["img"], view["depthmap"], view["camera_intrinsics"], resolution, rng=rng)
                view["pts3d"], view["valid_mask"] = depthmap_to_absolute_camera_coordinates(
                    view["depthmap"], view["camera_intrinsics"], view["camera_pose"])
            return

        corres = extract_correspondences_from_pts3d(*views, target_n_corres=None, rng=rng)
        view_crops, crop_resolutions, inside = [], [], []
        for i, view in enumerate(views):
            imsize = view["img"].size
            crop_res = cropping.choose_orientation(imsize, resolution, rng)
            margin = self._crop_scale_margin(aug_crop_arg, imsize, resolution)
            crops = gen_random_crops(imsize, n_crops, crop_res, aug_crop=margin, rng=rng)
            view_crops.append(crops)
            crop_resolutions.append(crop_res)
            inside.append(in2d_rect(corres[i], crops))
        overlap = np.float32(inside[0]).T @ np.float32(inside[1])
        best = np.unravel_index(overlap.argmax(), (n_crops, n_crops))
        for i, view in enumerate(views):
            _apply_homography_crop(view, view_crops[i][best[i]], crop_resolutions[i])

    def __getitem__(self, idx):
        idx, ar_idx = self._split_index(idx)
        rng = self._item_rng(idx)
        resolution = self._resolutions[ar_idx]
        views, idx = self._load_views(idx, resolution, rng)
        for v, view in enumerate(views):
            self._add_geometry(view, idx, ar_idx, v)

        self.generate_crops_from_pair(views[0], views[1], resolution=resolution, aug_crop_arg=self.aug_crop,
                                      n_crops=self.n_tentative_crops, rng=rng)
        for view in views:
            self._encode_image(view, rng)
            view["sky_mask"] = view["depthmap"] < 0  # depth fundamentally undefined

        if self.aug_swap:
            self._swap_view_aug(views)
        if self.aug_monocular and rng.random() < self.aug_monocular:
            views = [copy.deepcopy(views[0]) for _ in views]

        if self.n_corres > 0 and "corres" not in views[-1]:
            corres1, corres2, valid = extract_correspondences_from_pts3d(*views, self.n_corres, rng, nneg=self.nneg)
            views[0]["corres"], views[1]["corres"] = corres1, corres2
            views[0]["valid_corres"] = views[1]["valid_corres"] = valid

        if self.aug_rot90 == "same":
            rotate_90(views, k=rng.choice(4))
        elif self.aug_rot90 == "diff":
            rotate_90(views[:1], k=rng.choice(4))
            rotate_90(views[1:], k=rng.choice(4))

        for view in views:
            if "corres" not in view:
                view["corres"] = np.full((self.n_corres, 2), np.nan, dtype=np.float32)
            check_types(view)
            shape = view["depthmap"].shape
            if not (shape == tuple(view["img"].shape[1:]) == view["pts3d"].shape[:2] == view["valid_mask"].shape):
                raise ValueError(f"inconsistent shapes in view {view_name(view)}")
        for view in views:
            transpose_to_landscape(view)
            view["rng"] = int.from_bytes(rng.bytes(4), "big")
        return views


def _apply_homography_crop(view: Dict[str, Any], crop: np.ndarray, resolution) -> None:
    """Warp a view (image, depth, optional ``track_labels``) in place to the homography replicating ``crop``."""
    imsize, K_new, R, H = crop_to_homography(view["camera_intrinsics"], crop, resolution)
    K_old = view["camera_intrinsics"]
    view["camera_intrinsics"] = K_new
    view["camera_pose"] = view["camera_pose"].copy()
    view["camera_pose"][:3, :3] = view["camera_pose"][:3, :3] @ R
    homo8 = (H / H[2, 2]).ravel().tolist()[:8]
    persp = PIL.Image.Transform.PERSPECTIVE
    view["img"] = view["img"].transform(imsize, persp, homo8, resample=PIL.Image.Resampling.BICUBIC)
    # depth along the new optical axis, warped with nearest neighbour
    depth_new_axis = depthmap_to_camera_coordinates(view["depthmap"], K_old)[0] @ R[:, 2]
    view["depthmap"] = np.array(PIL.Image.fromarray(depth_new_axis).transform(imsize, persp, homo8))
    if "track_labels" in view:  # uint64 labels: PIL needs uint32, go through the unique values
        mapping, labels = np.unique(view["track_labels"], return_inverse=True)
        labels = labels.astype(np.uint32).reshape(view["track_labels"].shape)
        warped = np.array(PIL.Image.fromarray(labels).transform(imsize, persp, homo8))
        view["track_labels"] = mapping[warped]
    view["pts3d"], view["valid_mask"] = depthmap_to_absolute_camera_coordinates(
        view["depthmap"], view["camera_intrinsics"], view["camera_pose"])


def rotate_90(views: List[Dict[str, Any]], k: int = 1) -> None:
    """Rotate views in place by ``k`` quarter turns (image content counter-clockwise, as ``np.rot90``).

    Updates image, depth, masks, ``corres``, ``true_shape``, intrinsics (principal point moved, focals swapped for
    odd ``k``), the pose (camera rolled about its optical axis) and recomputes ``pts3d``.
    """
    RT = np.eye(4, dtype=np.float32)
    RT[:3, :3] = Rotation.from_euler("z", 90 * k, degrees=True).as_matrix()
    for view in views:
        view["img"] = torch.rot90(view["img"], k=k, dims=(-2, -1))
        view["depthmap"] = np.rot90(view["depthmap"], k=k).copy()
        view["camera_pose"] = view["camera_pose"] @ RT
        H, W = view["depthmap"].shape
        # pixel map of the rotation: (x, y) -> RT2 @ (x, y, 1)
        RT2 = np.eye(3, dtype=np.float32)
        RT2[:2, :2] = RT[:2, :2] * ((1, -1), (-1, 1))
        RT2[:2, 2] = {0: (0, 0), 1: (0, H - 1), 2: (W - 1, H - 1), 3: (W - 1, 0)}[int(k) % 4]
        view["camera_intrinsics"][:2, 2] = geotrf(RT2, view["camera_intrinsics"][:2, 2])
        if k % 2 == 1:
            K = view["camera_intrinsics"]
            np.fill_diagonal(K, K.diagonal()[[1, 0, 2]])
        view["pts3d"], _ = depthmap_to_absolute_camera_coordinates(view["depthmap"], view["camera_intrinsics"],
                                                                   view["camera_pose"])
        view["valid_mask"] = np.rot90(view["valid_mask"], k=k).copy()
        view["sky_mask"] = np.rot90(view["sky_mask"], k=k).copy()
        if "corres" in view:
            view["corres"] = geotrf(RT2, view["corres"]).round().astype(view["corres"].dtype)
        view["true_shape"] = np.int32((H, W))
