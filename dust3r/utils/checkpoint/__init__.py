"""Secure, model-agnostic checkpoint I/O for the DUSt3R / MASt3R / CroCo model classes.

Three checkpoint forms are supported, matching what the original code reads and writes:

* official ``.pth`` files (:mod:`.files`): ``torch.save({'model': state_dict, 'args': argparse.Namespace(model=
  <constructor>)})``, read with :func:`load_checkpoint_file` (``weights_only=True``; ``argparse.Namespace`` is the
  only extra class the unpickler may build, allowed for that call only, never globally);
* Hugging Face ``save_pretrained`` directories (:mod:`.hf`: ``config.json`` + ``model.safetensors``), read with
  :func:`load_hf_directory` and written with :func:`save_hf_directory` exactly as
  ``PyTorchModelHubMixin.save_pretrained`` writes them;
* hub ids (:mod:`.hub`: ``owner/name``), resolved to a cached snapshot directory by :func:`resolve_pretrained`.

The constructor string stored in ``ckpt['args'].model`` (e.g. ``"AsymmetricMASt3R(pos_embed='RoPE100', ...)"``) is
never evaluated: :func:`parse_constructor` (:mod:`.constructor`) reads it with :mod:`ast` and accepts only a call
to an allow-listed class name with literal keyword arguments. :mod:`.state_dict` adapts a stored state dict to the
model (second decoder, aliases, strict assignment).

Exceptions (one hierarchy, :mod:`.errors`)::

    ValueError
     └── CheckpointError                 every problem with a checkpoint path, file, directory or hub id
          ├── CheckpointNotFoundError    (also a FileNotFoundError) missing file/dir/config/weights, hub miss
          └── UnsafeCheckpointError      the weights-only unpickler refused a pickle (nothing was executed)

Messages always name the path (or hub id) and the problem. :func:`parse_constructor` and
:func:`format_constructor` raise plain ``ValueError``.

Nothing here imports the model classes: they call these functions (``from_pretrained``, ``save_pretrained``).

CLI (:mod:`.convert`)::

    python -m dust3r.utils.checkpoint convert IN.pth OUT_DIR   # official .pth -> save_pretrained directory
    python -m dust3r.utils.checkpoint info PATH                # constructor string and tensor count
"""
from __future__ import annotations

from .constructor import format_constructor, parse_constructor
from .convert import (KNOWN_MODEL_CLASSES, config_with_signature_defaults, constructor_to_config, convert_pth_to_hf,
                      main)
from .errors import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError
from .files import atomic_write, load_checkpoint_file, save_checkpoint_file
from .hf import (CONFIG_NAME, PYTORCH_WEIGHTS_NAME, SAFETENSORS_NAME, default_model_card, find_aliases,
                 load_hf_directory, save_hf_directory, write_safetensors)
from .hub import hub_unreachable_reason, resolve_pretrained
from .state_dict import assign_weights, fill_aliases, with_second_decoder

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
    "atomic_write",
    "load_hf_directory",
    "save_hf_directory",
    "write_safetensors",
    "find_aliases",
    "resolve_pretrained",
    "hub_unreachable_reason",
    "with_second_decoder",
    "fill_aliases",
    "assign_weights",
    "constructor_to_config",
    "config_with_signature_defaults",
    "default_model_card",
    "convert_pth_to_hf",
    "main",
]
