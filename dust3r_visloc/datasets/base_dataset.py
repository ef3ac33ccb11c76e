"""Base class of the localization datasets and the view dicts they return.

``dataset[i]`` is a list of views: the query first, then its ``topk`` retrieved map images. Every view holds

* ``image_name`` (str), ``idx`` (position in the list), ``rgb`` (PIL image, original size);
* ``intrinsics`` (3, 3) float64 in the OpenCV convention (pixel centres at integers) of the original image, and
  ``distortion`` (4,) OpenCV ``k1, k2, p1, p2``;
* ``cam_to_world`` (4, 4) float64 ground truth, or None when the dataset has none (queries of online benchmarks);
* ``rgb_rescaled`` (3, h, w) float32 in [-1, 1] at the network resolution and ``to_orig`` (3, 3) mapping its
  pixels to the original image (COLMAP convention, see :mod:`dust3r_visloc.datasets.utils`);

and map views also ``pts3d`` (H, W, 3) float32 world points (NaN where unknown) with ``valid`` (H, W) bool at
the original resolution, and ``pts3d_rescaled`` / ``valid_rescaled`` at the network resolution.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from dust3r.utils.image import ImgNorm

from .utils import get_resize_function, model_maxdim, rescale_points3d

__all__ = ["BaseVislocDataset", "load_rgb", "base_view", "attach_points"]


def load_rgb(path: str) -> PIL.Image.Image:
    """The RGB image at ``path`` (FileNotFoundError naming it when missing)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with PIL.Image.open(path) as im:
        return im.convert("RGB")


def base_view(rgb: PIL.Image.Image, name: str, idx: int, intrinsics: np.ndarray, distortion: Sequence[float],
              cam_to_world: Optional[np.ndarray], maxdim: int, patch_size) -> Dict[str, Any]:
    """A view dict (see the module doc) without 3D points; ``intrinsics`` already in the OpenCV convention."""
    W, H = rgb.size
    resize, to_resize, to_orig = get_resize_function(maxdim, patch_size, H, W)
    return {
        "intrinsics": np.asarray(intrinsics, dtype=np.float64),
        "distortion": np.asarray(distortion, dtype=np.float64).reshape(4),
        "cam_to_world": None if cam_to_world is None else np.asarray(cam_to_world, dtype=np.float64),
        "rgb": rgb,
        "rgb_rescaled": resize(ImgNorm(rgb)),
        "to_orig": to_orig,
        "to_resize": to_resize,
        "idx": idx,
        "image_name": name,
    }


def attach_points(view: Dict[str, Any], pts2d: np.ndarray, pts3d: np.ndarray) -> Dict[str, Any]:
    """Add the 3D points of a map view, at the original and the network resolution.

    Args:
        view: from :func:`base_view`.
        pts2d: (N, 2) float pixel positions (OpenCV convention) in the original image.
        pts3d: (N, 3) world points seen there.
    """
    W, H = view["rgb"].size
    pts2d = np.asarray(pts2d, dtype=np.float64).reshape(-1, 2)
    pts3d = np.asarray(pts3d, dtype=np.float32).reshape(-1, 3)
    full = rescale_points3d(pts2d, pts3d, np.eye(3), H, W)[2]
    HR, WR = view["rgb_rescaled"].shape[1:]
    _, _, rescaled, valid_rescaled = rescale_points3d(pts2d, pts3d, view["to_resize"], HR, WR)
    full = torch.from_numpy(full)
    view.update(pts3d=full, valid=full.sum(dim=-1).isfinite(), pts3d_rescaled=torch.from_numpy(rescaled),
                valid_rescaled=torch.from_numpy(valid_rescaled))
    return view


class BaseVislocDataset:
    """``len(dataset)`` queries; ``dataset[i]`` the query view then its ``topk`` map views.

    Call :meth:`set_resolution` with the model before indexing: views are resized to its input size.
    """

    maxdim: Optional[int] = None
    patch_size: Any = None

    def __init__(self) -> None:
        self.maxdim = None
        self.patch_size = None

    def set_resolution(self, model: Any) -> None:
        """Read the network input size from ``model.patch_embed`` (``img_size``, ``patch_size``); a model without
        ``img_size`` (e.g. the synthetic oracle) gets the trained 512."""
        self.maxdim = model_maxdim(model)
        self.patch_size = getattr(getattr(model, "patch_embed", None), "patch_size", 16)

    def _check_resolution(self) -> None:
        if self.maxdim is None or self.patch_size is None:
            raise RuntimeError(f"{type(self).__name__}: call set_resolution(model) before reading views")

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, idx: int) -> List[Dict[str, Any]]:
        raise NotImplementedError
