"""Input checks shared by :class:`dust3r.export.SceneData` and the exporters: arrays, cameras, file names and
the ``load_images`` resize record.

Every check raises ``ValueError`` naming the offending argument (``K``, ``cam2world``, ``pts3d[2]``,
``names[0]``...).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from dust3r.utils.views import GEOMETRY_KEYS, VIEW_META_KEYS

__all__ = ["as_numpy", "check_finite", "check_cam2world", "check_intrinsics", "safe_name", "unique_stems",
           "meta_has_geometry"]

#: keys copied from a view dict / views_meta entry (everything else, e.g. the image tensor, is dropped)
META_KEYS = VIEW_META_KEYS

_POSE_TOL = 1e-3


def as_numpy(x: Any) -> Any:
    """torch tensor -> numpy (detached, on CPU); other values unchanged."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x


def _as_list(value: Any, name: str) -> List[Any]:
    value = as_numpy(value)
    if isinstance(value, np.ndarray):
        return [value[i] for i in range(value.shape[0])] if value.ndim >= 1 else [value]
    if isinstance(value, (list, tuple)):
        return [as_numpy(v) for v in value]
    raise ValueError(f"{name} must be a list of arrays or a stacked array, got {type(value).__name__}")


def check_finite(arr: np.ndarray, name: str) -> None:
    """ValueError naming ``name`` when ``arr`` holds a NaN or an infinity."""
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _finite_matrices(value: Any, name: str, size: int, n: Optional[int], noun: str) -> np.ndarray:
    """``value`` as a finite float64 (N, size, size) array, N == n when given (errors name ``name``)."""
    arr = np.asarray(as_numpy(value), dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (size, size):
        raise ValueError(f"{name} must have shape (N, {size}, {size}), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} {noun} for {n} images")
    check_finite(arr, name)
    return arr


def check_cam2world(cam2world: Any, name: str = "cam2world", n: Optional[int] = None) -> np.ndarray:
    """Validate (N, 4, 4) rigid cam2world matrices; returns float64 numpy."""
    arr = _finite_matrices(cam2world, name, 4, n, "poses")
    if not np.allclose(arr[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{name}: last row of every pose must be [0, 0, 0, 1]")
    R = arr[:, :3, :3]
    ortho_err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.nonzero((ortho_err > _POSE_TOL) | (np.abs(det - 1) > _POSE_TOL))[0]
    if len(bad):
        raise ValueError(f"{name}[{int(bad[0])}] is not a rigid transform (rotation part not orthonormal "
                         f"with det +1; scaled poses are not supported)")
    return arr


def check_intrinsics(K: Any, name: str = "K", n: Optional[int] = None) -> np.ndarray:
    """Validate (N, 3, 3) pinhole intrinsics (positive focals, zero skew, last row [0, 0, 1])."""
    arr = _finite_matrices(K, name, 3, n, "matrices")
    if not np.allclose(arr[:, 2], [0, 0, 1], atol=1e-9):
        raise ValueError(f"{name}: last row of every matrix must be [0, 0, 1]")
    if np.any(arr[:, 0, 0] <= 0) or np.any(arr[:, 1, 1] <= 0):
        raise ValueError(f"{name}: focal lengths must be positive")
    return arr


def safe_name(name: Any, what: str) -> str:
    """A plain file name (no directory part, no '..', printable, non empty) or ValueError naming ``what``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if (name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name != name.strip()
            or any(ord(c) < 32 for c in name)):
        raise ValueError(f"{what}={name!r} is not a plain file name (no folders, '..', control characters "
                         "or surrounding blanks)")
    return name


def _unique_names(names: Sequence[str]) -> List[str]:
    """Make names unique by suffixing ``_1``, ``_2``... before the extension."""
    seen: Dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        stem, ext = os.path.splitext(name)
        k = seen[name]
        while True:
            k += 1
            candidate = f"{stem}_{k}{ext}"
            if candidate not in taken:
                break
        seen[name] = k
        taken.add(candidate)
        out.append(candidate)
    return out


def unique_stems(names: Sequence[str]) -> List[str]:
    """File stems of ``names`` (extension dropped), kept unique: ``a.png``/``a.jpg`` -> ``a_png``/``a_jpg``."""
    stems = [os.path.splitext(n)[0] or n for n in names]
    counts: Dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [n.replace(".", "_") if counts[s] > 1 else s for n, s in zip(names, stems)]


def _clean_meta(meta: Any, i: int) -> Optional[Dict[str, Any]]:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ValueError(f"views_meta[{i}] must be a dict or None, got {type(meta).__name__}")
    out = {}
    for key in VIEW_META_KEYS:
        if key in meta:
            value = as_numpy(meta[key])
            out[key] = value
    return out


def _pair(meta: Dict[str, Any], key: str, i: int) -> np.ndarray:
    value = np.asarray(meta[key], dtype=np.float64).reshape(-1)
    if value.shape != (2,):
        raise ValueError(f"views_meta[{i}][{key!r}] must hold 2 numbers, got shape {np.shape(meta[key])}")
    return value


def meta_has_geometry(meta: Optional[Dict[str, Any]]) -> bool:
    """Whether a views_meta entry holds the resize / crop record mapping network pixels to original ones."""
    return meta is not None and all(k in meta for k in GEOMETRY_KEYS)
