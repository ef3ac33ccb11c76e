"""Loading the retrieval codebook pickle without running code from the file.

The original stores asmk's ``Codebook.state_dict()`` (``{'type': 'Codebook', 'params': {'size': K}, 'state':
{'centroids': ndarray (K, D)}}``) with :mod:`pickle` and reads it back with ``pickle.load``, which calls whatever
function the file names (``os.system``, ...). :func:`safe_load_pickle` unpickles with an allow-list: numpy arrays,
dtypes and scalars, and Python's plain containers and literals. Any other reference is refused before it is
resolved, so nothing from the file is executed.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np

from dust3r.utils.checkpoint import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError

__all__ = ["ALLOWED_GLOBALS", "safe_load_pickle", "safe_loads", "load_codebook_state"]

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


def _check_plain(obj: Any, where: str = "") -> None:
    """Refuse object arrays (their items bypass the dtype checks) anywhere in the loaded structure."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafeCheckpointError(f"{where or 'value'} is an array of Python objects")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")


def safe_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle bytes with the allow-list (see the module docstring).

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
        _check_plain(obj)
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


def load_codebook_state(path: str | os.PathLike) -> dict:
    """An asmk codebook cache (``Codebook.state_dict()`` pickle), loaded safely and checked.

    Returns:
        ``{'type': 'Codebook', 'params': {'size': K}, 'state': {'centroids': float32 ndarray (K, D)}}``.

    Raises:
        CheckpointNotFoundError, UnsafeCheckpointError, CheckpointError (wrong layout).
    """
    where = f"codebook '{os.fspath(path)}'"
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"{where} not found: the retrieval codebook lies next to its checkpoint, "
                                      "named <checkpoint name without its last '_part'>_codebook.pkl")
    state = safe_load_pickle(path)
    if not (isinstance(state, dict) and state.get("type") == "Codebook" and isinstance(state.get("params"), dict)
            and isinstance(state.get("state"), dict)):
        raise CheckpointError(f"{where} is not an asmk codebook: expected {{'type': 'Codebook', 'params': ..., "
                              "'state': {'centroids': array}}")
    centroids = state["state"].get("centroids")
    if not (isinstance(centroids, np.ndarray) and centroids.ndim == 2 and centroids.dtype.kind == "f"):
        raise CheckpointError(f"{where}: the centroids must be a 2D float array")
    size = state["params"].get("size")
    if size is not None and size != centroids.shape[0]:
        raise CheckpointError(f"{where}: codebook size {size!r} but {centroids.shape[0]} centroids")
    return {"type": "Codebook", "params": dict(state["params"]),
            "state": {"centroids": np.ascontiguousarray(centroids, dtype=np.float32)}}
