"""Fast reciprocal nearest-neighbour matching between two dense descriptor maps.

Public API (names and signatures follow the original MASt3R module):

* :func:`fast_reciprocal_NNs` -- iterative reciprocal NN search started from a pixel grid (or given pixels).
* :func:`merge_corres` -- de-duplicate flat correspondences and sort them by the first image's index.
* :func:`bruteforce_reciprocal_nns` -- exhaustive NNs in both directions (``dist='l2'`` or ``'dot'``).
* :func:`extract_correspondences_nonsym` -- symmetrised matching used by the sparse global alignment.
* :class:`cdistMatcher` -- small compatibility wrapper exposing a KD-tree like ``query``.

How the search is made fast while staying *identical* to the original
-----------------------------------------------------------------------
The original answers every NN query by materialising the full ``(queries, keys)`` distance matrix (in
``block_size`` tiles on the torch path) or with a 24-D ``scipy`` KD-tree (default CPU path).  Here each query
batch goes through three stages:

1. **Screening** (:func:`_screen`): one float matmul per ``(query slice, key chunk)`` tile held in a small
   reusable buffer, reduced with a cheap ``amax``; a second pass revisits only the chunk(s) holding the best
   score and lists every key whose score is within a rigorous floating-point error margin of it.
2. **Certification**: a query with a single candidate is decided.  Queries with several candidates are
   re-scored in float64; if the best candidate beats every other one by more than the worst-case rounding
   error of the original computation, the original necessarily picks it, whatever its summation order.
3. **Exact fallback** for the (rare) remaining near-ties: the original computation is replayed for exactly the
   tiles involved (same operands, same block layout, same reduction, see :func:`_replay_upstream_rows`), or the
   KD-tree is queried for those points on the default path.  Ties are therefore broken exactly as upstream.

Certified answers do not depend on how queries were batched, so they are cached per map: a pixel reached
again by a later iteration (or several times within one iteration) is never recomputed.
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]
DeviceLike = Union[None, str, torch.device]

__all__ = [
    "bruteforce_reciprocal_nns",
    "cdistMatcher",
    "merge_corres",
    "fast_reciprocal_NNs",
    "extract_correspondences_nonsym",
]

# Working-set budget (number of float scores) of one screening tile.
_TILE_ELEMS_CPU = 1 << 20          # 4 MiB of float32: stays in L2/L3 on CPU
_TILE_ELEMS_CUDA = 1 << 25         # 128 MiB on GPU
_KEY_CHUNK_CPU = 4096
_KEY_CHUNK_CUDA = 1 << 16
# Above this many near-tied candidates, a query skips float64 certification and goes to the exact fallback.
_MAX_CANDIDATES = 64
# On the KD-tree path, small descriptor dimensions are served faster by the tree itself than by brute force.
_KDTREE_DIRECT_MAX_DIM = 8
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
        raise ValueError(f"{name} must hold floating point descriptors, got dtype {t.dtype}")


def _check_map(t: torch.Tensor, name: str) -> Tuple[int, int, int]:
    """Validate a (H, W, D) descriptor map and return its shape."""
    if t.ndim != 3:
        raise ValueError(f"{name} must be a (H, W, D) descriptor map, got {t.ndim} dims with shape "
                         f"{tuple(t.shape)}")
    _check_float(t, name)
    H, W, D = (int(s) for s in t.shape)
    if H == 0 or W == 0 or D == 0:
        raise ValueError(f"{name} must be non-empty, got shape {(H, W, D)}")
    return H, W, D


def _resolve_device(device: DeviceLike, *xs: ArrayLike) -> torch.device:
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


# --------------------------------------------------------------------------- upstream distance computation
def _upstream_tile(A: torch.Tensor, B: torch.Tensor, dist: str) -> torch.Tensor:
    """Distance (``'l2'``) or similarity (``'dot'``) tile exactly as upstream computes it. A (n, D), B (m, D)."""
    if dist == "dot":
        return A @ B.T
    return torch.cdist(A, B)


def _upstream_row_best(tile: torch.Tensor, dist: str, dim: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row (``dim=1``) or per-column (``dim=0``) best entry of a tile, as ``(value to minimise, index)``."""
    if dist == "dot":
        sim, idx = torch.max(tile, dim=dim)
        return sim.neg_(), idx
    return torch.min(tile, dim=dim)


def _spans(n: int, step: int) -> list:
    """Consecutive ``(start, stop)`` spans of length ``step`` covering ``range(n)``."""
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _single_tile(n_rows: int, n_cols: int, block_size: Optional[int]) -> bool:
    """Whether upstream computes the whole (n_rows, n_cols) matrix at once instead of tiling it."""
    return block_size is None or n_rows * n_cols <= block_size ** 2


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
    if At.shape[1] != Bt.shape[1]:
        raise ValueError(f"A and B have different dimensions: {At.shape[1]} != {Bt.shape[1]}")
    dev = _resolve_device(device, A, B)
    At, Bt = At.to(dev), Bt.to(dev)
    n, m = At.shape[0], Bt.shape[0]

    if _single_tile(n, m, block_size):
        tile = _upstream_tile(At, Bt, dist)
        nn_a = _upstream_row_best(tile, dist, 1)[1]
        nn_b = _upstream_row_best(tile, dist, 0)[1]
        return nn_a.cpu().numpy(), nn_b.cpu().numpy()

    best_a = torch.full((n,), math.inf, device=dev, dtype=At.dtype)
    best_b = torch.full((m,), math.inf, device=dev, dtype=Bt.dtype)
    nn_a = torch.full((n,), -1, device=dev, dtype=torch.int64)
    nn_b = torch.full((m,), -1, device=dev, dtype=torch.int64)
    for r0, r1 in _spans(n, block_size):
        for c0, c1 in _spans(m, block_size):
            tile = _upstream_tile(At[r0:r1], Bt[c0:c1], dist)
            for (v, i), best, nn, lo, off in ((_upstream_row_best(tile, dist, 1), best_a, nn_a, (r0, r1), c0),
                                              (_upstream_row_best(tile, dist, 0), best_b, nn_b, (c0, c1), r0)):
                seg_best, seg_nn = best[lo[0]:lo[1]], nn[lo[0]:lo[1]]
                better = v < seg_best          # strict: earlier tiles win ties
                seg_best[better] = v[better]
                seg_nn[better] = i[better] + off
    return nn_a.cpu().numpy(), nn_b.cpu().numpy()


class cdistMatcher:  # noqa: N801  (upstream name)
    """KD-tree-like wrapper around :func:`bruteforce_reciprocal_nns` (kept for compatibility).

    Args:
        db_pts: (M, D) database points.
        device: computation device (``None``: the points' device).
    """

    def __init__(self, db_pts: ArrayLike, device: DeviceLike = None) -> None:
        self.device = _resolve_device(device, db_pts)
        self.db_pts = _to_tensor(db_pts, "db_pts").to(self.device)

    def query(self, queries: ArrayLike, k: int = 1, **kw: Any) -> Tuple[None, Union[np.ndarray, list]]:
        """Nearest database index of each (N, D) query; returns ``(None, nn)`` with ``nn`` int64 (N,)."""
        if k != 1:
            raise ValueError(f"only k=1 is supported, got k={k}")
        if _to_tensor(queries, "queries").numel() == 0:
            return None, []
        return None, bruteforce_reciprocal_nns(queries, self.db_pts, device=self.device, **kw)[0]


# ------------------------------------------------------------------------------------ rounding error bounds
def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Conservative unit roundoff of a matmul on ``dtype`` inputs (accounts for TF32 / bf16 fast modes)."""
    if dtype == torch.float64:
        return 2.0 ** -53
    if dtype == torch.float16:
        return 2.0 ** -11
    if dtype == torch.bfloat16:
        return 2.0 ** -8
    u = 2.0 ** -24
    precision = torch.get_float32_matmul_precision()
    if precision == "medium":
        u = 2.0 ** -8
    elif precision == "high":
        u = 2.0 ** -11
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        u = max(u, 2.0 ** -11)
    return u


def _gamma(n: int, u: float) -> float:
    """Classic bound ``n u / (1 - n u)`` on the relative error of an n-term dot product (any order)."""
    nu = n * u
    return math.inf if nu >= 0.5 else nu / (1.0 - nu)


# ------------------------------------------------------------------------------------------------ screening
@dataclass
class _Screened:
    """Outcome of :func:`_screen` for n queries."""

    winner: np.ndarray      # (n,) int64 key index, -1 while undecided
    cand_q: np.ndarray      # (P,) query index of near-tied candidate pairs (undecided queries only)
    cand_k: np.ndarray      # (P,) key index of those pairs
    exhaustive: np.ndarray  # (n,) bool: candidates unknown (too many / non-finite): every key is a candidate


@torch.no_grad()
def _screen(Qa: torch.Tensor, Ka: torch.Tensor, margin: torch.Tensor, key_chunk: int, tile_elems: int) -> _Screened:
    """Find, for each query, the keys whose score may be the maximum.

    Args:
        Qa: (n, E) query vectors and Ka: (M, E) key vectors (score = ``Qa @ Ka.T``, larger is better).
        margin: (n,) float64 tolerance: keys within ``margin`` of the best computed score are candidates.
        key_chunk, tile_elems: tiling (memory is ``O(tile_elems)`` plus an (n, M / key_chunk) table).

    Returns:
        :class:`_Screened`; a query with exactly one candidate is decided (``winner``).
    """
    n, M = Qa.shape[0], Ka.shape[0]
    dev = Qa.device
    chunks = _spans(M, key_chunk)
    rows_per_tile = max(1, tile_elems // max(1, min(key_chunk, M)))
    KaT = Ka.T  # (E, M) view; tiles are taken as column slices

    # pass 1: per (query, key chunk) maximum score
    chunk_max = torch.empty((len(chunks), n), dtype=Qa.dtype, device=dev)
    buf = torch.empty((min(rows_per_tile, n), min(key_chunk, M)), dtype=Qa.dtype, device=dev)
    for r0, r1 in _spans(n, rows_per_tile):
        q = Qa[r0:r1]
        for c, (k0, k1) in enumerate(chunks):
            tile = buf[: r1 - r0, : k1 - k0]
            torch.mm(q, KaT[:, k0:k1], out=tile)
            torch.amax(tile, dim=1, out=chunk_max[c, r0:r1])
    best = chunk_max.amax(dim=0)
    thresh = best - margin.to(best.dtype)
    usable = torch.isfinite(best) & torch.isfinite(thresh)
    maybe = (chunk_max >= thresh[None, :]) & usable[None, :]          # (chunks, n): may hold the winner
    del chunk_max

    # pass 2: list the candidate keys inside those chunks
    counts = torch.zeros(n, dtype=torch.int64, device=dev)
    pairs_q, pairs_k = [], []
    for c in torch.nonzero(maybe.any(dim=1)).flatten().tolist():
        k0, k1 = chunks[c]
        rows_all = torch.nonzero(maybe[c]).flatten()
        for s0, s1 in _spans(rows_all.numel(), rows_per_tile):
            rows = rows_all[s0:s1]
            hit = (Qa[rows] @ KaT[:, k0:k1]) >= thresh[rows, None]
            cnt = hit.sum(dim=1)
            counts[rows] += cnt
            few = cnt <= _MAX_CANDIDATES
            ri, ci = torch.nonzero(hit[few], as_tuple=True)
            pairs_q.append(rows[few][ri])
            pairs_k.append(ci + k0)
    counts_np = counts.cpu().numpy()
    exhaustive = (counts_np == 0) | (counts_np > _MAX_CANDIDATES)  # count 0 only happens with NaN scores
    if pairs_q:
        cq = torch.cat(pairs_q).cpu().numpy()
        ck = torch.cat(pairs_k).cpu().numpy()
    else:
        cq = ck = np.zeros(0, dtype=np.int64)
    keep = ~exhaustive[cq]
    cq, ck = cq[keep], ck[keep]

    winner = np.full(n, -1, dtype=np.int64)
    single = counts_np[cq] == 1
    winner[cq[single]] = ck[single]
    return _Screened(winner=winner, cand_q=cq[~single], cand_k=ck[~single], exhaustive=exhaustive)


def _certify(cand_q: np.ndarray, cand_k: np.ndarray, exact: np.ndarray, margin: np.ndarray, n: int) -> np.ndarray:
    """Decide multi-candidate queries from float64 scores.

    Args:
        cand_q, cand_k: (P,) candidate pairs; exact: (P,) float64 score of each pair (larger is better).
        margin: (n,) float64: the best candidate is certain if it beats the runner-up by more than this.

    Returns:
        (n,) int64 winning key, -1 where the runner-up is too close (left to the exact fallback).
    """
    winner = np.full(n, -1, dtype=np.int64)
    if cand_q.size == 0:
        return winner
    order = np.lexsort((-exact, cand_q))
    q, k, s = cand_q[order], cand_k[order], exact[order]
    first = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    runner = first + 1                           # every listed query has >= 2 candidates
    clear = (s[first] - s[runner]) > margin[q[first]]
    winner[q[first][clear]] = k[first][clear]
    return winner


# ---------------------------------------------------------------------------------------- exact fallbacks
@torch.no_grad()
def _replay_upstream_rows(A: torch.Tensor, B: torch.Tensor, rows: np.ndarray, dist: str,
                          block_size: Optional[int], needed_cols: Optional[np.ndarray]) -> np.ndarray:
    """Re-run upstream's NN computation for some rows of the query batch ``A``, bit for bit.

    Args:
        A: (N, D) the whole query batch, in upstream's order (tiling depends on N); B: (M, D) keys.
        rows: (R,) row indices of ``A`` to resolve.
        needed_cols: (R, M // block_size + 1) bool: key tiles that may hold each row's winner (``None``:
            all); other tiles are certified not to contain it and are skipped.

    Returns:
        (R,) int64 nearest key index, as upstream returns it.
    """
    N, M = A.shape[0], B.shape[0]
    if _single_tile(N, M, block_size):
        tile = _upstream_tile(A, B, dist)
        return _upstream_row_best(tile, dist, 1)[1][torch.as_tensor(rows, device=A.device)].cpu().numpy()

    out = np.full(rows.size, -1, dtype=np.int64)
    col_spans = _spans(M, block_size)
    for r0, r1 in _spans(N, block_size):
        sel = np.flatnonzero((rows >= r0) & (rows < r1))
        if sel.size == 0:
            continue
        local = torch.as_tensor(rows[sel] - r0, device=A.device)
        best = torch.full((sel.size,), math.inf, dtype=A.dtype, device=A.device)
        nn = torch.full((sel.size,), -1, dtype=torch.int64, device=A.device)
        wanted = np.ones(len(col_spans), bool) if needed_cols is None else needed_cols[sel].any(axis=0)
        for j in np.flatnonzero(wanted):
            c0, c1 = col_spans[j]
            v, i = _upstream_row_best(_upstream_tile(A[r0:r1], B[c0:c1], dist), dist, 1)
            v, i = v[local], i[local]
            better = v < best
            best[better] = v[better]
            nn[better] = i[better] + c0
        out[sel] = nn.cpu().numpy()
    return out


# ------------------------------------------------------------------------------------------ query engine
class _NNSide:
    """Nearest neighbours of pixels of one map among all pixels of the other, exactly as upstream picks them.

    Args:
        src: (N, D) flattened query map (upstream layout, on the working device).
        dst: (M, D) flattened key map.
        mode: ``'dot'`` / ``'l2'`` (upstream torch brute force) or ``'kdtree'`` (upstream scipy KD-tree, L2).
        block_size: upstream tiling of the torch brute force (only used when replaying it exactly).
        workers: forwarded to ``KDTree.query`` on the KD-tree path.
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, mode: str, block_size: Optional[int],
                 workers: int = 1) -> None:
        self.src, self.dst, self.mode, self.block_size, self.workers = src, dst, mode, block_size, workers
        self.device = dst.device
        self.cache = np.full(src.shape[0], -1, dtype=np.int64)   # certified answers only
        self._tree = None
        D = dst.shape[1]
        work_dtype = torch.float64 if dst.dtype == torch.float64 else torch.float32
        self._work_dtype = work_dtype
        keys = dst.to(work_dtype)
        if mode == "dot":
            self._keys = keys.contiguous()
        else:  # score 2 q.k - |k|^2  ==  |q|^2 - |q - k|^2
            self._keys = torch.cat([2 * keys, (keys * keys).sum(1, keepdim=True)], dim=1).contiguous()
        self._kmax = float(dst.double().norm(dim=1).max()) * (1 + 1e-6)
        u_ours = _unit_roundoff(work_dtype, self.device)
        u_orig = 2.0 ** -53 if mode == "kdtree" else _unit_roundoff(dst.dtype, self.device)
        self._u_orig = u_orig
        self._g_ours, self._g_orig, self._g_64 = (_gamma(D + 2, u) for u in (u_ours, u_orig, 2.0 ** -53))
        cuda = self.device.type == "cuda"
        self._key_chunk = _KEY_CHUNK_CUDA if cuda else _KEY_CHUNK_CPU
        self._tile_elems = _TILE_ELEMS_CUDA if cuda else _TILE_ELEMS_CPU
        self._direct_tree = mode == "kdtree" and D <= _KDTREE_DIRECT_MAX_DIM

    # -- helpers
    def _tree_query(self, q_idx: np.ndarray) -> np.ndarray:
        if self._tree is None:
            from scipy.spatial import KDTree  # local import: scipy only needed on this path
            self._tree = KDTree(self.dst.cpu().numpy())
            logger.debug("built KD-tree on %d points", self.dst.shape[0])
        pts = self.src[torch.as_tensor(q_idx, device=self.src.device)].cpu().numpy()
        return np.asarray(self._tree.query(pts, k=1, workers=self.workers)[1], dtype=np.int64)

    def _margins(self, qnorm: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(certification margin, screening margin) per query, from rigorous rounding-error bounds."""
        qn = qnorm * (1 + 1e-6)
        scale = qn * self._kmax if self.mode == "dot" else (qn + self._kmax) ** 2
        err_orig, err_ours, err_64 = (2 * g * scale for g in (self._g_orig, self._g_ours, self._g_64))
        slack = 5 * self._u_orig * scale + 1e-29 if self.mode == "l2" else 0.0  # sqrt / clamp in cdist
        certify = 2 * err_orig + 2 * err_64 + slack
        return certify, certify + 3 * err_ours

    def _exact_scores(self, q: torch.Tensor, k: torch.Tensor) -> np.ndarray:
        """float64 score of (P, D) query / key pairs (larger is better)."""
        q, k = q.double(), k.double()
        if self.mode == "dot":
            return (q * k).sum(1).cpu().numpy()
        return (-((q - k) ** 2).sum(1)).cpu().numpy()

    # -- main entry
    @torch.no_grad()
    def query(self, q_idx: np.ndarray) -> np.ndarray:
        """Nearest key of each query pixel; q_idx (n,) int indices into ``src`` in upstream batch order."""
        q_idx = np.asarray(q_idx, dtype=np.int64)
        if q_idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self._direct_tree:
            return self._tree_query(q_idx)

        uniq, inverse = np.unique(q_idx, return_inverse=True)
        todo = uniq[self.cache[uniq] < 0]
        ambiguous = np.zeros(0, dtype=np.int64)
        cand_q = cand_k = np.zeros(0, dtype=np.int64)
        exhaustive = np.zeros(0, dtype=bool)
        if todo.size:
            rows = self.src[torch.as_tensor(todo, device=self.src.device)]
            qnorm = rows.double().norm(dim=1).cpu().numpy()
            certify, screen = self._margins(qnorm)
            if not np.isfinite(self._g_orig) or not np.isfinite(self._g_ours):
                winner = np.full(todo.size, -1, dtype=np.int64)
                exhaustive = np.ones(todo.size, dtype=bool)
            else:
                qa = rows.to(self._work_dtype)
                if self.mode != "dot":
                    qa = torch.cat([qa, -torch.ones_like(qa[:, :1])], dim=1)
                res = _screen(qa.contiguous(), self._keys, torch.as_tensor(screen, device=self.device),
                              self._key_chunk, self._tile_elems)
                winner, exhaustive = res.winner, res.exhaustive
                if res.cand_q.size:
                    tq = torch.as_tensor(res.cand_q, device=self.device)
                    tk = torch.as_tensor(res.cand_k, device=self.device)
                    exact = self._exact_scores(rows[tq], self.dst[tk])
                    decided = _certify(res.cand_q, res.cand_k, exact, certify, todo.size)
                    winner = np.where(decided >= 0, decided, winner)
                    open_pair = winner[res.cand_q] < 0
                    cand_q, cand_k = res.cand_q[open_pair], res.cand_k[open_pair]
            ambiguous = np.flatnonzero(winner < 0)             # local indices into todo
            if ambiguous.size and self.mode == "kdtree":       # tree answers do not depend on batching
                winner[ambiguous] = self._tree_query(todo[ambiguous])
                ambiguous = ambiguous[:0]
            decided_mask = winner >= 0
            self.cache[todo[decided_mask]] = winner[decided_mask]

        result = self.cache[uniq][inverse]
        if ambiguous.size:
            result = self._replay(q_idx, todo, ambiguous, cand_q, cand_k, exhaustive, result)
        return result

    def _replay(self, q_idx: np.ndarray, todo: np.ndarray, ambiguous: np.ndarray, cand_q: np.ndarray,
                cand_k: np.ndarray, exhaustive: np.ndarray, result: np.ndarray) -> np.ndarray:
        """Resolve near-ties by replaying upstream's computation for the affected batch rows."""
        amb_pix = todo[ambiguous]
        positions = np.flatnonzero(np.isin(q_idx, amb_pix))
        logger.debug("exact replay of %d near-tied queries (%d batch rows)", amb_pix.size, positions.size)
        A = self.src[torch.as_tensor(q_idx, device=self.src.device)]
        needed = None
        if self.block_size is not None and not _single_tile(len(q_idx), self.dst.shape[0], self.block_size):
            n_tiles = -(-self.dst.shape[0] // self.block_size)
            per_pixel = np.zeros((todo.size, n_tiles), dtype=bool)
            per_pixel[cand_q, cand_k // self.block_size] = True
            per_pixel[exhaustive] = True
            slot = np.searchsorted(todo, q_idx[positions])
            needed = per_pixel[slot]
        result = result.copy()
        result[positions] = _replay_upstream_rows(A, self.dst, positions, self.mode, self.block_size, needed)
        return result


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
def fast_reciprocal_NNs(pts1: ArrayLike, pts2: ArrayLike, subsample_or_initxy1: Any = 8, ret_xy: Union[bool, str] = True,
                        pixel_tol: float = 0, ret_basin: bool = False, device: DeviceLike = None, **matcher_kw: Any):
    """Reciprocal nearest-neighbour matches between two dense descriptor maps.

    Starting from seed pixels of map 1, alternately jump to the nearest neighbour in map 2 and back, until
    the pixel is a fixed point (mutual nearest neighbours) or ``max_iter`` round trips have been made.

    Args:
        pts1: (H1, W1, D) descriptors of image 1 (torch or numpy, floating point).
        pts2: (H2, W2, D) descriptors of image 2.
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
    to2 = _NNSide(src1, src2, mode, block_size, workers)   # pixel of map 1 -> nearest pixel of map 2
    to1 = _NNSide(src2, src1, mode, block_size, workers)

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
    ca = _to_tensor(confA, "confA").reshape(-1)[torch.as_tensor(idx_a[first], dtype=torch.int64)]
    cb = _to_tensor(confB, "confB").reshape(-1)[torch.as_tensor(idx_b[first], dtype=torch.int64)]
    conf = torch.minimum(ca.cpu(), cb.cpu())
    out_dev = _resolve_device(device)
    return (torch.from_numpy(np.ascontiguousarray(xy1)).to(out_dev),
            torch.from_numpy(np.ascontiguousarray(xy2)).to(out_dev), conf.to(out_dev))
