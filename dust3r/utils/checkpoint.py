"""Secure, model-agnostic checkpoint I/O for the DUSt3R / MASt3R / CroCo model classes.

Three checkpoint forms are supported, matching what the original code reads and writes:

* official ``.pth`` files: ``torch.save({'model': state_dict, 'args': argparse.Namespace(model=<constructor>)})``,
  read with :func:`load_checkpoint_file` (``weights_only=True``; ``argparse.Namespace`` is the only extra class
  the unpickler may build, allowed through a ``torch.serialization.safe_globals`` context, never globally);
* Hugging Face ``save_pretrained`` directories (``config.json`` + ``model.safetensors``), read with
  :func:`load_hf_directory` and written with :func:`save_hf_directory` exactly as
  ``PyTorchModelHubMixin.save_pretrained`` writes them;
* hub ids (``owner/name``), resolved to a cached snapshot directory by :func:`resolve_pretrained`.

The constructor string stored in ``ckpt['args'].model`` (e.g. ``"AsymmetricMASt3R(pos_embed='RoPE100', ...)"``) is
never evaluated: :func:`parse_constructor` reads it with :mod:`ast` and accepts only a call to an allow-listed class
name with literal keyword arguments.

Exceptions (one hierarchy, all importable from here)::

    ValueError
     └── CheckpointError                 every problem with a checkpoint path, file, directory or hub id
          ├── CheckpointNotFoundError    (also a FileNotFoundError) missing file/dir/config/weights, hub miss
          └── UnsafeCheckpointError      the weights-only unpickler refused a pickle (nothing was executed)

Messages always name the path (or hub id) and the problem. :func:`parse_constructor` and
:func:`format_constructor` raise plain ``ValueError``.

Nothing here imports the model classes: they call these functions (``from_pretrained``, ``save_pretrained``).

CLI::

    python -m dust3r.utils.checkpoint convert IN.pth OUT_DIR   # official .pth -> save_pretrained directory
    python -m dust3r.utils.checkpoint info PATH                # constructor string and tensor count
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnsafeCheckpointError",
    "KNOWN_MODEL_CLASSES",
    "CONFIG_NAME",
    "SAFETENSORS_NAME",
    "PYTORCH_WEIGHTS_NAME",
    "parse_constructor",
    "format_constructor",
    "load_checkpoint_file",
    "save_checkpoint_file",
    "load_hf_directory",
    "save_hf_directory",
    "find_aliases",
    "resolve_pretrained",
    "constructor_to_config",
    "config_with_signature_defaults",
    "default_model_card",
    "convert_pth_to_hf",
    "main",
]

#: Class names accepted by default in constructor strings (CLI and :func:`constructor_to_config`).
KNOWN_MODEL_CLASSES: tuple[str, ...] = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R", "CroCoNet")

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_WEIGHTS_NAME = "pytorch_model.bin"

_MAX_CONSTRUCTOR_CHARS = 20_000
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".tar", ".pkl", ".pickle")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


# ----------------------------------------------------------------------------------------------------------------
# Exceptions
# ----------------------------------------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint path, file, directory or hub id cannot be used. The message names it and says why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint (or a file it needs) does not exist locally and could not be fetched.

    Both a :class:`CheckpointError` (hence a ``ValueError``) and a ``FileNotFoundError``.
    """

    def __init__(self, message: str):
        # OSError's multi-argument constructor would reformat the message; keep it as given.
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsafeCheckpointError(CheckpointError):
    """The file contains pickled code or classes outside the allow-list; it was refused before running anything."""


# ----------------------------------------------------------------------------------------------------------------
# Constructor strings
# ----------------------------------------------------------------------------------------------------------------
_NAMED_FLOATS = {"inf": math.inf, "nan": math.nan}


def _fragment(text: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(text, node)
    if seg is None:
        try:
            seg = ast.unparse(node)
        except Exception:  # pragma: no cover - unparse handles every parsed node
            seg = type(node).__name__
    return seg if len(seg) <= 200 else seg[:197] + "..."


def _literal(node: ast.AST, text: str, where: str) -> Any:
    """Value of a literal expression node; ValueError naming the fragment for anything else."""
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise ValueError(f"unsupported constant {_fragment(text, node)!s} in {where} "
                         "(only str, int, float, bool and None literals are allowed)")
    if isinstance(node, ast.Name):
        if node.id in _NAMED_FLOATS:
            return _NAMED_FLOATS[node.id]
        raise ValueError(f"unsupported name {node.id!r} in {where}: only the names inf and nan are allowed "
                         "besides literals")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"unsupported expression {_fragment(text, node)} in {where}: "
                             "unary +/- only applies to numbers, inf and nan")
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                raise ValueError(f"unsupported starred expression {_fragment(text, elt)} in {where}")
            items.append(_literal(elt, text, where))
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        out = {}
        for key_node, value_node in zip(node.keys, node.values):
            if key_node is None:
                raise ValueError(f"unsupported dict unpacking **{_fragment(text, value_node)} in {where}")
            key = _literal(key_node, text, where)
            if isinstance(key, list):
                raise ValueError(f"unhashable dict key {_fragment(text, key_node)} in {where}")
            out[key] = _literal(value_node, text, where)
        return out
    kind = {ast.Call: "call", ast.Attribute: "attribute access", ast.Subscript: "subscript",
            ast.Lambda: "lambda", ast.JoinedStr: "f-string", ast.BinOp: "operator", ast.BoolOp: "operator",
            ast.Compare: "comparison", ast.Set: "set", ast.IfExp: "conditional expression",
            ast.NamedExpr: "assignment expression"}.get(type(node), "expression")
    raise ValueError(f"unsupported {kind} {_fragment(text, node)} in {where}: only literals "
                     "(str, int, float, bool, None, inf, nan, tuples, lists, dicts) are allowed")


def parse_constructor(text: str, allowed_classes: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """Parse a constructor string such as ``ckpt['args'].model`` without evaluating it.

    Args:
        text: e.g. ``"AsymmetricMASt3R(pos_embed='RoPE100', img_size=(512, 512), depth_mode=('exp', -inf, inf))"``.
        allowed_classes: class names the call may name.

    Returns:
        ``(class_name, kwargs)``; kwargs in the order written, tuples kept as tuples, ``inf``/``nan`` as floats.

    Raises:
        ValueError: not a single call of an allowed bare class name with literal keyword arguments; the message
            quotes the offending fragment.
    """
    allowed = frozenset(allowed_classes)
    if not isinstance(text, str):
        raise ValueError(f"constructor must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("constructor string is empty")
    if len(text) > _MAX_CONSTRUCTOR_CHARS:
        raise ValueError(f"constructor string is too long ({len(text)} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"constructor string is not valid Python syntax ({e.msg}): {text!r}") from None
    except (RecursionError, MemoryError):
        raise ValueError("constructor string is too deeply nested") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise ValueError(f"constructor must be a call like ClassName(key=value, ...), got: {_fragment(text, call)}")
    if not isinstance(call.func, ast.Name):
        raise ValueError("constructor must call a bare class name, got the callee "
                         f"{_fragment(text, call.func)} in {_fragment(text, call)}")
    name = call.func.id
    if name not in allowed:
        raise ValueError(f"class '{name}' is not allowed in a constructor string; expected one of {sorted(allowed)}")
    if call.args:
        raise ValueError(f"positional arguments are not allowed in a constructor string (use key=value): "
                         f"{', '.join(_fragment(text, a) for a in call.args)} in {name}(...)")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"keyword unpacking **{_fragment(text, kw.value)} is not allowed in {name}(...)")
        if kw.arg in kwargs:
            raise ValueError(f"keyword argument {kw.arg!r} repeated in {name}(...)")
        try:
            kwargs[kw.arg] = _literal(kw.value, text, f"argument {kw.arg!r}")
        except RecursionError:
            raise ValueError(f"argument {kw.arg!r} is too deeply nested") from None
    return name, kwargs


def _format_literal(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(_format_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_format_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format_literal(k)}: {_format_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} value {value!r} into a constructor string")


def format_constructor(cls_name: str, kwargs: Mapping[str, Any]) -> str:
    """Inverse of :func:`parse_constructor`: ``ClassName(key=value, ...)`` with ``inf`` written as ``inf``.

    ``format_constructor(*parse_constructor(s, ...)) == s`` for the official strings.
    """
    if not isinstance(cls_name, str) or not cls_name.isidentifier():
        raise ValueError(f"invalid class name {cls_name!r}")
    parts = []
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"invalid keyword argument name {key!r}")
        parts.append(f"{key}={_format_literal(value)}")
    return f"{cls_name}({', '.join(parts)})"


# ----------------------------------------------------------------------------------------------------------------
# Official .pth files
# ----------------------------------------------------------------------------------------------------------------
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
    path = os.fspath(path)
    sd = _as_state_dict(state_dict, "save_checkpoint_file")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save({"model": sd, "args": argparse.Namespace(model=constructor)}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face save_pretrained directories
# ----------------------------------------------------------------------------------------------------------------
def _read_config(config_path: str) -> dict[str, Any]:
    try:
        with open(config_path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read '{config_path}': {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise CheckpointError(f"'{config_path}' is not UTF-8 text: {e}") from None
    try:
        config = json.loads(text)  # accepts Infinity / -Infinity / NaN as written by json.dumps
    except json.JSONDecodeError as e:
        raise CheckpointError(f"'{config_path}' is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"'{config_path}' must hold a JSON object, got {type(config).__name__}")
    return config


def _load_safetensors(file: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file
    try:
        with safe_open(file, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot load '{file}': corrupt or not a safetensors file ({e})") from None
    return tensors, dict(metadata)


def load_hf_directory(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a ``save_pretrained`` directory: ``(config, state_dict)``.

    Weights come from ``model.safetensors`` (preferred) or ``pytorch_model.bin`` (``weights_only=True``).
    Keys dropped by ``save_pretrained`` because they shared storage are restored from the safetensors metadata
    ``{alias: kept_key}``: each alias is the *same tensor object* as its kept key.

    Raises:
        CheckpointNotFoundError: missing directory, ``config.json`` or weights file.
        CheckpointError: not a directory, bad JSON, corrupt weights.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"Hugging Face model directory not found: '{path}' does not exist")
    if not os.path.isdir(path):
        raise CheckpointError(f"'{path}' is not a directory, expected a Hugging Face save_pretrained directory "
                              "(for a .pth file use load_checkpoint_file)")
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise CheckpointNotFoundError(f"{CONFIG_NAME} not found in Hugging Face model directory '{path}'")
    config = _read_config(config_path)
    st_path = os.path.join(path, SAFETENSORS_NAME)
    bin_path = os.path.join(path, PYTORCH_WEIGHTS_NAME)
    if os.path.isfile(st_path):
        tensors, metadata = _load_safetensors(st_path)
        state_dict = _as_state_dict(tensors, f"'{st_path}'")
        for alias, kept in metadata.items():
            if alias not in state_dict and kept in state_dict:
                state_dict[alias] = state_dict[kept]
    elif os.path.isfile(bin_path):
        obj = _torch_load_safe(bin_path)
        state_dict = _as_state_dict(obj, f"'{bin_path}'")
    else:
        if os.path.isfile(os.path.join(path, SAFETENSORS_NAME + ".index.json")):
            raise CheckpointError(f"sharded checkpoints are not supported: '{path}' holds "
                                  f"{SAFETENSORS_NAME}.index.json")
        raise CheckpointNotFoundError(f"no weights in Hugging Face model directory '{path}': expected "
                                      f"{SAFETENSORS_NAME} or {PYTORCH_WEIGHTS_NAME}")
    return config, state_dict


def _storage_key(t: torch.Tensor) -> tuple | None:
    if t.device.type == "meta":
        return None
    storage = t.untyped_storage()
    if storage.data_ptr() == 0 or storage.nbytes() == 0:
        return None
    return (t.device, storage.data_ptr(), storage.nbytes())


def _byte_range(t: torch.Tensor) -> tuple[int, int]:
    start = t.data_ptr()
    if t.numel() == 0:
        return start, start
    # last addressed element + 1 (handles strided views)
    span = sum((s - 1) * st for s, st in zip(t.shape, t.stride())) + 1
    return start, start + span * t.element_size()


def _covers_storage(t: torch.Tensor) -> bool:
    storage = t.untyped_storage()
    return t.data_ptr() == storage.data_ptr() and t.numel() * t.element_size() == storage.nbytes()


def find_aliases(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{alias: kept_key}`` for keys whose tensors overlap in memory, chosen as ``save_pretrained`` chooses.

    Among overlapping tensors, the kept key is the alphabetically first one that covers its whole storage
    (safetensors' rule; for the DPT heads ``scratch.layer1_rn.weight`` is kept and ``scratch.layer_rn.0.weight``
    dropped). Raises CheckpointError when the overlapping tensors are not all the same view of the data (they could
    not be restored from the kept key), which ``save_pretrained`` would silently write.
    """
    groups: dict[tuple, list[str]] = {}
    for name, t in state_dict.items():
        key = _storage_key(t)
        if key is not None:
            groups.setdefault(key, []).append(name)
    aliases: dict[str, str] = {}
    for names in groups.values():
        if len(names) < 2:
            continue
        # split into clusters of overlapping byte ranges
        spans = sorted((*_byte_range(state_dict[n]), n) for n in names)
        clusters: list[list[str]] = []
        stop = None
        for start, end, name in spans:
            if clusters and stop is not None and start < stop:
                clusters[-1].append(name)
                stop = max(stop, end)
            else:
                clusters.append([name])
                stop = end
        for cluster in clusters:
            if len(cluster) < 2:
                continue
            complete = sorted(n for n in cluster if _covers_storage(state_dict[n]))
            if not complete:
                raise CheckpointError(f"cannot save tensors {sorted(cluster)}: they share memory but none covers "
                                      "the whole storage")
            kept = complete[0]
            ref = state_dict[kept]
            for name in sorted(cluster):
                if name == kept:
                    continue
                t = state_dict[name]
                if (t.shape != ref.shape or t.stride() != ref.stride() or t.dtype != ref.dtype
                        or t.data_ptr() != ref.data_ptr()):
                    raise CheckpointError(f"cannot save '{name}': it shares memory with {kept!r} but is a "
                                          "different view, so it could not be restored from the saved file")
                aliases[name] = kept
    return aliases


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: JSON object keys must be strings, got {k!r}")
            out[k] = _jsonable(v, where)
        return out
    raise CheckpointError(f"{where}: value {value!r} of type {type(value).__name__} cannot be written to JSON")


def _atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_hf_directory(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], out_dir: str | os.PathLike,
                      *, model_card: str | None = None) -> str:
    """Write a directory as ``PyTorchModelHubMixin.save_pretrained`` does; returns ``out_dir``.

    * ``config.json``: ``json.dumps(config, sort_keys=True, indent=2)`` (tuples as lists, ``inf`` as ``Infinity``,
      no trailing newline), byte-identical to what huggingface_hub writes.
    * ``model.safetensors``: contiguous tensors; keys sharing storage (:func:`find_aliases`) are dropped and
      recorded in the metadata as ``{alias: kept_key}``; no metadata at all when there is no alias (as upstream).
    * ``README.md`` only if ``model_card`` is given (see :func:`default_model_card` for upstream's card).
    """
    from safetensors.torch import save_file

    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CheckpointError(f"cannot write Hugging Face directory '{out_dir}': it exists and is not a directory")
    sd = _as_state_dict(state_dict, "save_hf_directory")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"save_hf_directory: config must be a dict, got {type(config).__name__}")
    config_text = json.dumps(_jsonable(config, "config"), sort_keys=True, indent=2)
    aliases = find_aliases(sd)
    tensors = {k: v.detach().contiguous() for k, v in sd.items() if k not in aliases}
    os.makedirs(out_dir, exist_ok=True)
    st_path = os.path.join(out_dir, SAFETENSORS_NAME)
    tmp = f"{st_path}.tmp{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=aliases or None)
        os.replace(tmp, st_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _atomic_write_bytes(os.path.join(out_dir, CONFIG_NAME), config_text.encode("utf-8"))
    if model_card is not None:
        _atomic_write_bytes(os.path.join(out_dir, "README.md"), model_card.encode("utf-8"))
    return out_dir


def default_model_card(library_name: str = "dust3r", code_url: str = "https://github.com/naver/dust3r",
                       tags: Iterable[str] = ("image-to-3d",)) -> str:
    """The model card ``save_pretrained`` writes for the original classes (``README.md``)."""
    all_tags = sorted(set(tags) | {"model_hub_mixin", "pytorch_model_hub_mixin"})
    header = "\n".join(["---", f"library_name: {library_name}", "tags:", *[f"- {t}" for t in all_tags], "---"])
    return (f"{header}\n\nThis model has been pushed to the Hub using the [PytorchModelHubMixin]"
            "(https://huggingface.co/docs/huggingface_hub/package_reference/mixins#huggingface_hub.PyTorchModelHubMixin)"
            f" integration:\n- Code: {code_url}\n- Paper: [More Information Needed]\n- Docs: [More Information Needed]")


# ----------------------------------------------------------------------------------------------------------------
# Hub ids
# ----------------------------------------------------------------------------------------------------------------
_REPO_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,95}")


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) for p in parts):
        return False
    if name.lower().endswith(_CHECKPOINT_SUFFIXES) or ".." in name or "--" in name:
        return False
    return not any(p.endswith((".", "-")) for p in parts)


def _env_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def resolve_pretrained(name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                       revision: str | None = None, token: str | bool | None = None,
                       local_files_only: bool | None = None, force_download: bool = False) -> tuple[str, str]:
    """Find a checkpoint: ``('pth', file)``, ``('hf_dir', directory)``.

    * an existing file -> ``'pth'``; an existing directory -> ``'hf_dir'``;
    * otherwise ``owner/name`` is fetched from the Hugging Face hub (``config.json`` and ``model.safetensors``,
      or ``pytorch_model.bin`` if the repo has no safetensors) into ``cache_dir`` (hub default if None) and the
      snapshot directory is returned as ``'hf_dir'``.

    ``local_files_only=None`` means: offline iff ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set, read at call
    time (huggingface_hub itself reads it only when imported).

    Raises:
        CheckpointNotFoundError: not an existing path and not a hub id, or the hub id could not be fetched.
    """
    name = os.fspath(name_or_path)
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint name must be a path or hub id string, got '{name}'")
    local = os.path.expanduser(name)
    if os.path.isfile(local):
        return "pth", local
    if os.path.isdir(local):
        return "hf_dir", local
    if os.path.exists(local):
        raise CheckpointError(f"'{name}' is neither a file nor a directory")
    if not _looks_like_repo_id(name):
        raise CheckpointNotFoundError(f"checkpoint path does not exist: '{name}' (and it is not a Hugging Face hub "
                                      "id of the form owner/name)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise CheckpointNotFoundError(f"'{name}' is not a local path, and huggingface_hub is not installed to fetch "
                                      "it from the hub: pip install huggingface_hub") from e
    offline = _env_offline() if local_files_only is None else bool(local_files_only)
    common = dict(repo_id=name, revision=revision, cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                  token=token, force_download=force_download, local_files_only=offline)

    def fail(what: str, err: BaseException) -> CheckpointNotFoundError:
        where = f"cache '{common['cache_dir']}'" if cache_dir is not None else "the default Hugging Face cache"
        mode = ("offline mode is on (HF_HUB_OFFLINE / local_files_only) and it is not in " + where
                if offline else "it could not be downloaded and is not in " + where)
        rev = f" (revision {revision!r})" if revision else ""
        return CheckpointNotFoundError(
            f"cannot get {what} of Hugging Face model '{name}'{rev}: {mode} [{_short_error(err)}]. "
            f"'{name}' is not a local path "
            "either. Download the official .pth checkpoint and pass its path, or download the repository while "
            "online (huggingface-cli download) into the cache / pass cache_dir.")

    try:
        config_file = hf_hub_download(filename=CONFIG_NAME, **common)
    except Exception as e:  # hub errors are many (HTTP, offline, validation, missing entry)
        raise fail(CONFIG_NAME, e) from e
    try:
        hf_hub_download(filename=SAFETENSORS_NAME, **common)
    except Exception as e_st:
        try:
            hf_hub_download(filename=PYTORCH_WEIGHTS_NAME, **common)
        except Exception:
            raise fail(f"the weights ({SAFETENSORS_NAME} or {PYTORCH_WEIGHTS_NAME})", e_st) from e_st
    return "hf_dir", os.path.dirname(config_file)


# ----------------------------------------------------------------------------------------------------------------
# .pth -> Hugging Face conversion
# ----------------------------------------------------------------------------------------------------------------
def constructor_to_config(constructor: str, allowed_classes: Iterable[str] = KNOWN_MODEL_CLASSES) -> dict[str, Any]:
    """The keyword arguments of a constructor string as a JSON-ready dict (tuples become lists).

    The class name is *not* stored: upstream configs hold only ``__init__`` kwargs, and
    ``from_pretrained`` passes the whole config to ``cls(**config)``.
    """
    _, kwargs = parse_constructor(constructor, allowed_classes)
    return _jsonable(kwargs, "constructor")


def config_with_signature_defaults(init: Callable[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{JSON-able defaults of init's named parameters, **kwargs}``: the config ``PyTorchModelHubMixin`` records.

    ``init`` is the model class (or its ``__init__``); e.g. for ``AsymmetricCroCo3DStereo`` this adds
    ``freeze``, ``landscape_only``, ``patch_embed_cls``, ... to the constructor kwargs, as upstream does.
    """
    params = inspect.signature(init).parameters
    defaults = {}
    for p in params.values():
        if p.name == "self" or p.default is inspect.Parameter.empty:
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        try:
            defaults[p.name] = _jsonable(p.default, "default")
        except CheckpointError:
            continue
    return _jsonable({**defaults, **kwargs}, "config")


def convert_pth_to_hf(pth_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                      config_from_constructor: Callable[[str], dict] | None = None,
                      model_card: str | None = None) -> str:
    """Convert an official ``.pth`` into a ``save_pretrained`` directory; returns ``out_dir``.

    ``config_from_constructor(constructor_string) -> dict`` builds ``config.json``; by default the constructor's
    keyword arguments (classes in :data:`KNOWN_MODEL_CLASSES`), which the original ``from_pretrained`` accepts.
    Upstream's config additionally holds the class's signature defaults: pass a callable using
    :func:`config_with_signature_defaults` to reproduce it exactly.
    """
    ckpt = load_checkpoint_file(pth_path)
    if ckpt["constructor"] is None:
        raise CheckpointError(f"'{ckpt['path']}' has no constructor string (args.model): cannot build config.json")
    make_config = config_from_constructor or constructor_to_config
    config = make_config(ckpt["constructor"])
    return save_hf_directory(ckpt["state_dict"], config, out_dir, model_card=model_card)


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``convert IN.pth OUT_DIR`` or ``info PATH``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dust3r.utils.checkpoint",
                                     description="Inspect and convert DUSt3R / MASt3R checkpoints (safely).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_conv = sub.add_parser("convert", help="official .pth -> Hugging Face save_pretrained directory")
    p_conv.add_argument("pth", help="input .pth checkpoint")
    p_conv.add_argument("out_dir", help="output directory (config.json + model.safetensors)")
    p_conv.add_argument("--allowed-class", action="append", default=None, metavar="NAME",
                        help=f"class name accepted in the constructor string (default: {', '.join(KNOWN_MODEL_CLASSES)})")
    p_conv.add_argument("--model-card", action="store_true", help="also write upstream's README.md model card")
    p_info = sub.add_parser("info", help="print the constructor string and tensor count of a checkpoint")
    p_info.add_argument("path", help=".pth file or Hugging Face directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            allowed = tuple(args.allowed_class or KNOWN_MODEL_CLASSES)
            ckpt = load_checkpoint_file(args.pth)
            if ckpt["constructor"] is None:
                raise CheckpointError(f"'{args.pth}' has no constructor string (args.model): cannot build config.json")
            cls_name, _ = parse_constructor(ckpt["constructor"], allowed)
            card = None
            if args.model_card:
                lib = "mast3r" if cls_name == "AsymmetricMASt3R" else "dust3r"
                card = default_model_card(lib, f"https://github.com/naver/{lib}")
            save_hf_directory(ckpt["state_dict"], constructor_to_config(ckpt["constructor"], allowed), args.out_dir,
                              model_card=card)
            print(f"wrote {args.out_dir}")
        else:
            if os.path.isdir(args.path):
                config, sd = load_hf_directory(args.path)
                print(json.dumps(config, sort_keys=True))
            else:
                ck = load_checkpoint_file(args.path)
                sd = ck["state_dict"]
                print(ck["constructor"])
            n = sum(t.numel() for t in {id(t): t for t in sd.values()}.values())
            print(f"{len(sd)} tensors, {n:,} parameters")
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
