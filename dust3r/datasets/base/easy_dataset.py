"""A dataset that can be resized and combined with operators.

* ``k * ds`` -> :class:`MulDataset` (each pair repeated ``k`` times),
* ``N @ ds`` -> :class:`ResizedDataset` (``N`` pairs per epoch, drawn by an epoch-seeded permutation, the inner
  dataset repeated when ``N`` exceeds it),
* ``a + b`` -> :class:`CatDataset` (concatenation; the aspect-ratio lists must agree).

Items are indexed by ``idx`` or by ``(idx, ar_idx)`` (the aspect-ratio index of :class:`BatchedRandomSampler`),
which every wrapper passes through.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .batched_sampler import BatchedRandomSampler

__all__ = ["EasyDataset", "MulDataset", "ResizedDataset", "CatDataset"]


def _split(idx):
    """``idx`` -> (int idx, extra or None) for plain and ``(idx, ar_idx)`` indices."""
    if isinstance(idx, tuple):
        return idx[0], idx[1]
    return idx, None


def _join(idx, extra):
    return idx if extra is None else (idx, extra)


class EasyDataset:
    """Base of every training dataset: arithmetic, :meth:`set_epoch`, :meth:`make_sampler`."""

    def __add__(self, other: "EasyDataset") -> "CatDataset":
        return CatDataset([self, other])

    def __rmul__(self, factor: int) -> "MulDataset":
        return MulDataset(factor, self)

    def __rmatmul__(self, factor: int) -> "ResizedDataset":
        return ResizedDataset(factor, self)

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (nothing to do by default)."""

    def make_sampler(self, batch_size: int, shuffle: bool = True, world_size: int = 1, rank: int = 0,
                     drop_last: bool = True) -> BatchedRandomSampler:
        """A :class:`BatchedRandomSampler` over the aspect ratios; NotImplementedError without shuffling."""
        if not shuffle:
            raise NotImplementedError("EasyDataset.make_sampler only shuffles; use a Sequential/DistributedSampler")
        return BatchedRandomSampler(self, batch_size, len(self._resolutions), world_size=world_size, rank=rank,
                                    drop_last=drop_last)


def _check_positive_int(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


class MulDataset(EasyDataset):
    """``multiplicator * dataset``: every pair ``multiplicator`` times in a row."""

    multiplicator: int

    def __init__(self, multiplicator: int, dataset: EasyDataset):
        _check_positive_int(multiplicator, "the multiplicator of k * dataset")
        self.multiplicator = int(multiplicator)
        self.dataset = dataset

    def __len__(self) -> int:
        return self.multiplicator * len(self.dataset)

    def __repr__(self) -> str:
        return f"{self.multiplicator}*{self.dataset!r}"

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, idx):
        i, extra = _split(idx)
        return self.dataset[_join(i // self.multiplicator, extra)]

    @property
    def _resolutions(self):
        return self.dataset._resolutions


def _size_str(n: int) -> str:
    """1000000 -> '1_000_000' (how the dataset strings write sizes)."""
    return f"{n:_d}"


class ResizedDataset(EasyDataset):
    """``new_size @ dataset``: an epoch of ``new_size`` pairs drawn from ``dataset``.

    :meth:`set_epoch` (required before indexing) maps index ``i`` to ``perm[i % len(dataset)]`` with
    ``perm = numpy.random.default_rng(epoch + 777).permutation(len(dataset))``.
    """

    new_size: int

    def __init__(self, new_size: int, dataset: EasyDataset):
        _check_positive_int(new_size, "the size of N @ dataset")
        self.new_size = int(new_size)
        self.dataset = dataset

    def __len__(self) -> int:
        return self.new_size

    def __repr__(self) -> str:
        return f"{_size_str(self.new_size)} @ {self.dataset!r}"

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng(seed=epoch + 777)
        perm = rng.permutation(len(self.dataset))
        reps = 1 + (self.new_size - 1) // len(self.dataset)
        self._idxs_mapping = np.tile(perm, reps)[:self.new_size]
        # the inner dataset may itself be epoch-dependent
        self.dataset.set_epoch(epoch)

    def __getitem__(self, idx):
        if not hasattr(self, "_idxs_mapping"):
            raise RuntimeError("call dataset.set_epoch(epoch) before indexing a ResizedDataset (N @ dataset)")
        i, extra = _split(idx)
        return self.dataset[_join(int(self._idxs_mapping[i]), extra)]

    @property
    def _resolutions(self):
        return self.dataset._resolutions


class CatDataset(EasyDataset):
    """``a + b + ...``: the datasets one after the other."""

    def __init__(self, datasets: Sequence[EasyDataset]):
        for ds in datasets:
            if not isinstance(ds, EasyDataset):
                raise TypeError(f"can only concatenate EasyDataset instances, got {type(ds).__name__}")
        self.datasets: List[EasyDataset] = list(datasets)
        self._cum_sizes = np.cumsum([len(ds) for ds in self.datasets])

    def __len__(self) -> int:
        return int(self._cum_sizes[-1])

    def __repr__(self) -> str:
        return " + ".join(repr(ds) for ds in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        for ds in self.datasets:
            ds.set_epoch(epoch)

    def __getitem__(self, idx):
        i, extra = _split(idx)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a CatDataset of {len(self)} pairs")
        db = int(np.searchsorted(self._cum_sizes, i, "right"))
        local = i - (int(self._cum_sizes[db - 1]) if db > 0 else 0)
        return self.datasets[db][_join(local, extra)]

    @property
    def _resolutions(self):
        res = self.datasets[0]._resolutions
        for ds in self.datasets[1:]:
            if tuple(ds._resolutions) != tuple(res):
                raise ValueError(f"concatenated datasets disagree on resolutions: {res} vs {ds._resolutions}")
        return res
