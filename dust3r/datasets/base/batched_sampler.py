"""Random sampling with one shared 'feature' per batch: the aspect-ratio index of every sample of a batch is the
same, so that a batch stacks into one tensor, on every DDP rank.

A sampled index is the tuple ``(sample_idx, ar_idx)`` that :class:`~.base_stereo_view_dataset.BaseStereoViewDataset`
understands.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

__all__ = ["BatchedRandomSampler", "round_by"]


def round_by(total: int, multiple: int, up: bool = False) -> int:
    """``total`` rounded down (or ``up``) to a multiple of ``multiple``."""
    if up:
        total = total + multiple - 1
    return (total // multiple) * multiple


class BatchedRandomSampler:
    """Shuffled ``(sample_idx, feature_idx)`` tuples; each run of ``batch_size`` tuples shares its feature index.

    Args:
        dataset: anything with ``len``.
        batch_size: per-rank batch size.
        pool_size: number of features (aspect ratios) to draw from.
        world_size, rank: DDP layout; each rank gets a contiguous, batch-aligned slice of the epoch.
        drop_last: round the epoch down to a multiple of ``batch_size * world_size`` (required when
            ``world_size > 1``).

    The epoch's order comes from ``numpy.random.default_rng(epoch + 777)`` after :meth:`set_epoch` (the same on
    every rank), or from a fresh torch-drawn seed when no epoch was set (single process only).
    """

    def __init__(self, dataset, batch_size: int, pool_size: int, world_size: int = 1, rank: int = 0,
                 drop_last: bool = True):
        if batch_size < 1 or pool_size < 1:
            raise ValueError(f"batch_size and pool_size must be >= 1, got {batch_size}, {pool_size}")
        if world_size > 1 and not drop_last:
            raise ValueError("BatchedRandomSampler needs drop_last=True in distributed mode")
        self.batch_size = batch_size
        self.pool_size = pool_size
        self.len_dataset = len(dataset)
        self.total_size = round_by(self.len_dataset, batch_size * world_size) if drop_last else self.len_dataset
        self.world_size = world_size
        self.rank = rank
        self.epoch: Optional[int] = None

    def __len__(self) -> int:
        return self.total_size // self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _seed(self) -> int:
        if self.epoch is not None:
            return self.epoch + 777
        if self.world_size != 1 or self.rank != 0:
            raise RuntimeError("call set_epoch() before iterating a distributed BatchedRandomSampler")
        return int(torch.empty((), dtype=torch.int64).random_().item())

    def epoch_indices(self) -> np.ndarray:
        """(len(self), 2) int64: this rank's ``(sample_idx, feature_idx)`` rows for the current epoch."""
        rng = np.random.default_rng(seed=self._seed())
        sample_idxs = np.arange(self.total_size)
        rng.shuffle(sample_idxs)
        n_batches = -(-self.total_size // self.batch_size)
        feat = np.repeat(rng.integers(self.pool_size, size=n_batches), self.batch_size)[:self.total_size]
        rows = np.stack((sample_idxs, feat), axis=1)
        per_rank = self.batch_size * -(-self.total_size // (self.world_size * self.batch_size))
        return rows[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        yield from (tuple(row) for row in self.epoch_indices())
