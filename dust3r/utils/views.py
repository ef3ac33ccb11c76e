"""What a view dict of :func:`dust3r.utils.image.load_images` carries besides its pixels.

One home for the key lists that the aligners, the scenes, the exports and the front ends pass along with each
image (how it was resized and cropped, where it came from), so that a key added here travels everywhere.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

__all__ = ["VIEW_META_KEYS", "GEOMETRY_KEYS", "view_meta", "model_patch_size"]

#: keys of a view that describe how the image was resized / cropped and where it came from
VIEW_META_KEYS: Tuple[str, ...] = ("orig_shape", "resized_shape", "crop_offset", "resize_scale", "filepath",
                                   "true_shape", "instance")

#: the subset that maps network pixels back to original-image pixels
GEOMETRY_KEYS: Tuple[str, ...] = ("orig_shape", "resized_shape", "crop_offset")


def view_meta(view: Mapping[str, Any], keys: Tuple[str, ...] = VIEW_META_KEYS) -> Dict[str, Any]:
    """The metadata entries of ``view`` (a load_images dict) that are present, without the pixels."""
    return {k: view[k] for k in keys if k in view}


def model_patch_size(model: Any, default: int = 16) -> int:
    """Patch size (pixels) of a CroCo-style model, read from ``model.patch_embed.patch_size``; ``default`` if absent."""
    ps = getattr(getattr(model, "patch_embed", None), "patch_size", default)
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)
