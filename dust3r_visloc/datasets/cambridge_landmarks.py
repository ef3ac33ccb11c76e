"""Cambridge Landmarks in the layout of the original's preparation instructions::

    root/<scene>/seq*/frame*.png                       images
    root/mapping/<scene>/colmap/reconstruction/        COLMAP model of the training images
    root/kapture/<scene>/query/                        kapture folder of the test images (ground-truth poses)
    root/<scene>/pairsfile/query/<pairsfile>.txt       retrieval pairs (query, map, score)
"""
from __future__ import annotations

import os

from .base_colmap import BaseVislocColmapDataset
from .utils import pairsfile_path

__all__ = ["VislocCambridgeLandmarks"]

SUBSCENES = ("ShopFacade", "GreatCourt", "KingsCollege", "OldHospital", "StMarysChurch")


class VislocCambridgeLandmarks(BaseVislocColmapDataset):
    """One Cambridge Landmarks scene (``subscene``, e.g. 'ShopFacade')."""

    def __init__(self, root: str, subscene: str, pairsfile: str, topk: int = 1, cache_sfm: bool = False):
        if not isinstance(subscene, str) or not subscene:
            raise ValueError(f"subscene must name a scene folder (e.g. one of {SUBSCENES}), got {subscene!r}")
        self.subscene = subscene
        super().__init__(image_path=os.path.join(root, subscene),
                         map_path=os.path.join(root, "mapping", subscene, "colmap", "reconstruction"),
                         query_path=os.path.join(root, "kapture", subscene, "query"),
                         pairsfile_path=pairsfile_path(os.path.join(root, subscene), pairsfile, "pairsfile"),
                         topk=topk, cache_sfm=cache_sfm)
