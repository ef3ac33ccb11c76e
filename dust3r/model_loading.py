"""The one loading path for every checkpoint form: official ``.pth``, Hugging Face directory, hub id.

Steps: locate the files (:func:`dust3r.utils.checkpoint.resolve_pretrained`), read them without running code
(``torch.load(weights_only=True)`` / safetensors), turn the stored constructor string or ``config.json`` into
keyword arguments (``ast`` against an allow-list, never ``eval``), build the model on the meta device (no random
init, no second copy of the weights), then assign the checkpoint tensors with a strict key/shape check.

Every model is built with ``patch_embed_cls='PatchEmbedDust3R'`` and ``landscape_only=False``, as the original
``load_model`` does for ``.pth`` files. The original's Hugging Face path kept ``ManyAR_PatchEmbed`` and failed on
portrait images; here all three forms give the same model and the same outputs.
"""
from __future__ import annotations

import inspect
import logging
from typing import Dict, Optional, Tuple, Type

import torch

from .utils.checkpoint import (CheckpointError, load_checkpoint_file, load_hf_directory, parse_constructor,
                               resolve_pretrained)

logger = logging.getLogger(__name__)

MODEL_CLASS_NAMES = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")


def model_classes() -> Dict[str, type]:
    """Name -> class of the models a checkpoint may name."""
    from mast3r.model import AsymmetricMASt3R

    from .model import AsymmetricCroCo3DStereo
    return {"AsymmetricCroCo3DStereo": AsymmetricCroCo3DStereo, "AsymmetricMASt3R": AsymmetricMASt3R}


def _tuples(value):
    """JSON lists back to tuples (img_size, depth_mode, ... are tuples in the constructor strings)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def normalise_model_kwargs(kwargs: dict) -> dict:
    """Constructor kwargs as every loading path uses them: any-orientation patch embedding, no landscape-only
    heads, tuples for sequences."""
    kwargs = {k: _tuples(v) for k, v in kwargs.items()}
    if kwargs.get("patch_embed_cls", "PatchEmbedDust3R") == "ManyAR_PatchEmbed":
        kwargs["patch_embed_cls"] = "PatchEmbedDust3R"
    kwargs["landscape_only"] = False
    return kwargs


def _check_kwargs(cls: type, kwargs: dict, source: str) -> None:
    """Reject keyword arguments that no constructor in the class hierarchy accepts."""
    from croco.models.croco import CroCoNet
    accepted = set()
    for klass in (cls, *cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            accepted |= {n for n, p in inspect.signature(init).parameters.items()
                         if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    accepted |= set(inspect.signature(CroCoNet.__init__).parameters)
    unknown = sorted(set(kwargs) - accepted - {"self"})
    if unknown:
        raise CheckpointError(f"{source}: unknown model argument(s) {unknown} for {cls.__name__}")


def _fill_aliases(model: torch.nn.Module, state_dict: dict) -> dict:
    """Complete keys that name the same parameter as another key (DPT ``layer_rn.i`` = ``layer{i+1}_rn``)."""
    by_param: Dict[int, list] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_param.setdefault(id(tensor), []).append(key)
    state_dict = dict(state_dict)
    for keys in by_param.values():
        present = [k for k in keys if k in state_dict]
        if present and len(present) < len(keys):
            for k in keys:
                state_dict.setdefault(k, state_dict[present[0]])
    return state_dict


def _assign_weights(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Strictly load ``state_dict`` into a meta-device ``model`` (tensors are adopted, not copied)."""
    if not any(k.startswith("dec_blocks2.") for k in state_dict):  # CroCo-style checkpoint: one decoder
        state_dict = dict(state_dict)
        for key in [k for k in state_dict if k.startswith("dec_blocks.")]:
            state_dict["dec_blocks2." + key[len("dec_blocks."):]] = state_dict[key]
    state_dict = _fill_aliases(model, state_dict)
    expected = model.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong_shape:
        def head(items):
            return ", ".join(items[:5]) + (f" ... ({len(items)} in all)" if len(items) > 5 else "")
        problems = []
        if missing:
            problems.append(f"missing keys: {head(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {head(unexpected)}")
        if wrong_shape:
            problems.append(f"shape mismatches: {head(wrong_shape)}")
        raise CheckpointError(f"{source}: weights do not match the architecture it describes "
                              f"({type(model).__name__}); " + "; ".join(problems))
    non_float = [k for k in expected if not state_dict[k].is_floating_point()]
    if non_float:
        raise CheckpointError(f"{source}: non floating-point weights for {non_float[:3]}")
    model.load_state_dict({k: state_dict[k].float() for k in expected}, strict=True, assign=True)


def channels_last_convolutions(model: torch.nn.Module) -> torch.nn.Module:
    """Store the 2D convolution weights of the heads in channels-last layout.

    oneDNN and cuDNN run the DPT convolutions about 1.3x faster that way; values are unchanged (only the memory
    layout), results differ by float32 rounding. ``save_pretrained`` writes contiguous copies.
    """
    for name, module in model.named_modules():
        if name.startswith("downstream_head") and isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


def build_model(cls: type, kwargs: dict, source: str = "<kwargs>") -> torch.nn.Module:
    """Instantiate ``cls(**kwargs)`` on the meta device (no memory, no random init)."""
    _check_kwargs(cls, kwargs, source)
    try:
        with torch.device("meta"):
            return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: cannot build {cls.__name__} from the stored arguments: {exc}") from exc


def read_checkpoint(name_or_path, **hub_kw) -> Tuple[Optional[str], dict, dict, str]:
    """Locate and read a checkpoint. Returns (class name or None, constructor kwargs, state_dict, source)."""
    kind, path = resolve_pretrained(str(name_or_path), **hub_kw)
    if kind == "pth":
        ckpt = load_checkpoint_file(path, mmap=True)
        if not ckpt.get("constructor"):
            raise CheckpointError(f"{path}: no model description ('args.model' constructor string) in the "
                                  f"checkpoint; build the model yourself and call load_state_dict")
        cls_name, kwargs = parse_constructor(ckpt["constructor"], MODEL_CLASS_NAMES)
        return cls_name, kwargs, ckpt["state_dict"], str(path)
    config, state_dict = load_hf_directory(path)
    config = dict(config)
    cls_name = config.pop("model_class", None) if isinstance(config.get("model_class"), str) else None
    if cls_name is not None and cls_name not in MODEL_CLASS_NAMES:
        raise CheckpointError(f"{path}: unsupported model_class {cls_name!r}; expected one of {MODEL_CLASS_NAMES}")
    return cls_name, config, state_dict, str(path)


def load_pretrained(name_or_path, *, device=None, expected_cls: Optional[Type] = None, verbose: bool = False,
                    **hub_kw) -> torch.nn.Module:
    """Load a model from a ``.pth`` file, a Hugging Face directory or a hub id.

    Args:
        name_or_path: file, directory or ``owner/name`` hub id.
        device: where to put the model (default: stays on CPU).
        expected_cls: class used when the checkpoint does not name one (HF config). A ``.pth`` names its class
            and that class is built, as the original ``load_model`` does.
        verbose: log what is built.
        **hub_kw: ``cache_dir``, ``revision``, ``token``, ``local_files_only``, ``force_download``.
    Returns:
        The model in eval mode.
    """
    classes = model_classes()
    cls_name, kwargs, state_dict, source = read_checkpoint(name_or_path, **hub_kw)
    if cls_name is not None:
        cls = classes[cls_name]
    else:
        cls = expected_cls or classes["AsymmetricMASt3R" if "two_confs" in kwargs or "desc_mode" in kwargs
                                      else "AsymmetricCroCo3DStereo"]
    kwargs = normalise_model_kwargs(kwargs)
    if verbose:
        logger.info("building %s(%s) from %s", cls.__name__, ", ".join(f"{k}={v!r}" for k, v in kwargs.items()),
                    source)
    model = build_model(cls, kwargs, source)
    _assign_weights(model, state_dict, source)
    channels_last_convolutions(model)
    model.eval()
    if device is not None:
        model = model.to(device)
    return model
