"""Aachen-Day-Night (v1.1) in the layout of the original's preparation instructions::

    root/images/{db,query,sequences}/...           images
    root/mapping/colmap/reconstruction/             COLMAP model of the map
    root/kapture/query/                             kapture folder of the queries (intrinsics)
    root/pairsfile/query/<pairsfile>.txt            retrieval pairs (query, map, score)
"""
from __future__ import annotations

import os
from typing import Optional

from .base_colmap import BaseVislocColmapDataset
from .utils import pairsfile_path

__all__ = ["VislocAachenDayNight"]

SUBSCENES = (None, "", "day", "night", "all")


class VislocAachenDayNight(BaseVislocColmapDataset):
    """Aachen queries (``subscene`` 'day', 'night', or 'all' / '' / None for both) against the COLMAP map."""

    def __init__(self, root: str, subscene: Optional[str], pairsfile: str, topk: int = 1, cache_sfm: bool = False):
        if subscene not in SUBSCENES:
            raise ValueError(f"subscene must be one of {SUBSCENES}, got {subscene!r}")
        self.subscene = subscene
        super().__init__(image_path=os.path.join(root, "images"),
                         map_path=os.path.join(root, "mapping", "colmap", "reconstruction"),
                         query_path=os.path.join(root, "kapture", "query"),
                         pairsfile_path=pairsfile_path(root, pairsfile, "pairsfile"),
                         topk=topk, cache_sfm=cache_sfm)
        self.scenes = [name for name in self.scenes if name in self.pairs]
        if subscene in ("day", "night"):
            self.scenes = [name for name in self.scenes if subscene in name]
