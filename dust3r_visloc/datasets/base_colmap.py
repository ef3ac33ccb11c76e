"""Base class of the datasets whose map is a COLMAP model and whose queries are a kapture folder
(Aachen-Day-Night, Cambridge Landmarks).

The COLMAP model (text or binary) is read with pycolmap; the map views carry the model's sparse 2D-3D
observations. Intrinsics are converted from the COLMAP to the OpenCV convention once, in
:func:`dust3r_visloc.datasets.base_kapture.camera_to_opencv` (the original converted the map's twice).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .base_dataset import BaseVislocDataset, attach_points, base_view, load_rgb
from .base_kapture import KaptureRecords, camera_to_opencv
from .utils import cam2world_from_qwxyz_t, get_ordered_pairs_from_file, require

logger = logging.getLogger(__name__)

__all__ = ["BaseVislocColmapDataset", "kapture_to_opencv_intrinsics", "K_from_colmap", "pose_from_qwxyz_txyz"]


def kapture_to_opencv_intrinsics(sensor) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float]]:
    """``(K, distortion, (w, h))`` of a sensor with ``sensor_params[0]`` the model name and ``camera_params``
    ``(w, h, *params)`` (the original's helper; K in the OpenCV convention)."""
    w, h, *params = sensor.camera_params
    K, dist = camera_to_opencv(sensor.sensor_params[0], params)
    return K, dist, (w, h)


def K_from_colmap(elems: Sequence[str]) -> Dict[str, Any]:
    """A ``cameras.txt`` line split after the camera id (``MODEL W H params...``) -> resolution, intrinsics
    (OpenCV convention), distortion."""
    K, dist = camera_to_opencv(elems[0], [float(v) for v in elems[3:]])
    return dict(resolution=(float(elems[1]), float(elems[2])), intrinsics=K, distortion=dist)


def pose_from_qwxyz_txyz(elems: Sequence[str]) -> np.ndarray:
    """cam2world (4, 4) of an ``images.txt`` pose ``QW QX QY QZ TX TY TZ`` (world-to-camera)."""
    values = [float(v) for v in elems]
    return cam2world_from_qwxyz_t(values[:4], values[4:7])


class BaseVislocColmapDataset(BaseVislocDataset):
    """Queries from a kapture folder, map images from a COLMAP model, pairs from a retrieval pairs file.

    Args:
        image_path: folder of the images (query and map names are relative to it).
        map_path: COLMAP model folder (``cameras``, ``images``, ``points3D`` as .txt or .bin).
        query_path: kapture folder of the queries (their poses, when present, are the ground truth).
        pairsfile_path: retrieval pairs (``query, map, score``).
        topk: map images per query.
        cache_sfm: accepted for compatibility; pycolmap reads the model fast enough that no pickle cache is
            written (the original's pickled cache would execute code on load).
    """

    def __init__(self, image_path: str, map_path: str, query_path: str, pairsfile_path: str, topk: int = 1,
                 cache_sfm: bool = False):
        super().__init__()
        pycolmap = require("pycolmap", "reading the COLMAP map model")

        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.num_views = self.topk + 1
        self.image_path = image_path
        self.cache_sfm = cache_sfm
        if not os.path.isdir(map_path):
            raise FileNotFoundError(f"COLMAP model folder not found: {map_path}")
        self.reconstruction = pycolmap.Reconstruction(map_path)
        self.map_index = {image.name: image_id for image_id, image in self.reconstruction.images.items()}
        self.query_records = KaptureRecords(query_path)
        self.pairs = get_ordered_pairs_from_file(pairsfile_path)
        self.scenes: List[str] = self.query_records.names()

    def __len__(self) -> int:
        return len(self.scenes)

    def _get_view_query(self, imgname: str) -> Dict[str, Any]:
        K, dist, _ = self.query_records.camera(imgname)
        rgb = load_rgb(os.path.join(self.image_path, imgname))
        return base_view(rgb, imgname, 0, K, dist, self.query_records.cam_to_world(imgname), self.maxdim,
                         self.patch_size)

    def map_observations(self, imgname: str) -> Tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixel positions (OpenCV convention) and (N, 3) world points of a map image's observations."""
        image = self.reconstruction.images[self.map_index[imgname]]
        obs = image.get_observation_points2D()
        pts2d = np.array([p.xy for p in obs], dtype=np.float64).reshape(-1, 2) - 0.5
        pts3d = np.array([self.reconstruction.points3D[p.point3D_id].xyz for p in obs], dtype=np.float64)
        return pts2d, pts3d.reshape(-1, 3)

    def _get_view_map(self, imgname: str, idx: int) -> Dict[str, Any]:
        if imgname not in self.map_index:
            raise KeyError(f"map image {imgname!r} of the pairs file is not in the COLMAP model")
        image = self.reconstruction.images[self.map_index[imgname]]
        camera = self.reconstruction.cameras[image.camera_id]
        K, dist = camera_to_opencv(camera.model.name, camera.params)
        world_to_cam = np.eye(4)
        world_to_cam[:3] = image.cam_from_world().matrix()
        rgb = load_rgb(os.path.join(self.image_path, imgname))
        view = base_view(rgb, imgname, idx, K, dist, np.linalg.inv(world_to_cam), self.maxdim, self.patch_size)
        return attach_points(view, *self.map_observations(imgname))

    def map_images(self, query_image: str) -> List[str]:
        """The ``topk`` best map images of a query (KeyError naming it when the pairs file lacks it)."""
        if query_image not in self.pairs:
            raise KeyError(f"query {query_image!r} has no pairs in the pairs file")
        return [name for name, _ in self.pairs[query_image][:self.topk]]

    def __getitem__(self, idx: int) -> List[Dict[str, Any]]:
        self._check_resolution()
        query_image = self.scenes[idx]
        views = [self._get_view_query(query_image)]
        for k, map_image in enumerate(self.map_images(query_image)):
            views.append(self._get_view_map(map_image, k + 1))
        return views
