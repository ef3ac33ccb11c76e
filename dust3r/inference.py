"""Batched two-view inference over a list of image pairs.

:func:`inference` encodes every distinct image once (the CroCo encoder is the same for every pair an image is
in), then runs the decoders and heads on batches of pairs of the same image sizes. Results come back in the
order of ``pairs``, on CPU, in the containers of the original implementation: tensors stacked over the pairs
when all images share one size, Python lists of per-pair tensors otherwise.

Models that run :class:`~dust3r.model.AsymmetricCroCo3DStereo`'s forward (the class and its subclasses, which may
override ``_encode_image``, ``_decoder`` or ``_downstream_head``) get the shared encoder pass. Any other model
(one written against the original's interface, a wrapper, a subclass with its own ``forward``) is called as the
original ``inference`` calls it, ``model(view1, view2)`` per batch: only its forward defines its outputs.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from .model import AsymmetricCroCo3DStereo, inf, true_shape_of, upcast  # noqa: F401  (inf: original name)
from .model_loading import load_pretrained
from .utils.device import collate_with_cat, to_cpu  # noqa: F401  (collate_with_cat: original name)
from .utils.geometry import depthmap_to_pts3d, geotrf

logger = logging.getLogger(__name__)

#: view entries :func:`loss_of_one_batch` leaves where they are, as the original: metadata and the raw depth; every
#: other tensor (img, pts3d, valid_mask, sky_mask, corres, valid_corres, is_metric_scale...) goes to the device
_KEEP_ON_HOST = ("depthmap", "dataset", "label", "instance", "idx", "true_shape", "rng")


class NonFiniteOutputError(FloatingPointError, ValueError):
    """A prediction holds NaN or infinity; the message names the pair(s) and their images."""


def load_model(model_path: str, device, verbose: bool = True) -> torch.nn.Module:
    """The original name: load any checkpoint form (``.pth``, HF directory, hub id) onto ``device``, in eval mode.

    See :func:`dust3r.model_loading.load_pretrained` (the class is the one the checkpoint names).
    """
    return load_pretrained(model_path, device=device, verbose=verbose)


def get_pred_pts3d(gt: dict, pred: dict, use_pose: bool = False) -> torch.Tensor:
    """The 3D points (B, H, W, 3) a prediction dict stands for.

    * ``depth`` (B, H, W) + ``pseudo_focal``: unprojected with the principal point of
      ``gt['camera_intrinsics']`` (B, 3, 3) when present, else the image centre;
    * ``pts3d``: the points in the view's own camera frame;
    * ``pts3d_in_other_view``: already in the other view's frame, returned as is (needs ``use_pose=True``).

    With ``use_pose``, the points are moved by ``pred['camera_pose']`` (B, 4, 4) (``pts3d_in_other_view`` excepted).
    """
    if "depth" in pred and "pseudo_focal" in pred:
        intrinsics = gt.get("camera_intrinsics") if hasattr(gt, "get") else None
        pts3d = depthmap_to_pts3d(**pred, pp=None if intrinsics is None else intrinsics[..., :2, 2])
    elif "pts3d" in pred:
        pts3d = pred["pts3d"]
    elif "pts3d_in_other_view" in pred:
        if not use_pose:
            raise ValueError("get_pred_pts3d: 'pts3d_in_other_view' is already in the other view's frame; "
                             "call it with use_pose=True")
        return pred["pts3d_in_other_view"]
    else:
        raise KeyError(f"get_pred_pts3d: the prediction has none of 'depth'+'pseudo_focal', 'pts3d', "
                       f"'pts3d_in_other_view' (keys: {sorted(pred)})")
    if use_pose:
        camera_pose = pred.get("camera_pose")
        if camera_pose is None:
            raise KeyError("get_pred_pts3d: use_pose=True needs pred['camera_pose']")
        pts3d = geotrf(camera_pose, pts3d)
    return pts3d


def _interleave_imgs(img1: dict, img2: dict) -> dict:
    res = {}
    for key, value1 in img1.items():
        value2 = img2[key]
        if isinstance(value1, torch.Tensor):
            res[key] = torch.stack((value1, value2), dim=1).flatten(0, 1)
        else:
            res[key] = [x for pair in zip(value1, value2) for x in pair]
    return res


def make_batch_symmetric(batch: Tuple[dict, dict]) -> Tuple[dict, dict]:
    """(view1, view2) batch of pairs (a, b) -> batch of (a, b), (b, a) interleaved (twice the size)."""
    view1, view2 = batch
    return _interleave_imgs(view1, view2), _interleave_imgs(view2, view1)


def _autocast(device_type: str, amp):
    """``amp``: False/None (fp32), True (fp16 on CUDA, bf16 on CPU) or a torch dtype."""
    if not amp:
        return torch.autocast(device_type=device_type, enabled=False)
    dtype = amp if isinstance(amp, torch.dtype) else (torch.float16 if device_type == "cuda" else torch.bfloat16)
    return torch.autocast(device_type=device_type, dtype=dtype)


def loss_of_one_batch(batch, model, criterion, device, symmetrize_batch: bool = False, use_amp=False,
                      ret: Optional[str] = None):
    """Forward one collated batch (view1, view2) and evaluate ``criterion`` on it (if given).

    Returns ``dict(view1, view2, pred1, pred2, loss)`` or just the entry named by ``ret``.
    """
    view1, view2 = batch
    for view in batch:
        for name, value in view.items():
            if name not in _KEEP_ON_HOST and isinstance(value, torch.Tensor):
                view[name] = value.to(device, non_blocking=True)
    if symmetrize_batch:
        view1, view2 = make_batch_symmetric(batch)
    device_type = torch.device(device).type
    with _autocast(device_type, use_amp):
        pred1, pred2 = model(view1, view2)
        with torch.autocast(device_type=device_type, enabled=False):
            loss = criterion(view1, view2, pred1, pred2) if criterion is not None else None
    result = dict(view1=view1, view2=view2, pred1=pred1, pred2=pred2, loss=loss)
    return result[ret] if ret else result


def check_if_same_size(pairs: Sequence) -> bool:
    """True when all first views share one size and all second views share one size."""
    shapes1 = {tuple(v1["img"].shape[-2:]) for v1, _ in pairs}
    shapes2 = {tuple(v2["img"].shape[-2:]) for _, v2 in pairs}
    return len(shapes1) <= 1 and len(shapes2) <= 1


def _view_key(view: dict):
    """Identity of a view's image for the encoder cache (the same tensor object = the same image)."""
    return id(view["img"])


def _runs_our_forward(model) -> bool:
    """True when ``model(view1, view2)`` is :class:`AsymmetricCroCo3DStereo`'s forward, which the cached path
    reproduces piece by piece (through the model's own ``_encode_image``, ``_decoder``, ``_downstream_head``)."""
    cls = type(model)
    return (isinstance(model, AsymmetricCroCo3DStereo) and cls.forward is AsymmetricCroCo3DStereo.forward
            and cls._encode_symmetrized is AsymmetricCroCo3DStereo._encode_symmetrized)


class _EncoderCache:
    """Encoder outputs of each distinct image, computed in batches of equal-sized images."""

    def __init__(self, model, device, batch_size: int, amp, verbose: bool):
        self.model, self.device, self.batch_size, self.amp, self.verbose = model, device, batch_size, amp, verbose
        self.entries: Dict[int, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def fill(self, views: List[dict]) -> None:
        by_shape: Dict[tuple, List[dict]] = OrderedDict()
        for view in views:
            if _view_key(view) not in self.entries:
                by_shape.setdefault(tuple(view["img"].shape[-3:]), []).append(view)
                self.entries[_view_key(view)] = None
        chunks = [group[i:i + self.batch_size] for group in by_shape.values()
                  for i in range(0, len(group), self.batch_size)]
        device_type = torch.device(self.device).type
        for chunk in tqdm(chunks, desc="encoding images", disable=not self.verbose or len(chunks) < 2):
            imgs = torch.cat([v["img"] for v in chunk]).to(self.device)
            shapes = torch.cat([true_shape_of(v) for v in chunk]).to(self.device)
            with _autocast(device_type, self.amp):
                feats, pos, _ = self.model._encode_image(imgs, shapes)
            for i, view in enumerate(chunk):
                self.entries[_view_key(view)] = (feats[i:i + 1], pos[i:i + 1], shapes[i:i + 1])

    def get(self, views: List[dict]):
        items = [self.entries[_view_key(v)] for v in views]
        return tuple(torch.cat([it[j] for it in items]) for j in range(3))


@torch.no_grad()
def inference(pairs: Sequence, model, device, batch_size: int = 8, verbose: bool = True, amp=None):
    """Run ``model`` on every (view1, view2) pair.

    Args:
        pairs: list of (view1, view2) dicts as produced by ``make_pairs(load_images(...))``; each view holds
            ``img`` (1, 3, H, W), ``true_shape`` (1, 2), ``idx`` and ``instance``.
        model: a DUSt3R / MASt3R model.
        device: where to run (``'cuda'``, ``'cpu'``...).
        batch_size: pairs per forward pass (pairs of different image sizes are never mixed in a batch).
        verbose: show progress bars.
        amp: autocast for the transformer: None/False (fp32, default), True (fp16 on CUDA, bf16 on CPU) or a dtype.
            The heads always run in fp32.
    Returns:
        ``dict(view1, view2, pred1, pred2, loss=None)`` in the order of ``pairs``: ``pred1`` holds ``pts3d``
        (H, W, 3 per pair), ``conf``; ``pred2`` holds ``pts3d_in_other_view``, ``conf`` (+ ``desc``, ``desc_conf``
        for MASt3R). Values are stacked tensors (P, ...) when all images share a size, else lists of per-pair
        tensors.
    Raises:
        NonFiniteOutputError: a prediction holds NaN/inf; names the pair index and both views' instance/filepath.
    """
    if len(pairs) == 0:
        raise ValueError("inference() got no image pairs")
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(v, dict) and "img" in v
                                                                          for v in pair)):
            raise ValueError(f"pairs[{k}] is not a (view1, view2) tuple of dicts with an 'img' entry")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if verbose:
        logger.info("inference on %d image pairs", len(pairs))
    multiple_shapes = not check_if_same_size(pairs)

    # batches of pairs with identical (shape1, shape2), in order of first appearance
    groups: Dict[tuple, List[int]] = OrderedDict()
    for k, (v1, v2) in enumerate(pairs):
        groups.setdefault((tuple(v1["img"].shape[-2:]), tuple(v2["img"].shape[-2:])), []).append(k)
    batches = [idx[i:i + batch_size] for idx in groups.values() for i in range(0, len(idx), batch_size)]

    cache = None
    if _runs_our_forward(model):
        cache = _EncoderCache(model, device, batch_size, amp, verbose)
        cache.fill([v for pair in pairs for v in pair])

    per_pair: List[Optional[dict]] = [None] * len(pairs)
    for batch in tqdm(batches, desc="inference", disable=not verbose):
        views1 = [pairs[k][0] for k in batch]
        views2 = [pairs[k][1] for k in batch]
        collated = collate_with_cat([(pairs[k][0], pairs[k][1]) for k in batch])
        if cache is None:
            res = loss_of_one_batch(collated, model, None, device, use_amp=amp)
        else:
            res = _decode_batch(model, cache, views1, views2, collated, device, amp)
        res = to_cpu(res)
        _check_finite(res, batch, pairs)
        for j, k in enumerate(batch):
            per_pair[k] = _select_row(res, j)
    return collate_with_cat(per_pair, lists=multiple_shapes)


def _describe_view(view: dict) -> str:
    parts = []
    for key in ("instance", "filepath"):
        value = view.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if value is not None:
            parts.append(f"{key} {str(value)!r}")
    return ", ".join(parts) or "no instance/filepath"


def _check_finite(res: dict, batch: List[int], pairs: Sequence) -> None:
    """Raise :class:`NonFiniteOutputError` naming each pair of ``batch`` whose prediction holds NaN/inf."""
    bad: Dict[int, List[str]] = {}
    for part in ("pred1", "pred2"):
        for key, value in res[part].items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                rows = (~torch.isfinite(value.reshape(value.shape[0], -1))).any(dim=1)
                for j in rows.nonzero().flatten().tolist():
                    bad.setdefault(batch[j], []).append(f"{part}.{key}")
    if bad:
        lines = [f"pairs[{k}] ({_describe_view(pairs[k][0])} / {_describe_view(pairs[k][1])}): "
                 f"{', '.join(keys)}" for k, keys in sorted(bad.items())]
        raise NonFiniteOutputError("inference produced non-finite values (NaN or inf) for " + "; ".join(lines))


def _decode_batch(model, cache: _EncoderCache, views1, views2, collated, device, amp) -> dict:
    """Decoders + heads of one batch, encoder outputs from ``cache``."""
    view1, view2 = collated
    for view in (view1, view2):
        view["img"] = view["img"].to(device, non_blocking=True)
    feat1, pos1, shape1 = cache.get(views1)
    feat2, pos2, shape2 = cache.get(views2)
    device_type = torch.device(device).type
    with _autocast(device_type, amp):
        dec1, dec2 = model._decoder(feat1, pos1, feat2, pos2)
    with torch.autocast(device_type=device_type, enabled=False):
        pred1 = model._downstream_head(1, [upcast(tok) for tok in dec1], shape1)
        pred2 = model._downstream_head(2, [upcast(tok) for tok in dec2], shape2)
    pred2["pts3d_in_other_view"] = pred2.pop("pts3d")
    return dict(view1=view1, view2=view2, pred1=pred1, pred2=pred2, loss=None)


def _select_row(res, j: int):
    """Row ``j`` of a collated result, kept with a leading batch dim of 1 (lists keep element j as a list)."""
    if isinstance(res, dict):
        return {k: _select_row(v, j) for k, v in res.items()}
    if isinstance(res, torch.Tensor):
        return res[j:j + 1]
    if isinstance(res, list):
        return [res[j]]
    return res
