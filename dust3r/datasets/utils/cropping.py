"""Crop and rescale an image together with its depth map (or masks) and its intrinsics, keeping them consistent.

Every function takes the OpenCV intrinsics convention (pixel centres at integer coordinates) and returns a new
intrinsics matrix for the output pixels. Images are ``PIL.Image.Image`` (numpy arrays are converted), depth maps
float32 ``(H, W)`` arrays (any ``(H, W, ...)`` array works: masks, label maps), resolutions ``(width, height)``.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image

from dust3r.utils.geometry import colmap_to_opencv_intrinsics, opencv_to_colmap_intrinsics

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # the readers decode .exr depth maps with cv2
import cv2  # noqa: E402

__all__ = ["ImageList", "rescale_image_depthmap", "camera_matrix_of_crop", "crop_image_depthmap",
           "bbox_from_intrinsics_in_out", "colmap_to_opencv_intrinsics", "opencv_to_colmap_intrinsics",
           "choose_orientation", "centred_crop_resize", "lanczos", "bicubic"]

lanczos = PIL.Image.Resampling.LANCZOS
bicubic = PIL.Image.Resampling.BICUBIC

ImageLike = Union[PIL.Image.Image, np.ndarray]


class ImageList:
    """One or several images of the same size, resized / cropped together."""

    def __init__(self, images: Union[ImageLike, Iterable[ImageLike]]):
        if not isinstance(images, (tuple, list, set)):
            images = [images]
        self.images = [im if isinstance(im, PIL.Image.Image) else PIL.Image.fromarray(im) for im in images]

    def __len__(self) -> int:
        return len(self.images)

    def to_pil(self):
        """The single image, or a tuple of them when there are several."""
        return tuple(self.images) if len(self.images) > 1 else self.images[0]

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height), shared by all images (ValueError otherwise)."""
        sizes = {im.size for im in self.images}
        if len(sizes) != 1:
            raise ValueError(f"images of an ImageList differ in size: {sorted(sizes)}")
        return next(iter(sizes))

    def resize(self, *args, **kwargs) -> "ImageList":
        return ImageList([im.resize(*args, **kwargs) for im in self.images])

    def crop(self, *args, **kwargs) -> "ImageList":
        return ImageList([im.crop(*args, **kwargs) for im in self.images])


def rescale_image_depthmap(image, depthmap: Optional[np.ndarray], camera_intrinsics: np.ndarray,
                           output_resolution: Sequence[int], force: bool = True):
    """Rescale image (and depth map) by one factor so that both sides are >= ``output_resolution`` (w, h).

    The factor is ``max(output / input) + 1e-8``; the new size ``floor(input * factor)``. The image is resampled
    with LANCZOS when shrinking, BICUBIC when enlarging; the depth map with nearest neighbour (no depth blending
    across edges). With ``force=False`` an image that would be enlarged is returned unchanged.

    Returns ``(image, depthmap, camera_intrinsics)`` for the rescaled pixels.
    """
    images = ImageList(image)
    in_res = np.array(images.size)  # (W, H)
    out_res = np.array(output_resolution)
    if out_res.shape != (2,):
        raise ValueError(f"output_resolution must be (width, height), got {output_resolution!r}")
    if depthmap is not None and tuple(depthmap.shape[:2]) != images.size[::-1]:
        raise ValueError(f"depth map shape {depthmap.shape[:2]} does not match image size (w, h) {images.size}")
    scale = max(out_res / in_res) + 1e-8
    if scale >= 1 and not force:
        return images.to_pil(), depthmap, camera_intrinsics
    new_res = np.floor(in_res * scale).astype(int)
    images = images.resize(tuple(int(s) for s in new_res), resample=lanczos if scale < 1 else bicubic)
    if depthmap is not None:
        depthmap = cv2.resize(depthmap, tuple(int(s) for s in new_res), fx=scale, fy=scale,
                              interpolation=cv2.INTER_NEAREST)
    K = camera_matrix_of_crop(camera_intrinsics, in_res, new_res, scaling=scale)
    return images.to_pil(), depthmap, K


def camera_matrix_of_crop(input_camera_matrix: np.ndarray, input_resolution, output_resolution,
                          scaling: float = 1, offset_factor: float = 0.5, offset=None) -> np.ndarray:
    """Intrinsics after scaling the image by ``scaling`` then cropping ``output_resolution`` (w, h) out of it.

    The crop's top-left corner is ``offset`` (pixels of the scaled image), by default ``offset_factor`` times the
    margins (0.5 = centred crop). Scaling acts on the COLMAP convention (pixel corners), so a pixel centre stays one.
    """
    margins = np.asarray(input_resolution) * scaling - output_resolution
    if not np.all(margins >= 0.0):
        raise ValueError(f"cannot crop {tuple(np.asarray(output_resolution).tolist())} out of "
                         f"{tuple(np.asarray(input_resolution).tolist())} scaled by {scaling}")
    if offset is None:
        offset = offset_factor * margins
    K = opencv_to_colmap_intrinsics(input_camera_matrix)
    K[:2, :] *= scaling
    K[:2, 2] -= offset
    return colmap_to_opencv_intrinsics(K)


def crop_image_depthmap(image, depthmap: np.ndarray, camera_intrinsics: np.ndarray, crop_bbox):
    """Crop ``(l, t, r, b)`` (pixels, r/b exclusive) out of image(s) and depth map; shift the principal point."""
    l, t, r, b = (int(c) for c in crop_bbox)
    images = ImageList(image).crop((l, t, r, b))
    K = camera_intrinsics.copy()
    K[0, 2] -= l
    K[1, 2] -= t
    return images.to_pil(), depthmap[t:b, l:r], K


def bbox_from_intrinsics_in_out(input_camera_matrix: np.ndarray, output_camera_matrix: np.ndarray,
                                output_resolution) -> Tuple[int, int, int, int]:
    """Crop box ``(l, t, r, b)`` that turns ``input_camera_matrix`` into ``output_camera_matrix`` (same focal)."""
    out_w, out_h = output_resolution
    l, t = np.int32(np.round(input_camera_matrix[:2, 2] - output_camera_matrix[:2, 2]))
    return (l, t, l + out_w, t + out_h)


def choose_orientation(image_size: Tuple[int, int], resolution: Tuple[int, int], rng,
                       random_transpose: bool = True) -> Tuple[int, int]:
    """Target (w, h) for an image of ``image_size`` (w, h); ``resolution`` is landscape (w >= h).

    Portrait images (H > 1.1 W) get the transposed resolution. For square-ish images (0.9 < H/W < 1.1) and a
    non-square resolution one ``rng.integers(2)`` is drawn (always, so that the random stream does not depend on
    ``random_transpose``); 1 transposes the resolution when ``random_transpose`` is set.
    """
    if resolution[0] < resolution[1]:
        raise ValueError(f"resolution must be landscape (width >= height), got {tuple(resolution)}")
    W, H = image_size
    if H > 1.1 * W:
        return tuple(resolution[::-1])
    if 0.9 < H / W < 1.1 and resolution[0] != resolution[1]:
        if rng.integers(2) and random_transpose:
            return tuple(resolution[::-1])
    return tuple(resolution)


def centred_crop_resize(image, depthmap, intrinsics, resolution, extra: int = 0):
    """Rescale so that ``resolution + extra`` fits, then crop ``resolution`` (w, h) around the centre."""
    target = np.array(resolution) + extra
    image, depthmap, intrinsics = rescale_image_depthmap(image, depthmap, intrinsics, target)
    K2 = camera_matrix_of_crop(intrinsics, image.size, resolution, offset_factor=0.5)
    bbox = bbox_from_intrinsics_in_out(intrinsics, K2, resolution)
    return crop_image_depthmap(image, depthmap, intrinsics, bbox)
