"""Loading the retrieval codebook pickle without running code from the file.

The original stores asmk's ``Codebook.state_dict()`` (``{'type': 'Codebook', 'params': {'size': K}, 'state':
{'centroids': ndarray (K, D)}}``) with :mod:`pickle` and reads it back with ``pickle.load``, which calls whatever
function the file names (``os.system``, ...). Here it goes through the allow-list unpickler of
:mod:`dust3r.utils.safe_pickle`: nothing from the file is executed.
"""
from __future__ import annotations

import os

import numpy as np

from dust3r.utils.checkpoint import CheckpointError, CheckpointNotFoundError
from dust3r.utils.safe_pickle import ALLOWED_GLOBALS, safe_load_pickle, safe_loads

__all__ = ["ALLOWED_GLOBALS", "safe_load_pickle", "safe_loads", "load_codebook_state"]


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
