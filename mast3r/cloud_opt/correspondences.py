"""Pixel correspondences of a symmetric pair from MASt3R descriptors.

For pair (i, j) the model gives descriptors of both images twice (once from each decoder direction). Reciprocal
nearest neighbours are searched between ``D11`` and ``D21`` (the (i, j) forward) and between ``D12`` and ``D22``
(the (j, i) forward), from seed grids in both images; the four match sets are merged (duplicates removed by
:func:`mast3r.fast_nn.merge_corres`) and each match gets the confidence ``sqrt(q_i * q_j)`` of the descriptor
confidences at its two pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import torch

from mast3r.fast_nn import fast_reciprocal_NNs, merge_corres

from .forward_cache import PairDescriptors, PairForward

__all__ = ["PairMatches", "extract_correspondences", "pair_scores"]


@dataclass
class PairMatches:
    """Correspondences of pair (i, j): ``xy_i``, ``xy_j`` (K, 2) int64 pixels (x, y), ``conf`` (K,) float32."""
    xy_i: torch.Tensor
    xy_j: torch.Tensor
    conf: torch.Tensor

    def __len__(self) -> int:
        return int(self.conf.numel())

    def swapped(self) -> "PairMatches":
        return PairMatches(self.xy_j, self.xy_i, self.conf)

    def filtered(self, min_conf: float) -> "PairMatches":
        """Matches with confidence strictly above ``min_conf`` (all when ``min_conf`` is 0 / None)."""
        if not min_conf:
            return self
        keep = self.conf > min_conf
        return PairMatches(self.xy_i[keep], self.xy_j[keep], self.conf[keep])


def _one_direction(A: torch.Tensor, B: torch.Tensor, QA: torch.Tensor, QB: torch.Tensor, subsample: int,
                   device: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reciprocal matches A <-> B seeded from both sides: flat indices into A and B and their confidences."""
    opt = dict(device=device, dist="dot", block_size=2 ** 13)
    a2b = fast_reciprocal_NNs(A, B, subsample_or_initxy1=subsample, ret_xy=False, **opt)
    b2a = fast_reciprocal_NNs(B, A, subsample_or_initxy1=subsample, ret_xy=False, **opt)
    idx_a = np.concatenate([a2b[0], b2a[1]]).astype(np.int64)
    idx_b = np.concatenate([a2b[1], b2a[0]]).astype(np.int64)
    qa = QA.detach().cpu().reshape(-1).numpy()[idx_a]
    qb = QB.detach().cpu().reshape(-1).numpy()[idx_b]
    return idx_a, idx_b, qa, qb


def extract_correspondences(desc: PairDescriptors, subsample: int = 8, device: Any = "cpu") -> PairMatches:
    """Merged reciprocal matches of a symmetric pair (see module docstring); output on CPU."""
    H1, W1 = desc.D11.shape[:2]
    H2, W2 = desc.D22.shape[:2]
    ia1, ib1, qa1, qb1 = _one_direction(desc.D11, desc.D21, desc.Q11, desc.Q21, subsample, device)
    ia2, ib2, qa2, qb2 = _one_direction(desc.D12, desc.D22, desc.Q12, desc.Q22, subsample, device)
    idx_i, idx_j = np.concatenate([ia1, ia2]), np.concatenate([ib1, ib2])
    q_i, q_j = np.concatenate([qa1, qa2]), np.concatenate([qb1, qb2])
    if idx_i.size == 0:
        empty = torch.zeros((0, 2), dtype=torch.int64)
        return PairMatches(empty, empty.clone(), torch.zeros(0))
    xy_i, xy_j, first = merge_corres(idx_i, idx_j, (H1, W1), (H2, W2), ret_xy=True, ret_index=True)
    conf = np.sqrt(np.clip(q_i[first] * q_j[first], 0, None))
    return PairMatches(torch.from_numpy(np.ascontiguousarray(xy_i)).long(),
                       torch.from_numpy(np.ascontiguousarray(xy_j)).long(),
                       torch.from_numpy(conf.astype(np.float32)))


def pair_scores(fwd: PairForward, matches: PairMatches) -> Tuple[float, float, int]:
    """``(conf_score, sum of match confidences, number of matches)`` as the original's matching score, where
    conf_score is the geometric mean of the four mean confidence maps."""
    means = torch.stack([fwd.C11.mean(), fwd.C12.mean(), fwd.C21.mean(), fwd.C22.mean()]).double()
    conf_score = float(means.prod().clip(min=0) ** 0.25)
    return conf_score, float(matches.conf.double().sum()), len(matches)
