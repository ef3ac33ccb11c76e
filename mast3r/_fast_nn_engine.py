"""Engine behind :mod:`mast3r.fast_nn`: exact nearest neighbours, identical to the original's, found fast.

Private module: its names may change. The public API (:func:`mast3r.fast_nn.fast_reciprocal_NNs` and friends)
validates the inputs and asks one :class:`NNSide` per direction for nearest neighbours.

How a batch of NN queries is answered
-------------------------------------
The original answers every query by materialising the ``(queries, keys)`` distance matrix (in ``block_size``
tiles on the torch path) or with a ``scipy`` KD-tree (default CPU path). Here each batch goes through three
stages:

1. **Screening** (:func:`screen`): one float32 GEMM per ``(query slice, key chunk)`` tile (cache-sized; through
   oneDNN on CPU, about twice as fast as BLAS there), reduced with ``amax``; a second pass revisits only the
   chunk(s) holding the best score and lists every key whose score is within a rigorous floating-point error
   margin of it.
2. **Certification** (:func:`certify`): a query with a single candidate is decided. Queries with several
   candidates are re-scored in float64; if the best candidate beats every other one by more than the worst-case
   rounding error of the original computation (any summation order), the original necessarily picks it.
3. **Exact replay** of the rare remaining near-ties: the original computation is re-run for the tiles involved
   (same operands, same GEMM shapes and layout, same reduction, :func:`replay_upstream_rows`), into a reusable
   workspace, finishing only the rows needed; on the KD-tree path the tree is queried for those points. Ties are
   broken exactly as upstream.

Where the time goes (one 384x512x24 pair, subsample 8, ``dist='dot'``, one CPU thread): on smooth, distinctive
descriptors (synthetic-scene ground truth) ~7900 queries need a full scan over 196608 keys -- 3072 seeds, their
3060 landing pixels, then ~1000, ~330, ... -- and the screening GEMMs take ~70 % of the time, replays ~10 %; on
random-weight MASt3R descriptors the seeds collapse onto few pixels (~3900 scans in all). Bounding key groups
(centre + radius, per-group PCA boxes) prunes too little on such high-frequency fields to beat a dense GEMM.

Certified answers do not depend on how queries were batched, so they are cached per map: a pixel reached again
by a later round trip (or several times within one) is never recomputed.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Working-set budget (number of float scores) of one screening tile. One thread: 256 x 4096 tiles (4 MiB, cache
# sized). Several threads: 512 x 8192 (16 MiB): every tile is a synchronisation point of the thread pool, and on a
# busy machine each one waits for a descheduled thread; four times fewer of them cost ~20 % of single-thread speed.
_TILE_ELEMS_CPU = 1 << 20
_KEY_CHUNK_CPU = 4096
_TILE_ELEMS_CPU_THREADS = 1 << 22
_KEY_CHUNK_CPU_THREADS = 8192
_TILE_ELEMS_CUDA = 1 << 25         # 128 MiB on GPU
_KEY_CHUNK_CUDA = 1 << 16
# Above this many near-tied candidates, a query skips float64 certification and goes to the exact replay.
_MAX_CANDIDATES = 64
# On the KD-tree path, small descriptor dimensions are served faster by the tree itself than by brute force.
_KDTREE_DIRECT_MAX_DIM = 8


# --------------------------------------------------------------------------- upstream distance computation
def upstream_tile(A: torch.Tensor, B: torch.Tensor, dist: str, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Distance (``'l2'``) or similarity (``'dot'``) tile exactly as upstream computes it. A (n, D), B (m, D).

    ``out``: optional contiguous (n, m) buffer for ``'dot'`` (the same GEMM call, without a fresh allocation).
    """
    if dist == "dot":
        return A @ B.T if out is None else torch.mm(A, B.T, out=out)
    return torch.cdist(A, B)


def upstream_row_best(tile: torch.Tensor, dist: str, dim: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row (``dim=1``) or per-column (``dim=0``) best entry of a tile, as ``(value to minimise, index)``."""
    if dist == "dot":
        sim, idx = torch.max(tile, dim=dim)
        return sim.neg_(), idx
    return torch.min(tile, dim=dim)


def spans(n: int, step: int) -> list:
    """Consecutive ``(start, stop)`` spans of length ``step`` covering ``range(n)``."""
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def single_tile(n_rows: int, n_cols: int, block_size: Optional[int]) -> bool:
    """Whether upstream computes the whole (n_rows, n_cols) matrix at once instead of tiling it."""
    return block_size is None or n_rows * n_cols <= block_size ** 2


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


# ------------------------------------------------------------------------------------------ screening GEMM
@functools.lru_cache(maxsize=1)
def _onednn_linear() -> Optional[Callable]:
    """oneDNN's dense float32 ``x @ w.T`` (``torch.ops.mkldnn._linear_pointwise``), or None where unusable.

    On AVX-512 CPUs it runs about twice as fast as the BLAS behind ``torch.mm`` for the skinny (K = 24) products
    of the screening (MKL runs AVX2 kernels on AMD CPUs). It is a private torch op: it is checked once on a small
    product against float64 (any failure or error beyond the IEEE float32 bound: not used).
    """
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        gen = torch.Generator().manual_seed(0)
        x, w = torch.randn(5, 24, generator=gen), torch.randn(7, 24, generator=gen)
        got = op(x, w, None, "none", [], "")
        bound = _gamma(24, 2.0 ** -24) * (x.double().abs() @ w.double().abs().T)
        ok = (got.shape == (5, 7) and got.dtype == torch.float32
              and bool(((got.double() - x.double() @ w.double().T).abs() <= bound).all()))
    except (RuntimeError, TypeError, ValueError) as exc:  # an op that changed or a build without it
        logger.debug("oneDNN linear unusable for screening: %s", exc)
        return None
    return (lambda a, b: op(a, b, None, "none", [], "")) if ok else None


def _ieee_fp32_matmul() -> bool:
    """Whether float32 products run in full float32 precision (no TF32 / bf16 fast modes requested)."""
    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    return (torch.get_float32_matmul_precision() == "highest"
            and getattr(mkldnn_matmul, "fp32_precision", "none") in ("none", "ieee"))


#: smallest tile (rows x keys) scored through oneDNN; smaller ones (e.g. 64x48 maps) are faster through torch.mm
_ONEDNN_MIN_TILE = 1 << 18


class _TileScorer:
    """Score tiles ``q @ keys[k0:k1].T`` for the screening, through oneDNN on CPU float32 when usable.

    Args:
        keys: (M, E) contiguous key vectors.
        max_rows, max_cols: largest tile (the ``torch.mm`` fallback writes into one reusable buffer).
    """

    def __init__(self, keys: torch.Tensor, max_rows: int, max_cols: int) -> None:
        self.keys, self.keys_t = keys, keys.T
        fast = keys.device.type == "cpu" and keys.dtype == torch.float32 and _ieee_fp32_matmul()
        self._linear = _onednn_linear() if fast else None
        self._buf = None if self._linear is not None else torch.empty((max_rows, max_cols), dtype=keys.dtype,
                                                                       device=keys.device)

    def __call__(self, q: torch.Tensor, k0: int, k1: int) -> torch.Tensor:
        """(rows, k1 - k0) scores of the contiguous (rows, E) queries ``q`` against keys ``k0:k1``."""
        if self._linear is not None:
            if q.shape[0] * (k1 - k0) >= _ONEDNN_MIN_TILE:
                return self._linear(q, self.keys[k0:k1])
            return torch.mm(q, self.keys_t[:, k0:k1])  # small tiles: oneDNN's per-call cost outweighs its speed
        return torch.mm(q, self.keys_t[:, k0:k1], out=self._buf[: q.shape[0], : k1 - k0])


# ------------------------------------------------------------------------------------------------ screening
@dataclass
class Screened:
    """Outcome of :func:`screen` for n queries."""

    winner: np.ndarray      # (n,) int64 key index, -1 while undecided
    cand_q: np.ndarray      # (P,) query index of near-tied candidate pairs (undecided queries only)
    cand_k: np.ndarray      # (P,) key index of those pairs
    exhaustive: np.ndarray  # (n,) bool: candidates unknown (too many / non-finite): every key is a candidate


@torch.no_grad()
def screen(Qa: torch.Tensor, Ka: torch.Tensor, margin: torch.Tensor, key_chunk: int, tile_elems: int) -> Screened:
    """Find, for each query, the keys whose score may be the maximum.

    Args:
        Qa: (n, E) query vectors and Ka: (M, E) key vectors (score = ``Qa @ Ka.T``, larger is better).
        margin: (n,) float64 tolerance: keys within ``margin`` of the best computed score are candidates.
        key_chunk, tile_elems: tiling (memory is ``O(tile_elems)`` plus an (n, M / key_chunk) table).

    Returns:
        :class:`Screened`; a query with exactly one candidate is decided (``winner``).
    """
    n, M = Qa.shape[0], Ka.shape[0]
    dev = Qa.device
    chunks = spans(M, key_chunk)
    rows_per_tile = max(1, tile_elems // max(1, min(key_chunk, M)))
    KaT = Ka.T  # (E, M) view; tiles are taken as column slices

    # pass 1: per (query, key chunk) maximum score
    chunk_max = torch.empty((len(chunks), n), dtype=Qa.dtype, device=dev)
    scores = _TileScorer(Ka, min(rows_per_tile, n), min(key_chunk, M))
    for r0, r1 in spans(n, rows_per_tile):
        q = Qa[r0:r1]
        for c, (k0, k1) in enumerate(chunks):
            torch.amax(scores(q, k0, k1), dim=1, out=chunk_max[c, r0:r1])
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
        for s0, s1 in spans(rows_all.numel(), rows_per_tile):
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
    return Screened(winner=winner, cand_q=cq[~single], cand_k=ck[~single], exhaustive=exhaustive)


def certify(cand_q: np.ndarray, cand_k: np.ndarray, exact: np.ndarray, margin: np.ndarray, n: int) -> np.ndarray:
    """Decide multi-candidate queries from float64 scores.

    Args:
        cand_q, cand_k: (P,) candidate pairs; exact: (P,) float64 score of each pair (larger is better).
        margin: (n,) float64: the best candidate is certain if it beats the runner-up by more than this.

    Returns:
        (n,) int64 winning key, -1 where the runner-up is too close (left to the exact replay).
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


# ---------------------------------------------------------------------------------------- exact replay
# torch.cdist computes Euclidean distances through one matrix product when either side has more rows than this
_CDIST_MM_MIN_ROWS = 25


def _cdist_squared(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Squared distances (n, m) of a (n, D) and b (m, D) as ``torch.cdist`` forms them before its clamp and sqrt:
    ``[-2a, |a|^2, 1] @ [b, 1, |b|^2].T``, written into ``out``."""
    a_sq, b_sq = a.pow(2).sum(-1, keepdim=True), b.pow(2).sum(-1, keepdim=True)
    a_ = torch.cat([a.mul(-2), a_sq, torch.ones_like(a_sq)], -1)
    b_ = torch.cat([b, torch.ones_like(b_sq), b_sq], -1)
    return torch.mm(a_, b_.mT, out=out)


@functools.lru_cache(maxsize=None)
def _cdist_expansion_is_exact(dtype: torch.dtype) -> bool:
    """Whether ``torch.cdist`` (matrix-product form) equals :func:`_cdist_squared` + clamp + sqrt bit for bit
    on CPU for ``dtype``: checked once on random data, else the replay calls ``torch.cdist`` itself."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 24, generator=gen, dtype=dtype), torch.randn(50, 24, generator=gen, dtype=dtype)
    mine = _cdist_squared(a, b, torch.empty(40, 50, dtype=dtype)).clamp_min_(0).sqrt_()
    same = torch.equal(torch.cdist(a, b), mine)
    if not same:
        logger.debug("torch.cdist differs from its matrix-product expansion for %s: replays call it", dtype)
    return same


class Workspace:
    """A flat buffer reused for the large tiles of exact replays (no fresh allocation, no page faults)."""

    def __init__(self) -> None:
        self._flat: Optional[torch.Tensor] = None

    def view(self, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        """A contiguous (rows, cols) tensor with ``like``'s dtype and device; contents are undefined."""
        need = rows * cols
        flat = self._flat
        if flat is None or flat.numel() < need or flat.dtype != like.dtype or flat.device != like.device:
            self._flat = flat = torch.empty(need, dtype=like.dtype, device=like.device)
        return flat[:need].view(rows, cols)


@torch.no_grad()
def replay_upstream_rows(A: torch.Tensor, B: torch.Tensor, rows: np.ndarray, dist: str, block_size: Optional[int],
                         needed_cols: Optional[np.ndarray], workspace: Optional[Workspace] = None) -> np.ndarray:
    """Re-run upstream's NN computation for some rows of the query batch ``A``, bit for bit.

    Args:
        A: (N, D) the whole query batch, in upstream's order (tiling depends on N); B: (M, D) keys.
        rows: (R,) row indices of ``A`` to resolve.
        needed_cols: (R, M // block_size + 1) bool: key tiles that may hold each row's winner (``None``:
            all); other tiles are certified not to contain it and are skipped.
        workspace: reusable buffer for the tiles on CPU (the same GEMM call as upstream's, written into an
            existing buffer instead of a fresh allocation: the page faults of a new 100 MB tile cost as much as
            the product itself).

    Returns:
        (R,) int64 nearest key index, as upstream returns it.
    """
    N, M = A.shape[0], B.shape[0]
    workspace = workspace if workspace is not None else Workspace()

    def tile_rows(a: torch.Tensor, b: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Rows ``local`` of upstream's tile ``(a, b)``; on CPU its GEMM writes into the workspace and the
        element-wise finish of ``torch.cdist`` (clamp, sqrt) only runs on the rows needed."""
        if a.device.type != "cpu":  # a GPU allocation is cheap: keep upstream's exact call
            return upstream_tile(a, b, dist)[local]
        out = workspace.view(a.shape[0], b.shape[0], a)
        if dist == "dot":
            return torch.mm(a, b.T, out=out)[local]
        if max(a.shape[0], b.shape[0]) > _CDIST_MM_MIN_ROWS and _cdist_expansion_is_exact(a.dtype):
            return _cdist_squared(a, b, out)[local].clamp_min_(0).sqrt_()
        return upstream_tile(a, b, dist)[local]

    if single_tile(N, M, block_size):
        local = torch.as_tensor(rows, device=A.device)
        return upstream_row_best(tile_rows(A, B, local), dist, 1)[1].cpu().numpy()

    out = np.full(rows.size, -1, dtype=np.int64)
    col_spans = spans(M, block_size)
    for r0, r1 in spans(N, block_size):
        sel = np.flatnonzero((rows >= r0) & (rows < r1))
        if sel.size == 0:
            continue
        local = torch.as_tensor(rows[sel] - r0, device=A.device)
        best = torch.full((sel.size,), math.inf, dtype=A.dtype, device=A.device)
        nn = torch.full((sel.size,), -1, dtype=torch.int64, device=A.device)
        wanted = np.ones(len(col_spans), bool) if needed_cols is None else needed_cols[sel].any(axis=0)
        for j in np.flatnonzero(wanted):
            c0, c1 = col_spans[j]
            v, i = upstream_row_best(tile_rows(A[r0:r1], B[c0:c1], local), dist, 1)
            better = v < best                   # strict: earlier tiles win ties, as upstream
            best[better] = v[better]
            nn[better] = i[better] + c0
        out[sel] = nn.cpu().numpy()
    return out


# ------------------------------------------------------------------------------------------ query engine
class NNSide:
    """Nearest neighbours of pixels of one map among all pixels of the other, exactly as upstream picks them.

    Args:
        src: (N, D) flattened query map (upstream layout, on the working device).
        dst: (M, D) flattened key map.
        mode: ``'dot'`` / ``'l2'`` (upstream torch brute force) or ``'kdtree'`` (upstream scipy KD-tree, L2).
        block_size: upstream tiling of the torch brute force (only used when replaying it exactly).
        workers: forwarded to ``KDTree.query`` on the KD-tree path.
        workspace: buffer for exact replays, shared by the two directions of a matching (one large tile at most).
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, mode: str, block_size: Optional[int],
                 workers: int = 1, workspace: Optional[Workspace] = None) -> None:
        self.src, self.dst, self.mode, self.block_size, self.workers = src, dst, mode, block_size, workers
        self.device = dst.device
        self.cache = np.full(src.shape[0], -1, dtype=np.int64)   # certified answers only
        self.workspace = workspace if workspace is not None else Workspace()
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
        if cuda:
            self._key_chunk, self._tile_elems = _KEY_CHUNK_CUDA, _TILE_ELEMS_CUDA
        elif torch.get_num_threads() > 1:
            self._key_chunk, self._tile_elems = _KEY_CHUNK_CPU_THREADS, _TILE_ELEMS_CPU_THREADS
        else:
            self._key_chunk, self._tile_elems = _KEY_CHUNK_CPU, _TILE_ELEMS_CPU
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
        """(certification margin, screening margin) per query, from rigorous rounding-error bounds.

        Whatever the summation order, a float dot product of n terms is within ``gamma_n * sum |terms|`` of the
        exact value. Per score, with ``|k| <= kmax``:

        * ``'dot'`` (upstream ``q @ k.T``): ``err_orig = gamma |q| kmax``;
        * ``'l2'`` (upstream ``torch.cdist``: one GEMM on ``[-2q, |q|^2, 1] . [k, 1, |k|^2]`` with rounded squared
          norms, then ``sqrt``): ``err_orig = gamma ((|q| + kmax)^2 + kmax^2)`` -- the rounding of ``|q|^2`` is the
          same for every key of a row, so only its share inside the GEMM counts; ``sqrt`` may merge values closer
          than a few ulps, hence ``slack``;
        * ``'kdtree'`` (float64 distances): ``2 gamma (|q| + kmax)^2``.

        Two scores that upstream compares are each off by at most ``err_orig`` and our float64 re-scores by
        ``err_64``, so a float64 gap above ``2 err_orig + 2 err_64 (+ slack)`` decides the winner. Our float32
        screening scores are off by at most ``err_ours``; keys within ``certify + 3 err_ours`` of our best score
        therefore include upstream's pick.
        """
        qn, km = qnorm * (1 + 1e-6), self._kmax
        wide = 2.0 * (qn + km) ** 2          # bound for the expanded distance forms (ours in l2 / kdtree modes)
        if self.mode == "dot":
            err_orig = self._g_orig * qn * km
            err_ours, err_64 = self._g_ours * qn * km, self._g_64 * qn * km
        else:
            err_orig = self._g_orig * ((qn + km) ** 2 + km ** 2) if self.mode == "l2" else self._g_orig * wide
            err_ours, err_64 = self._g_ours * wide, self._g_64 * wide
        slack = 5 * self._u_orig * (qn + km) ** 2 + 1e-29 if self.mode == "l2" else 0.0  # sqrt / clamp in cdist
        certify_margin = 2 * err_orig + 2 * err_64 + slack
        return certify_margin, certify_margin + 3 * err_ours

    def _exact_scores(self, q: torch.Tensor, k: torch.Tensor) -> np.ndarray:
        """float64 score of (P, D) query / key pairs (larger is better)."""
        q, k = q.double(), k.double()
        if self.mode == "dot":
            return (q * k).sum(1).cpu().numpy()
        return (-((q - k) ** 2).sum(1)).cpu().numpy()

    def _decide(self, todo: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Screen and certify the uncached pixels ``todo`` (sorted, unique).

        Returns ``(winner, cand_q, cand_k, exhaustive)``: winner (n,) with -1 where undecided; the still open
        candidate pairs (local query index, key) and the queries whose candidates are unknown.
        """
        rows = self.src[torch.as_tensor(todo, device=self.src.device)]
        no_pairs = np.zeros(0, dtype=np.int64)
        if not np.isfinite(self._g_orig) or not np.isfinite(self._g_ours):
            return (np.full(todo.size, -1, dtype=np.int64), no_pairs, no_pairs, np.ones(todo.size, dtype=bool))
        certify_margin, screen_margin = self._margins(rows.double().norm(dim=1).cpu().numpy())
        qa = rows.to(self._work_dtype)
        if self.mode != "dot":
            qa = torch.cat([qa, -torch.ones_like(qa[:, :1])], dim=1)
        res = screen(qa.contiguous(), self._keys, torch.as_tensor(screen_margin, device=self.device),
                     self._key_chunk, self._tile_elems)
        winner = res.winner
        if res.cand_q.size == 0:
            return winner, no_pairs, no_pairs, res.exhaustive
        tq = torch.as_tensor(res.cand_q, device=self.device)
        tk = torch.as_tensor(res.cand_k, device=self.device)
        decided = certify(res.cand_q, res.cand_k, self._exact_scores(rows[tq], self.dst[tk]), certify_margin,
                          todo.size)
        winner = np.where(decided >= 0, decided, winner)
        open_pair = winner[res.cand_q] < 0
        return winner, res.cand_q[open_pair], res.cand_k[open_pair], res.exhaustive

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
        if todo.size == 0:
            return self.cache[uniq][inverse]
        winner, cand_q, cand_k, exhaustive = self._decide(todo)
        ambiguous = np.flatnonzero(winner < 0)                 # local indices into todo
        if ambiguous.size and self.mode == "kdtree":           # tree answers do not depend on batching
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
        if self.block_size is not None and not single_tile(len(q_idx), self.dst.shape[0], self.block_size):
            n_tiles = -(-self.dst.shape[0] // self.block_size)
            per_pixel = np.zeros((todo.size, n_tiles), dtype=bool)
            per_pixel[cand_q, cand_k // self.block_size] = True
            per_pixel[exhaustive] = True
            slot = np.searchsorted(todo, q_idx[positions])
            needed = per_pixel[slot]
        result = result.copy()
        result[positions] = replay_upstream_rows(A, self.dst, positions, self.mode, self.block_size, needed,
                                                 self.workspace)
        return result
