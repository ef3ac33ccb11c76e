"""Official ``.pth`` -> Hugging Face directory conversion and the ``python -m dust3r.utils.checkpoint`` CLI."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .constructor import parse_constructor
from .errors import CheckpointError
from .files import load_checkpoint_file
from .hf import _jsonable, default_model_card, load_hf_directory, save_hf_directory

#: Class names accepted by default in constructor strings (CLI and :func:`constructor_to_config`).
KNOWN_MODEL_CLASSES: tuple[str, ...] = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R", "CroCoNet")


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
