"""Ground-truth pixel correspondences from depth + cameras, and random crops replicated by homographies.

Pixels are (x, y) with integer coordinates at pixel centres; a flat pixel index is ``x + W * y``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from dust3r.utils.device import to_numpy
from dust3r.utils.geometry import geotrf, inv

__all__ = ["reciprocal_1d", "extract_correspondences_from_pts3d", "reproject_view", "reproject", "ravel_xy",
           "unravel_xy", "crop_to_homography", "gen_random_crops", "in2d_rect"]


def reciprocal_1d(corres_1_to_2: np.ndarray, corres_2_to_1: np.ndarray, ret_recip: bool = False):
    """Pixels of image 1 whose match in image 2 maps back to them: ``(pos1, pos2)`` flat indices
    (plus the boolean reciprocity mask of image 1 first with ``ret_recip``)."""
    is_recip = corres_2_to_1[corres_1_to_2] == np.arange(len(corres_1_to_2))
    pos1 = is_recip.nonzero()[0]
    pos2 = corres_1_to_2[pos1]
    return (is_recip, pos1, pos2) if ret_recip else (pos1, pos2)


def ravel_xy(pos: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """(..., 2) float pixel positions -> flat indices ``x + W * y`` after rounding and clipping to the image."""
    H, W = shape
    with np.errstate(invalid="ignore"):
        qx, qy = pos.reshape(-1, 2).round().astype(np.int32).T
    return np.clip(qx, 0, W - 1) + W * np.clip(qy, 0, H - 1)


def unravel_xy(pos: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Flat indices -> (N, 2) int64 (x, y)."""
    ys, xs = np.unravel_index(pos, shape)
    return np.stack((xs, ys), axis=1).astype(np.int64)


def reproject(pts3d: np.ndarray, K: np.ndarray, world2cam: np.ndarray, shape: Tuple[int, int]):
    """Project world points (H, W, 3) into a camera (K, world2cam 4x4) of image ``shape``: ``((H, W), flat idx)``."""
    H, W, three = pts3d.shape
    if three != 3:
        raise ValueError(f"pts3d must be (H, W, 3), got {pts3d.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = geotrf(K @ world2cam[:3], pts3d, norm=1, ncol=2)
    return (H, W), ravel_xy(pos, shape)


def reproject_view(pts3d: np.ndarray, view2: Dict[str, Any]):
    """:func:`reproject` into ``view2``'s camera (``camera_intrinsics``, ``camera_pose`` cam2world)."""
    return reproject(pts3d, view2["camera_intrinsics"], inv(view2["camera_pose"]), view2["pts3d"].shape[:2])


def _normalised(mask: np.ndarray) -> np.ndarray:
    return mask / mask.sum()


def extract_correspondences_from_pts3d(view1: Dict[str, Any], view2: Dict[str, Any], target_n_corres: Optional[int],
                                       rng=np.random, ret_xy: bool = True, nneg: float = 0):
    """Ground-truth matches of two views from their world points (``pts3d``) and cameras.

    A pixel of view 1 matches the pixel of view 2 its 3D point projects to (rounded), if that pixel's point
    projects back to it (reciprocity). With ``target_n_corres=None`` returns every match ``(pos1, pos2)``.
    Otherwise returns ``(pos1, pos2, valid)`` of exactly ``target_n_corres`` rows: ``int(n * (1 - nneg))``
    positives (a ``rng.permutation`` subset when there are more), then negatives — non-reciprocal pixels drawn
    without replacement, independently in each view — to fill up; when negatives run short, more positives.
    Positions are (N, 2) int64 (x, y) (flat indices with ``ret_xy=False``), ``valid`` (N,) bool.
    """
    view1, view2 = to_numpy((view1, view2))
    shape1, c12 = reproject_view(view1["pts3d"], view2)
    shape2, c21 = reproject_view(view2["pts3d"], view1)
    recip1, pos1, pos2 = reciprocal_1d(c12, c21, ret_recip=True)
    recip2 = c12[c21] == np.arange(len(c21))

    if target_n_corres is None:
        return (unravel_xy(pos1, shape1), unravel_xy(pos2, shape2)) if ret_xy else (pos1, pos2)

    n_nonrecip1, n_nonrecip2 = int((~recip1).sum()), int((~recip2).sum())
    n_pos = min(len(pos1), int(target_n_corres * (1 - nneg)))
    n_neg = min(target_n_corres - n_pos, n_nonrecip1, n_nonrecip2)
    n_pos = target_n_corres - n_neg  # not enough negatives: more positives
    if n_pos > len(pos1):
        raise ValueError(f"cannot draw {target_n_corres} correspondences: {len(pos1)} matches and "
                         f"{min(n_nonrecip1, n_nonrecip2)} non-matching pixels available")

    valid = np.ones(n_pos, dtype=bool)
    if n_pos < len(pos1):
        keep = rng.permutation(len(pos1))[:n_pos]
        pos1, pos2 = pos1[keep], pos2[keep]
    if n_neg > 0:
        neg1 = rng.choice(shape1[0] * shape1[1], size=n_neg, replace=False, p=_normalised(~recip1))
        neg2 = rng.choice(shape2[0] * shape2[1], size=n_neg, replace=False, p=_normalised(~recip2))
        pos1, pos2 = np.r_[pos1, neg1], np.r_[pos2, neg2]
        valid = np.r_[valid, np.zeros(n_neg, dtype=bool)]
    if ret_xy:
        pos1, pos2 = unravel_xy(pos1, shape1), unravel_xy(pos2, shape2)
    return pos1, pos2, valid


def _rotation_origin_to_pt(target: np.ndarray) -> np.ndarray:
    """Rotation taking the optical axis (0, 0, 1) to the ray of the normalised point (x, y, 1)."""
    x, y = target
    rot_z = np.arctan2(y, x)
    rot_y = np.arctan(np.linalg.norm(target))
    return Rotation.from_euler("ZYZ", [rot_z, rot_y, -rot_z]).as_matrix()


def _normalised_point(K: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """(x, y) pixel -> (x, y) on the normalised image plane of intrinsics K."""
    Kinv_t = np.linalg.inv(K).T  # keeps K's dtype, like the original
    p = pixel @ Kinv_t[:-1, :] + Kinv_t[-1:, :]
    return (p / p[..., -1:])[..., :2].reshape(2)


def crop_to_homography(K: np.ndarray, crop: np.ndarray, target_size: Optional[Sequence[int]] = None):
    """Replicate a rectangular ``crop`` (l, t, r, b) with a rotation of the camera so that the crop's centre
    becomes the principal point.

    Returns ``(imsize, K2, R, H)``: output size (w, h), the new intrinsics (same focal, centred principal point;
    scaled to ``target_size`` when given), the rotation ``R`` (new camera in old camera frame, so
    ``cam2world_new[:3, :3] = cam2world[:3, :3] @ R``) and the homography ``H = K R K2^-1`` mapping output pixels
    to input pixels. The rotation aligns the crop corner farthest from the principal point, so the warp stays
    within the image.
    """
    crop = np.round(crop)
    crop_size = crop[2:] - crop[:2]
    K2 = K.copy()
    K2[:2, 2] = crop_size / 2
    corners = crop.reshape(-1, 2)
    corner_idx = np.abs(corners - K[:2, 2]).argmax(0)
    corner = corners[corner_idx, [0, 1]]
    corner2 = np.c_[[0, 0], crop_size][[0, 1], corner_idx]
    old_pt = _normalised_point(K, corner)
    new_pt = _normalised_point(K2, corner2)
    R = _rotation_origin_to_pt(old_pt) @ np.linalg.inv(_rotation_origin_to_pt(new_pt))
    if target_size is not None:
        imsize = target_size
        target = np.asarray(target_size)
        K2[:2] *= min(target / crop_size)
        K2[:2, 2] = target / 2
    else:
        imsize = tuple(np.int32(crop_size).tolist())
    return imsize, K2, R, K @ R @ np.linalg.inv(K2)


def gen_random_crops(imsize: Sequence[int], n_crops: int, resolution: Sequence[int], aug_crop: float, rng=np.random):
    """``n_crops`` random crops (l, t, r, b) float64 with the aspect ratio of ``resolution``, as large as the image
    allows, in an image virtually upscaled by ``exp(uniform(0, log(1 + aug_crop / min(imsize))))``.

    Draws ``rng.uniform`` once, then ``rng.random((n_crops, 2))``.
    """
    crop_wh = np.array(resolution) * min(np.array(imsize) / resolution)
    scaling = np.exp(rng.uniform(0, np.log(1 + aug_crop / min(imsize))))
    big = np.int32(np.array(imsize) * scaling)
    topleft = rng.random((n_crops, 2)) * (big - crop_wh)
    return np.c_[topleft, topleft + crop_wh] / scaling


def in2d_rect(corres: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """(N, M) bool: whether point ``corres[n]`` (x, y) lies in crop ``crops[m]`` (l, t, r, b), r/b exclusive."""
    inside = (corres[:, None] >= crops[None, :, 0:2]) & (corres[:, None] < crops[None, :, 2:4])
    return inside.all(axis=-1)
