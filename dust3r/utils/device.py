"""Checking a device, moving nested containers of tensors/arrays between devices and collating batches."""
from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np
import torch


class DeviceError(ValueError):
    """A device string that is malformed or names a device this machine does not have."""


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The ``torch.device`` for ``device``, refused with one clear line when this machine cannot run on it.

    Call it before any heavy work (reading weights, loading images): ``'cuda'`` without CUDA, ``'cuda:3'`` on a
    one-GPU machine, ``'mps'`` off Apple silicon and misspelled strings fail at once. None means ``'cpu'``.

    Raises:
        DeviceError: naming the device and saying what is available.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, int) and not isinstance(device, bool):  # torch's convention: an int is a CUDA index
        device = f"cuda:{device}"
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"invalid device {device!r}: expected 'cpu', 'cuda', 'cuda:<index>' or 'mps'") from None
    if dev.type == "cpu" or dev.type == "meta":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
            raise DeviceError(f"device {str(device)!r} requested but CUDA is not available: {why}; use 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {str(device)!r} requested but only {count} CUDA device(s) are visible "
                              f"(cuda:0 to cuda:{count - 1})")
        return dev
    backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise DeviceError(f"device {str(device)!r} requested but it is not available on this machine; use 'cpu'")
    return dev


def todevice(batch: Any, device, callback: Callable | None = None, non_blocking: bool = False) -> Any:
    """Move every tensor (and numpy array) of a nested dict/list/tuple to ``device``.

    ``device='numpy'`` converts tensors to numpy arrays; other devices convert arrays to tensors.
    """
    if callback is not None:
        batch = callback(batch)
    if isinstance(batch, dict):
        return {k: todevice(v, device, non_blocking=non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(todevice(x, device, non_blocking=non_blocking) for x in batch)
    if device == "numpy":
        return batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=non_blocking)
    return batch


to_device = todevice


def to_numpy(x: Any) -> Any:
    return todevice(x, "numpy")


def to_cpu(x: Any) -> Any:
    return todevice(x, "cpu")


def to_cuda(x: Any) -> Any:
    return todevice(x, "cuda")


def collate_with_cat(whatever: Any, lists: bool = False) -> Any:
    """Collate a list of samples (dicts / tuples / tensors) by concatenating along dim 0.

    Tensors and numpy arrays are concatenated (or, with ``lists=True``, split into a flat list of their rows);
    scalars and strings stay lists; lists of lists are chained; a list of None gives None.
    """
    if isinstance(whatever, dict):
        return {k: collate_with_cat(v, lists=lists) for k, v in whatever.items()}
    if not isinstance(whatever, (tuple, list)) or len(whatever) == 0:
        return whatever
    first = whatever[0]
    if first is None:
        return None
    if isinstance(first, (bool, float, int, str)):
        return whatever
    if isinstance(first, tuple):
        return type(whatever)(collate_with_cat(list(x), lists=lists) for x in zip(*whatever))
    if isinstance(first, dict):
        return {k: collate_with_cat([e[k] for e in whatever], lists=lists) for k in first}
    if isinstance(first, (torch.Tensor, np.ndarray)):
        tensors = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in whatever]
        return [row for t in tensors for row in t] if lists else torch.cat(tensors)
    return sum(whatever, type(whatever)())
