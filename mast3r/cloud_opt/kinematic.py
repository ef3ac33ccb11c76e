"""Kinematic chain of the cameras: a spanning tree of the scene graph, rooted at its most central image.

Each camera's pose is parameterised relative to its parent in the tree (the root relative to the world), so that
the coarse alignment moves whole sub-trees rigidly. Two ways of choosing the tree, from the pairwise scores
(number of correspondences of each pair):

* ``'mst'``: maximum spanning tree of the scores;
* ``'hclust-<linkage>'`` (default ``'hclust-ward'``): agglomerative clustering (scipy) of the images on the
  distance ``1 - score / max_score``; each merge links the two clusters by the edge between their
  representatives, then the maximum spanning tree of those edges gives the orientation.

All functions raise a ValueError naming the connected components when the scene graph is not connected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["KinematicTree", "connected_components", "compute_min_spanning_tree", "build_kinematic_tree"]


@dataclass
class KinematicTree:
    """``root`` image and ``edges`` (parent, child) in breadth-first order (parents before children)."""
    root: int
    edges: List[Tuple[int, int]]

    def __iter__(self):  # unpacks like the original's ``(root, edges)``
        return iter((self.root, self.edges))

    def __getitem__(self, k):
        return (self.root, self.edges)[k]


def connected_components(scores: np.ndarray) -> List[List[int]]:
    """Connected components (lists of image indices, largest first) of the graph ``scores > 0``."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components as cc

    n_comp, labels = cc(csr_matrix((np.asarray(scores) > 0).astype(np.float64)), directed=False)
    comps = [np.flatnonzero(labels == k).tolist() for k in range(n_comp)]
    return sorted(comps, key=lambda c: (-len(c), c[0]))


def check_connected(scores: np.ndarray, names: Optional[Sequence[str]] = None) -> None:
    """Raise a ValueError naming the components when the graph ``scores > 0`` is not connected."""
    comps = connected_components(scores)
    if len(comps) > 1:
        names = list(names) if names is not None else [str(i) for i in range(len(scores))]
        desc = "; ".join(f"component {k}: [{', '.join(names[i] for i in c)}]" for k, c in enumerate(comps))
        raise ValueError(f"the scene graph splits into {len(comps)} disconnected components (no image pair with "
                         f"correspondences links them), so they cannot be aligned together: {desc}. Add pairs "
                         "between these groups (e.g. scene_graph='complete' or a larger window) or align each "
                         "group separately.")


def _bfs(tree, start: int) -> Tuple[np.ndarray, np.ndarray]:
    from scipy.sparse.csgraph import breadth_first_order

    order, pred = breadth_first_order(tree, start, directed=False)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks, pred


def compute_min_spanning_tree(scores, names: Optional[Sequence[str]] = None) -> KinematicTree:
    """Maximum spanning tree of the pairwise ``scores`` (N, N) (minimum tree of ``-scores``), rooted at the
    image farthest from any leaf (the middle of the longest path), edges in breadth-first order."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 1:
        return KinematicTree(0, [])
    check_connected(scores, names)
    sym = np.maximum(scores, scores.T)
    tree = minimum_spanning_tree(csr_matrix(np.where(sym > 0, -sym, 0.0)))
    # the centre of the tree: middle of a longest path (two sweeps of BFS)
    ranks_a, _ = _bfs(tree, 0)
    ranks_b, _ = _bfs(tree, int(ranks_a.argmax()))
    ranks_a, _ = _bfs(tree, int(ranks_b.argmax()))
    root = int(np.minimum(ranks_a, ranks_b).argmax())
    order, pred = breadth_first_order(tree, root, directed=False)
    return KinematicTree(root, [(int(pred[c]), int(c)) for c in order[1:]])


def _hclust_tree(scores: np.ndarray, max_scores: np.ndarray, linkage: str) -> np.ndarray:
    """(N, N) 0/1 adjacency of the tree given by agglomerative clustering."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    n = len(scores)
    affinity = np.clip(scores / np.maximum(max_scores, 1e-12), 0, 1)
    np.fill_diagonal(affinity, 1)
    distance = np.where(affinity > 0, 1 - affinity, 2.0)
    np.fill_diagonal(distance, 0)
    Z = hierarchy.linkage(squareform(distance, checks=False), method=linkage)
    tree = np.eye(n)
    representative = {i: i for i in range(n)}
    for k, (a, b) in enumerate(Z[:, :2].astype(int)):
        ra, rb = representative[a], representative[b]
        tree[ra, rb] = tree[rb, ra] = 1
        best = ra if affinity[ra].sum() > affinity[rb].sum() else rb
        representative[n + k] = best
        affinity[best] = np.maximum(affinity[ra], affinity[rb])
    return tree


def build_kinematic_tree(scores, mode: str = "hclust-ward", imsizes: Optional[np.ndarray] = None,
                         subsample: int = 8, names: Optional[Sequence[str]] = None) -> KinematicTree:
    """Spanning tree of the cameras.

    Args:
        scores: (N, N) symmetric pairwise scores (number of correspondences, 0 = no edge).
        mode: ``'mst'`` or ``'hclust-<linkage>'`` with a scipy linkage method (ward, single, average...).
        imsizes: (N, 2) image sizes (W, H), used to normalise the scores by the maximum possible number of
            correspondences (``3 * min(n_anchors_i, n_anchors_j)``); default: the largest score.
        subsample: anchor grid step.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 1:
        return KinematicTree(0, [])
    check_connected(scores, names)
    if mode == "mst":
        return compute_min_spanning_tree(scores, names)
    if not (isinstance(mode, str) and mode.startswith("hclust-")):
        raise ValueError(f"bad kinematic_mode={mode!r}: expected 'mst' or 'hclust-<linkage>' (e.g. 'hclust-ward')")
    linkage = mode.split("-", 1)[1]
    if linkage not in ("ward", "single", "complete", "average", "weighted", "centroid", "median"):
        raise ValueError(f"bad kinematic_mode={mode!r}: unknown linkage {linkage!r}")
    if imsizes is not None:
        n_anchors = np.prod(np.asarray(imsizes) // subsample, axis=1).astype(np.float64)
        max_scores = 3 * np.minimum(n_anchors[:, None], n_anchors[None, :])
    else:
        max_scores = np.full_like(scores, max(scores.max(), 1.0))
    tree = _hclust_tree(scores, max_scores, linkage)
    weights = tree * np.maximum(scores, scores.T)
    np.fill_diagonal(weights, 0)
    # a tree edge whose pair has no correspondences (possible with 'ward' on sparse graphs): fall back to the MST
    if len(connected_components(weights)) > 1:
        return compute_min_spanning_tree(scores, names)
    return compute_min_spanning_tree(weights, names)
