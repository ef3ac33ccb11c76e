"""The retrieval scene graph (``retrieval-Na-k``) under the original's names.

The logic lives in :mod:`dust3r.image_pairs` (it needs only a similarity matrix); this module keeps the original
entry points. Differences from the original, on purpose: the first key image is the most central one (not drawn
from the global NumPy RNG), ``tokK`` counts the nearest *other* images (the original counted the image itself), key
images are distinct, and every undirected edge is returned once as ``(i, j)`` with ``i < j``.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from dust3r.image_pairs import farthest_point_sampling, retrieval_edges

__all__ = ["farthest_point_sampling", "make_pairs_fps"]


def make_pairs_fps(sim_mat: Any, Na: int = 20, tokK: int = 1, dist_thresh: Optional[float] = None
                   ) -> Tuple[List[Tuple[int, int]], np.ndarray]:
    """Edges of the retrieval graph: ``Na`` key images by farthest point sampling on ``1 - sim_mat``, all pairs of
    key images, each other image with its most similar key image, each image with its ``tokK`` most similar others.

    Args:
        sim_mat: (N, N) similarity (row i: image i as the query).
        Na: number of key images.
        tokK: nearest other images linked to each image.
        dist_thresh: stop the key-image sampling once the farthest image is closer than this.

    Returns:
        ``(pairs, keyimgs_idx)``: undirected edges ``(i, j)``, ``i < j``, and the key images (Na,) int64.
    """
    return retrieval_edges(sim_mat, int(Na), int(tokK), dist_thresh=dist_thresh)
