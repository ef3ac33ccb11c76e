"""DUSt3R training datasets.

* every reader class by name, imported lazily (``dust3r.datasets.Co3d`` imports :mod:`dust3r.datasets.co3d` on
  first access), so that a missing or broken reader module only fails when its class is used;
* :func:`parse_dataset`: build a ``--train_dataset`` string (``"1000 @ Co3d(...) + 10 @ ScanNetpp(...)"``) without
  ``eval``;
* :func:`get_data_loader`: a DataLoader with the aspect-ratio batch sampler (or a Sequential / Distributed one);
* ``ImgNorm`` / ``ColorJitter`` transforms, the base classes in :mod:`.base`, cropping in :mod:`.utils`.
"""
from __future__ import annotations

from typing import Any

import torch

from .base.base_stereo_view_dataset import BaseStereoViewDataset  # noqa: F401
from .base.batched_sampler import BatchedRandomSampler  # noqa: F401
from .base.easy_dataset import CatDataset, EasyDataset, MulDataset, ResizedDataset  # noqa: F401
from .parse import describe_dataset, parse_dataset, register_namespace  # noqa: F401
from .registry import READER_CLASSES, reader_class
from .utils.transforms import ColorJitter, ImgNorm  # noqa: F401

__all__ = ["get_data_loader", "parse_dataset", "describe_dataset", "register_namespace", "reader_class",
           "READER_CLASSES", "BaseStereoViewDataset", "BatchedRandomSampler", "EasyDataset", "MulDataset",
           "ResizedDataset", "CatDataset", "ImgNorm", "ColorJitter", *READER_CLASSES]


def __getattr__(name: str) -> Any:
    if name in READER_CLASSES:
        return reader_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(READER_CLASSES))


def get_data_loader(dataset, batch_size: int, num_workers: int = 8, shuffle: bool = True, drop_last: bool = True,
                    pin_mem: bool = True) -> torch.utils.data.DataLoader:
    """DataLoader of a dataset (or a dataset string, built with :func:`parse_dataset`).

    The sampler is ``dataset.make_sampler(...)`` (:class:`BatchedRandomSampler`: one aspect ratio per batch, per
    rank slices under DDP) when the dataset has one for these options, else a DistributedSampler under DDP,
    else a Random / SequentialSampler.
    """
    from croco.utils.misc import get_rank, get_world_size
    if isinstance(dataset, str):
        dataset = parse_dataset(dataset)
    world_size, rank = get_world_size(), get_rank()
    try:
        sampler = dataset.make_sampler(batch_size, shuffle=shuffle, world_size=world_size, rank=rank,
                                       drop_last=drop_last)
    except (AttributeError, NotImplementedError):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                                          shuffle=shuffle, drop_last=drop_last)
        elif shuffle:
            sampler = torch.utils.data.RandomSampler(dataset)
        else:
            sampler = torch.utils.data.SequentialSampler(dataset)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=batch_size, num_workers=num_workers,
                                       pin_memory=pin_mem, drop_last=drop_last)
