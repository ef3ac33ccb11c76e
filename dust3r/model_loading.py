"""The one loading path for every checkpoint form: official ``.pth``, Hugging Face directory, hub id.

Steps: check the device (:func:`dust3r.utils.device.resolve_device`), locate the files
(:func:`dust3r.utils.checkpoint.resolve_pretrained`), read them without running code (``torch.load(weights_only=
True)`` / safetensors), turn the stored constructor string or ``config.json`` into keyword arguments (``ast``
against the registered class names, never ``eval``), build the model on the meta device (no random init, no second
copy of the weights), then assign the checkpoint tensors with a strict key/shape check.

Architectures are resolved by name through a registry (the way timm resolves model names): a model class joins it
with :func:`register_model` when its module is imported, and a package that provides model classes declares them in
the ``dust3r.models`` entry-point group (``setup.py``), which is consulted only for a name not registered yet. This
module therefore never imports a model module: ``AsymmetricMASt3R`` is found through the entry point
``mast3r.model:AsymmetricMASt3R``, and a DUSt3R-only installation loads DUSt3R checkpoints without MASt3R code.

Every model is built with ``patch_embed_cls='PatchEmbedDust3R'`` and ``landscape_only=False``, as the original
``load_model`` does for ``.pth`` files (keywords given to ``from_pretrained`` override this and every stored
argument). The original's Hugging Face path kept ``ManyAR_PatchEmbed`` and failed on portrait images; here all three
forms give the same model and the same outputs.
"""
from __future__ import annotations

import inspect
import logging
from importlib import metadata
from typing import Dict, List, Optional, Tuple, Type

import torch

from croco.models.croco import CroCoNet

from .utils.checkpoint import (CheckpointError, assign_weights, load_checkpoint_file, load_hf_directory,
                               parse_constructor, resolve_pretrained)
from .utils.device import resolve_device

logger = logging.getLogger(__name__)

#: entry-point group through which installed packages declare model classes (``Name = module:Class``)
ENTRY_POINT_GROUP = "dust3r.models"

#: the package that provides each architecture of the official checkpoints (named in error messages)
MODEL_PROVIDERS: Dict[str, str] = {"AsymmetricCroCo3DStereo": "dust3r", "AsymmetricMASt3R": "mast3r"}
MODEL_CLASS_NAMES = tuple(MODEL_PROVIDERS)

#: keyword arguments of ``from_pretrained`` / ``load_pretrained`` that go to the hub, not to the model
HUB_OPTIONS = ("cache_dir", "revision", "token", "local_files_only", "force_download")

_REGISTRY: Dict[str, type] = {}


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------
def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` loadable by its name (the name stored in checkpoints' constructor strings).

    Registering another class under a taken name is an error; the same class (a module reloaded) replaces itself.
    """
    name = cls.__name__
    old = _REGISTRY.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model class name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _entry_points() -> Dict[str, "metadata.EntryPoint"]:
    eps = metadata.entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, ())
    return {ep.name: ep for ep in group}


def _provider_hint(name: str) -> str:
    package = MODEL_PROVIDERS.get(name)
    return f"package '{package}'" if package else f"a package declaring it in the '{ENTRY_POINT_GROUP}' entry points"


def _load_entry_point(name: str, ep) -> type:
    try:
        obj = ep.load()
    except ImportError as exc:
        raise CheckpointError(f"model class '{name}' is provided by {_provider_hint(name)} ({ep.value}), which "
                              f"cannot be imported: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise CheckpointError(f"entry point '{name} = {ep.value}' of group '{ENTRY_POINT_GROUP}' is not a model class")
    return _REGISTRY.get(name) or register_model(obj)


def get_model_class(name: str) -> type:
    """The model class registered under ``name``; looked up in the ``dust3r.models`` entry points when not
    registered yet (importing the providing module then registers it).

    Raises:
        CheckpointError: no such class, naming the package that provides it.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise CheckpointError(f"model class '{name}' is not available: it comes with {_provider_hint(name)}; install "
                              f"it (pip install -e . in its repository) so that it registers in '{ENTRY_POINT_GROUP}'")
    return _load_entry_point(name, ep)


def known_model_names() -> Tuple[str, ...]:
    """Names a checkpoint may name: registered, declared as entry points, or official."""
    return tuple(sorted(set(_REGISTRY) | set(_entry_points()) | set(MODEL_PROVIDERS)))


def _available_classes() -> Tuple[Dict[str, type], List[str]]:
    """All classes that can be resolved now, and one line per declared class that cannot be imported."""
    failures = []
    for name, ep in _entry_points().items():
        if name not in _REGISTRY:
            try:
                _load_entry_point(name, ep)
            except CheckpointError as exc:
                logger.debug("%s", exc)
                failures.append(str(exc))
    return dict(_REGISTRY), failures


def model_classes() -> Dict[str, type]:
    """Name -> class of every model class a checkpoint may name (entry points imported where importable)."""
    return _available_classes()[0]


# ---------------------------------------------------------------------------------------------------------------
# Constructor arguments
# ---------------------------------------------------------------------------------------------------------------
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


def accepted_kwargs(cls: type) -> set:
    """Named constructor arguments of ``cls`` and of every class it passes ``**kwargs`` on to (CroCoNet)."""
    accepted = set()
    for klass in (*cls.__mro__, CroCoNet):
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            accepted |= {n for n, p in inspect.signature(init).parameters.items()
                         if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return accepted - {"self"}


def _check_kwargs(cls: type, kwargs: dict, source: str) -> None:
    """Reject keyword arguments that no constructor in the class hierarchy accepts."""
    unknown = sorted(set(kwargs) - accepted_kwargs(cls))
    if unknown:
        raise CheckpointError(f"{source}: unknown model argument(s) {unknown} for {cls.__name__}")


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


# ---------------------------------------------------------------------------------------------------------------
# Reading and choosing the class
# ---------------------------------------------------------------------------------------------------------------
def read_checkpoint(name_or_path, **hub_kw) -> Tuple[Optional[str], dict, dict, str]:
    """Locate and read a checkpoint. Returns (class name or None, constructor kwargs, state_dict, source)."""
    kind, path = resolve_pretrained(str(name_or_path), **hub_kw)
    if kind == "pth":
        ckpt = load_checkpoint_file(path, mmap=True)
        if not ckpt.get("constructor"):
            raise CheckpointError(f"{path}: no model description ('args.model' constructor string) in the "
                                  f"checkpoint; build the model yourself and call load_state_dict")
        cls_name, kwargs = parse_constructor(ckpt["constructor"], known_model_names())
        return cls_name, kwargs, ckpt["state_dict"], str(path)
    config, state_dict = load_hf_directory(path)
    config = dict(config)
    cls_name = config.pop("model_class", None) if isinstance(config.get("model_class"), str) else None
    if cls_name is not None and cls_name not in known_model_names():
        raise CheckpointError(f"{path}: unsupported model_class {cls_name!r}; expected one of {known_model_names()}")
    return cls_name, config, state_dict, str(path)


def _most_derived(classes: List[type]) -> type:
    return next(c for c in classes if all(issubclass(c, other) for other in classes))


def class_for_config(config: dict, source: str) -> type:
    """The architecture a Hugging Face ``config.json`` describes (it stores no class name): the most derived
    available class whose ``describes_config(config)`` is true."""
    classes, failures = _available_classes()
    claims = [c for c in classes.values() if getattr(c, "describes_config", None) and c.describes_config(config)]
    if claims:
        try:
            return _most_derived(claims)
        except StopIteration:
            raise CheckpointError(f"{source}: config.json fits several unrelated model classes "
                                  f"{sorted(c.__name__ for c in claims)}") from None
    hint = f"; {' '.join(failures)}" if failures else ""
    raise CheckpointError(f"{source}: config.json (output_mode={config.get('output_mode')!r}, "
                          f"head_type={config.get('head_type')!r}) describes none of the available model classes "
                          f"{sorted(classes)}{hint}")


def _choose_class(found: type, expected: Optional[type], source: str) -> type:
    """The class to build for a checkpoint holding ``found`` when ``expected.from_pretrained`` was called.

    A checkpoint of ``expected`` or of a registered subclass builds that class. An unregistered subclass of the
    checkpoint's class (a user's extension) is built as itself. Anything else is refused, naming what the file holds.
    """
    if expected is None or issubclass(found, expected):
        return found
    if issubclass(expected, found) and _REGISTRY.get(expected.__name__) is not expected:
        return expected
    raise CheckpointError(f"{source} holds a checkpoint of {found.__name__}, not of {expected.__name__} (nor of a "
                          f"subclass); load it with {found.__name__}.from_pretrained or "
                          f"dust3r.model_loading.load_pretrained")


def split_pretrained_kwargs(kwargs: dict) -> Tuple[dict, dict]:
    """``from_pretrained`` keywords -> (hub options, model constructor overrides)."""
    hub = {k: v for k, v in kwargs.items() if k in HUB_OPTIONS}
    return hub, {k: v for k, v in kwargs.items() if k not in HUB_OPTIONS}


def load_pretrained(name_or_path, *, device=None, expected_cls: Optional[Type] = None, verbose: bool = False,
                    model_kwargs: Optional[dict] = None, **hub_kw) -> torch.nn.Module:
    """Load a model from a ``.pth`` file, a Hugging Face directory or a hub id.

    Args:
        name_or_path: file, directory or ``owner/name`` hub id.
        device: where to put the model (default: stays on CPU); checked before anything is read.
        expected_cls: the class ``from_pretrained`` was called on: the checkpoint must hold it or a subclass
            (see :func:`_choose_class`); a Hugging Face config naming no class is matched against the registry.
        verbose: log what is built.
        model_kwargs: constructor arguments that override the stored ones (``landscape_only=True``,
            ``freeze='encoder'``...), as the original hub mixin passes ``from_pretrained`` keywords to the model.
        **hub_kw: ``cache_dir``, ``revision``, ``token``, ``local_files_only``, ``force_download``.
    Returns:
        The model in eval mode.
    """
    device = resolve_device(device) if device is not None else None
    cls_name, kwargs, state_dict, source = read_checkpoint(name_or_path, **hub_kw)
    found = get_model_class(cls_name) if cls_name is not None else class_for_config(kwargs, source)
    cls = _choose_class(found, expected_cls, source)
    overrides = {k: _tuples(v) for k, v in (model_kwargs or {}).items()}
    unknown = sorted(set(overrides) - accepted_kwargs(cls))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}: neither hub options {list(HUB_OPTIONS)} nor "
                        f"arguments of {cls.__name__}")
    kwargs = {**normalise_model_kwargs(kwargs), **overrides}
    if verbose:
        logger.info("building %s(%s) from %s", cls.__name__, ", ".join(f"{k}={v!r}" for k, v in kwargs.items()),
                    source)
    model = build_model(cls, kwargs, source)
    assign_weights(model, state_dict, source)
    channels_last_convolutions(model)
    model.eval()
    if device is not None:
        model = model.to(device)
    return model
