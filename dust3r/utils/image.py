"""Image loading and preprocessing for DUSt3R / MASt3R inference.

The central entry point is :func:`load_images`, which turns image files, a folder, in-memory
``PIL.Image.Image`` objects or numpy arrays into the list of *view dicts* the networks consume.
Its pixels are bit-identical to the original DUSt3R preprocessing:

1. decode, apply the EXIF orientation (``PIL.ImageOps.exif_transpose``) and convert to 8-bit RGB
   (``convert('RGB')``: an alpha channel is *dropped*, never composited; see "Colour modes");
2. resize with Pillow (LANCZOS when the long side shrinks, BICUBIC otherwise):

   * ``size == 224``: the *short* side becomes ~224 (the long side is set to
     ``round(224 * long/short)``, the short side follows by rounding),
   * any other size: the *long* side becomes ``size``;
   each side is ``round(side * target_long / long_side)`` (Python rounding, half to even);
3. centre crop:

   * ``size == 224``: a square of side ``2 * min(W // 2, H // 2)`` around ``(W // 2, H // 2)``,
   * otherwise each side is cut to the largest multiple of ``patch_size`` not above
     ``2 * (side // 2)``, centred on ``(W // 2, H // 2)``; a *square* resized image with
     ``square_ok=False`` is further cut to a height of 3/4 of its width (e.g. 512x512 -> 512x384).
     Box coordinates are rounded half-to-even, exactly as ``PIL.Image.crop`` does with float boxes;
4. normalise: ``img = (u8 / 255 - 0.5) / 0.5`` in float32 (torchvision ``ToTensor`` +
   ``Normalize(0.5, 0.5)`` reproduced without torchvision), shape ``(1, 3, H, W)``, values in [-1, 1].

View dict keys
--------------
The keys of the original code:

* ``img``: float32 tensor ``(1, 3, H, W)`` in [-1, 1];
* ``true_shape``: ``np.int32`` array ``[[H, W]]``;
* ``idx``: int, position of the image in the returned list;
* ``instance``: ``str(idx)``.

Keys added by this reimplementation (shape ``(1, k)`` like ``true_shape`` so that views collate by
concatenation along the first axis):

* ``orig_shape``: ``np.int32 [[H0, W0]]``, size of the source image *after* EXIF transposition;
* ``resized_shape``: ``np.int32 [[H1, W1]]``, size after the resize, before the crop;
* ``crop_offset``: ``np.int32 [[x0, y0]]``, top-left corner of the crop box in resized pixels;
* ``resize_scale``: ``np.float32 [[sx, sy]] = [[W1 / W0, H1 / H0]]`` (informative; the helper
  functions use the exact integer shapes above);
* ``filepath``: the path the image was read from (``str``), or ``None`` for in-memory inputs.

Coordinate convention
---------------------
Pixel coordinates are ``(x, y)`` with integer values at pixel centres. The maps between network
pixels and original pixels (:func:`pixels_to_original`, :func:`original_to_pixels`,
:func:`intrinsics_to_original`, :func:`intrinsics_from_original`) live in
:mod:`dust3r.utils.image_coords` and are re-exported here.

Colour modes
------------
``RGB``, ``RGBA``, ``L``, ``LA``, ``P``, ``PA``, ``1``, ``CMYK``, ``YCbCr`` ... go through
``convert('RGB')`` exactly as in the original (alpha dropped). 16-bit images (``I;16*``, and ``I``,
which Pillow uses for 16/32-bit integer data) are clipped to [0, 65535] and reduced to 8 bits with
``v >> 8`` (the high byte; Pillow's own ``convert`` would saturate every value above 255 to white).
``F`` (float) images are assumed to be in [0, 1]: clipped, then ``round(v * 255)``. Numpy inputs:
``uint8`` as is, ``uint16`` via ``>> 8``, ``bool`` as 0/255, other integers must lie in [0, 255],
floats must lie in [0, 1] and become ``round(v * 255)``; shapes ``(H, W)``, ``(H, W, 1)``,
``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped).

Inputs
------
A folder is listed with ``sorted(os.listdir())`` and filtered by extension, case-insensitively
(jpg, jpeg, png, bmp, tif, tiff, webp; heic / heif when ``pillow-heif`` is installed, otherwise
they are skipped with a warning); other files are ignored, as in the original. In an explicit
list, unlike the original (which silently skipped paths with other extensions, shifting ``idx``),
every path must decode as an image or an :class:`ImageLoadError` naming it is raised.
HEIC / HEIF files need the optional ``pillow-heif`` package; its Pillow opener is registered on
first use (never at import time).

Sizes other than 224 / 512 work as in the original, but a square image with ``square_ok=False``
gets a height of 3/4 of its width, which is a multiple of 16 only when the size is a multiple of
64 (e.g. 160 -> 160x120): :func:`load_images` then logs a warning (package logger) naming such images.

Names kept for code written against the original
------------------------------------------------
:data:`ImgNorm` (PIL image -> ``(3, H, W)`` tensor in [-1, 1], the normalisation of :func:`load_images`),
:func:`imread_cv2` (OpenCV reader returning RGB, also for depth maps) and :func:`_resize_pil_image`
(long-edge resize with the loader's filter choice).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch
from PIL.ImageOps import exif_transpose
from tqdm.auto import tqdm

from .image_coords import (ResizeCropPlan, _check_positive_int, _long_edge_resize, compute_resize_crop,
                           intrinsics_from_original, intrinsics_to_original, original_to_pixels, pixels_to_original)

logger = logging.getLogger(__name__)

__all__ = [
    "ImageLoadError",
    "ResizeCropPlan",
    "IMAGE_EXTENSIONS",
    "HEIF_EXTENSIONS",
    "compute_resize_crop",
    "load_images",
    "rgb",
    "img_to_arr",
    "pixels_to_original",
    "original_to_pixels",
    "intrinsics_to_original",
    "intrinsics_from_original",
    "heif_available",
    "image_files_in_folder",
    "ImgNorm",
    "imread_cv2",
]

#: Extensions (lower case) picked up when listing a folder; HEIF ones only with pillow-heif.
IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HEIF_EXTENSIONS: Tuple[str, ...] = (".heic", ".heif")

ImageInput = Union[str, "os.PathLike[str]", PIL.Image.Image, np.ndarray]

_HEIF_REGISTERED = False


class ImageLoadError(OSError):
    """An image file exists but cannot be decoded (not an image, truncated, unsupported format)."""


# --------------------------------------------------------------------------------------------
# optional HEIF support
# --------------------------------------------------------------------------------------------
def heif_available() -> bool:
    """Whether the optional ``pillow-heif`` package is importable (nothing is imported here)."""
    return _HEIF_REGISTERED or importlib.util.find_spec("pillow_heif") is not None


def __getattr__(name: str) -> Any:
    # ``heif_support_enabled`` was a module-level bool in the original; computed on access here
    if name == "heif_support_enabled":
        return heif_available()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_heif_opener(path: str) -> None:
    """Register pillow-heif's opener with Pillow once; clear error naming ``path`` if missing."""
    global _HEIF_REGISTERED
    if _HEIF_REGISTERED:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError as exc:
        raise ImageLoadError(
            f"cannot read HEIC/HEIF image {path!r}: the optional package pillow-heif is not "
            "installed (pip install pillow-heif)"
        ) from exc
    register_heif_opener()
    _HEIF_REGISTERED = True
    logger.debug("registered the pillow-heif opener")


def _resize_pil_image(img: PIL.Image.Image, long_edge_size: int) -> PIL.Image.Image:
    """Resize a PIL image so that its long side is ``long_edge_size`` (aspect ratio kept).

    The resize step of :func:`load_images` (LANCZOS when shrinking, BICUBIC otherwise), under the name
    the original gave it.

    Args:
        img: PIL image of size ``(W, H)``.
        long_edge_size: target length of ``max(W, H)`` in pixels (> 0).

    Returns:
        the resized PIL image (a new image, same mode).
    """
    long_edge_size = _check_positive_int(long_edge_size, "long_edge_size")
    new_size, resample = _long_edge_resize(img.size[0], img.size[1], long_edge_size)
    return img.resize(new_size, resample)


# --------------------------------------------------------------------------------------------
# decoding / conversion to 8-bit RGB
# --------------------------------------------------------------------------------------------
def _to_rgb8(img: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see "Colour modes" in the module docstring)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        gray = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return PIL.Image.fromarray(gray).convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        gray = np.rint(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).astype(np.uint8)
        return PIL.Image.fromarray(gray).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError(f"cannot convert image {name} (mode {mode!r}) to RGB: {exc}") from exc


def _open_image_file(path: str) -> PIL.Image.Image:
    """Decode ``path`` fully (file closed afterwards), EXIF orientation applied, mode untouched."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    if os.path.isdir(path):
        raise ImageLoadError(f"expected an image file but {path!r} is a directory")
    if path.lower().endswith(HEIF_EXTENSIONS):
        _register_heif_opener(path)
    try:
        with PIL.Image.open(path) as handle:
            img = exif_transpose(handle)  # always a new, fully loaded image
    except PIL.UnidentifiedImageError as exc:
        hint = ""
        if not heif_available():
            hint = " (if it is a HEIC/HEIF image: pip install pillow-heif)"
        raise ImageLoadError(f"cannot read {path!r}: not a recognised image file{hint}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"cannot read image {path!r}: {exc}") from exc
    return img


def _array_to_pil(arr: np.ndarray, name: str) -> PIL.Image.Image:
    """Numpy image ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> RGB PIL image."""
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[:, :, 0] if arr.shape[2] == 1 else arr[:, :, :3]
    elif arr.ndim != 2:
        raise ValueError(f"{name}: expected an array of shape (H, W), (H, W, 1), (H, W, 3) or "
                         f"(H, W, 4), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty image array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        u8 = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        u8 = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: integer image of dtype {arr.dtype} must have values in "
                             f"[0, 255], got [{arr.min()}, {arr.max()}]")
        u8 = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError(f"{name}: float image must have finite values in [0, 1]; clip or "
                             f"rescale it first (got range [{np.nanmin(arr)}, {np.nanmax(arr)}])")
        u8 = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"{name}: unsupported image array dtype {arr.dtype}")
    u8 = np.ascontiguousarray(u8)
    if u8.ndim == 2:
        return PIL.Image.fromarray(u8).convert("RGB")
    return PIL.Image.fromarray(u8)


@functools.lru_cache(maxsize=1)
def _normalisation_lut() -> np.ndarray:
    """(256,) float32: value of ``Normalize(0.5, 0.5)(ToTensor()(u8))`` for every byte.

    Computed with the very torch operations torchvision applies (float32 division by 255, then
    subtraction of and division by float32 0.5), so the lookup is bit-exact.
    """
    levels = torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255)
    half = torch.as_tensor(0.5, dtype=torch.float32)
    return levels.sub(half).div(half).numpy().copy()


class ImageNormalizer:
    """torchvision's ``Compose([ToTensor(), Normalize((0.5,) * 3, (0.5,) * 3)])`` without torchvision.

    ``ImgNorm(pic)`` takes an RGB ``PIL.Image.Image`` or an ``(H, W, 3)`` uint8 array and returns a
    float32 tensor ``(3, H, W)`` equal to ``(u8 / 255 - 0.5) / 0.5`` (values in [-1, 1]), bit-identical
    to torchvision's result and to the ``img`` of :func:`load_images` (``load_images`` uses it). A
    floating-point ``(H, W, 3)`` array is taken as already scaled to [0, 1] (like ``ToTensor``) and keeps
    its dtype. Other inputs raise: they would not give the 3 channels the networks expect.
    """

    def __call__(self, pic: Union[PIL.Image.Image, np.ndarray]) -> torch.Tensor:
        if isinstance(pic, PIL.Image.Image):
            if pic.mode != "RGB":
                raise ValueError(f"ImgNorm expects an RGB image, got mode {pic.mode!r}: "
                                 "call .convert('RGB') first")
            pic = np.asarray(pic, dtype=np.uint8)
        elif not isinstance(pic, np.ndarray):
            raise TypeError(f"ImgNorm expects a PIL image or a numpy array, got {type(pic).__name__}")
        if pic.ndim != 3 or pic.shape[2] != 3:
            raise ValueError(f"ImgNorm expects an (H, W, 3) RGB image, got shape {pic.shape}")
        if pic.dtype == np.uint8:
            chw = _normalisation_lut()[pic.transpose(2, 0, 1)]  # (3, H, W), contiguous copy
            return torch.from_numpy(np.ascontiguousarray(chw))
        if not np.issubdtype(pic.dtype, np.floating):
            raise ValueError(f"ImgNorm expects uint8 or float values, got dtype {pic.dtype}")
        chw = torch.from_numpy(np.ascontiguousarray(pic.transpose(2, 0, 1)))
        half = torch.as_tensor(0.5, dtype=chw.dtype)
        return chw.sub(half).div(half)

    def __repr__(self) -> str:
        return "ImgNorm(ToTensor, Normalize(mean=0.5, std=0.5))"


#: the original's module-level transform: RGB PIL image -> float32 (3, H, W) in [-1, 1]
ImgNorm = ImageNormalizer()


def _normalise(img: PIL.Image.Image) -> torch.Tensor:
    """RGB PIL image (W, H) -> float32 tensor (1, 3, H, W): the ``img`` of a view."""
    return ImgNorm(img)[None]


# --------------------------------------------------------------------------------------------
# input enumeration
# --------------------------------------------------------------------------------------------
def image_files_in_folder(folder: str) -> Tuple[List[str], List[str]]:
    """The image files of ``folder`` as :func:`load_images` selects them, and the HEIC/HEIF files it skips.

    Files are sorted by name and selected by extension, case-insensitively (not recursive). HEIC/HEIF
    files count as images only when ``pillow-heif`` is installed.

    Args:
        folder: path of a folder.

    Returns:
        ``(files, skipped_heif)``: full paths of the images, and full paths of the HEIC/HEIF files left
        out because pillow-heif is missing (empty when it is installed).
    """
    heif_ok = heif_available()
    paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    paths = [p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS + HEIF_EXTENSIONS) and os.path.isfile(p)]
    if heif_ok:
        return paths, []
    files = [p for p in paths if not p.lower().endswith(HEIF_EXTENSIONS)]
    return files, [p for p in paths if p.lower().endswith(HEIF_EXTENSIONS)]


def _list_folder(folder: str) -> List[str]:
    """:func:`image_files_in_folder`, with a logged warning naming skipped HEIC files; error if none is left."""
    files, skipped = image_files_in_folder(folder)
    if skipped:
        names = ", ".join(os.path.basename(p) for p in skipped)
        if not files:
            raise ValueError(f"no images found in folder {folder!r}: its {len(skipped)} HEIC/HEIF file(s) "
                             f"({names}) need the optional package pillow-heif (pip install pillow-heif)")
        logger.warning("Skipping %d HEIC/HEIF image(s) in %s because pillow-heif is not installed "
                       "(pip install pillow-heif): %s", len(skipped), folder, names)
    if not files:
        exts = IMAGE_EXTENSIONS + (HEIF_EXTENSIONS if heif_available() else ())
        raise ValueError(f"no images found in folder {folder!r} (looked for {', '.join(exts)})")
    return files


def _normalise_inputs(folder_or_list: Any) -> List[Any]:
    """Turn the user input into a flat list of items (paths as str, PIL images, arrays)."""
    if isinstance(folder_or_list, (str, os.PathLike)):
        path = os.fspath(folder_or_list)
        if os.path.isdir(path):
            return list(_list_folder(path))
        if os.path.isfile(path):
            return [path]
        raise FileNotFoundError(f"no such image file or folder: {path!r}")
    if isinstance(folder_or_list, (PIL.Image.Image, np.ndarray)):
        return [folder_or_list]
    if isinstance(folder_or_list, (list, tuple)):
        items: List[Any] = []
        for k, item in enumerate(folder_or_list):
            if isinstance(item, (str, os.PathLike)):
                items.append(os.fspath(item))
            elif isinstance(item, (PIL.Image.Image, np.ndarray)):
                items.append(item)
            else:
                raise TypeError(f"load_images: item {k} has unsupported type {type(item).__name__}; "
                                "expected a path, a PIL.Image.Image or a numpy array")
        if not items:
            raise ValueError("load_images: the input list is empty, no images to load")
        return items
    raise TypeError(f"load_images: expected a folder, a path, a PIL image, a numpy array or a list "
                    f"of those, got {type(folder_or_list).__name__}")


def _item_name(item: Any, k: int) -> str:
    if isinstance(item, str):
        return repr(item)
    return f"input #{k} ({type(item).__name__})"


# --------------------------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------------------------
def load_images(folder_or_list: Union[ImageInput, Sequence[ImageInput]], size: int,
                square_ok: bool = False, verbose: bool = True,
                patch_size: int = 16) -> List[Dict[str, Any]]:
    """Load, resize, crop and normalise images into DUSt3R / MASt3R views.

    Args:
        folder_or_list: a folder (its image files sorted by name, selected by extension:
            jpg/jpeg/png/bmp/tif/tiff/webp, plus heic/heif with pillow-heif), a single image path,
            a ``PIL.Image.Image``, a numpy array, or a list/tuple mixing paths, PIL images and
            arrays (every path in a list must be a readable image, whatever its extension).
        size: 224 (short side to 224, centre square crop) or the long-side size (e.g. 512).
        square_ok: if False, square images (at sizes other than 224) are cropped to 3/4 height.
        verbose: show a tqdm progress bar and log per-image info.
        patch_size: crop sides to multiples of it (sizes other than 224).

    Returns:
        list of view dicts, one per image, in input order; keys described in the module docstring:
        ``img`` float32 (1, 3, H, W), ``true_shape`` int32 (1, 2), ``idx``, ``instance``,
        ``orig_shape`` int32 (1, 2), ``resized_shape`` int32 (1, 2), ``crop_offset`` int32 (1, 2),
        ``resize_scale`` float32 (1, 2), ``filepath`` (str or None).

    Raises:
        ValueError: bad ``size`` / ``patch_size``, empty input, no image in the folder, bad array.
        FileNotFoundError: a path that does not exist.
        ImageLoadError: (an ``OSError``) a file that cannot be decoded, or HEIC without pillow-heif.
        TypeError: an input of unsupported type.
    """
    size = _check_positive_int(size, "size")
    patch_size = _check_positive_int(patch_size, "patch_size")
    items = _normalise_inputs(folder_or_list)
    if verbose:
        source = folder_or_list if isinstance(folder_or_list, (str, os.PathLike)) else "a list"
        logger.info("loading %d image(s) from %s at size %d", len(items), source, size)

    views: List[Dict[str, Any]] = []
    odd_shapes: List[str] = []
    for k, item in enumerate(tqdm(items, desc="load_images", disable=not verbose, unit="img")):
        name = _item_name(item, k)
        filepath: Optional[str] = None
        if isinstance(item, str):
            filepath = item
            img = _to_rgb8(_open_image_file(item), name)
        elif isinstance(item, PIL.Image.Image):
            img = _to_rgb8(exif_transpose(item), name)
        else:
            img = _array_to_pil(np.asarray(item), name)

        w0, h0 = img.size
        if w0 == 0 or h0 == 0:
            raise ValueError(f"{name}: image has an empty size {w0}x{h0}")
        plan = compute_resize_crop(w0, h0, size, square_ok=square_ok, patch_size=patch_size)
        w, h = plan.final_size
        if w <= 0 or h <= 0:
            raise ValueError(f"{name}: size={size} with patch_size={patch_size} leaves an empty "
                             f"crop for a {w0}x{h0} image; use a larger size")
        resized = img.resize(plan.resized_size, plan.resample)
        cropped = resized.crop(plan.box)
        if w % patch_size or h % patch_size:
            odd_shapes.append(f"{name} -> {w}x{h}")

        w1, h1 = plan.resized_size
        views.append({
            "img": _normalise(cropped),
            "true_shape": np.array([[h, w]], dtype=np.int32),
            "idx": k,
            "instance": str(k),
            "orig_shape": np.array([[h0, w0]], dtype=np.int32),
            "resized_shape": np.array([[h1, w1]], dtype=np.int32),
            "crop_offset": np.array([[plan.box[0], plan.box[1]]], dtype=np.int32),
            "resize_scale": np.array([[w1 / w0, h1 / h0]], dtype=np.float32),
            "filepath": filepath,
        })
        if verbose:
            logger.info(" - %s: %dx%d -> resized %dx%d -> %dx%d", name, w0, h0, w1, h1, w, h)

    if odd_shapes:
        logger.warning("Image size %d gives %s whose sides are not multiples of the patch size %d, which "
                       "the model rejects; use 512 or 224, a size that is a multiple of %d, or square_ok=True.",
                       size, ", ".join(odd_shapes), patch_size, 4 * patch_size)
    if verbose:
        logger.info("found %d image(s)", len(views))
    return views


# --------------------------------------------------------------------------------------------
# small helpers used elsewhere
# --------------------------------------------------------------------------------------------
def rgb(ftensor: Any, true_shape: Optional[Any] = None) -> Any:
    """Network image(s) -> float RGB in [0, 1], channels last (numpy).

    Args:
        ftensor: tensor or array in [-1, 1] (or uint8 in [0, 255]) of shape (3, H, W), (H, W, 3),
            (B, 3, H, W) or (B, H, W, 3); or a list of those (converted one by one).
        true_shape: optional (H, W) (or [[H, W]]) to crop the top-left H x W region.

    Returns:
        float numpy array (H, W, 3) or (B, H, W, 3), clipped to [0, 1] (list in, list out).
    """
    if isinstance(ftensor, list):
        return [rgb(x, true_shape=true_shape) for x in ftensor]
    if isinstance(ftensor, torch.Tensor):
        ftensor = ftensor.detach().cpu().numpy()
    arr = np.asarray(ftensor)
    if arr.ndim == 3 and arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    elif arr.ndim == 4 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if true_shape is not None:
        h, w = (int(v) for v in np.asarray(true_shape).reshape(-1)[:2])
        arr = arr[..., :h, :w, :]
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255
    else:
        out = arr * 0.5 + 0.5
    return out.clip(min=0, max=1)


def img_to_arr(img: Union[str, "os.PathLike[str]", np.ndarray]) -> np.ndarray:
    """Path -> uint8 RGB array (H, W, 3) (EXIF orientation applied); arrays pass through."""
    if isinstance(img, (str, os.PathLike)):
        path = os.fspath(img)
        return np.asarray(_to_rgb8(_open_image_file(path), repr(path)))
    return img


def imread_cv2(path: Union[str, "os.PathLike[str]"], options: Optional[int] = None) -> np.ndarray:
    """Read an image or a depth map with OpenCV; colour images come back in RGB order.

    Args:
        path: image file. ``.exr`` files are read with ``cv2.IMREAD_ANYDEPTH`` by default (float depth
            maps); reading one sets ``OPENCV_IO_ENABLE_OPENEXR=1`` in the environment unless it is set. Where
            OpenCV is built without OpenEXR, :func:`dust3r.utils.exr.read_exr` reads it (``openexr`` package).
        options: ``cv2.imread`` flags (default ``cv2.IMREAD_COLOR``, e.g. ``cv2.IMREAD_UNCHANGED`` for a
            16-bit depth PNG).

    Returns:
        numpy array as OpenCV decodes it: ``(H, W, 3)`` RGB (a 4-channel read loses its alpha, as in the
        original), or ``(H, W)`` for single-channel reads (dtype as stored: uint8, uint16, float32).

    Raises:
        FileNotFoundError: no such file. OSError: OpenCV cannot decode it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    is_exr = path.lower().endswith(".exr")
    if is_exr:
        from .exr import _cv2_has_openexr, read_exr
        if not _cv2_has_openexr():  # an OpenCV wheel without OpenEXR: the openexr package reads it
            return read_exr(path)
        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV when it first decodes an EXR
    import cv2

    if options is None:
        options = cv2.IMREAD_ANYDEPTH if is_exr else cv2.IMREAD_COLOR
    img = cv2.imread(path, options)
    if img is None:
        raise OSError(f"OpenCV could not read {path!r} (imread flags {options})")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img
