"""The original MASt3R's per-pair forward helpers, kept for downstream code that calls them directly.

* :func:`symmetric_inference` runs one pair through the model in both directions, encoding each image once;
* :func:`forward_mast3r` runs a list of pairs and writes the original's on-disk cache layout under
  ``cache_path``, returning the file names::

      forward/<md5(instance1)>/<md5(instance2)>.pth              (X11, C11, X21, C21)
      forward/<md5(instance2)>/<md5(instance1)>.pth              (X22, C22, X12, C12)
      corres_conf=<desc_conf>_subsample=<s>/<md5(1)>-<md5(2)>.pth  ((conf_score, sum_conf, n), (xy1, xy2, conf))

  where ``Xab`` (H, W, 3) is image a's pointmap in camera b's frame, ``Cab`` (H, W) its confidence, ``xy1``,
  ``xy2`` (K, 2) matched pixels (x, y) and ``conf`` (K,) their confidence.

:func:`mast3r.cloud_opt.sparse_ga.sparse_global_alignment` itself uses the content-addressed cache of
:mod:`mast3r.cloud_opt.forward_cache` and never reads these files.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from croco.utils.misc import atomic_write
from mast3r.utils.misc import hash_md5  # noqa: F401  (re-exported: the original's cache file names)


from .correspondences import extract_correspondences, pair_scores
from .forward_cache import PairDescriptors, PairForward, _row

logger = logging.getLogger(__name__)

__all__ = ["symmetric_inference", "forward_mast3r", "hash_md5"]

_View = Dict[str, Any]


def _both_directions(model, img1: _View, img2: _View, device) -> Tuple[dict, dict, dict, dict]:
    """``(res11, res21, res22, res12)`` on CPU through :func:`dust3r.inference.inference` (each image encoded once,
    any model with the two-view forward), each entry with a batch dimension of 1."""
    from dust3r.inference import inference  # imported on use: it brings in the model stack

    out = inference([(img1, img2), (img2, img1)], model, device, batch_size=2, verbose=False)
    pred1, pred2 = out["pred1"], dict(out["pred2"])
    pred2["pts3d"] = pred2.pop("pts3d_in_other_view")  # the head's own name: view 2 in camera 1's frame

    def row(pred: dict, k: int) -> dict:
        return {key: _row(value, k)[None] for key, value in pred.items()}

    return row(pred1, 0), row(pred2, 0), row(pred1, 1), row(pred2, 1)


def symmetric_inference(model, img1: _View, img2: _View, device) -> Tuple[dict, dict, dict, dict]:
    """Both directions of one pair, the images encoded once.

    Args:
        model: a MASt3R model (or any model with its ``forward(view1, view2)`` interface).
        img1, img2: views of :func:`dust3r.utils.image.load_images`: ``img`` (1, 3, H, W), ``true_shape`` (1, 2).
        device: where to run (the outputs are returned there).
    Returns:
        ``(res11, res21, res22, res12)``: head outputs of pair (1, 2) then of pair (2, 1), each a dict with a
        batch dimension of 1: ``pts3d`` (1, H, W, 3) (``res21['pts3d']`` is image 2 in camera 1's frame),
        ``conf`` (1, H, W) and, for MASt3R, ``desc`` (1, H, W, D) and ``desc_conf`` (1, H, W).
    """
    results = _both_directions(model, img1, img2, device)
    return tuple({key: value.to(device) for key, value in res.items()} for res in results)


def _save(obj: Any, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _cpu(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    return tuple(t.detach().cpu() for t in tensors)


@torch.no_grad()
def forward_mast3r(pairs: Sequence[Tuple[_View, _View]], model, cache_path: str, desc_conf: str = "desc_conf",
                   device: Any = "cuda", subsample: int = 8, **matching_kw):
    """Forward and match every pair, writing the original's cache files (see the module docstring).

    Args:
        pairs: (view1, view2) pairs; ``view['instance']`` (a string, e.g. the image path) names the files.
        model: a MASt3R model, or None to only collect the pairs whose files already exist.
        cache_path: the cache folder (required).
        desc_conf: which confidence weighs the matches ('desc_conf' or 'conf').
        device: where to run the model and the matching.
        subsample: seed grid step of the reciprocal nearest-neighbour matching.
        **matching_kw: accepted for compatibility with the original signature (unused there too).
    Returns:
        ``(res_paths, cache_path)`` with ``res_paths[(instance1, instance2)] = ((path1, path2), path_corres)``
        for every pair whose files exist (pairs missing from the cache are skipped when ``model`` is None).
    """
    if cache_path is None:
        raise ValueError("forward_mast3r writes its results to files: give a cache_path")
    if matching_kw:
        logger.debug("forward_mast3r: ignoring matching options %s", sorted(matching_kw))
    cache_path = os.fspath(cache_path)
    res_paths: Dict[Tuple[str, str], Tuple[Tuple[str, str], str]] = {}
    for img1, img2 in tqdm(pairs, desc="MASt3R forward", leave=False):
        idx1, idx2 = hash_md5(img1["instance"]), hash_md5(img2["instance"])
        path1 = os.path.join(cache_path, "forward", idx1, f"{idx2}.pth")
        path2 = os.path.join(cache_path, "forward", idx2, f"{idx1}.pth")
        corres_dir = os.path.join(cache_path, f"corres_conf={desc_conf}_subsample={subsample}")
        path_corres = os.path.join(corres_dir, f"{idx1}-{idx2}.pth")
        path_corres2 = os.path.join(corres_dir, f"{idx2}-{idx1}.pth")

        if os.path.isfile(path_corres2) and not os.path.isfile(path_corres):
            score, (xy1, xy2, confs) = torch.load(path_corres2, map_location="cpu", weights_only=True)
            _save((score, (xy2, xy1, confs)), path_corres)

        if not all(os.path.isfile(p) for p in (path1, path2, path_corres)):
            if model is None:
                continue
            res11, res21, res22, res12 = _both_directions(model, img1, img2, device)
            X11, X21, X22, X12 = (r["pts3d"][0] for r in (res11, res21, res22, res12))
            C11, C21, C22, C12 = (r["conf"][0] for r in (res11, res21, res22, res12))
            _save(_cpu(X11, C11, X21, C21), path1)
            _save(_cpu(X22, C22, X12, C12), path2)

            fwd = PairForward(*(t.float().cpu() for t in (X11, C11, X21, C21, X22, C22, X12, C12)))
            desc = PairDescriptors(res11["desc"][0], res11[desc_conf][0], res21["desc"][0], res21[desc_conf][0],
                                   res22["desc"][0], res22[desc_conf][0], res12["desc"][0], res12[desc_conf][0])
            matches = extract_correspondences(desc, subsample=subsample, device=device)
            _save((pair_scores(fwd, matches), (matches.xy_i, matches.xy_j, matches.conf)), path_corres)

        res_paths[img1["instance"], img2["instance"]] = (path1, path2), path_corres
    return res_paths, cache_path
