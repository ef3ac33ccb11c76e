"""Sparse global alignment of MASt3R predictions (cameras, depths and points from many views)."""
from .scene import SparseGA
from .sparse_ga import sparse_global_alignment

__all__ = ["SparseGA", "sparse_global_alignment"]
