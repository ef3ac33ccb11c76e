"""Hugging Face ``save_pretrained`` directories (``config.json`` + ``model.safetensors``), read and written as
``PyTorchModelHubMixin`` does, including the alias metadata of parameters stored once under several names."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .errors import CheckpointError, CheckpointNotFoundError
from .files import _as_state_dict, _torch_load_safe, atomic_write

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_WEIGHTS_NAME = "pytorch_model.bin"


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


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
    atomic_write(path, write)


def write_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, str]:
    """Write ``model.safetensors`` as ``save_pretrained`` does; returns the ``{alias: kept_key}`` metadata.

    Keys sharing storage (:func:`find_aliases`) are stored once and recorded in the metadata (no metadata at all
    when there is no alias, as upstream); tensors are written contiguous (channels-last weights included).
    """
    from safetensors.torch import save_file

    sd = _as_state_dict(state_dict, "write_safetensors")
    aliases = find_aliases(sd)
    tensors = {k: v.detach().contiguous() for k, v in sd.items() if k not in aliases}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=aliases or None))
    return aliases


def save_hf_directory(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], out_dir: str | os.PathLike,
                      *, model_card: str | None = None) -> str:
    """Write a directory as ``PyTorchModelHubMixin.save_pretrained`` does; returns ``out_dir``.

    * ``config.json``: ``json.dumps(config, sort_keys=True, indent=2)`` (tuples as lists, ``inf`` as ``Infinity``,
      no trailing newline), byte-identical to what huggingface_hub writes.
    * ``model.safetensors``: contiguous tensors; keys sharing storage (:func:`find_aliases`) are dropped and
      recorded in the metadata as ``{alias: kept_key}``; no metadata at all when there is no alias (as upstream).
    * ``README.md`` only if ``model_card`` is given (see :func:`default_model_card` for upstream's card).
    """
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CheckpointError(f"cannot write Hugging Face directory '{out_dir}': it exists and is not a directory")
    sd = _as_state_dict(state_dict, "save_hf_directory")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"save_hf_directory: config must be a dict, got {type(config).__name__}")
    config_text = json.dumps(_jsonable(config, "config"), sort_keys=True, indent=2)
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(sd, os.path.join(out_dir, SAFETENSORS_NAME))
    _write_text(os.path.join(out_dir, CONFIG_NAME), config_text)
    if model_card is not None:
        _write_text(os.path.join(out_dir, "README.md"), model_card)
    return out_dir


def default_model_card(library_name: str = "dust3r", code_url: str = "https://github.com/naver/dust3r",
                       tags: Iterable[str] = ("image-to-3d",)) -> str:
    """The model card ``save_pretrained`` writes for the original classes (``README.md``)."""
    all_tags = sorted(set(tags) | {"model_hub_mixin", "pytorch_model_hub_mixin"})
    header = "\n".join(["---", f"library_name: {library_name}", "tags:", *[f"- {t}" for t in all_tags], "---"])
    return (f"{header}\n\nThis model has been pushed to the Hub using the [PytorchModelHubMixin]"
            "(https://huggingface.co/docs/huggingface_hub/package_reference/mixins#huggingface_hub.PyTorchModelHubMixin)"
            f" integration:\n- Code: {code_url}\n- Paper: [More Information Needed]\n- Docs: [More Information Needed]")
