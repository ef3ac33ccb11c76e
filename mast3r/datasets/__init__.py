"""MASt3R training datasets: every reader of :mod:`dust3r.datasets` combined with
:class:`~mast3r.datasets.base.mast3r_base_stereo_view_dataset.MASt3RBaseStereoViewDataset` (correspondences,
swap / monocular / rot90 augmentations, homography crops).

``mast3r.datasets.Co3d`` is ``class Co3d(dust3r.datasets.co3d.Co3d, MASt3RBaseStereoViewDataset)``, built lazily
on first access, so a missing or broken reader module only fails when its class is used. ``parse_dataset(text)``
builds a dataset string with these classes (see :func:`dust3r.datasets.parse.parse_dataset`).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

from dust3r.datasets import READER_CLASSES, get_data_loader  # noqa: F401
from dust3r.datasets import reader_class as _dust3r_reader_class
from dust3r.datasets.parse import parse_dataset as _parse_dataset
from dust3r.datasets.parse import register_namespace
from mast3r.datasets.base.mast3r_base_stereo_view_dataset import MASt3RBaseStereoViewDataset

__all__ = ["MASt3RBaseStereoViewDataset", "get_data_loader", "parse_dataset", "reader_class", *READER_CLASSES]


@functools.lru_cache(maxsize=None)
def _combine(base: type) -> type:
    """``class Name(base, MASt3RBaseStereoViewDataset)``, once per reader class (aliases share it)."""
    if issubclass(base, MASt3RBaseStereoViewDataset):
        return base
    cls = type(base.__name__, (base, MASt3RBaseStereoViewDataset), {
        "__module__": __name__,
        "__qualname__": base.__name__,
        "__doc__": f"MASt3R version of :class:`{base.__module__}.{base.__qualname__}` (correspondences and "
                   "MASt3R augmentations from MASt3RBaseStereoViewDataset).",
    })
    return cls


def reader_class(name: str) -> type:
    """The MASt3R class for reader ``name`` (e.g. 'Co3d'); AttributeError for an unknown name, the reader
    module's ImportError when it is missing or broken."""
    return _combine(_dust3r_reader_class(name))


register_namespace("mast3r", reader_class)


def __getattr__(name: str) -> Any:
    if name in READER_CLASSES:
        return reader_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(READER_CLASSES))


def parse_dataset(text: str, classes: Optional[Mapping[str, Any]] = None):
    """Build a dataset string (``"1000 @ Co3d(split='train', ...) + ..."``) with the MASt3R classes
    (``classes`` overrides / extends the name table, e.g. with stand-ins)."""
    return _parse_dataset(text, namespace="mast3r", classes=classes)
