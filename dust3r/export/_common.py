"""Output-path checks and atomic writing shared by the exporters.

* :func:`atomic_file`: a temporary sibling renamed onto the target only when the block succeeds;
* :func:`staged_dir`: a temporary folder whose content is moved into place only when the block succeeds;
* :func:`replace_entries`: move a finished staging folder's entries into place, each replacing the entry of the
  same name whole (:func:`dust3r.export.export_all`).

Files are created with mode ``0o666`` and folders with ``0o777``, less the process umask (like ``open``), never
the ``0o600`` of ``tempfile.mkstemp``. :class:`SceneData` and the input checks live in
:mod:`dust3r.export.scene_data` (their names stay importable from here).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from typing import Any, Dict, Iterator, List, Tuple

from dust3r.utils.views import GEOMETRY_KEYS

from ._checks import (META_KEYS, as_numpy, check_cam2world, check_finite, check_intrinsics, meta_has_geometry,
                      safe_name, unique_stems)
from .scene_data import SceneData, as_scene_data, require_scene_data

logger = logging.getLogger(__name__)

__all__ = [
    "check_out_path", "check_out_dir", "make_temp_dir", "atomic_file", "staged_dir", "entry_conflicts",
    "replace_entries",
    # former names of this module, now in .scene_data / ._checks / dust3r.utils.views
    "SceneData", "as_scene_data", "require_scene_data", "META_KEYS", "GEOMETRY_KEYS", "as_numpy", "check_finite",
    "check_cam2world", "check_intrinsics", "meta_has_geometry", "safe_name", "unique_stems",
]

_TRIES = 100


# ----------------------------------------------------------------------------------------------
# output paths
# ----------------------------------------------------------------------------------------------
def check_out_path(path: Any, what: str = "path") -> str:
    """Validate an output file path; creates its parent folder. Returns the absolute path."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path or path.endswith(("/", os.sep)):
        raise ValueError(f"{what}={path!r} must name a file")
    if os.path.isdir(path):
        raise ValueError(f"{what}={path!r} is a folder, expected a file path")
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def check_out_dir(out_dir: Any, what: str = "out_dir") -> str:
    """Validate and create an output folder. Returns the absolute path."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path, got {type(out_dir).__name__}")
    out_dir = os.fspath(out_dir)
    if not out_dir:
        raise ValueError(f"{what} must not be empty")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{what}={out_dir!r} exists and is not a folder")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return out_dir


# ----------------------------------------------------------------------------------------------
# temporary entries that follow the umask
# ----------------------------------------------------------------------------------------------
def _temp_name(directory: str, base: str, suffix: str) -> str:
    return os.path.join(directory, f".{base}.{secrets.token_hex(6)}{suffix}")


def _make_temp_file(directory: str, base: str) -> Tuple[int, str]:
    """A new empty file beside the target, mode 0o666 less the umask (the kernel applies it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_TRIES):
        tmp = _temp_name(directory, base, ".tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory!r}")


def make_temp_dir(directory: str, prefix: str = "export") -> str:
    """A new empty folder inside ``directory``, mode 0o777 less the umask."""
    for _ in range(_TRIES):
        tmp = _temp_name(directory, prefix, ".tmp")
        try:
            os.mkdir(tmp, 0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder in {directory!r}")


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary sibling of ``path`` for writing; renamed onto ``path`` only if the block succeeds."""
    directory, base = os.path.split(path)
    fd, tmp = _make_temp_file(directory or ".", base)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# staging folders
# ----------------------------------------------------------------------------------------------
def _merge_tree(src: str, dst: str) -> None:
    """Move every file of ``src`` to the same relative path under ``dst`` (replacing files, creating folders)."""
    for root, _dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        dest_root = dst if rel == "." else os.path.join(dst, rel)
        os.makedirs(dest_root, exist_ok=True)
        for f in files:
            os.replace(os.path.join(root, f), os.path.join(dest_root, f))


@contextlib.contextmanager
def staged_dir(out_dir: str) -> Iterator[str]:
    """Yield a temporary folder inside ``out_dir``; on success its files are moved into ``out_dir`` (same
    relative paths, replacing existing files), on failure it is deleted and ``out_dir`` is left untouched."""
    tmp = make_temp_dir(out_dir)
    try:
        yield tmp
        _merge_tree(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def entry_conflicts(out_dir: str, entries: Dict[str, bool]) -> List[str]:
    """Entries of ``out_dir`` that are in the way: ``entries`` maps a name to whether it will be a folder; an
    existing entry of the other kind (a file where a folder goes, or the reverse) is a conflict."""
    bad = []
    for name, is_dir in entries.items():
        path = os.path.join(out_dir, name)
        if os.path.lexists(path) and (os.path.isdir(path) and not os.path.islink(path)) != is_dir:
            bad.append(f"{path!r} exists and is {'a file' if is_dir else 'a folder'}, expected "
                       f"{'a folder' if is_dir else 'a file'}")
    return bad


def replace_entries(staging: str, out_dir: str) -> None:
    """Move each top-level entry of ``staging`` into ``out_dir``, replacing an existing entry of the same name
    and kind whole (an old folder is renamed aside and deleted after the new one is in place). Entries of
    ``out_dir`` that ``staging`` does not hold are left alone. Raise ValueError, moving nothing, when an entry of
    the other kind is in the way."""
    names = sorted(os.listdir(staging))
    bad = entry_conflicts(out_dir, {n: os.path.isdir(os.path.join(staging, n)) for n in names})
    if bad:
        raise ValueError("cannot write the export: " + "; ".join(bad))
    for name in names:
        src, dst = os.path.join(staging, name), os.path.join(out_dir, name)
        if os.path.isdir(src) and os.path.isdir(dst) and not os.path.islink(dst):
            old = _temp_name(out_dir, name, ".old")
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
