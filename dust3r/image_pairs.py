"""Building the list of image pairs (the "scene graph") fed to pairwise DUSt3R / MASt3R inference.

:func:`make_pairs` returns ``(view_i, view_j)`` tuples of the view dicts it is given. The pair order
is the one of the original implementation, because downstream results (batching, the global
aligner's edge order) depend on it:

* ``complete``: every ``(i, j)`` with ``j < i``, in the order ``(1, 0), (2, 0), (2, 1), (3, 0), ...``
* ``swin[-N][-noncyclic]``: each image with its ``N`` (default 3) successors, wrapping around the
  end of the sequence unless ``noncyclic``;
* ``logwin[-N][-noncyclic]``: each image with the images at offsets ``+-1, +-2, +-4, ...,
  +-2**(N-1)`` (default ``N = 3``), wrapping unless ``noncyclic``;
* ``oneref[-ID]``: image ``ID`` (default 0) with every other image, as ``(ID, j)`` for increasing j.

For ``swin`` / ``logwin`` the original collects the undirected edges ``(min, max)`` in a Python
``set`` and emits them in the set's iteration order. That order is a deterministic function of
the values inserted and of their insertion order (``int`` and ``tuple`` hashes are not salted),
so this module inserts exactly the same edges in exactly the same order into a ``set`` to
reproduce it. One deliberate difference: with a cyclic window at least as large as the number
of images, the original also emits self-pairs ``(i, i)``; they are dropped here (the remaining
pairs keep the original's order).

``symmetrize=True`` appends every pair reversed, after all the forward pairs. The optional
``prefilter`` (``'seqN'`` / ``'cycN'``) then keeps only the pairs whose ``idx`` differ by at most
``N`` (cyclically for ``cyc``, with the number of images taken as ``max(idx) + 1``).

``retrieval[-Na[-k]]`` builds the graph from ``sim_mat``, an (N, N) image-similarity matrix (row i: image i as
the query; e.g. the ASMK scores of an image-retrieval model), see :func:`retrieval_edges`: ``Na`` key images chosen
by farthest point sampling on ``1 - sim_mat`` (deterministic start), all pairs of key images, every other image
with its *most similar* key image, and every image with its ``k`` most similar *other* images; each undirected edge
once. The original's version differs in three ways, all fixed here: its first key image is drawn from the global
NumPy RNG, its k nearest images include the image itself (``k = 1`` adds nothing), and it can emit an edge in both
directions.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .scene_graph import SceneGraph, parse_scene_graph

logger = logging.getLogger(__name__)

__all__ = ["make_pairs", "parse_scene_graph", "SceneGraph", "sel", "filter_pairs_seq", "filter_edges_seq",
           "farthest_point_sampling", "retrieval_edges", "similarity_matrix"]

View = Dict[str, Any]
Pair = Tuple[View, View]

_PREFILTER_RE = re.compile(r"^(seq|cyc)(\d+)$")


def _window_candidates(n: int, kind: str, window: int, cyclic: bool) -> Iterator[Tuple[int, int]]:
    """Undirected edges (min, max) proposed by a swin/logwin graph, in the original's order.

    May yield duplicates and (for cyclic swin) self-edges; the caller dedups with a set.
    """
    if kind == "swin":
        offsets = list(range(1, window + 1))
    else:  # logwin: symmetric power-of-two offsets, all negative ones first
        powers = [2 ** p for p in range(window)]
        offsets = [-o for o in powers] + powers
    for i in range(n):
        for off in offsets:
            j = i + off
            if cyclic:
                j %= n
            if j < 0 or j >= n:
                continue
            if kind == "logwin" and j == i:
                continue
            yield (min(i, j), max(i, j))


def similarity_matrix(sim_mat: Any, n: int) -> np.ndarray:
    """``sim_mat`` (array or tensor) checked to be a finite (n, n) matrix; returned as float64 numpy.

    Raises:
        ValueError: wrong shape, non-finite values.
    """
    if isinstance(sim_mat, torch.Tensor):
        sim_mat = sim_mat.detach().cpu().numpy()
    sim = np.asarray(sim_mat, dtype=np.float64)
    if sim.shape != (n, n):
        raise ValueError(f"the similarity matrix must be ({n}, {n}) for {n} images, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("the similarity matrix holds NaN or infinite values")
    return sim


def farthest_point_sampling(dist: np.ndarray, N: Optional[int] = None, dist_thresh: Optional[float] = None,
                            start: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Pick up to ``N`` distinct items, each the farthest from those already picked.

    Args:
        dist: (M, M) distances; row a, column b is the distance of item b to picked item a.
        N: number of items to pick (all M when None).
        dist_thresh: stop early once the farthest remaining item is closer than this.
        start: first item; by default the most central one (smallest summed distance to the others, lowest index
            on ties), so that the result is deterministic.

    Returns:
        ``(indices (K,) int64, distances (K,) float64)``: the picked items in order, and each one's distance to the
        earlier picks (0 for the first).
    """
    dist = np.asarray(dist, dtype=np.float64)
    m = dist.shape[0]
    if dist.ndim != 2 or dist.shape[1] != m:
        raise ValueError(f"farthest_point_sampling needs a square distance matrix, got shape {dist.shape}")
    if N is None and dist_thresh is None:
        raise ValueError("farthest_point_sampling needs N or dist_thresh")
    count = m if N is None else min(int(N), m)
    if count <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if start is None:
        off_diagonal = dist.sum(axis=1) - np.diag(dist)
        start = int(np.argmin(off_diagonal))
    picked, gaps = [int(start)], [0.0]
    nearest = dist[start].copy()  # distance of every item to its closest pick
    nearest[start] = -np.inf
    for _ in range(1, count):
        best = int(np.argmax(nearest))
        if not np.isfinite(nearest[best]) or (dist_thresh is not None and nearest[best] < dist_thresh):
            break
        picked.append(best)
        gaps.append(float(nearest[best]))
        nearest = np.minimum(nearest, dist[best])
        nearest[picked] = -np.inf
    return np.asarray(picked, dtype=np.int64), np.asarray(gaps)


def retrieval_edges(sim_mat: Any, n_keys: int, k: int, dist_thresh: Optional[float] = None,
                    start: Optional[int] = None) -> Tuple[List[Tuple[int, int]], np.ndarray]:
    """Undirected edges of the ``retrieval-Na-k`` graph from an image-similarity matrix.

    Args:
        sim_mat: (N, N) similarities, row i = image i as the query (need not be symmetric); distance ``1 - sim``.
        n_keys: number Na of key images (capped at N; 0: no key images).
        k: each image is linked to its k most similar *other* images (capped at N - 1).
        dist_thresh: stop the key-image sampling once the farthest image is closer than this.
        start: first key image (see :func:`farthest_point_sampling`; default: the most central image).

    Returns:
        ``(edges, key_images)``: edges ``(i, j)`` with ``i < j``, each once, in this order: pairs of key images
        (in sampling order), each non-key image with its most similar key image, then the k-nearest links image by
        image (most similar first); ``key_images`` (Na,) int64.
    """
    n = len(sim_mat)
    sim = similarity_matrix(sim_mat, n)
    dist = 1.0 - sim
    edges: Dict[Tuple[int, int], None] = {}  # insertion-ordered set

    def link(i: int, j: int) -> None:
        if i != j:
            edges.setdefault((min(i, j), max(i, j)), None)

    keys = np.zeros(0, dtype=np.int64)
    if n_keys > 0 and n > 0:
        keys, _ = farthest_point_sampling(dist, N=n_keys, dist_thresh=dist_thresh, start=start)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                link(int(keys[a]), int(keys[b]))
        nearest_key = keys[np.argmin(dist[:, keys], axis=1)]  # the MOST similar key image of every image
        for i in np.setdiff1d(np.arange(n), keys):
            link(int(i), int(nearest_key[i]))
    k = min(int(k), n - 1)
    if k > 0:
        others = dist.copy()
        np.fill_diagonal(others, np.inf)
        neighbours = np.argsort(others, axis=1, kind="stable")[:, :k]
        for i in range(n):
            for j in neighbours[i]:
                link(i, int(j))
    return list(edges), keys


def _graph_edges(scene_graph: str, n: int, sim_mat: Any = None) -> List[Tuple[int, int]]:
    """Ordered directed edges (i, j) = (view1 index, view2 index) of a scene graph on n images."""
    graph = parse_scene_graph(scene_graph, n)
    if graph.kind == "retrieval":
        if sim_mat is None:
            raise ValueError(f"scene graph {scene_graph!r} needs sim_mat, the (N, N) similarity matrix of the "
                             "images from an image-retrieval model (MASt3R's retrieval model and its Retriever)")
        return retrieval_edges(similarity_matrix(sim_mat, n), graph.key_images, graph.neighbours)[0]
    if graph.kind == "complete":
        return [(i, j) for i in range(n) for j in range(i)]
    if graph.kind == "oneref":
        return [(graph.ref, j) for j in range(n) if j != graph.ref]
    edge_set = set()
    for edge in _window_candidates(n, graph.kind, graph.window, graph.cyclic):
        edge_set.add(edge)  # same insertions, same order as the original => same iteration order
    return [(i, j) for i, j in edge_set if i != j]


def make_pairs(imgs: Sequence[View], scene_graph: str = "complete", prefilter: Optional[str] = None,
               symmetrize: bool = True, sim_mat: Optional[Any] = None) -> List[Pair]:
    """Pair up views according to a scene graph.

    Args:
        imgs: the N views (dicts with at least ``idx`` when ``prefilter`` is used), e.g. the
            output of :func:`dust3r.utils.image.load_images`.
        scene_graph: ``'complete'``, ``'swin[-N][-noncyclic]'``, ``'logwin[-N][-noncyclic]'`` or
            ``'oneref[-ID]'``, ``'retrieval[-Na[-k]]'`` (see the module docstring).
        prefilter: None, ``'seqN'`` or ``'cycN'``: drop pairs whose ``idx`` are more than N
            apart (cyclic distance for ``cyc``).
        symmetrize: also add every pair reversed (appended after the forward pairs).
        sim_mat: (N, N) image-similarity matrix (numpy or torch), needed by ``retrieval`` graphs only.

    Returns:
        list of ``(view1, view2)`` tuples referencing the given dicts (not copies).

    Raises:
        ValueError: malformed ``scene_graph`` or ``prefilter``, ``oneref`` index out of range, a ``retrieval``
            graph without a (N, N) finite ``sim_mat``.
    """
    imgs = list(imgs)
    edges = _graph_edges(scene_graph, len(imgs), sim_mat)
    pairs: List[Pair] = [(imgs[i], imgs[j]) for i, j in edges]
    if symmetrize:
        pairs = pairs + [(b, a) for a, b in pairs]

    if prefilter is not None:
        match = _PREFILTER_RE.match(prefilter) if isinstance(prefilter, str) else None
        if match is None:
            raise ValueError(f"unknown prefilter {prefilter!r}; accepted: None, 'seqN' or 'cycN' "
                             "(N a non-negative integer distance between image indices)")
        pairs = filter_pairs_seq(pairs, int(match.group(2)), cyclic=match.group(1) == "cyc")
    logger.debug("make_pairs(%s, prefilter=%s, symmetrize=%s): %d images -> %d pairs",
                 scene_graph, prefilter, symmetrize, len(imgs), len(pairs))
    return pairs


def sel(x: Any, kept: Sequence[int]) -> Any:
    """Select the entries ``kept`` along the first axis of a (nested) batch.

    Dicts are processed value by value, tensors / arrays indexed with ``kept``, lists / tuples
    rebuilt with the kept elements; any other value is returned unchanged.
    """
    if isinstance(x, dict):
        return {key: sel(value, kept) for key, value in x.items()}
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x[list(kept)]
    if isinstance(x, (tuple, list)):
        return type(x)([x[k] for k in kept])
    return x


def _filter_edges_seq(edges: Sequence[Tuple[int, int]], seq_dis_thr: int,
                      cyclic: bool = False) -> List[int]:
    """Positions of the edges whose endpoints are at most ``seq_dis_thr`` apart.

    Args:
        edges: E (i, j) index pairs.
        seq_dis_thr: maximal index distance kept.
        cyclic: measure the distance on a cycle of ``max(index) + 1`` images.

    Returns:
        sorted list of kept positions in ``edges``.
    """
    if len(edges) == 0:
        return []
    ij = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    dist = np.abs(ij[:, 0] - ij[:, 1])
    if cyclic:
        n = int(ij.max()) + 1
        dist = np.minimum(dist, n - dist)
    return np.flatnonzero(dist <= seq_dis_thr).tolist()


def filter_pairs_seq(pairs: Sequence[Pair], seq_dis_thr: int, cyclic: bool = False) -> List[Pair]:
    """Keep the pairs whose views' ``idx`` are at most ``seq_dis_thr`` apart (order preserved)."""
    edges = [(int(v1["idx"]), int(v2["idx"])) for v1, v2 in pairs]
    return [pairs[k] for k in _filter_edges_seq(edges, seq_dis_thr, cyclic=cyclic)]


def filter_edges_seq(view1: Dict[str, Any], view2: Dict[str, Any], pred1: Dict[str, Any],
                     pred2: Dict[str, Any], seq_dis_thr: int, cyclic: bool = False
                     ) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """Same filter as :func:`filter_pairs_seq` on batched inference outputs.

    Args:
        view1, view2: collated views; ``view['idx']`` holds the B image indices.
        pred1, pred2: the matching predictions, batched along the first axis (B, ...).
        seq_dis_thr: maximal index distance kept.
        cyclic: cyclic distance (on ``max(idx) + 1`` images).

    Returns:
        ``(view1, view2, pred1, pred2)`` restricted to the kept edges.
    """
    edges = [(int(i), int(j)) for i, j in zip(view1["idx"], view2["idx"])]
    kept = _filter_edges_seq(edges, seq_dis_thr, cyclic=cyclic)
    logger.info("filtering edges more than %d frames apart: kept %d/%d edges",
                seq_dis_thr, len(kept), len(edges))
    return sel(view1, kept), sel(view2, kept), sel(pred1, kept), sel(pred2, kept)
