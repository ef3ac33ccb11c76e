"""Symmetric two-view forward passes with a content-addressed cache.

Every image pair (i, j) of the scene graph is run through the model's public forward in both directions
(``(i, j)`` and ``(j, i)``, via :func:`dust3r.inference.inference`), giving four pointmaps:

* ``X11`` / ``C11``: view i in camera i's frame (first view of (i, j)),
* ``X21`` / ``C21``: view j in camera i's frame,
* ``X22`` / ``C22``: view j in camera j's frame (first view of (j, i)),
* ``X12`` / ``C12``: view i in camera j's frame,

plus descriptors (used for matching, never stored). Results are cached on disk under ``cache_path`` (or kept
nowhere when ``cache_path`` is None), with file names derived from a hash of the image *contents*, the model's
identity and the options, so a cache can never be read back for different inputs.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch


logger = logging.getLogger(__name__)

CACHE_VERSION = "sga2"  # bump when the content of cache files changes


# --------------------------------------------------------------------------------------------- fingerprints
def _tensor_bytes(x: Any) -> bytes:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(x).tobytes()


def image_fingerprint(view: Dict[str, Any]) -> str:
    """Hash (hex, 20 chars) of a view's pixels and true shape."""
    h = hashlib.sha1()
    img = view["img"]
    h.update(str(tuple(img.shape)).encode())
    h.update(_tensor_bytes(img.to(torch.float32) if isinstance(img, torch.Tensor) else np.float32(img)))
    if view.get("true_shape") is not None:
        h.update(_tensor_bytes(np.asarray(view["true_shape"], dtype=np.int64)))
    return h.hexdigest()[:20]


def _sample_tensor(t: torch.Tensor, n: int = 4096) -> bytes:
    flat = t.detach().reshape(-1)
    if flat.numel() > n:
        # integer arithmetic: float32 linspace rounds the last index past the end for sizes around 2^24
        idx = torch.arange(n, device=flat.device, dtype=torch.int64) * (flat.numel() - 1) // (n - 1)
        flat = flat[idx]
    return _tensor_bytes(flat.float())


def model_fingerprint(model: Any) -> str:
    """Hash (hex, 16 chars) identifying a model: class, and the names, shapes, dtypes and a strided sample of the
    values of all its parameters and buffers (cheap even for large models). A model may override it with a
    ``cache_fingerprint`` attribute (string)."""
    custom = getattr(model, "cache_fingerprint", None)
    if isinstance(custom, str):
        return hashlib.sha1(custom.encode()).hexdigest()[:16]
    h = hashlib.sha1(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    if isinstance(model, torch.nn.Module):
        named = list(model.named_parameters()) + list(model.named_buffers())
        for name, t in named:
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(_sample_tensor(t))
    for attr in ("output_mode", "head_type", "desc_mode", "two_confs", "noise", "seed", "conf_value"):
        if hasattr(model, attr):
            h.update(f"{attr}={getattr(model, attr)!r}".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- data
@dataclass
class PairForward:
    """Dense predictions of one symmetric pair (CPU float32). Shapes: X (H, W, 3), C (H, W); views i then j."""
    X11: torch.Tensor
    C11: torch.Tensor
    X21: torch.Tensor
    C21: torch.Tensor
    X22: torch.Tensor
    C22: torch.Tensor
    X12: torch.Tensor
    C12: torch.Tensor

    def as_dict(self) -> Dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("X11", "C11", "X21", "C21", "X22", "C22", "X12", "C12")}

    def swapped(self) -> "PairForward":
        """The same predictions seen as pair (j, i)."""
        return PairForward(self.X22, self.C22, self.X12, self.C12, self.X11, self.C11, self.X21, self.C21)


@dataclass
class PairDescriptors:
    """Descriptors (H, W, D) and descriptor confidences (H, W) of the four outputs, same order as PairForward."""
    D11: torch.Tensor
    Q11: torch.Tensor
    D21: torch.Tensor
    Q21: torch.Tensor
    D22: torch.Tensor
    Q22: torch.Tensor
    D12: torch.Tensor
    Q12: torch.Tensor


# --------------------------------------------------------------------------------------------- disk store
class CacheStore:
    """Flat key -> file store under ``root`` (None: nothing is stored). Files are written with ``torch.save``
    (atomic rename) and read with ``weights_only=True``."""

    def __init__(self, root: Optional[str]) -> None:
        if root is not None:
            root = os.path.abspath(os.fspath(root))
            if os.path.exists(root) and not os.path.isdir(root):
                raise ValueError(f"cache_path {root!r} exists and is not a directory")
            os.makedirs(root, exist_ok=True)
        self.root = root

    def path(self, kind: str, key: str) -> Optional[str]:
        if self.root is None:
            return None
        if not key.replace("-", "").replace("_", "").isalnum() or not kind.isalnum():
            raise ValueError(f"bad cache key {kind}/{key}")
        return os.path.join(self.root, kind, key + ".pth")

    def load(self, kind: str, key: str) -> Optional[Any]:
        path = self.path(kind, key)
        if path is None or not os.path.isfile(path):
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a corrupt / truncated file: recompute it
            logger.warning("ignoring unreadable cache file %s (%s)", path, err)
            return None

    def save(self, kind: str, key: str, obj: Any) -> Optional[str]:
        path = self.path(kind, key)
        if path is None:
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(obj, tmp)
        os.replace(tmp, path)
        return path


# --------------------------------------------------------------------------------------------- forward
def _row(x: Any, k: int) -> torch.Tensor:
    """Element k of an inference() output entry (stacked tensor or list of (1, ...) tensors)."""
    item = x[k]
    if isinstance(item, torch.Tensor) and isinstance(x, list) and item.ndim and item.shape[0] == 1:
        item = item[0]
    return item


def run_symmetric_forward(model: Any, pairs: Sequence[Tuple[Dict[str, Any], Dict[str, Any]]], device: Any,
                          desc_conf: str = "desc_conf", names: Optional[Sequence[str]] = None,
                          batch_pairs: int = 4) -> Iterator[Tuple[PairForward, PairDescriptors]]:
    """Forward every (view_i, view_j) in both directions, yielding one result per pair (streamed: at most
    ``batch_pairs`` pairs of dense predictions exist at a time; outputs are on CPU).

    Uses only the public :func:`dust3r.inference.inference` (which calls ``model(view1, view2)`` for models
    without the split encoder/decoder API), so any model with MASt3R's forward interface works.

    Raises:
        ValueError: the model gives no descriptors.
        dust3r.inference.NonFiniteOutputError: non-finite predictions (naming the pair and its images).
    """
    from dust3r.inference import inference  # imported on use: it brings in the model stack

    del names  # kept for callers: inference() itself names a pair whose prediction is non-finite
    for start in range(0, len(pairs), batch_pairs):
        chunk = pairs[start:start + batch_pairs]
        directed = [d for vi, vj in chunk for d in ((vi, vj), (vj, vi))]
        out = inference(directed, model, device, batch_size=2 * len(chunk), verbose=False)
        pred1, pred2 = out["pred1"], out["pred2"]
        for missing in ("desc", desc_conf):
            if missing not in pred1 or missing not in pred2:
                raise ValueError(f"the model output has no {missing!r}: sparse_global_alignment needs a MASt3R "
                                 f"model (descriptors and their confidence '{desc_conf}')")
        for k in range(len(chunk)):
            a, b = 2 * k, 2 * k + 1
            fwd = PairForward(
                X11=_row(pred1["pts3d"], a).float(), C11=_row(pred1["conf"], a).float(),
                X21=_row(pred2["pts3d_in_other_view"], a).float(), C21=_row(pred2["conf"], a).float(),
                X22=_row(pred1["pts3d"], b).float(), C22=_row(pred1["conf"], b).float(),
                X12=_row(pred2["pts3d_in_other_view"], b).float(), C12=_row(pred2["conf"], b).float())
            desc = PairDescriptors(
                D11=_row(pred1["desc"], a), Q11=_row(pred1[desc_conf], a),
                D21=_row(pred2["desc"], a), Q21=_row(pred2[desc_conf], a),
                D22=_row(pred1["desc"], b), Q22=_row(pred1[desc_conf], b),
                D12=_row(pred2["desc"], b), Q12=_row(pred2[desc_conf], b))
            yield fwd, desc
