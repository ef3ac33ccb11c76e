"""Fast reciprocal nearest-neighbour matching between two dense descriptor maps.

Public API (names and signatures follow the original MASt3R module):

* :func:`fast_reciprocal_NNs` -- iterative reciprocal NN search started from a pixel grid (or given pixels).
* :func:`merge_corres` -- de-duplicate flat correspondences and sort them by the first image's index.
* :func:`bruteforce_reciprocal_nns` -- exhaustive NNs in both directions (``dist='l2'`` or ``'dot'``).
* :func:`extract_correspondences_nonsym` -- symmetrised matching used by the sparse global alignment.
* :class:`cdistMatcher` -- small compatibility wrapper exposing a KD-tree like ``query``.

The matches are identical to the original's (same nearest neighbours, ties included) on every path: the torch
brute force (``dist='dot'`` / ``'l2'``, CPU or CUDA) and the default CPU KD-tree. How they are found fast is the
business of the private engine :mod:`mast3r._fast_nn_engine` (tiled GEMM screening, certification against
rigorous rounding-error bounds, exact replay of the rare near-ties, a per-map cache of certified answers).

Every function refuses non-finite inputs (NaN or inf) with a ValueError naming the argument: a NaN descriptor
has no nearest neighbour, and the original silently returned wrong matches for it.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mast3r._fast_nn_engine import NNSide, Workspace, single_tile, spans, upstream_row_best, upstream_tile

__all__ = [
    "bruteforce_reciprocal_nns",
    "cdistMatcher",
    "merge_corres",
    "fast_reciprocal_NNs",
    "extract_correspondences_nonsym",
]

ArrayLike = Union[np.ndarray, torch.Tensor]
DeviceLike = Union[None, str, torch.device]
_MATCHER_KEYS = {"dist", "block_size", "max_iter", "workers", "k", "eps", "p"}


# ----------------------------------------------------------------------------------------------- input helpers
def _to_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """Return ``x`` as a torch tensor (numpy arrays are wrapped without copy)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ValueError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _check_float(t: torch.Tensor, name: str) -> None:
    if not t.is_floating_point():
        raise ValueError(f"{name} must hold floating point values, got dtype {t.dtype}")


def _check_finite(t: torch.Tensor, name: str) -> None:
    """Raise a ValueError naming ``name`` if the floating tensor ``t`` holds NaN or +-inf.

    The position is reported as a pixel ``(x, y)`` for (H, W, ...) maps and as an index otherwise.
    """
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    n_bad = int(bad.sum())
    first = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
    where = f"pixel (x={first[1]}, y={first[0]})" if t.ndim == 3 else f"index {first}"
    raise ValueError(f"{name} holds {n_bad} non-finite value(s) (NaN or inf) among {t.numel()}, the first at "
                     f"{where}: matching needs finite values")


def _check_map(t: torch.Tensor, name: str) -> Tuple[int, int, int]:
    """Validate a finite (H, W, D) descriptor map and return its shape."""
    if t.ndim != 3:
        raise ValueError(f"{name} must be a (H, W, D) descriptor map, got {t.ndim} dims with shape "
                         f"{tuple(t.shape)}")
    _check_float(t, name)
    H, W, D = (int(s) for s in t.shape)
    if H == 0 or W == 0 or D == 0:
        raise ValueError(f"{name} must be non-empty, got shape {(H, W, D)}")
    _check_finite(t, name)
    return H, W, D


def _resolve_device(device: DeviceLike, *xs: Any) -> torch.device:
    """Explicit ``device`` if given, else the device of the first torch tensor among ``xs``, else CPU."""
    if device is not None:
        return torch.device(device)
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device
    return torch.device("cpu")


def _is_cuda(device: DeviceLike) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type.startswith("cuda")
    return False


def _check_dist(dist: Any) -> str:
    if dist not in ("l2", "dot"):
        raise ValueError(f"unknown dist={dist!r}: expected 'l2' or 'dot'")
    return dist


def _check_block_size(block_size: Any) -> Optional[int]:
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size <= 0:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return int(block_size)


# ------------------------------------------------------------------------------------------------ brute force
@torch.no_grad()
def bruteforce_reciprocal_nns(A: ArrayLike, B: ArrayLike, device: DeviceLike = None,
                              block_size: Optional[int] = None, dist: str = "l2") -> Tuple[np.ndarray, np.ndarray]:
    """Exhaustive nearest neighbours in both directions between two point sets.

    Args:
        A: (N, D) points (torch or numpy).
        B: (M, D) points.
        device: where to compute; ``None`` keeps ``A``'s device (CPU for numpy input).
        block_size: if given and ``N * M > block_size**2``, work in ``block_size x block_size`` tiles.
        dist: ``'l2'`` (Euclidean, ``torch.cdist``) or ``'dot'`` (largest dot product).

    Returns:
        ``(nn_A, nn_B)``: int64 numpy arrays of shape (N,) and (M,), the index in ``B`` of each row of ``A``
        and the index in ``A`` of each row of ``B`` (first index on exact ties).

    Note: memory is ``N * M`` scores when untiled, ``block_size**2`` otherwise (as upstream, whose tiling this
    reproduces exactly so that results, ties included, are the same).
    """
    dist = _check_dist(dist)
    block_size = _check_block_size(block_size)
    At, Bt = _to_tensor(A, "A"), _to_tensor(B, "B")
    for t, name in ((At, "A"), (Bt, "B")):
        if t.ndim != 2:
            raise ValueError(f"{name} must be a (N, D) point set, got shape {tuple(t.shape)}")
        _check_float(t, name)
        _check_finite(t, name)
    if At.shape[1] != Bt.shape[1]:
        raise ValueError(f"A and B have different dimensions: {At.shape[1]} != {Bt.shape[1]}")
    dev = _resolve_device(device, A, B)
    At, Bt = At.to(dev), Bt.to(dev)
    n, m = At.shape[0], Bt.shape[0]

    if single_tile(n, m, block_size):
        tile = upstream_tile(At, Bt, dist)
        nn_a = upstream_row_best(tile, dist, 1)[1]
        nn_b = upstream_row_best(tile, dist, 0)[1]
        return nn_a.cpu().numpy(), nn_b.cpu().numpy()

    best_a = torch.full((n,), math.inf, device=dev, dtype=At.dtype)
    best_b = torch.full((m,), math.inf, device=dev, dtype=Bt.dtype)
    nn_a = torch.full((n,), -1, device=dev, dtype=torch.int64)
    nn_b = torch.full((m,), -1, device=dev, dtype=torch.int64)
    for r0, r1 in spans(n, block_size):
        for c0, c1 in spans(m, block_size):
            tile = upstream_tile(At[r0:r1], Bt[c0:c1], dist)
            for (v, i), best, nn, lo, off in ((upstream_row_best(tile, dist, 1), best_a, nn_a, (r0, r1), c0),
                                              (upstream_row_best(tile, dist, 0), best_b, nn_b, (c0, c1), r0)):
                seg_best, seg_nn = best[lo[0]:lo[1]], nn[lo[0]:lo[1]]
                better = v < seg_best          # strict: earlier tiles win ties
                seg_best[better] = v[better]
                seg_nn[better] = i[better] + off
    return nn_a.cpu().numpy(), nn_b.cpu().numpy()


class cdistMatcher:  # noqa: N801  (upstream name)
    """KD-tree-like wrapper around :func:`bruteforce_reciprocal_nns` (kept for compatibility).

    Args:
        db_pts: (M, D) finite database points.
        device: computation device (``None``: the points' device).
    """

    def __init__(self, db_pts: ArrayLike, device: DeviceLike = None) -> None:
        self.device = _resolve_device(device, db_pts)
        self.db_pts = _to_tensor(db_pts, "db_pts").to(self.device)
        _check_float(self.db_pts, "db_pts")
        _check_finite(self.db_pts, "db_pts")

    def query(self, queries: ArrayLike, k: int = 1, **kw: Any) -> Tuple[None, Union[np.ndarray, list]]:
        """Nearest database index of each (N, D) query; returns ``(None, nn)`` with ``nn`` int64 (N,)."""
        if k != 1:
            raise ValueError(f"only k=1 is supported, got k={k}")
        q = _to_tensor(queries, "queries")
        if q.numel() == 0:
            return None, []
        _check_float(q, "queries")
        _check_finite(q, "queries")
        return None, bruteforce_reciprocal_nns(q, self.db_pts, device=self.device, **kw)[0]


# --------------------------------------------------------------------------------------------- merge_corres
def _flat_index(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of flat pixel indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= 2 ** 31):
        raise ValueError(f"{name} holds indices outside [0, 2**31): min {arr.min()}, max {arr.max()}")
    return arr


def _to_pixels(idx: np.ndarray, shape: Sequence[int], name: str, ret_xy: Any):
    H, W = (int(s) for s in shape)
    if idx.size and idx.max() >= H * W:
        raise ValueError(f"{name} holds index {idx.max()} outside an image of shape {(H, W)}")
    y, x = np.divmod(idx, W)
    if ret_xy == "y_x":
        return y, x
    return np.stack([x, y], axis=1)


def merge_corres(idx1: ArrayLike, idx2: ArrayLike, shape1: Optional[Sequence[int]] = None,
                 shape2: Optional[Sequence[int]] = None, ret_xy: Union[bool, str] = True, ret_index: bool = False):
    """De-duplicate correspondences and sort them by ``idx1`` (then ``idx2``).

    Args:
        idx1, idx2: (N,) flat pixel indices (``y * W + x``) in image 1 / image 2.
        shape1, shape2: (H, W) of each image, required when ``ret_xy`` is truthy.
        ret_xy: ``False``: return flat int32 indices; ``'y_x'``: return ``(y, x)`` tuples; other truthy value:
            return (K, 2) int64 ``(x, y)`` pixel arrays.
        ret_index: also return, for each kept pair, the index of its first occurrence in the input.

    Returns:
        ``(xy1, xy2)`` or ``(xy1, xy2, index)`` with K unique pairs.
    """
    a1, a2 = _flat_index(idx1, "idx1"), _flat_index(idx2, "idx2")
    if a1.shape != a2.shape:
        raise ValueError(f"idx1 and idx2 must have the same length, got {a1.size} and {a2.size}")
    order = np.lexsort((a2, a1))                 # stable: first occurrence comes first among duplicates
    s1, s2 = a1[order], a2[order]
    fresh = np.ones(order.size, dtype=bool)
    fresh[1:] = (s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1])
    first = order[fresh]
    out1, out2 = s1[fresh].astype(np.int32), s2[fresh].astype(np.int32)
    if ret_xy:
        if not shape1 or not shape2:
            raise ValueError("shape1 and shape2 are required when ret_xy is set")
        out1 = _to_pixels(out1.astype(np.int64), shape1, "idx1", ret_xy)
        out2 = _to_pixels(out2.astype(np.int64), shape2, "idx2", ret_xy)
    if ret_index:
        return out1, out2, first
    return out1, out2


# ------------------------------------------------------------------------------------- fast_reciprocal_NNs
def _seed_pixels(init: Any, H: int, W: int) -> np.ndarray:
    """Flat int64 indices of user-given seed pixels ``init = (x, y)``."""
    try:
        x, y = init
    except (TypeError, ValueError):
        raise ValueError("subsample_or_initxy1 must be a positive int or a pair (x, y) of pixel coordinate "
                         f"arrays, got {type(init).__name__}") from None
    coords = []
    for v, name, hi in ((x, "x", W), (y, "y", H)):
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        a = a.reshape(-1)
        if a.size and not np.issubdtype(a.dtype, np.integer):
            if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
                raise ValueError(f"seed {name} coordinates must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= hi):
            raise ValueError(f"seed {name} coordinates must lie in [0, {hi}), got range [{a.min()}, {a.max()}]")
        coords.append(a)
    if coords[0].shape != coords[1].shape:
        raise ValueError(f"seed x and y must have the same length, got {coords[0].size} and {coords[1].size}")
    return coords[0] + W * coords[1]


def _parse_matcher_kw(matcher_kw: dict, device: DeviceLike) -> Tuple[str, Optional[int], Optional[int], int]:
    unknown = set(matcher_kw) - _MATCHER_KEYS
    if unknown:
        raise ValueError(f"unknown matcher keyword(s) {sorted(unknown)}; accepted: {sorted(_MATCHER_KEYS)}")
    if matcher_kw.get("k", 1) != 1:
        raise ValueError(f"only k=1 is supported, got k={matcher_kw['k']}")
    if matcher_kw.get("eps", 0) != 0 or matcher_kw.get("p", 2) != 2:
        raise ValueError("only exact Euclidean KD-tree queries are supported (eps=0, p=2)")
    torch_path = "dist" in matcher_kw or "block_size" in matcher_kw or _is_cuda(device)
    mode = _check_dist(matcher_kw.get("dist", "l2")) if torch_path else "kdtree"
    block_size = _check_block_size(matcher_kw.get("block_size"))
    max_iter = matcher_kw.get("max_iter")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral)
                                 or max_iter < 1):
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    workers = matcher_kw.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers == 0 or workers < -1:
        raise ValueError(f"workers must be a positive int or -1, got {workers!r}")
    return mode, block_size, max_iter, int(workers)


@torch.no_grad()
def fast_reciprocal_NNs(pts1: ArrayLike, pts2: ArrayLike, subsample_or_initxy1: Any = 8,
                        ret_xy: Union[bool, str] = True, pixel_tol: float = 0, ret_basin: bool = False,
                        device: DeviceLike = None, **matcher_kw: Any):
    """Reciprocal nearest-neighbour matches between two dense descriptor maps.

    Starting from seed pixels of map 1, alternately jump to the nearest neighbour in map 2 and back, until
    the pixel is a fixed point (mutual nearest neighbours) or ``max_iter`` round trips have been made.

    Args:
        pts1: (H1, W1, D) descriptors of image 1 (torch or numpy, floating point, finite).
        pts2: (H2, W2, D) descriptors of image 2 (finite).
        subsample_or_initxy1: int S -> seeds on a grid ``y = S//2 + k S, x = S//2 + l S`` and up to 10 round
            trips; or ``(x, y)`` arrays of seed pixels -> a single round trip.
        ret_xy: as in :func:`merge_corres` (``True``: (K, 2) int64 ``(x, y)`` pixels; ``False``: flat int32).
        pixel_tol: if > 0, keep a seed whose round trip lands within ``pixel_tol`` pixels (Euclidean) of it
            (seed reported for explicit seeds, landing pixel for a grid); else keep converged pairs only.
        ret_basin: also return a (H1*W1 + 1,) int32 array mapping visited pixels of map 1 to the pixel their
            round trip reached (-1 elsewhere); convergence is then only tested on the map-1 side.
        device: computation device; ``None``: the inputs' device (CPU for numpy).
        **matcher_kw: ``dist`` ('dot' or 'l2') and/or ``block_size`` select upstream's torch brute force (also
            used whenever ``device`` is CUDA, default dist 'l2'); otherwise exact Euclidean NN as upstream's
            scipy KD-tree (``workers`` accepted).  ``max_iter`` overrides the number of round trips.

    Returns:
        ``(xy1, xy2)`` sorted by pixel of image 1, or ``(xy1, xy2, basin)`` when ``ret_basin``.

    Raises:
        ValueError: naming the argument, for a bad shape, dtype or option, or a NaN / inf value in ``pts1`` or
            ``pts2`` (checked before any work, on every path: torch brute force, KD-tree, CUDA).
    """
    t1, t2 = _to_tensor(pts1, "pts1"), _to_tensor(pts2, "pts2")
    H1, W1, D1 = _check_map(t1, "pts1")
    H2, W2, D2 = _check_map(t2, "pts2")
    if D1 != D2:
        raise ValueError(f"pts1 and pts2 have different descriptor dimensions: {D1} != {D2}")
    if t1.dtype != t2.dtype:  # upstream's KD-tree path works in float64 anyway; promotion keeps its values
        common = torch.promote_types(t1.dtype, t2.dtype)
        t1, t2 = t1.to(common), t2.to(common)
    if not isinstance(pixel_tol, numbers.Real) or pixel_tol < 0:
        raise ValueError(f"pixel_tol must be a non-negative number, got {pixel_tol!r}")
    mode, block_size, max_iter_kw, workers = _parse_matcher_kw(matcher_kw, device)

    grid = isinstance(subsample_or_initxy1, numbers.Integral) and not isinstance(subsample_or_initxy1, bool)
    if grid:
        S = int(subsample_or_initxy1)
        if S < 1:
            raise ValueError(f"subsample_or_initxy1 must be >= 1, got {S}")
        ys, xs = np.arange(S // 2, H1, S), np.arange(S // 2, W1, S)
        seeds = (ys[:, None] * W1 + xs[None, :]).reshape(-1)
    else:
        seeds = _seed_pixels(subsample_or_initxy1, H1, W1)
    # a grid does several round trips; explicit seeds (or a tolerance check) a single one
    max_iter = max_iter_kw if max_iter_kw is not None else (10 if grid and pixel_tol == 0 else 1)

    dev = _resolve_device(device, pts1, pts2)
    src1, src2 = t1.reshape(-1, D1).to(dev), t2.reshape(-1, D2).to(dev)
    workspace = Workspace()
    to2 = NNSide(src1, src2, mode, block_size, workers, workspace)   # pixel of map 1 -> nearest pixel of map 2
    to1 = NNSide(src2, src1, mode, block_size, workers, workspace)

    cur1 = np.unique(seeds).astype(np.int64)
    cur2 = np.full_like(cur1, -1)
    prev1, prev2 = cur1.copy(), cur2.copy()
    active = np.ones(cur1.size, dtype=bool)
    basin = np.full(H1 * W1 + 1, -1, dtype=np.int32) if ret_basin else None

    trips = 0
    while active.any():
        sel = np.flatnonzero(active)
        cur2[sel] = to2.query(cur1[sel])
        if basin is None:                         # landing on the same map-2 pixel twice: converged
            active[sel] = cur2[sel] != prev2[sel]
            sel = np.flatnonzero(active)
        cur1[sel] = to1.query(cur2[sel])
        if basin is not None:
            basin[prev1[sel]] = cur1[sel]
        active[sel] = cur1[sel] != prev1[sel]     # back on the same map-1 pixel: converged
        trips += 1
        if trips >= max_iter:
            break
        prev1[:], prev2[:] = cur1, cur2

    if pixel_tol > 0:
        dy = prev1 // W1 - cur1 // W1
        dx = prev1 % W1 - cur1 % W1
        keep = np.sqrt((dy * dy + dx * dx).astype(np.float64)) < pixel_tol
        if not grid:
            cur1 = prev1
    else:
        keep = ~active
    xy1, xy2 = merge_corres(cur1[keep].astype(np.int32), cur2[keep].astype(np.int32), (H1, W1), (H2, W2),
                            ret_xy=ret_xy)
    if ret_basin:
        return xy1, xy2, basin
    return xy1, xy2


# ------------------------------------------------------------------------------ extract_correspondences_nonsym
def extract_correspondences_nonsym(A: ArrayLike, B: ArrayLike, confA: ArrayLike, confB: ArrayLike,
                                   subsample: int = 8, device: DeviceLike = None, ptmap_key: str = "pred_desc",
                                   pixel_tol: float = 0):
    """Match A -> B and B -> A, merge both sets and attach a confidence.

    Args:
        A: (HA, WA, D) and B: (HB, WB, D) descriptor (or 3-D point) maps.
        confA: (HA, WA) and confB: (HB, WB) confidences.
        subsample: seed grid step.
        device: computation / output device.
        ptmap_key: if it contains ``'3d'``, maps are 3-D points matched by Euclidean distance on CPU;
            otherwise descriptors matched by dot product (tiles of 8192).
        pixel_tol: see :func:`fast_reciprocal_NNs`.

    Returns:
        ``(xy1, xy2, conf)`` torch tensors on ``device``: (K, 2) int64 pixels of A and B and (K,) confidence
        ``min(confA[xy1], confB[xy2])``.
    """
    maps = {name: _to_tensor(x, name) for name, x in (("A", A), ("B", B), ("confA", confA), ("confB", confB))}
    for name in ("A", "B"):
        _check_map(maps[name], name)
    for name, desc in (("confA", "A"), ("confB", "B")):
        _check_float(maps[name], name)
        if maps[name].numel() != maps[desc].shape[0] * maps[desc].shape[1]:
            raise ValueError(f"{name} must hold one confidence per pixel of {desc}, i.e. shape "
                             f"{tuple(maps[desc].shape[:2])}, got {tuple(maps[name].shape)}")
        _check_finite(maps[name], name)
    if "3d" in ptmap_key:
        opt = dict(device="cpu", workers=32)
    else:
        opt = dict(device=device, dist="dot", block_size=2 ** 13)
    HA, WA = A.shape[:2]
    HB, WB = B.shape[:2]
    if pixel_tol == 0:
        ab = fast_reciprocal_NNs(A, B, subsample_or_initxy1=subsample, ret_xy=False, **opt)
        ba = fast_reciprocal_NNs(B, A, subsample_or_initxy1=subsample, ret_xy=False, **opt)
    else:
        S = subsample
        grid_a = np.mgrid[S // 2:HA:S, S // 2:WA:S].reshape(2, -1)
        grid_b = np.mgrid[S // 2:HB:S, S // 2:WB:S].reshape(2, -1)
        ab = fast_reciprocal_NNs(A, B, subsample_or_initxy1=(grid_a[1], grid_a[0]), ret_xy=False,
                                 pixel_tol=pixel_tol, **opt)
        ba = fast_reciprocal_NNs(B, A, subsample_or_initxy1=(grid_b[1], grid_b[0]), ret_xy=False,
                                 pixel_tol=pixel_tol, **opt)
    idx_a = np.concatenate([ab[0], ba[1]])
    idx_b = np.concatenate([ab[1], ba[0]])
    xy1, xy2, first = merge_corres(idx_a, idx_b, (HA, WA), (HB, WB), ret_xy=True, ret_index=True)
    ca = maps["confA"].reshape(-1)[torch.as_tensor(idx_a[first], dtype=torch.int64, device=maps["confA"].device)]
    cb = maps["confB"].reshape(-1)[torch.as_tensor(idx_b[first], dtype=torch.int64, device=maps["confB"].device)]
    conf = torch.minimum(ca.cpu(), cb.cpu())
    out_dev = _resolve_device(device)
    return (torch.from_numpy(np.ascontiguousarray(xy1)).to(out_dev),
            torch.from_numpy(np.ascontiguousarray(xy2)).to(out_dev), conf.to(out_dev))
