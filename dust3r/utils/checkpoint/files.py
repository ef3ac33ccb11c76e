"""Official-format ``.pth`` checkpoints: ``{'model': state_dict, 'args': argparse.Namespace(model=<constructor>)}``.

Read with ``torch.load(weights_only=True)``; ``argparse.Namespace`` is the only extra class the unpickler may
build, allowed through a ``torch.serialization.safe_globals`` context for the call, never globally.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from croco.utils.misc import atomic_write  # noqa: F401  (the one atomic file write; re-exported)

from .errors import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def _check_is_file(path: str, what: str = "checkpoint file") -> None:
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"{what} not found: '{path}' does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"'{path}' is a directory, expected a {what} (a .pth file); for a Hugging Face "
                              "save_pretrained directory use load_hf_directory / from_pretrained")
    if not os.path.isfile(path):
        raise CheckpointError(f"'{path}' is not a regular file, expected a {what}")


_REFUSED_PATTERNS = ("Unsupported global", "GLOBAL ", "unrecognized function", "Can only create new object",
                     "Can only build", "is blocked")


def _short_error(e: BaseException) -> str:
    """``Type: first meaningful sentence`` of an exception (torch's weights-only errors start with boilerplate)."""
    msg = str(e)
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    line = next((ln.strip() for ln in msg.splitlines() if ln.strip()), "")
    line = line.split(". ", 1)[0]
    return f"{type(e).__name__}: {line[:200]}" if line else type(e).__name__


def _torch_load_safe(path: str, *, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed only for this call."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file '{path}': {e.strerror or e}") from e
    if not head:
        raise CheckpointError(f"checkpoint file '{path}' is empty")
    is_zip = head.startswith(_ZIP_MAGIC)
    if not (is_zip or head.startswith(_PICKLE_PROTO)):
        raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                              f"pickle; it starts with {head[:4]!r})")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=bool(mmap and is_zip))
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ...
        msg = str(e)
        if any(p in msg for p in _REFUSED_PATTERNS):
            detail = re.search(r"GLOBAL (\S+)", msg) or re.search(r"function (\S+)", msg)
            what = f" ({detail.group(1)})" if detail else ""
            raise UnsafeCheckpointError(
                f"refused to load '{path}' as unsafe: its pickle references code or a class outside the "
                f"allow-list{what}; it was loaded with weights_only=True and nothing was executed. Only load "
                "checkpoints from sources you trust; the official files contain only tensors and an "
                "argparse.Namespace") from None
        if is_zip:
            reason = "truncated or corrupt torch.save archive"
        else:
            reason = "corrupt or not a PyTorch checkpoint"
        raise CheckpointError(f"cannot load '{path}': {reason} ({_short_error(e)})") from None


def _as_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{where}: model weights must be a non-empty dict of tensors, "
                              f"got {type(obj).__name__}{' (empty)' if isinstance(obj, Mapping) else ''}")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{where}: state_dict key {k!r} is not a string")
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{where}: state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
    return dict(obj)


def _is_tensor_map(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def load_checkpoint_file(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Load an official-format ``.pth`` safely (``weights_only=True``, ``argparse.Namespace`` allowed).

    Accepted layouts: ``{'model': state_dict, 'args': Namespace(model=...) | {'model': ...}, ...}``,
    ``{'model': state_dict}``, ``{'state_dict': state_dict}`` and a bare state dict.

    Args:
        path: the ``.pth`` file.
        mmap: memory-map tensors (zip archives only) instead of reading them into RAM.

    Returns:
        dict with ``path`` (str), ``state_dict`` (dict str -> Tensor, file order, shared storage preserved),
        ``constructor`` (``args.model`` string or None), ``args`` (dict of the stored args or None) and
        ``extra_keys`` (other top-level keys, e.g. ``optimizer``/``epoch`` in training checkpoints).

    Raises:
        CheckpointNotFoundError: missing file.
        UnsafeCheckpointError: the pickle tries to build a non-allow-listed object (refused, nothing executed).
        CheckpointError: directory, empty/truncated/corrupt file, not a checkpoint, no model weights.
    """
    path = os.fspath(path)
    _check_is_file(path)
    ckpt = _torch_load_safe(path, mmap=mmap)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"'{path}' is not a model checkpoint: it holds a {type(ckpt).__name__}, "
                              "expected a dict like {'model': state_dict, 'args': ...}")
    args_obj = ckpt.get("args")
    if isinstance(args_obj, argparse.Namespace):
        args = dict(vars(args_obj))
    elif isinstance(args_obj, Mapping):
        args = dict(args_obj)
    else:
        args = None
    if "model" in ckpt and isinstance(ckpt["model"], Mapping):
        state_dict = _as_state_dict(ckpt["model"], f"'{path}' ['model']")
        used = {"model", "args"}
    elif "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        state_dict = _as_state_dict(ckpt["state_dict"], f"'{path}' ['state_dict']")
        used = {"state_dict", "args"}
    elif _is_tensor_map(ckpt):
        state_dict, used = dict(ckpt), set(ckpt)
    else:
        keys = ", ".join(repr(k) for k in list(ckpt)[:10])
        raise CheckpointError(f"'{path}' holds no model weights: expected a 'model' entry with the state_dict, "
                              f"found keys [{keys}]")
    constructor = args.get("model") if args is not None else None
    if constructor is not None and not isinstance(constructor, str):
        logger.warning("%s: args.model is a %s, not a constructor string; ignored", path, type(constructor).__name__)
        constructor = None
    return {
        "path": path,
        "state_dict": state_dict,
        "constructor": constructor,
        "args": args,
        "extra_keys": [k for k in ckpt if k not in used],
    }


def save_checkpoint_file(state_dict: Mapping[str, torch.Tensor], constructor: str, path: str | os.PathLike) -> None:
    """Write an official-format ``.pth``: ``{'model': state_dict, 'args': argparse.Namespace(model=constructor)}``."""
    sd = _as_state_dict(state_dict, "save_checkpoint_file")
    atomic_write(path, lambda tmp: torch.save({"model": sd, "args": argparse.Namespace(model=constructor)}, tmp))
