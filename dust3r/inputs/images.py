"""Checks of image paths before any model is loaded: they exist, are files, decode, and have a usable size.

:func:`check_image_files` expands folders the way :func:`dust3r.utils.image.load_images` lists them (sorted by
name, selected by extension, case-insensitive, not recursive) and opens every file's header with Pillow. The pixel
data is read only to detect a truncated or corrupt file: JPEG at 1/8 scale (Pillow's ``draft``), PNG through its
chunk checksums (``verify``, nothing decompressed), other formats fully when they are not huge.

HEIC / HEIF images need the optional ``pillow-heif`` package. Without it an explicitly named HEIC file is an error,
and a folder's HEIC files are skipped with a logged warning that names them (an error when nothing else is left).
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import warnings
from typing import Iterable, List, Sequence, Tuple, Union

from .base import InputError, show_path

logger = logging.getLogger(__name__)

__all__ = ["MIN_SIDE", "MAX_ASPECT_RATIO", "MAX_PIXELS", "check_image_files", "read_image_size"]

#: smallest accepted image side in pixels (one 16-pixel patch)
MIN_SIDE = 16
#: largest accepted long side / short side ratio (at size 512 the short side keeps at least one patch)
MAX_ASPECT_RATIO = 16.0
#: largest accepted number of pixels (Pillow's own decompression-bomb error threshold)
MAX_PIXELS = 2 * 89_478_485
#: formats other than JPEG / PNG are decoded fully (to detect truncation) up to this many pixels
_FULL_DECODE_PIXELS = 40_000_000
#: EXIF orientations (5..8) that swap width and height once applied
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

PathLike = Union[str, "os.PathLike[str]"]


def _image_module():
    """:mod:`dust3r.utils.image` (imported on first use: it imports torch). Its names are looked up at call time,
    so a test that patches ``heif_available`` there changes what both the checks and the loader see."""
    from dust3r.utils import image
    return image


def _stat_or_error(path: str, what: str) -> os.stat_result:
    """``os.stat(path)`` with a one-line error for missing paths, broken symlinks and symlink loops."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} {show_path(path)} is a symbolic link loop") from None
        if os.path.islink(path):
            raise InputError(f"{what} {show_path(path)} is a broken symbolic link (to "
                             f"{show_path(os.readlink(path))})") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"no such image file or folder: {show_path(path)}") from None
        raise InputError(f"cannot access {what} {show_path(path)}: {exc.strerror or exc}") from None


def _is_heif(path: str) -> bool:
    return path.lower().endswith(_image_module().HEIF_EXTENSIONS)


def _list_folder(folder: str) -> List[str]:
    """Image files of ``folder`` sorted by name; HEIC without pillow-heif skipped with a warning naming them."""
    img = _image_module()
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(f"cannot list image folder {show_path(folder)}: {exc.strerror or exc}") from None
    heif_ok = img.heif_available()
    files: List[str] = []
    skipped_heif: List[str] = []
    for name in names:
        lower = name.lower()
        if not lower.endswith(img.IMAGE_EXTENSIONS + img.HEIF_EXTENSIONS):
            continue
        full = os.path.join(folder, name)
        mode = _stat_or_error(full, "image").st_mode
        if stat.S_ISDIR(mode):
            logger.debug("ignoring the sub-folder %s (folders are not searched recursively)", full)
            continue
        if not stat.S_ISREG(mode):
            raise InputError(f"image {show_path(full)} is not a regular file (a device, pipe or socket)")
        if lower.endswith(img.HEIF_EXTENSIONS) and not heif_ok:
            skipped_heif.append(name)
            continue
        files.append(full)
    if skipped_heif:
        listed = ", ".join(skipped_heif[:5]) + (" ..." if len(skipped_heif) > 5 else "")
        if not files:
            raise InputError(f"image folder {show_path(folder)} holds only HEIC/HEIF images ({listed}) and the "
                             "optional package pillow-heif is not installed: pip install pillow-heif")
        logger.warning("skipping %d HEIC/HEIF image(s) in %s because pillow-heif is not installed "
                       "(pip install pillow-heif): %s", len(skipped_heif), folder, listed)
    if not files:
        exts = ", ".join(img.IMAGE_EXTENSIONS + (img.HEIF_EXTENSIONS if heif_ok else ()))
        raise InputError(f"no images found in folder {show_path(folder)} (looked for {exts})")
    return files


def _expand(item: PathLike) -> List[str]:
    """One user-given path -> the image files it stands for (a file, or a folder's images)."""
    if not isinstance(item, (str, os.PathLike)):
        raise InputError(f"image inputs must be paths, got {type(item).__name__} {item!r}")
    path = os.fspath(item)
    if not isinstance(path, str) or not path:
        raise InputError(f"image paths must be non-empty text, got {path!r}")
    mode = _stat_or_error(path, "image path").st_mode
    if stat.S_ISDIR(mode):
        return _list_folder(path)
    if not stat.S_ISREG(mode):
        raise InputError(f"image path {show_path(path)} is not a regular file (a device, pipe or socket)")
    return [path]


def _require_heif(path: str) -> None:
    img = _image_module()
    if not img.heif_available():
        raise InputError(f"cannot read HEIC/HEIF image {show_path(path)}: the optional package pillow-heif is "
                         "not installed (pip install pillow-heif)")
    try:
        img._register_heif_opener(path)
    except OSError as exc:
        raise InputError(str(exc)) from None


def _check_shape(path: str, width: int, height: int) -> None:
    """Refuse images that are too small, too elongated or too large, saying which limit is crossed."""
    if min(width, height) < MIN_SIDE:
        raise InputError(f"image {show_path(path)} is {width}x{height} pixels: too small (each side needs at "
                         f"least {MIN_SIDE} pixels)")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise InputError(f"image {show_path(path)} is {width}x{height} pixels: its aspect ratio {ratio:.1f}:1 is "
                         f"more extreme than {MAX_ASPECT_RATIO:g}:1 (crop it first)")
    if width * height > MAX_PIXELS:
        raise InputError(f"image {show_path(path)} is {width}x{height} pixels: too large (more than "
                         f"{MAX_PIXELS / 1e6:.0f} megapixels; downscale it first)")


def _check_pixels(path: str) -> None:
    """Read the pixel stream of ``path`` cheaply enough to detect a truncated or corrupt file."""
    import PIL.Image

    with PIL.Image.open(path) as im:
        width, height = im.size
        if im.format in ("JPEG", "MPO"):
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # DCT-domain downscale: reads, barely decodes
            im.load()
        elif im.format == "PNG":
            im.verify()  # chunk CRCs up to IEND, no decompression (must come right after open)
        elif width * height <= _FULL_DECODE_PIXELS:
            im.load()


def _open_checked(path: str, pixels: bool = True) -> Tuple[int, int]:
    """Open ``path`` with Pillow, check its size (and its data when ``pixels``); returns its (width, height) after
    the EXIF orientation."""
    import PIL.Image

    size_bytes = os.path.getsize(path)
    if size_bytes == 0:
        raise InputError(f"image file {show_path(path)} is empty (0 bytes)")
    if _is_heif(path):
        _require_heif(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)  # our own limit is checked below
            with PIL.Image.open(path) as im:
                width, height = im.size
                _check_shape(path, width, height)
                orientation = _orientation(im)
            if pixels:
                _check_pixels(path)
    except InputError:
        raise
    except PIL.Image.DecompressionBombError:
        raise InputError(f"image {show_path(path)} is too large (more than {MAX_PIXELS / 1e6:.0f} megapixels; "
                         "downscale it first)") from None
    except PIL.UnidentifiedImageError:
        hint = "" if _image_module().heif_available() else " (if it is a HEIC/HEIF image: pip install pillow-heif)"
        raise InputError(f"cannot read {show_path(path)}: not a recognised image file{hint}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"cannot read image {show_path(path)}: truncated or corrupt file ({exc})") from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def _orientation(im) -> int:
    """EXIF orientation tag of an open Pillow image (1 when absent or unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value)
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1


def read_image_size(path: PathLike) -> Tuple[int, int]:
    """``(width, height)`` of an image file as :func:`dust3r.utils.image.load_images` sees it (after the EXIF
    orientation), read from the header only.

    Raises:
        InputError: the file is missing, unreadable, not an image or has an unusable size.
    """
    path = os.fspath(path)
    _stat_or_error(path, "image")
    return _open_checked(path, pixels=False)


def check_image_files(paths: Union[PathLike, Iterable[PathLike]]) -> List[str]:
    """Expand folders and check that every image decodes, before any model is loaded.

    Args:
        paths: a file or folder path, or a sequence of them. A folder contributes its image files
            (``.jpg .jpeg .png .bmp .tif .tiff .webp``, plus ``.heic .heif`` with pillow-heif) sorted by name;
            it is not searched recursively, so symbolic-link loops below it are never followed.
            An explicitly named file must decode as an image whatever its extension.

    Returns:
        the image file paths, in order (folders expanded in place).

    Raises:
        InputError: one line naming the first bad input: missing path, broken symbolic link or link loop, empty
            folder, 0-byte / truncated / corrupt / non-image file, HEIC without pillow-heif, an image smaller than
            :data:`MIN_SIDE`, more elongated than :data:`MAX_ASPECT_RATIO` or larger than :data:`MAX_PIXELS`.
    """
    items: Sequence[PathLike] = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no input images given")
    files: List[str] = []
    for item in items:
        files.extend(_expand(item))
    seen = {}
    for path in files:
        _open_checked(path)
        real = os.path.realpath(path)
        if real in seen:
            logger.warning("the image %s is given twice (also as %s)", path, seen[real])
        seen.setdefault(real, path)
    return files
