"""Choosing and writing the image files that COLMAP / nerfstudio exports reference."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ._common import atomic_file
from .scene_data import SceneData

logger = logging.getLogger(__name__)

#: extensions Pillow writes (other names get '.png' appended when the image must be re-encoded)
_WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
             ".webp": "WEBP"}


@dataclass
class ImagePlan:
    """How image ``i`` is exported: the file name, whether it is the original (else the network image) and the
    camera matching that file: ``K`` (3, 3) OpenCV (integer pixel centres), ``width`` x ``height``."""
    name: str
    original: bool
    K: np.ndarray
    width: int
    height: int


def plan_images(data: SceneData, original_resolution: bool, write_images: bool) -> List[ImagePlan]:
    """Per image: the resolution used (original when requested, recorded and, if images are written, when the
    original file is readable) and the output file name."""
    plans = []
    for i, name in enumerate(data.names):
        use_orig = original_resolution and data.has_original(i)
        if use_orig and write_images and data.source_file(i) is None:
            logger.warning("%s: original file not available, exporting the network image (%dx%d) instead",
                           name, *data.network_size(i))
            use_orig = False
        if write_images and os.path.splitext(name)[1].lower() not in _WRITABLE:
            name = name + ".png"
        K, w, h = data.camera(i, use_orig)
        plans.append(ImagePlan(name=name, original=use_orig, K=K, width=w, height=h))
    return plans


def _orientation_is_identity(img) -> bool:
    try:
        return int(img.getexif().get(0x0112, 1)) == 1
    except Exception:  # malformed EXIF: be safe and re-encode
        return False


def write_image(data: SceneData, i: int, plan: ImagePlan, folder: str) -> Tuple[int, int]:
    """Write image ``i`` into ``folder`` as ``plan.name``; returns its (width, height).

    The original file is copied byte for byte when it needs no EXIF rotation and keeps its extension;
    otherwise its decoded (EXIF-transposed) pixels are re-encoded, so that the stored pixels are those the
    intrinsics refer to.
    """
    import PIL.Image
    from PIL.ImageOps import exif_transpose
    dest = os.path.join(folder, plan.name)
    fmt = _WRITABLE.get(os.path.splitext(plan.name)[1].lower(), "PNG")
    if plan.original:
        src = data.source_file(i)
        with PIL.Image.open(src) as img:
            same_ext = os.path.splitext(src)[1].lower() == os.path.splitext(plan.name)[1].lower()
            copy_bytes = same_ext and _orientation_is_identity(img)
            rgb = exif_transpose(img).convert("RGB")
        if rgb.size != (plan.width, plan.height):
            raise ValueError(f"views_meta[{i}]: file {src!r} decodes to {rgb.size[0]}x{rgb.size[1]} but the "
                             f"resize record says {plan.width}x{plan.height}")
        if copy_bytes:
            with atomic_file(dest) as f, open(src, "rb") as fsrc:
                shutil.copyfileobj(fsrc, f)
            return rgb.size
    else:
        rgb = PIL.Image.fromarray(data.image_u8(i))
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with atomic_file(dest) as f:
        rgb.save(f, format=fmt, **kwargs)
    return rgb.size
