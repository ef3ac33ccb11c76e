"""Streaming, resumable MASt3R matching of many image pairs, with an on-disk match cache.

:func:`compute_matches` runs the model on each unordered image pair once (image ``i`` first), reduces the dense
predictions at once to sparse reciprocal matches (:func:`mast3r.fast_nn.extract_correspondences_nonsym`) and a
focal-length estimate of image ``i`` (from its own pointmap), and writes them to a :class:`MatchCache`. At most
``batch_size`` pairs of dense predictions exist at a time, so memory does not grow with the number of pairs.

The cache is content addressed: each pair file is named by a hash of

* the model (:func:`mast3r.cloud_opt.forward_cache.model_fingerprint`: class, parameter names, shapes and a
  sample of the weights), so another checkpoint never reads these matches;
* both images' pixels and sizes (:func:`mast3r.cloud_opt.forward_cache.image_fingerprint`);
* the matching options (``subsample``, ``pixel_tol``) and :data:`CACHE_VERSION`.

Files are written atomically (temporary file + rename): a run killed at any point leaves only complete files, and
the next run with the same inputs computes only the pairs that are missing. A file that cannot be read is
recomputed (with a warning). Files are ``.npz`` archives read with ``allow_pickle=False``: nothing in a cache
file can run code.

Layout::

    <root>/<CACHE_VERSION>-<model fp>-<options fp>/<fp_a[:2]>/<fp_a>-<fp_b>.npz   (fp_a < fp_b)
        xy_a (K, 2) int32, xy_b (K, 2) int32   matched pixels (x, y) in network resolution
        conf (K,) float32                       min of the two descriptor confidences
        focal_a, focal_b () float32             focal estimated from each image's own pointmap (nan: unknown)
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from croco.utils.misc import atomic_write
from mast3r.cloud_opt.forward_cache import image_fingerprint, model_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "PairMatches", "MatchCache", "unique_pairs", "compute_matches"]

CACHE_VERSION = "m1"  # bump when the content of the files changes


@dataclass
class PairMatches:
    """Matches of one image pair (i, j) in network pixels.

    Attributes:
        xy_i, xy_j: (K, 2) int32 pixel coordinates (x, y) of the matches in images i and j.
        conf: (K,) float32 match confidence (min of the two descriptor confidences).
        focal_i, focal_j: focal lengths (network pixels) estimated from each image's own pointmap; nan if unknown.
    """
    xy_i: np.ndarray
    xy_j: np.ndarray
    conf: np.ndarray
    focal_i: float = float("nan")
    focal_j: float = float("nan")

    def __len__(self) -> int:
        return int(len(self.conf))

    def swapped(self) -> "PairMatches":
        """The same matches seen as pair (j, i)."""
        return PairMatches(self.xy_j, self.xy_i, self.conf, self.focal_j, self.focal_i)

    def confident(self, conf_thr: float) -> "PairMatches":
        """Only the matches with ``conf >= conf_thr``."""
        keep = self.conf >= conf_thr
        return PairMatches(self.xy_i[keep], self.xy_j[keep], self.conf[keep], self.focal_i, self.focal_j)


class MatchCache:
    """On-disk store of :class:`PairMatches`, keyed by model, image contents and options (see module docstring).

    Args:
        root: cache folder (created).
        model_fp: the model's fingerprint (:func:`model_fingerprint`).
        subsample: seed grid step of the matcher.
        pixel_tol: pixel tolerance of the matcher.
    """

    def __init__(self, root: Any, model_fp: str, subsample: int = 8, pixel_tol: float = 0) -> None:
        root = os.path.abspath(os.fspath(root))
        if os.path.exists(root) and not os.path.isdir(root):
            raise ValueError(f"match cache {root!r} exists and is not a directory")
        if not isinstance(model_fp, str) or not model_fp.isalnum():
            raise ValueError(f"model_fp must be an alphanumeric fingerprint, got {model_fp!r}")
        if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or subsample < 1:
            raise ValueError(f"subsample must be a positive int, got {subsample!r}")
        if not np.isfinite(pixel_tol) or pixel_tol < 0:
            raise ValueError(f"pixel_tol must be a non-negative number, got {pixel_tol!r}")
        self.subsample, self.pixel_tol = int(subsample), float(pixel_tol)
        options = hashlib.sha1(f"subsample={self.subsample};pixel_tol={self.pixel_tol!r}".encode()).hexdigest()[:8]
        self.folder = os.path.join(root, f"{CACHE_VERSION}-{model_fp}-{options}")
        os.makedirs(self.folder, exist_ok=True)
        self.root = root

    @classmethod
    def for_model(cls, root: Any, model: Any, subsample: int = 8, pixel_tol: float = 0) -> "MatchCache":
        """A cache for ``model``'s matches (keyed by :func:`model_fingerprint`)."""
        return cls(root, model_fingerprint(model), subsample, pixel_tol)

    def path(self, fp_i: str, fp_j: str) -> Tuple[str, bool]:
        """``(file, swapped)``: the file of the pair and whether it stores it as (j, i)."""
        for fp in (fp_i, fp_j):
            if not isinstance(fp, str) or not fp.isalnum():
                raise ValueError(f"bad image fingerprint {fp!r}")
        swapped = fp_j < fp_i
        a, b = (fp_j, fp_i) if swapped else (fp_i, fp_j)
        return os.path.join(self.folder, a[:2], f"{a}-{b}.npz"), swapped

    def __contains__(self, fps: Tuple[str, str]) -> bool:
        return os.path.isfile(self.path(*fps)[0])

    def save(self, fp_i: str, fp_j: str, matches: PairMatches) -> str:
        """Write the matches of pair (i, j) atomically; returns the file."""
        path, swapped = self.path(fp_i, fp_j)
        m = matches.swapped() if swapped else matches
        os.makedirs(os.path.dirname(path), exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, xy_a=np.asarray(m.xy_i, np.int32).reshape(-1, 2),
                         xy_b=np.asarray(m.xy_j, np.int32).reshape(-1, 2), conf=np.asarray(m.conf, np.float32),
                         focal_a=np.float32(m.focal_i), focal_b=np.float32(m.focal_j))

        atomic_write(path, write)
        return path

    def load(self, fp_i: str, fp_j: str) -> Optional[PairMatches]:
        """The matches of pair (i, j), or None when absent or unreadable (a warning then: it is recomputed)."""
        path, swapped = self.path(fp_i, fp_j)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                m = PairMatches(z["xy_a"].astype(np.int32), z["xy_b"].astype(np.int32), z["conf"].astype(np.float32),
                                float(z["focal_a"]), float(z["focal_b"]))
            if m.xy_i.shape != (len(m.conf), 2) or m.xy_j.shape != (len(m.conf), 2):
                raise ValueError("inconsistent array shapes")
        except Exception as err:  # truncated or foreign file: recompute the pair
            logger.warning("ignoring unreadable match cache file %s (%s)", path, err)
            return None
        return m.swapped() if swapped else m


# --------------------------------------------------------------------------------------------- pairs
def _pair_index(pair: Any) -> Tuple[int, int]:
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        a, b = pair
        if isinstance(a, dict) and isinstance(b, dict):
            a, b = a.get("idx"), b.get("idx")
        try:
            return int(np.asarray(a).reshape(-1)[0]), int(np.asarray(b).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            pass
    raise ValueError(f"a pair must be (i, j) image indices or a (view_i, view_j) tuple of views, got {pair!r}")


def unique_pairs(pairs: Iterable[Any], n_images: int) -> List[Tuple[int, int]]:
    """Unordered, de-duplicated pairs ``(i, j)``, ``i < j``, in first-seen order.

    Args:
        pairs: ``(i, j)`` indices or ``(view_i, view_j)`` tuples (``make_pairs`` output; views carry ``idx``).
        n_images: number of images (indices must lie in ``[0, n_images)``).

    Raises:
        ValueError: a malformed pair or an index out of range. Self pairs ``(i, i)`` are dropped.
    """
    out, seen = [], set()
    for pair in pairs:
        i, j = _pair_index(pair)
        if not (0 <= i < n_images and 0 <= j < n_images):
            raise ValueError(f"pair ({i}, {j}) is out of range for {n_images} images")
        key = (min(i, j), max(i, j))
        if i != j and key not in seen:
            seen.add(key)
            out.append(key)
    return out


# --------------------------------------------------------------------------------------------- matching
def _row(x: Any, k: int) -> torch.Tensor:
    item = x[k]
    if isinstance(x, list) and item.ndim and item.shape[0] == 1:
        item = item[0]
    return item


def _own_focal(pts3d: torch.Tensor) -> float:
    """Focal (pixels) of the camera that sees the (H, W, 3) camera-frame pointmap, principal point at the centre."""
    from dust3r.post_process import estimate_focal_knowing_depth

    H, W = pts3d.shape[:2]
    pp = torch.tensor([(W - 1) / 2.0, (H - 1) / 2.0])
    return float(estimate_focal_knowing_depth(pts3d[None].float().cpu(), pp, focal_mode="weiszfeld")[0])


def _match_batch(model: Any, chunk: Sequence[Tuple[int, int]], views: Sequence[Dict[str, Any]], device: Any,
                 subsample: int, pixel_tol: float) -> List[PairMatches]:
    from dust3r.inference import inference  # imported on use: it brings in the model stack
    from mast3r.fast_nn import extract_correspondences_nonsym

    out = inference([(views[i], views[j]) for i, j in chunk], model, device, batch_size=len(chunk), verbose=False)
    pred1, pred2 = out["pred1"], out["pred2"]
    for key in ("desc", "desc_conf"):
        if key not in pred1 or key not in pred2:
            raise ValueError(f"the model output has no {key!r}: matching needs a MASt3R model (descriptors and "
                             "their confidence)")
    results = []
    for k in range(len(chunk)):
        xy1, xy2, conf = extract_correspondences_nonsym(
            _row(pred1["desc"], k), _row(pred2["desc"], k), _row(pred1["desc_conf"], k), _row(pred2["desc_conf"], k),
            subsample=subsample, device=device, pixel_tol=pixel_tol)
        results.append(PairMatches(xy1.cpu().numpy().astype(np.int32), xy2.cpu().numpy().astype(np.int32),
                                   conf.float().cpu().numpy(), _own_focal(_row(pred1["pts3d"], k))))
    return results


def compute_matches(model: Any, views: Sequence[Dict[str, Any]], pairs: Iterable[Any], cache: MatchCache,
                    device: Any = "cpu", batch_size: int = 4, verbose: bool = True,
                    fingerprints: Optional[Sequence[str]] = None, progress=None) -> Dict[str, int]:
    """Match every pair not in ``cache`` yet and store it there (streamed, resumable).

    Args:
        model: a MASt3R model (or anything with its forward interface, e.g. the synthetic ``OracleModel``).
        views: ``load_images``-style views (``img`` (1, 3, H, W), ``true_shape``...), indexed by the pairs.
        pairs: ``(i, j)`` indices or ``(view_i, view_j)`` tuples; see :func:`unique_pairs`.
        cache: where the matches go (its options set the matcher's ``subsample`` / ``pixel_tol``).
        device: torch device of the model and the matcher.
        batch_size: pairs per forward pass (dense predictions of at most this many pairs are held at once).
        verbose: a progress bar.
        fingerprints: precomputed :func:`image_fingerprint` of each view.
        progress: optional ``callable(fraction, desc=...)``.

    Returns:
        ``{"pairs": total unique pairs, "cached": found in the cache, "computed": matched now}``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    todo_all = unique_pairs(pairs, len(views))
    fps = list(fingerprints) if fingerprints is not None else [image_fingerprint(v) for v in views]
    if len(fps) != len(views):
        raise ValueError(f"{len(fps)} fingerprints for {len(views)} views")
    todo = [(i, j) for i, j in todo_all if (fps[i], fps[j]) not in cache]
    stats = {"pairs": len(todo_all), "cached": len(todo_all) - len(todo), "computed": 0}
    if stats["cached"]:
        logger.info("match cache %s: %d of %d pairs already matched", cache.folder, stats["cached"], len(todo_all))
    with tqdm(total=len(todo), desc="matching pairs", disable=not verbose, unit="pair") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for (i, j), matches in zip(chunk, _match_batch(model, chunk, views, device, cache.subsample,
                                                           cache.pixel_tol)):
                cache.save(fps[i], fps[j], matches)
            stats["computed"] += len(chunk)
            bar.update(len(chunk))
            if progress is not None:
                progress(stats["computed"] / max(1, len(todo)), desc=f"matched {stats['computed']}/{len(todo)} pairs")
    return stats
