"""Shared helpers of the localization datasets: network resolutions, resizing with its pixel transforms,
sparse 2D-3D maps at the network resolution, kapture poses and retrieval pair files.

Pixel convention: integer coordinates at pixel centres (OpenCV). The 3x3 ``to_orig`` / ``to_resize`` matrices map
pixel coordinates in the COLMAP convention (image spans ``[0, W]``), so a point is shifted by +0.5 before and
-0.5 after applying them (see :func:`rescale_points3d`).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from dust3r.export.colmap import qvec_to_rotmat
from dust3r.utils.geometry import geotrf

__all__ = ["ratios_resolutions", "get_HW_resolution", "get_resize_function", "rescale_points3d",
           "cam_to_world_from_kapture", "cam2world_from_qwxyz_t", "get_ordered_pairs_from_file", "sparse_pointmap",
           "pairsfile_path", "require", "model_maxdim"]

#: network input sizes (W, H) by aspect ratio, for the two trained maximum dimensions
ratios_resolutions = {
    224: {1.0: [224, 224]},
    512: {4 / 3: [512, 384], 32 / 21: [512, 336], 16 / 9: [512, 288], 2 / 1: [512, 256], 16 / 5: [512, 160]},
}


def model_maxdim(model: Any) -> int:
    """Long side of the model's input (``patch_embed.img_size``; the trained 512 for a model without it, e.g. the
    synthetic oracle)."""
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", (512, 512))
    return int(max(img_size)) if isinstance(img_size, (tuple, list)) else int(img_size)


def _resolutions(maxdim: int, patchsize: int) -> Dict[float, List[int]]:
    """The table of ``maxdim``; other sizes (small test models) scale the 512 table, rounded to patches."""
    if maxdim in ratios_resolutions:
        return ratios_resolutions[maxdim]
    if maxdim % patchsize:
        raise ValueError(f"maxdim={maxdim} is not a multiple of the patch size {patchsize}")
    return {ratio: [maxdim, max(patchsize, int(round(short * maxdim / 512 / patchsize)) * patchsize)]
            for ratio, (_, short) in ratios_resolutions[512].items()}


def _patch(patchsize) -> int:
    if isinstance(patchsize, (tuple, list)):
        if len(patchsize) != 2 or patchsize[0] != patchsize[1]:
            raise ValueError(f"square patches expected, got patch size {patchsize}")
        patchsize = patchsize[0]
    return int(patchsize)


def get_HW_resolution(H: int, W: int, maxdim: int, patchsize=16) -> List[int]:
    """Network input ``[H, W]`` for an ``H x W`` image: the trained size of the nearest aspect ratio.

    ``maxdim`` 512 and 224 use the original's tables; another multiple of the patch size scales the 512 table.
    """
    table = _resolutions(int(maxdim), _patch(patchsize))
    ratios = np.array(list(table.keys()))
    landscape = W >= H
    ratio = W / H if landscape else H / W
    res = table[ratios[np.argmin(np.abs(ratio - ratios))]]
    return [res[1], res[0]] if landscape else [res[0], res[1]]


def get_resize_function(maxdim: int, patch_size, H: int, W: int, is_mask: bool = False
                        ) -> Tuple[Callable[[torch.Tensor], torch.Tensor], np.ndarray, np.ndarray]:
    """Centre crop to the aspect ratio of the network size, then resize to it.

    Args:
        maxdim: long side of the network input; patch_size: the model's patch size.
        H, W: image size; is_mask: nearest-neighbour resizing (masks) instead of antialiased bilinear.

    Returns:
        ``(op, to_resize, to_orig)``: ``op`` maps a (C, H, W) tensor to the network size; ``to_resize`` (3, 3)
        maps original pixels to network pixels and ``to_orig`` back (COLMAP convention, see the module doc).
    """
    target_H, target_W = get_HW_resolution(H, W, maxdim=maxdim, patchsize=patch_size)
    if (target_H, target_W) == (H, W):
        return (lambda x: x), np.eye(3), np.eye(3)
    target_ratio = target_W / target_H
    crop_W, crop_H = W, H
    if abs(W / H - target_ratio) >= np.finfo(np.float32).eps:
        if W / H < target_ratio:
            crop_H = int(W / target_ratio)
        else:
            crop_W = int(H * target_ratio)
    top, left = int(round((H - crop_H) / 2.0)), int(round((W - crop_W) / 2.0))
    sx, sy = crop_W / target_W, crop_H / target_H
    to_orig = np.array([[sx, 0.0, left], [0.0, sy, top], [0.0, 0.0, 1.0]])
    to_resize = np.linalg.inv(to_orig)

    def op(x: torch.Tensor) -> torch.Tensor:
        x = x[..., top:top + crop_H, left:left + crop_W]
        if is_mask:
            return F.interpolate(x[None].float(), size=(target_H, target_W), mode="nearest-exact")[0].to(x.dtype)
        return F.interpolate(x[None], size=(target_H, target_W), mode="bilinear", antialias=True,
                             align_corners=False)[0]
    return op, to_resize, to_orig


def rescale_points3d(pts2d: np.ndarray, pts3d: np.ndarray, to_resize: np.ndarray, HR: int, WR: int
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Move sparse 2D-3D correspondences to a resized image.

    Args:
        pts2d: (N, 2) pixel positions (OpenCV convention) in the original image; pts3d: (N, 3) their 3D points.
        to_resize: (3, 3) original -> resized pixels (COLMAP convention); HR, WR: size of the resized image.

    Returns:
        ``(pts2d_rescaled, pts2d_rescaled_int, pts3d_rescaled, valid_rescaled)``: (N, 2) positions in the resized
        image (COLMAP convention), (M, 2) int64 nearest pixels of the points that fall inside, (HR, WR, 3)
        float32 map (NaN where no point) and its (HR, WR) bool validity.
    """
    pts2d_rescaled = geotrf(to_resize, np.asarray(pts2d, dtype=np.float64) + 0.5, norm=True)
    pix = np.round(pts2d_rescaled - 0.5).astype(np.int64)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < WR) & (pix[:, 1] >= 0) & (pix[:, 1] < HR)
    pix = pix[inside]
    pts3d_rescaled = np.full((HR, WR, 3), np.nan, dtype=np.float32)
    pts3d_rescaled[pix[:, 1], pix[:, 0]] = np.asarray(pts3d)[inside]
    return pts2d_rescaled, pix, pts3d_rescaled, np.isfinite(pts3d_rescaled.sum(axis=-1))


def sparse_pointmap(pts2d: np.ndarray, pts3d: np.ndarray, H: int, W: int) -> np.ndarray:
    """(H, W, 3) float32 map holding ``pts3d`` (N, 3) at the nearest pixel of ``pts2d`` (N, 2, OpenCV), NaN elsewhere."""
    return rescale_points3d(pts2d, pts3d, np.eye(3), H, W)[2]


def cam2world_from_qwxyz_t(q_wxyz, t) -> np.ndarray:
    """(4, 4) float64 cam2world of a world-to-camera pose given as a quaternion ``(w, x, y, z)`` (normalised here)
    and a translation (the COLMAP / kapture / submission-file layout)."""
    world2cam = np.eye(4)
    world2cam[:3, :3] = qvec_to_rotmat(np.asarray(q_wxyz, dtype=np.float64).reshape(4))
    world2cam[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return np.linalg.inv(world2cam)


def cam_to_world_from_kapture(kdata, timestamp, camera_id) -> np.ndarray:
    """(4, 4) float64 cam2world of a kapture record (kapture stores world-to-camera)."""
    world_to_cam = kdata.trajectories[timestamp, camera_id]
    return cam2world_from_qwxyz_t(world_to_cam.r_raw, world_to_cam.t_raw)


def get_ordered_pairs_from_file(pairsfile_path: str, topk_override: Optional[int] = None
                                ) -> Dict[str, List[Tuple[str, float]]]:
    """Retrieval pairs ``{query: [(map_image, score), ...]}`` best first.

    Reads kapture pair files (``query, map, score`` lines, ``#`` comments) as ``kapture_localization`` does, and
    the hloc format (``query/NAME database/cutouts/NAME`` separated by a space, score 1) used for InLoc.
    """
    if not os.path.isfile(pairsfile_path):
        raise FileNotFoundError(f"pairs file not found: {pairsfile_path}")
    pairs: Dict[str, List[Tuple[str, float]]] = {}
    with open(pairsfile_path, "r") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.startswith("#"):
                continue
            fields = [x.strip() for x in line.split(",")]
            if len(fields) == 3:
                query, mapping, score = fields[0], fields[1], float(fields[2])
            elif len(fields) == 1 and len(line.split()) == 2:  # hloc: "query/x database/cutouts/y"
                query, mapping = line.split()
                query, mapping, score = query.replace("query/", "", 1), mapping.replace("database/cutouts/", "", 1), 1.0
            else:
                raise ValueError(f"{pairsfile_path}:{lineno}: expected 'query, map, score' or 'query map', got {line!r}")
            pairs.setdefault(query, []).append((mapping, score))
    for query, items in pairs.items():
        items = sorted(items, key=lambda x: x[1], reverse=True)  # stable: equal scores keep the file order
        pairs[query] = items[:topk_override] if topk_override is not None else items
    return pairs


def pairsfile_path(base: str, pairsfile: str, folder: str = "pairfiles") -> str:
    """``base/<folder>/query/<pairsfile>.txt``; the other spelling (``pairsfile`` / ``pairfiles``: the original's
    README and code disagree for 7-Scenes and InLoc) when only that one exists."""
    other = "pairsfile" if folder == "pairfiles" else "pairfiles"
    first, second = (os.path.join(base, name, "query", pairsfile + ".txt") for name in (folder, other))
    return second if not os.path.isfile(first) and os.path.isfile(second) else first


def require(module: str, what: str):
    """Import an optional dependency, or raise ImportError saying what needs it and how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ImportError(f"{what} needs the '{package}' package: pip install {package}") from None
