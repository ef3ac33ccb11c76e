"""Small building blocks of the dense global alignment: edge names, confidence transforms, distances,
learning-rate schedules, unit quaternions and weighted similarity (Umeyama) registration.

Quaternions are stored (x, y, z, w) (scalar last), as in ``roma``; rotations act on column vectors.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch

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


def cosine_schedule(t: float, lr_start: float, lr_end: float) -> float:
    """Cosine decay from ``lr_start`` (t=0) to ``lr_end`` (t=1)."""
    if not 0 <= t <= 1:
        raise ValueError(f"schedule time must lie in [0, 1], got {t}")
    return lr_end + (lr_start - lr_end) * (1 + math.cos(t * math.pi)) / 2


def linear_schedule(t: float, lr_start: float, lr_end: float) -> float:
    """Linear decay from ``lr_start`` (t=0) to ``lr_end`` (t=1)."""
    if not 0 <= t <= 1:
        raise ValueError(f"schedule time must lie in [0, 1], got {t}")
    return lr_start + (lr_end - lr_start) * t


# ------------------------------------------------------------------------------------------------ rotations
def quat_to_rotmat(quat: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (x, y, z, w), normalised here -> (..., 3, 3) rotation matrices."""
    q = quat / quat.norm(dim=-1, keepdim=True).clip(min=1e-12)
    x, y, z, w = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w >= 0.

    Uses the numerically stable branch (largest of w, x, y, z) for every matrix.
    """
    R = R.to(torch.float64)
    m = R.reshape(-1, 3, 3)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # 4 * q_k^2 candidates for k = x, y, z, w
    diag = torch.stack((1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace,
                        1 + 2 * m[:, 2, 2] - trace, 1 + trace), dim=-1)
    best = diag.argmax(dim=-1)
    # each row: 4 * q_best * (x, y, z, w)
    cand_x = torch.stack((diag[:, 0], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]), -1)
    cand_y = torch.stack((m[:, 0, 1] + m[:, 1, 0], diag[:, 1], m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]), -1)
    cand_z = torch.stack((m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], diag[:, 2], m[:, 1, 0] - m[:, 0, 1]), -1)
    cand_w = torch.stack((m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], diag[:, 3]), -1)
    cands = torch.stack((cand_x, cand_y, cand_z, cand_w), dim=1)  # (B, 4, 4)
    q = cands[torch.arange(len(m)), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:4] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


def weighted_procrustes(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None,
                        with_scale: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched weighted similarity registration (Umeyama): ``dst ~ s * R @ src + t``.

    Args:
        src, dst: (B, N, 3) or (N, 3) corresponding points.
        weights: (B, N) or (N,) non-negative weights; a batch element whose weights sum to ~0 falls back to
            uniform weights. Non-finite points get weight 0.
        with_scale: estimate ``s`` (else s = 1).

    Returns:
        ``s`` (B,), ``R`` (B, 3, 3), ``t`` (B, 3) (no batch dimension for unbatched input). Computed in float64.
    """
    unbatched = src.ndim == 2
    if unbatched:
        src, dst = src[None], dst[None]
        weights = None if weights is None else weights[None]
    src64, dst64 = src.to(torch.float64), dst.to(torch.float64)
    w = torch.ones(src.shape[:2], dtype=torch.float64, device=src.device) if weights is None \
        else weights.to(torch.float64).clip(min=0)
    finite = torch.isfinite(src64).all(-1) & torch.isfinite(dst64).all(-1)
    w = torch.where(finite, w.nan_to_num(0.0), torch.zeros_like(w))
    src64, dst64 = src64.nan_to_num(0.0), dst64.nan_to_num(0.0)
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 1e-12, w, finite.to(w.dtype))
    w = w / w.sum(dim=1, keepdim=True).clip(min=1e-12)

    mu_src = (w[..., None] * src64).sum(1)  # (B, 3)
    mu_dst = (w[..., None] * dst64).sum(1)
    src_c, dst_c = src64 - mu_src[:, None], dst64 - mu_dst[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, dst_c, src_c)  # (B, 3, 3)
    U, S, Vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(U @ Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    D = torch.ones_like(S)
    D[:, 2] = sign
    R = U @ torch.diag_embed(D) @ Vh
    if with_scale:
        var_src = (w * src_c.square().sum(-1)).sum(1)
        s = (S * D).sum(-1) / var_src.clip(min=1e-30)
        s = torch.where(var_src > 1e-24, s, torch.ones_like(s))  # all source points equal: no scale info
    else:
        s = torch.ones_like(S[:, 0])
    t = mu_dst - s[:, None] * (R @ mu_src[..., None])[..., 0]
    if unbatched:
        return s[0], R[0], t[0]
    return s, R, t


def sim3_to_4x4(scale, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(.., 4, 4) matrix of ``x -> scale * R x + t``; scale scalar or (...,)."""
    out = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    scale = torch.as_tensor(scale, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R * scale[..., None, None]
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out
