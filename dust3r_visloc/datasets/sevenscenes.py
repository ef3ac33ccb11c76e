"""7-Scenes in the kapture layout of the original's preparation instructions::

    root/<scene>/mapping/   kapture folder of the training frames (poses, *.color.png, *.depth.reg depth maps)
    root/<scene>/query/     kapture folder of the test frames (ground-truth poses)
    root/<scene>/pairfiles/query/<pairsfile>.txt   retrieval pairs (query, map, score)

The depth maps registered to the colour camera (``depth.reg``, kapture's float32 raw format) give the map's 3D.
"""
from __future__ import annotations

import os

import numpy as np

from dust3r.utils.geometry import depthmap_to_absolute_camera_coordinates

from .base_dataset import BaseVislocDataset
from .base_kapture import BaseVislocKaptureDataset, KaptureRecords
from .utils import get_ordered_pairs_from_file, pairsfile_path

__all__ = ["VislocSevenScenes"]

SUBSCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")


class VislocSevenScenes(BaseVislocKaptureDataset, BaseVislocDataset):
    """One 7-Scenes scene (``subscene``, e.g. 'chess')."""

    def __init__(self, root: str, subscene: str, pairsfile: str, topk: int = 1):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.root, self.subscene, self.topk = root, subscene, int(topk)
        self.num_views = self.topk + 1
        self.query_records = KaptureRecords(os.path.join(root, subscene, "query"))
        self.map_records = KaptureRecords(os.path.join(root, subscene, "mapping"), require_trajectories=True)
        self.pairs = get_ordered_pairs_from_file(pairsfile_path(os.path.join(root, subscene), pairsfile))
        self.scenes = self.query_records.names()

    def map_pointmap(self, imgname: str, view: dict) -> np.ndarray:
        from kapture.io.records import depth_map_from_file

        W, H = view["rgb"].size
        path = self.map_records.record_path(imgname.replace("color.png", "depth.reg"))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"depth map not found: {path}")
        depth = depth_map_from_file(path, (W, H)).astype(np.float32)
        pts, valid = depthmap_to_absolute_camera_coordinates(depth, view["intrinsics"], view["cam_to_world"])
        pts = pts.astype(np.float32)
        pts[~valid] = np.nan
        return pts
