"""Small helpers shared by the models, inference and training."""
from __future__ import annotations

import inspect
from typing import Callable, Dict, Iterable, List, Tuple

import torch


def fill_default_args(kwargs: dict, func: Callable) -> dict:
    """Add ``func``'s default keyword values to ``kwargs`` for the keys it lacks (in place; returns it)."""
    for name, param in inspect.signature(func).parameters.items():
        if param.default is not inspect.Parameter.empty:
            kwargs.setdefault(name, param.default)
    return kwargs


def freeze_all_params(modules: Iterable) -> None:
    """Set ``requires_grad=False`` on every parameter of the given modules (or on given parameters)."""
    for module in modules:
        if isinstance(module, torch.nn.Parameter):
            module.requires_grad = False
        else:
            for param in module.parameters():
                param.requires_grad = False


def is_symmetrized(gt1: dict, gt2: dict) -> bool:
    """True if the batch is made of consecutive swapped pairs: (a, b), (b, a), (c, d), (d, c), ...

    Decided on the views' ``instance`` labels; a batch of one pair is never symmetrized.
    """
    x, y = gt1["instance"], gt2["instance"]
    if len(x) != len(y) or len(x) % 2 or (len(x) == 1):
        return False
    return all(x[i] == y[i + 1] and x[i + 1] == y[i] for i in range(0, len(x), 2))


def flip(tensor: torch.Tensor) -> torch.Tensor:
    """Swap consecutive elements along dim 0: [t0, t1, t2, t3] -> [t1, t0, t3, t2]."""
    return torch.stack((tensor[1::2], tensor[0::2]), dim=1).flatten(0, 1)


def interleave(tensor1: torch.Tensor, tensor2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """([a0, a1], [b0, b1]) -> ([a0, b0, a1, b1], [b0, a0, b1, a1])."""
    return (torch.stack((tensor1, tensor2), dim=1).flatten(0, 1),
            torch.stack((tensor2, tensor1), dim=1).flatten(0, 1))


def transposed(dic: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Swap the H and W axes (dims 1 and 2) of every (B, H, W, ...) tensor in a dict."""
    return {k: v.swapaxes(1, 2) for k, v in dic.items()}


def transpose_to_landscape(head: Callable, activate: bool = True) -> Callable:
    """Wrap a head ``head(decout, (H, W)) -> dict`` for batches given by their ``true_shape`` (B, 2).

    With ``activate`` (landscape-only models), the batch tensors are in landscape layout: landscape images are
    predicted as they are, portrait ones in their true orientation and the result transposed back to the
    landscape layout. Without it, all images of the batch must share one true shape.
    """

    def same_shape(decout: List[torch.Tensor], true_shape: torch.Tensor):
        if not bool((true_shape == true_shape[0:1]).all()):
            raise ValueError("all images of a batch must have the same true_shape")
        H, W = (int(v) for v in true_shape[0])
        return head(decout, (H, W))

    def landscape_layout(decout: List[torch.Tensor], true_shape: torch.Tensor):
        H, W = int(true_shape.min()), int(true_shape.max())
        portrait = true_shape[:, 0] > true_shape[:, 1]
        if not bool(portrait.any()):
            return head(decout, (H, W))
        if bool(portrait.all()):
            return transposed(head(decout, (W, H)))
        landscape = ~portrait
        res_l = head([d[landscape] for d in decout], (H, W))
        res_p = transposed(head([d[portrait] for d in decout], (W, H)))
        merged = {}
        for key in res_l.keys() | res_p.keys():
            out = res_l[key].new_empty((len(true_shape), *res_l[key].shape[1:]))
            out[landscape] = res_l[key]
            out[portrait] = res_p[key]
            merged[key] = out
        return merged

    return landscape_layout if activate else same_shape


def invalid_to_nans(arr: torch.Tensor, valid_mask, ndim: int = 999) -> torch.Tensor:
    """Copy of ``arr`` with invalid entries set to NaN; spatial dims flattened if ``arr.ndim > ndim``."""
    if valid_mask is not None:
        arr = arr.clone()
        arr[~valid_mask] = float("nan")
    if arr.ndim > ndim:
        arr = arr.flatten(-2 - (arr.ndim - ndim), -2)
    return arr


def invalid_to_zeros(arr: torch.Tensor, valid_mask, ndim: int = 999):
    """Copy of ``arr`` with invalid entries set to 0, and the number of valid entries per sample."""
    if valid_mask is not None:
        arr = arr.clone()
        arr[~valid_mask] = 0
        nnz = valid_mask.view(len(valid_mask), -1).sum(1)
    else:
        nnz = arr.numel() // len(arr) if len(arr) else 0
    if arr.ndim > ndim:
        arr = arr.flatten(-2 - (arr.ndim - ndim), -2)
    return arr, nnz
