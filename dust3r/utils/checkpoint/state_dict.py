"""Adapting a checkpoint's state dict to the model it describes: the one home for the second-decoder copy and for
parameters stored under several names (the DPT heads' ``layer_rn.i`` = ``layer{i+1}_rn``)."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .errors import CheckpointError

__all__ = ["with_second_decoder", "fill_aliases", "assign_weights"]


def with_second_decoder(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CroCo-pretraining weights have one decoder (``dec_blocks.*``): the second decoder (``dec_blocks2.*``) starts
    as a copy of it, as the original does. State dicts that already hold ``dec_blocks2`` come back unchanged."""
    state_dict = dict(state_dict)
    if any(k.startswith("dec_blocks2.") for k in state_dict):
        return state_dict
    for key in [k for k in state_dict if k.startswith("dec_blocks.")]:
        state_dict["dec_blocks2." + key[len("dec_blocks."):]] = state_dict[key]
    return state_dict


def fill_aliases(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Complete keys naming the same parameter of ``model`` as a key that is present (a file may store a shared
    parameter under one of its names only)."""
    by_param: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_param.setdefault(id(tensor), []).append(key)
    state_dict = dict(state_dict)
    for keys in by_param.values():
        present = [k for k in keys if k in state_dict]
        if present and len(present) < len(keys):
            for k in keys:
                state_dict.setdefault(k, state_dict[present[0]])
    return state_dict


def _head(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" ... ({len(items)} in all)" if len(items) > 5 else "")


def assign_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state_dict`` into ``model`` (built on the meta device: tensors are adopted, not copied).

    Adds the second decoder and the aliases first; then every key must exist with the model's shape.

    Raises:
        CheckpointError: naming ``source`` and listing missing / unexpected keys and shape mismatches.
    """
    state_dict = fill_aliases(model, with_second_decoder(state_dict))
    expected = model.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {_head(items)}" for what, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape))
                if items]
    if problems:
        raise CheckpointError(f"{source}: weights do not match the architecture it describes "
                              f"({type(model).__name__}); " + "; ".join(problems))
    non_float = [k for k in expected if not state_dict[k].is_floating_point()]
    if non_float:
        raise CheckpointError(f"{source}: non floating-point weights for {non_float[:3]}")
    model.load_state_dict({k: state_dict[k].float() for k in expected}, strict=True, assign=True)
