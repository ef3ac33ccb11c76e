"""Checks of user-given calibration: known intrinsics and poses, and the image names they are keyed by.

Conventions (the repository's): intrinsics ``K`` (3, 3) in **original-image pixels** (the image as
:func:`dust3r.utils.image.load_images` decodes it, after the EXIF orientation), pixel centres at integer
coordinates; poses ``cam2world`` (4, 4) with OpenCV camera axes (x right, y down, z forward).

JSON files accepted (the format of ``mast3r.reconstruct --known-intrinsics``, kept):

* intrinsics, one camera shared by every image: ``{"fx": .., "fy": .., "cx": .., "cy": ..}``, ``{"K": 3x3}`` or a
  bare 3x3 list; or one entry per image ``{"<image>": <one of those>, ...}``;
* poses, one entry per image: ``{"<image>": 4x4 | 3x4 | {"cam2world": 4x4} | {"world2cam": 4x4}, ...}``.

``<image>`` is matched by :func:`match_names`: full path first, then the trailing path components, then the base
name, the last two only when exactly one input image fits.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import InputError, show_path

logger = logging.getLogger(__name__)

__all__ = ["check_intrinsics_matrix", "check_cam2world", "match_names", "read_known_intrinsics",
           "read_known_poses"]

#: principal point accepted within this fraction of the image size outside the image (a generous margin)
PRINCIPAL_POINT_MARGIN = 0.5
#: focal lengths above this many times the image's long side are refused (a 1000 mm lens on a phone sensor)
MAX_FOCAL_OVER_SIZE = 1000.0
#: largest accepted fx / fy ratio (either way)
MAX_FOCAL_RATIO = 10.0
#: skew accepted up to this fraction of fx (calibration tools print tiny non-zero skews)
SKEW_TOLERANCE = 1e-3
#: tolerance of the rotation checks (R^T R = I, det R = +1) for poses written with ~6 decimals
ROTATION_TOLERANCE = 1e-4


def _float_matrix(value: Any, where: str, shapes: Sequence[Tuple[int, int]], what: str) -> np.ndarray:
    """``value`` as a finite float64 matrix of one of ``shapes`` or an InputError naming ``where``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} must be a matrix of numbers, got {value!r:.80}") from None
    if arr.shape not in shapes:
        expected = " or ".join(f"{r}x{c}" for r, c in shapes)
        raise InputError(f"{where}: {what} must be a {expected} matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: {what} contains non-finite values (NaN or inf)")
    return arr


def check_intrinsics_matrix(K: Any, image_wh: Optional[Tuple[int, int]] = None, where: str = "K") -> np.ndarray:
    """Check a pinhole intrinsics matrix; returns it as float64 ``(3, 3)``.

    Args:
        K: ``(3, 3)`` ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
        image_wh: ``(width, height)`` of the image it belongs to, in the same pixels; enables the checks of the
            principal point (inside the image with a margin of :data:`PRINCIPAL_POINT_MARGIN` of its size) and of
            absurd focal lengths. ``None`` skips them.
        where: what to call the matrix in messages (e.g. ``"K.json['img_000.png']"``).

    Raises:
        InputError: wrong shape, non-finite, last row not ``[0, 0, 1]``, non-zero lower entries, focal not positive,
            skew above :data:`SKEW_TOLERANCE` * fx, fx / fy beyond :data:`MAX_FOCAL_RATIO`, or (with ``image_wh``)
            principal point far outside the image or focal above :data:`MAX_FOCAL_OVER_SIZE` times its long side.
    """
    K = _float_matrix(K, where, [(3, 3)], "the intrinsics")
    if not np.allclose(K[2], [0.0, 0.0, 1.0], rtol=0.0, atol=1e-9):
        raise InputError(f"{where}: the last row of the intrinsics must be [0, 0, 1], got {K[2].tolist()}")
    if K[1, 0] != 0.0:
        raise InputError(f"{where}: K[1][0] must be 0, got {K[1, 0]:g}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise InputError(f"{where}: focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    if abs(K[0, 1]) > SKEW_TOLERANCE * fx:
        raise InputError(f"{where}: skew K[0][1]={K[0, 1]:g} is not supported (pinhole cameras with zero skew)")
    if max(fx / fy, fy / fx) > MAX_FOCAL_RATIO:
        raise InputError(f"{where}: fx={fx:g} and fy={fy:g} differ by more than {MAX_FOCAL_RATIO:g}x")
    if image_wh is not None:
        width, height = (float(v) for v in image_wh)
        lo_x, hi_x = -PRINCIPAL_POINT_MARGIN * width, (1 + PRINCIPAL_POINT_MARGIN) * width
        lo_y, hi_y = -PRINCIPAL_POINT_MARGIN * height, (1 + PRINCIPAL_POINT_MARGIN) * height
        if not (lo_x <= cx <= hi_x and lo_y <= cy <= hi_y):
            raise InputError(f"{where}: principal point (cx={cx:g}, cy={cy:g}) is far outside the "
                             f"{width:g}x{height:g} image (accepted: cx in [{lo_x:g}, {hi_x:g}], "
                             f"cy in [{lo_y:g}, {hi_y:g}])")
        if max(fx, fy) > MAX_FOCAL_OVER_SIZE * max(width, height):
            raise InputError(f"{where}: focal length {max(fx, fy):g} px is absurd for a {width:g}x{height:g} image")
    return K


def check_cam2world(T: Any, where: str = "cam2world") -> np.ndarray:
    """Check a rigid camera-to-world pose; returns it as float64 ``(4, 4)``.

    Args:
        T: ``(4, 4)`` ``[[R, t], [0, 0, 0, 1]]`` (a ``(3, 4)`` ``[R | t]`` gets the last row appended).
        where: what to call the pose in messages.

    Raises:
        InputError: wrong shape, non-finite, last row not ``[0, 0, 0, 1]``, ``R`` not orthonormal (within
            :data:`ROTATION_TOLERANCE`; scaled poses are refused) or a reflection (det -1).
    """
    T = _float_matrix(T, where, [(4, 4), (3, 4)], "the pose")
    if T.shape == (3, 4):
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-9):
        raise InputError(f"{where}: the last row of a pose must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    gram_error = float(np.abs(R.T @ R - np.eye(3)).max())
    if gram_error > ROTATION_TOLERANCE:
        raise InputError(f"{where}: the rotation part is not orthonormal (max |R^T R - I| = {gram_error:.2g}; "
                         "scaled or sheared poses are not supported)")
    if np.linalg.det(R) < 0:
        raise InputError(f"{where}: the rotation part has determinant -1 (a reflection, not a rotation)")
    return T


# ----------------------------------------------------------------------------------------------------------------
# names -> images
# ----------------------------------------------------------------------------------------------------------------
def _components(path: str) -> Tuple[str, ...]:
    return tuple(p for p in os.path.normpath(path).replace("\\", "/").split("/") if p not in ("", "."))


def _candidates(key: str, image_paths: Sequence[str]) -> List[int]:
    """Indices of the images ``key`` can name, by the most specific rule that finds any."""
    absolute = os.path.abspath(key)
    exact = [i for i, p in enumerate(image_paths) if p == key or os.path.abspath(p) == absolute]
    if exact:
        return exact
    parts = _components(key)
    if len(parts) > 1:  # trailing components: 'dupA/same.png' names '/data/dupA/same.png'
        return [i for i, p in enumerate(image_paths) if _components(os.path.abspath(p))[-len(parts):] == parts]
    return [i for i, p in enumerate(image_paths) if os.path.basename(p) == key]


def match_names(keys: Sequence[Hashable], image_paths: Sequence[str], where: str = "") -> Dict[Hashable, int]:
    """Which input image each key names: ``{key: index into image_paths}``.

    A key matches an image by its full path (as given or made absolute) first; a key with folder parts then
    matches the images whose path ends with those parts; a bare name matches by base name. Outside a full-path
    match the key must fit exactly one image.

    Args:
        keys: names from a calibration file (strings).
        image_paths: the input images, in order.
        where: prefix of the messages (e.g. the file the keys come from).

    Raises:
        InputError: a key that is not a string, fits no image, fits several (the message lists them), or
            two keys that name the same image.
    """
    prefix = f"{where}: " if where else ""
    image_paths = [os.fspath(p) for p in image_paths]
    out: Dict[Hashable, int] = {}
    owner: Dict[int, Hashable] = {}
    for key in keys:
        if not isinstance(key, str) or not key:
            raise InputError(f"{prefix}image name {key!r} must be a non-empty string")
        found = sorted(set(_candidates(key, image_paths)))
        if not found:
            names = ", ".join(os.path.basename(p) for p in image_paths[:5]) + (" ..." if len(image_paths) > 5 else "")
            raise InputError(f"{prefix}{key!r} is not one of the input images ({len(image_paths)} images: {names})")
        if len(found) > 1:
            listed = ", ".join(image_paths[i] for i in found[:6]) + (" ..." if len(found) > 6 else "")
            raise InputError(f"{prefix}{key!r} is ambiguous: it fits {len(found)} input images ({listed}); "
                             "use a longer path to name one")
        index = found[0]
        if index in owner:
            raise InputError(f"{prefix}{owner[index]!r} and {key!r} both name the image {image_paths[index]}")
        owner[index] = key
        out[key] = index
    return out


# ----------------------------------------------------------------------------------------------------------------
# JSON files
# ----------------------------------------------------------------------------------------------------------------
def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {show_path(path)}") from None
    except IsADirectoryError:
        raise InputError(f"{what} file {show_path(path)} is a folder, expected a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} file {show_path(path)}: {exc}") from None


def _intrinsics_entry(entry: Any, where: str) -> np.ndarray:
    """``{fx, fy, cx, cy}`` / ``{"K": 3x3}`` / 3x3 list -> (3, 3) float64 (shape and numbers only)."""
    if isinstance(entry, Mapping) and "K" in entry:
        entry = entry["K"]
    if isinstance(entry, Mapping):
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in entry]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)} (expected fx, fy, cx, cy or K)")
        values = [entry[k] for k in ("fx", "fy", "cx", "cy")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InputError(f"{where}: fx, fy, cx, cy must be numbers, got {values}")
        fx, fy, cx, cy = (float(v) for v in values)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if isinstance(entry, (list, tuple)):
        return _float_matrix(entry, where, [(3, 3)], "the intrinsics")
    raise InputError(f"{where}: expected {{fx, fy, cx, cy}}, {{\"K\": 3x3}} or a 3x3 matrix, "
                     f"got {type(entry).__name__}")


def _image_sizes(image_paths: Sequence[str], image_sizes: Optional[Sequence[Tuple[int, int]]]):
    if image_sizes is not None:
        if len(image_sizes) != len(image_paths):
            raise ValueError(f"image_sizes has {len(image_sizes)} entries for {len(image_paths)} images")
        return list(image_sizes)
    from .images import read_image_size
    return [read_image_size(p) for p in image_paths]


def read_known_intrinsics(path: str, image_paths: Sequence[str],
                          image_sizes: Optional[Sequence[Tuple[int, int]]] = None) -> Dict[int, np.ndarray]:
    """Known intrinsics from a JSON file: ``{image index: K (3, 3) float64, original-image pixels}``.

    Args:
        path: the JSON file (formats in the module docstring).
        image_paths: the input images, in order.
        image_sizes: their ``(width, height)`` after EXIF orientation; read from the file headers when None.

    Returns:
        one entry per image the file covers (every image for a shared camera); images without an entry are
        logged and keep estimated intrinsics.

    Raises:
        InputError: unreadable file, bad JSON, a name matching no or several images (:func:`match_names`), or
            a matrix refused by :func:`check_intrinsics_matrix` against its image's size.
    """
    raw = _read_json(os.fspath(path), "known intrinsics")
    shown = os.fspath(path)
    sizes = _image_sizes(image_paths, image_sizes)
    if isinstance(raw, list) or (isinstance(raw, Mapping) and ("K" in raw or "fx" in raw)):
        K = _intrinsics_entry(raw, shown)
        return {i: check_intrinsics_matrix(K, sizes[i], f"{shown} (shared camera, image {image_paths[i]})")
                for i in range(len(image_paths))}
    if not isinstance(raw, Mapping):
        raise InputError(f"{shown}: expected a JSON object, got {type(raw).__name__}")
    out: Dict[int, np.ndarray] = {}
    for key, index in match_names(list(raw), image_paths, where=shown).items():
        where = f"{shown}[{key!r}]"
        out[index] = check_intrinsics_matrix(_intrinsics_entry(raw[key], where), sizes[index], where)
    missing = [os.path.basename(p) for i, p in enumerate(image_paths) if i not in out]
    if missing:
        logger.warning(
            "no known intrinsics for %d image(s) (%s): they will be estimated", len(missing),
            ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return out


def _pose_entry(entry: Any, where: str) -> np.ndarray:
    if isinstance(entry, Mapping):
        if "cam2world" in entry:
            return check_cam2world(entry["cam2world"], where)
        if "world2cam" in entry:
            return np.linalg.inv(check_cam2world(entry["world2cam"], f"{where} (world2cam)"))
        raise InputError(f"{where}: expected a 4x4 matrix, {{\"cam2world\": 4x4}} or {{\"world2cam\": 4x4}}")
    return check_cam2world(entry, where)


def read_known_poses(path: str, image_paths: Sequence[str]) -> Dict[int, np.ndarray]:
    """Known camera poses from a JSON file: ``{image index: cam2world (4, 4) float64}``.

    Args:
        path: ``{"<image>": 4x4 | 3x4 | {"cam2world": 4x4} | {"world2cam": 4x4}, ...}`` (OpenCV camera axes).
        image_paths: the input images, in order (keys matched by :func:`match_names`).

    Raises:
        InputError: unreadable file, not a JSON object, a name matching no or several images, or a matrix refused
            by :func:`check_cam2world`.
    """
    shown = os.fspath(path)
    raw = _read_json(shown, "known poses")
    if not isinstance(raw, Mapping):
        raise InputError(f"{shown}: expected a JSON object {{image name: 4x4 cam2world}}, got {type(raw).__name__}")
    return {index: _pose_entry(raw[key], f"{shown}[{key!r}]")
            for key, index in match_names(list(raw), image_paths, where=shown).items()}
