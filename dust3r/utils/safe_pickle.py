"""Unpickling files without running code from them: pickles of arrays and plain data, ``.npz`` with string arrays.

``pickle.load`` calls whatever function a file names (``os.system``, ...). :func:`safe_load_pickle` unpickles with
an allow-list: numpy arrays, dtypes and scalars, and Python's plain containers and literals. Any other reference is
refused before it is resolved, so nothing from the file is executed. Used for the retrieval codebook
(``mast3r.retrieval.safe_pickle``) and, through :func:`safe_load_npz`, for ``.npz`` files whose arrays hold Python
strings (``np.load(..., allow_pickle=True)`` would unpickle them without any check).
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from dust3r.utils.checkpoint import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError

__all__ = ["ALLOWED_GLOBALS", "safe_load_pickle", "safe_loads", "safe_load_npz"]

#: the only (module, name) references a codebook pickle may make: how numpy pickles arrays, dtypes and scalars
ALLOWED_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),  # protocol-5 arrays
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles
})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; every other global (and any persistent id) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeCheckpointError(f"the pickle references {module}.{name}, which is not an array or a plain "
                                        "container")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError("the pickle uses persistent ids (external objects)")


_PLAIN_ITEMS = (str, bytes, int, float, bool)


def _check_plain(obj: Any, where: str = "", object_arrays: bool = False) -> None:
    """Refuse object arrays (their items bypass the dtype checks) anywhere in the loaded structure; with
    ``object_arrays``, accept those whose items are all strings, bytes or numbers."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject and not (object_arrays and obj.dtype == object
                                        and all(isinstance(v, _PLAIN_ITEMS) for v in obj.ravel().tolist())):
            raise UnsafeCheckpointError(f"{where or 'value'} is an array of Python objects")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(value, f"{where}[{key!r}]", object_arrays)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]", object_arrays)


def safe_loads(data: bytes, what: str = "pickle", object_arrays: bool = False) -> Any:
    """Unpickle bytes with the allow-list (see the module docstring); ``object_arrays`` also accepts arrays of
    Python strings, bytes and numbers (dtype ``object``).

    Raises:
        UnsafeCheckpointError: the data references code or another class (nothing was executed).
        CheckpointError: truncated or corrupt data.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"refused to load {what}: {exc}; only numpy arrays and plain containers are "
                                    "allowed and nothing from the file was executed. Only use files from sources "
                                    "you trust") from None
    except Exception as exc:  # pickle raises UnpicklingError, EOFError, ValueError, TypeError, ...
        raise CheckpointError(f"cannot load {what}: corrupt or not a pickle ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    try:
        _check_plain(obj, object_arrays=object_arrays)
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"refused to load {what}: {exc}") from None
    return obj


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """:func:`safe_loads` of a file.

    Raises:
        CheckpointNotFoundError: no such file.
        UnsafeCheckpointError / CheckpointError: see :func:`safe_loads`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"pickle file not found: '{path}' does not exist or is not a file")
    with open(path, "rb") as f:
        data = f.read()
    return safe_loads(data, f"'{path}'")


def safe_load_npz(path: str | os.PathLike) -> dict:
    """Every array of an ``.npz`` file; arrays of Python strings (dtype ``object``, which numpy stores pickled)
    are unpickled with the allow-list, other arrays are read without pickle.

    Raises:
        FileNotFoundError: no such file. UnsafeCheckpointError: an object array references code or holds anything
        but strings / bytes / numbers (nothing was executed). OSError: not a readable ``.npz``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"npz file not found: {path!r}")
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    _, _, dtype = read_header(f)
                    if dtype.hasobject:
                        out[member[:-4]] = safe_loads(f.read(), f"{member} of {path!r}", object_arrays=True)
                    else:
                        f.seek(0)
                        out[member[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    except (UnsafeCheckpointError, CheckpointError):
        raise
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise OSError(f"cannot read {path!r} as an .npz archive: {exc}") from None
    return out
