"""Reading the pairwise predictions given to the dense aligners (validation with clear errors, padding)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["VIEW_META_KEYS", "as_index_list", "pair_rows", "view_meta_of", "check_finite", "ravel_pad", "pad_last"]

#: keys of a load_images view that describe how the image was resized / cropped (contract B ``views_meta``)
VIEW_META_KEYS = ("orig_shape", "resized_shape", "crop_offset", "resize_scale", "filepath", "true_shape",
                  "instance")


def as_index_list(values: Any, name: str) -> List[int]:
    if isinstance(values, torch.Tensor):
        values = values.reshape(-1).tolist()
    elif isinstance(values, np.ndarray):
        values = values.reshape(-1).tolist()
    elif isinstance(values, (int, np.integer)):
        values = [values]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold integer image indices, got {values!r}") from exc


def pair_rows(container: Any, name: str, n: int, item_ndim: int) -> List[torch.Tensor]:
    """Stacked tensor (P, ...) or list of per-pair tensors ((...) or (1, ...)) -> list of P float32 tensors."""
    if isinstance(container, torch.Tensor):
        rows = list(container)
    elif isinstance(container, (list, tuple)):
        rows = [torch.as_tensor(r) for r in container]
        rows = [r[0] if r.ndim == item_ndim + 1 and r.shape[0] == 1 else r for r in rows]
    else:
        raise ValueError(f"{name} must be a tensor or a list of tensors, got {type(container).__name__}")
    if len(rows) != n:
        raise ValueError(f"{name} holds {len(rows)} predictions but the views describe {n} pairs")
    return [r.detach().float().cpu() for r in rows]  # built on CPU; global_aligner moves the module


def view_meta_of(view: Dict[str, Any], e: int) -> Optional[Dict[str, Any]]:
    """Resize metadata of row ``e`` of a collated view batch, or None if the views carry none."""
    if not all(k in view for k in ("orig_shape", "resized_shape", "crop_offset")):
        return None
    meta = {}
    for key in VIEW_META_KEYS:
        if key not in view:
            continue
        value = view[key]
        row = value[e] if isinstance(value, (list, tuple, torch.Tensor, np.ndarray)) else value
        if isinstance(row, torch.Tensor):
            row = row.detach().cpu().numpy()
        if isinstance(row, np.ndarray):
            row = row.reshape(1, -1)
        meta[key] = row
    return meta


def check_finite(rows: Sequence[torch.Tensor], name: str, edges: Sequence[Tuple[int, int]]) -> None:
    for e, row in enumerate(rows):
        if not bool(torch.isfinite(row).all()):
            i, j = edges[e]
            n_bad = int((~torch.isfinite(row)).sum())
            raise ValueError(f"{name} of pair #{e} (images {i} -> {j}) holds {n_bad} NaN/inf values; the network "
                             "output is invalid (check the model weights, the input images and the amp setting)")


def ravel_pad(t: torch.Tensor, area: int) -> torch.Tensor:
    """(H, W, ...) -> (area, ...) flattened over H, W and zero-padded at the end."""
    flat = t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])
    if flat.shape[0] < area:
        flat = torch.cat((flat, flat.new_zeros((area - flat.shape[0], *flat.shape[1:]))))
    return flat


def pad_last(t: torch.Tensor, area: int) -> torch.Tensor:
    """(..., HW) -> (..., area) zero-padded at the end."""
    return torch.nn.functional.pad(t, (0, area - t.shape[-1])) if t.shape[-1] < area else t
