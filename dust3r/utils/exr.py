"""OpenEXR depth maps: the float images the processed training layouts store (``<frame>.exr``).

The original code reads and writes them with OpenCV (``cv2.imread(path, cv2.IMREAD_ANYDEPTH)`` /
``cv2.imwrite(path, depth)``). Many OpenCV wheels are built without OpenEXR (``cv2.getBuildInformation()`` says
``OpenEXR: NO``); there the official ``openexr`` bindings (``pip install openexr``) are used instead, imported only
when an EXR file is touched. Files are interchangeable between the two paths: one channel is stored as ``'Y'`` (what
OpenCV writes for a single-channel image), several as ``'B', 'G', 'R'(, 'A')`` read back in RGB order, with ZIP
compression (OpenEXR's and OpenCV's default).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Union

import numpy as np

__all__ = ["read_exr", "write_exr"]

PathLike = Union[str, "os.PathLike[str]"]


@lru_cache(maxsize=1)
def _cv2_has_openexr() -> bool:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2
    except ImportError:
        return False
    return any("OpenEXR" in line and "NO" not in line.split(":", 1)[-1]
               for line in cv2.getBuildInformation().splitlines())


def _openexr():
    try:
        import OpenEXR
    except ImportError as err:
        raise ImportError("reading/writing .exr depth maps needs OpenCV built with OpenEXR or the 'openexr' "
                          "package: pip install openexr") from err
    return OpenEXR


def read_exr(path: PathLike) -> np.ndarray:
    """Read an EXR image as float32: ``(H, W)`` for one channel, ``(H, W, C)`` (RGB(A) order) for several.

    Raises:
        FileNotFoundError: no such file. OSError: the file is not a readable EXR image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EXR file not found: {path!r}")
    if _cv2_has_openexr():
        import cv2
        img = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
        if img is None:
            raise OSError(f"OpenCV could not read the EXR file {path!r}")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        return np.asarray(img, dtype=np.float32)
    OpenEXR = _openexr()
    try:
        with OpenEXR.File(path) as exr:
            channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    except Exception as err:  # the bindings raise plain Exception subclasses for corrupt files
        raise OSError(f"cannot read the EXR file {path!r}: {err}") from err
    if len(channels) == 1:
        (arr,) = channels.values()
        return np.asarray(arr, dtype=np.float32)
    if "RGB" in channels or "RGBA" in channels:  # the bindings merge R, G, B(, A) into one array
        return np.asarray(channels.get("RGBA", channels.get("RGB")), dtype=np.float32)
    names = sorted(channels)
    return np.stack([channels[n] for n in names], axis=-1).astype(np.float32)


def write_exr(path: PathLike, array: np.ndarray, half: bool = False) -> None:
    """Write ``array`` ``(H, W)`` (or ``(H, W, 3|4)`` RGB(A)) as a ZIP-compressed EXR image.

    Args:
        path: output ``.exr`` file.
        array: float image; stored as float32, or float16 with ``half=True`` (what the original Habitat renderer
            writes with ``cv2.IMWRITE_EXR_TYPE_HALF``).
    """
    path = os.fspath(path)
    array = np.ascontiguousarray(array, dtype=np.float16 if half else np.float32)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"write_exr expects (H, W) or (H, W, 3|4), got shape {array.shape}")
    if _cv2_has_openexr():
        import cv2
        img = array.astype(np.float32)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF] if half else []
        if not cv2.imwrite(path, img, params):
            raise OSError(f"OpenCV could not write {path!r}")
        return
    OpenEXR = _openexr()
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    if array.ndim == 2:
        channels = {"Y": array}
    else:
        channels = {"RGBA" if array.shape[2] == 4 else "RGB": array}
    with OpenEXR.File(header, channels) as exr:
        exr.write(path)
