"""Command-line checks every front end (demos, CLIs) runs before any heavy work, on top of :mod:`dust3r.inputs`.

Each raises :class:`dust3r.inputs.InputError` with one line naming the bad input; the front end prints it and
exits non-zero (the CLI with 2). Nothing here loads weights or images.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from dust3r.inputs import InputError, check_checkpoint_kind
from dust3r.utils.device import DeviceError, resolve_device

from .flags import model_source

__all__ = ["check_device", "check_weights"]


def check_device(device: str) -> str:
    """``device`` if this machine can run on it (:func:`dust3r.utils.device.resolve_device`)."""
    try:
        resolve_device(device)
    except DeviceError as exc:
        raise InputError(f"--device: {exc}") from None
    return device


def check_weights(weights: Optional[str], model_name: Optional[str],
                  expected_classes: Sequence[str] = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")) -> str:
    """The checkpoint of ``--weights`` / ``--model_name``, checked without loading it; returns what to load.

    A local ``--weights`` must exist and hold one of ``expected_classes``
    (:func:`dust3r.inputs.check_checkpoint_kind`); an official hub name is checked by its name only, the download
    happens when the model is loaded.
    """
    try:
        source = model_source(weights, model_name)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if weights and not os.path.lexists(os.path.expanduser(weights)):
        raise InputError(f"weights not found: {weights!r}")
    try:
        check_checkpoint_kind(source, tuple(expected_classes))
    except InputError as exc:
        if weights and "holds a" not in str(exc):  # unreadable file: say which flag it came from
            raise InputError(f"cannot load model weights from {weights!r}: {exc}") from None
        raise
    return source
