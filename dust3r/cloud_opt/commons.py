"""Small building blocks of the dense global alignment: edge names, union-find, confidence transforms and
distances.

The learning-rate schedules (:mod:`dust3r.utils.schedules`), quaternions and the weighted similarity (Umeyama)
registration (:mod:`dust3r.utils.geometry`) have their homes elsewhere; they stay importable from here.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch

from ..utils.geometry import quat_to_rotmat, rotmat_to_quat, sim3_to_4x4, weighted_procrustes
from ..utils.schedules import cosine_schedule, linear_schedule

__all__ = [
    "edge_str", "i_j_ij", "edge_conf", "compute_edge_scores", "get_conf_trf", "l1_dist", "l2_dist", "ALL_DISTS",
    "signed_log1p", "signed_expm1", "cosine_schedule", "linear_schedule", "quat_to_rotmat", "rotmat_to_quat",
    "weighted_procrustes", "sim3_to_4x4", "connected_components",
]


# ------------------------------------------------------------------------------------------------ graph helpers
def edge_str(i: int, j: int) -> str:
    """Name of the directed edge (i, j): ``'i_j'``."""
    return f"{i}_{j}"


def i_j_ij(ij: Tuple[int, int]) -> Tuple[str, Tuple[int, int]]:
    """``(i, j) -> ('i_j', (i, j))``."""
    return edge_str(*ij), ij


def edge_conf(conf_i: Dict[str, torch.Tensor], conf_j: Dict[str, torch.Tensor], edge: str) -> float:
    """Score of an edge: mean confidence of its first pointmap times mean confidence of its second."""
    return float(conf_i[edge].mean() * conf_j[edge].mean())


def compute_edge_scores(edges: Iterable[Tuple[str, Tuple[int, int]]], conf_i, conf_j) -> Dict[Tuple[int, int], float]:
    """``{(i, j): edge_conf}`` for an iterable of ``('i_j', (i, j))``."""
    return {(i, j): edge_conf(conf_i, conf_j, name) for name, (i, j) in edges}


class DisjointSets:
    """Union-find over nodes ``0 .. n - 1`` (path halving; the smaller root becomes the representative)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> bool:
        """Merge the sets of ``a`` and ``b``; False if they were already one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def connected_components(n_nodes: int, edges: Sequence[Tuple[int, int]]) -> List[List[int]]:
    """Connected components (sorted lists of node ids, sorted by smallest member) of an undirected graph."""
    sets = DisjointSets(n_nodes)
    for i, j in edges:
        sets.union(i, j)
    groups: Dict[int, List[int]] = {}
    for node in range(n_nodes):
        groups.setdefault(sets.find(node), []).append(node)
    return sorted(groups.values(), key=lambda g: g[0])


# ------------------------------------------------------------------------------------------------ losses
def get_conf_trf(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Confidence -> pixel weight: ``'log'``, ``'sqrt'``, ``'m1'`` (conf - 1), ``'id'`` / ``'none'``."""
    transforms = {
        "log": torch.log,
        "sqrt": torch.sqrt,
        "m1": lambda x: x - 1,
        "id": lambda x: x,
        "none": lambda x: x,
    }
    if mode not in transforms:
        raise ValueError(f"bad confidence transform mode={mode!r}: expected one of {sorted(transforms)}")
    return transforms[mode]


def l2_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Weighted squared distance of points with coordinates along ``dim`` ((..., 3) by default)."""
    return (a - b).square().sum(dim=dim) * weight


def l1_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Weighted Euclidean distance of points with coordinates along ``dim`` ((..., 3) by default).

    Written as sqrt(sum of squares) (several times faster than ``norm`` along a strided dim on CPU); the clamp
    gives a zero gradient at coincident points, like ``norm``'s subgradient.
    """
    return (a - b).square().sum(dim=dim).clamp_min(1e-30).sqrt() * weight


ALL_DISTS = dict(l1=l1_dist, l2=l2_dist)


def signed_log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def signed_expm1(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))
