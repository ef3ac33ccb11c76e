"""Run pycolmap's mappers on a database of MASt3R matches and bring the result back to the views.

* :func:`run_mapper`: ``'global'`` (``pycolmap.global_mapping``, i.e. GLOMAP: rotation averaging, global
  positioning, bundle adjustment) or ``'incremental'`` (``pycolmap.incremental_mapping``); both in process, no
  ``colmap`` / ``glomap`` binary. Returns the largest reconstruction.
* :class:`MappedScene`: the registered cameras (cam2world, network-pixel intrinsics) and the triangulated points,
  per view; :meth:`MappedScene.to_scene_data` gives the :class:`dust3r.export.SceneData` every exporter takes
  (each triangulated point is placed at the network pixel of its observation in the image it is best seen in).

The original ran the ``glomap`` binary in a subprocess (``glomap_run_mapper``) and ``pycolmap.incremental_mapping``
(``pycolmap_run_mapper``); those names remain, running pycolmap (the ``glomap_bin`` argument is ignored), with the
original's kapture helpers (``run_mast3r_matching``, ``kapture_import_image_folder_or_list``...) from
:mod:`mast3r.colmap.compat`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .compat import (kapture_import_image_folder_or_list, remove_duplicates, run_mast3r_matching,
                     scene_prepare_images)
from .database import DatabaseIndex, colmap_to_network_intrinsics, quiet_colmap_log, require_pycolmap

logger = logging.getLogger(__name__)

__all__ = ["MAPPERS", "MappingError", "run_mapper", "MappedScene", "mapped_scene", "pycolmap_run_mapper",
           "glomap_run_mapper", "pycolmap_run_triangulator",
           "scene_prepare_images", "remove_duplicates", "run_mast3r_matching", "kapture_import_image_folder_or_list"]

MAPPERS = ("global", "incremental")


class MappingError(RuntimeError):
    """The mapper registered no (or too few) images."""


def run_mapper(db_path: Any, image_dir: Any, out_dir: Any, mapper: str = "global", min_num_matches: int = 15,
               num_threads: int = -1, seed: int = 0, verbose: bool = False, tracks_per_view: int = 1000):
    """Run a pycolmap mapper on ``db_path``; returns the reconstruction with the most registered images.

    Args:
        db_path: COLMAP database with keypoints, matches and two-view geometries.
        image_dir: folder the database's image names are relative to (colours of the 3D points are read there;
            missing images only cost the colours).
        out_dir: where pycolmap writes its models (``out_dir/0``, ``out_dir/1``...).
        mapper: ``'global'`` (GLOMAP) or ``'incremental'``.
        min_num_matches: pairs with fewer verified matches are ignored.
        num_threads: -1 for all cores.
        seed: random seed of the mapper (deterministic runs).
        verbose: keep COLMAP's own INFO log.
        tracks_per_view: global mapper: the global positioning uses tracks until each image has this many (MASt3R's
            dense matches give thousands per image; all are triangulated afterwards). 10-20x faster on the
            synthetic scenes, same final points and accuracy; <= 0 uses every track.

    Raises:
        ValueError: unknown mapper; MappingError: nothing was reconstructed.
    """
    pycolmap = require_pycolmap()
    if mapper not in MAPPERS:
        raise ValueError(f"mapper must be one of {MAPPERS}, got {mapper!r}")
    if not verbose:
        quiet_colmap_log()
    db_path, image_dir, out_dir = (os.fspath(p) for p in (db_path, image_dir, out_dir))
    os.makedirs(out_dir, exist_ok=True)
    if mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.min_num_matches = int(min_num_matches)
        opts.num_threads = int(num_threads)
        opts.random_seed = int(seed)
        opts.mapper.num_threads = int(num_threads)
        opts.mapper.random_seed = int(seed)
        opts.mapper.global_positioning.use_gpu = False
        opts.mapper.bundle_adjustment.ceres.use_gpu = False
        if tracks_per_view > 0:
            opts.mapper.track_required_tracks_per_view = int(tracks_per_view)
        recs = pycolmap.global_mapping(db_path, image_dir, out_dir, opts)
    else:
        opts = pycolmap.IncrementalPipelineOptions()
        opts.min_num_matches = int(min_num_matches)
        opts.num_threads = int(num_threads)
        opts.random_seed = int(seed)
        opts.multiple_models = False
        recs = pycolmap.incremental_mapping(db_path, image_dir, out_dir, opts)
    if not recs:
        raise MappingError(f"the {mapper} mapper reconstructed nothing from {db_path} (too few verified matches?)")
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    logger.info("%s mapping: %d model(s), the largest with %d registered images and %d points", mapper, len(recs),
                best.num_reg_images(), best.num_points3D())
    return best


# --------------------------------------------------------------------------------------------- result
@dataclass
class MappedScene:
    """A mapper's result per view (N views; only ``registered`` ones have a pose).

    Attributes:
        registered: (N,) bool.
        cam2world: (N, 4, 4) float64, OpenCV axes (identity where not registered).
        K: (N, 3, 3) float64 intrinsics in network pixels (OpenCV convention).
        points: (M, 3) float64 world points; ``colors`` (M, 3) uint8.
        point_obs: per view, ``(flat network pixel (P,), point index (P,))`` of its observations of ``points``.
        reconstruction: the ``pycolmap.Reconstruction`` (COLMAP pixels, original images).
    """
    registered: np.ndarray
    cam2world: np.ndarray
    K: np.ndarray
    points: np.ndarray
    colors: np.ndarray
    point_obs: List[Any] = field(repr=False)
    reconstruction: Any = field(default=None, repr=False)

    @property
    def n_registered(self) -> int:
        return int(self.registered.sum())

    def to_scene_data(self, views: Sequence[Dict[str, Any]], names: Optional[Sequence[str]] = None):
        """:class:`dust3r.export.SceneData` of the registered views: each 3D point sits at the pixel of its first
        observation, every other pixel is masked out."""
        from dust3r.export import SceneData
        from dust3r.utils.image import rgb
        from dust3r.utils.views import view_meta

        keep = np.flatnonzero(self.registered)
        if not len(keep):
            raise MappingError("no registered image to export")
        taken = np.zeros(len(self.points), dtype=bool)
        images, pts3d, masks = [], [], []
        for k in keep:
            H, W = (int(v) for v in np.asarray(views[k]["true_shape"]).reshape(-1)[:2])
            pix, pid = self.point_obs[k]
            pid, once = np.unique(pid, return_index=True)  # a track may see an image twice: keep one pixel
            pix = pix[once]
            first = ~taken[pid]
            taken[pid] = True
            pts = np.full((H * W, 3), np.nan, dtype=np.float32)
            pts[pix[first]] = self.points[pid[first]]
            mask = np.zeros(H * W, dtype=bool)
            mask[pix[first]] = True
            images.append(np.asarray(rgb(views[k]["img"][0]), dtype=np.float32).clip(0, 1))
            pts3d.append(pts.reshape(H, W, 3))
            masks.append(mask.reshape(H, W))
        return SceneData(images=images, K=self.K[keep], cam2world=self.cam2world[keep], pts3d=pts3d, masks=masks,
                         views_meta=[view_meta(views[k]) for k in keep],
                         names=None if names is None else [names[k] for k in keep])


def mapped_scene(reconstruction: Any, index: DatabaseIndex, views: Sequence[Dict[str, Any]]) -> MappedScene:
    """Read a ``pycolmap.Reconstruction`` back into view order (poses, network intrinsics, points per pixel)."""
    n = len(views)
    registered = np.zeros(n, dtype=bool)
    cam2world = np.tile(np.eye(4), (n, 1, 1))
    K = np.tile(np.eye(3), (n, 1, 1))
    by_id = index.image_index()
    point_ids = np.array(sorted(reconstruction.points3D.keys()), dtype=np.int64)
    row_of = {int(pid): r for r, pid in enumerate(point_ids)}
    points = np.array([reconstruction.points3D[int(p)].xyz for p in point_ids], dtype=np.float64).reshape(-1, 3)
    colors = np.array([reconstruction.points3D[int(p)].color for p in point_ids], dtype=np.uint8).reshape(-1, 3)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    point_obs: List[Any] = [empty] * n
    for image_id, image in reconstruction.images.items():
        k = by_id.get(int(image_id))
        if k is None or not image.has_pose:
            continue
        registered[k] = True
        world2cam = np.eye(4)
        world2cam[:3] = image.cam_from_world().matrix()
        cam2world[k] = np.linalg.inv(world2cam)
        K[k] = colmap_to_network_intrinsics(reconstruction.cameras[image.camera_id].calibration_matrix(), views[k])
        obs = [(idx, row_of[int(p2d.point3D_id)]) for idx, p2d in enumerate(image.points2D) if p2d.has_point3D()]
        if obs:
            kp, rows = np.array(obs, dtype=np.int64).T
            point_obs[k] = (index.keypoints[k][kp], rows)
    return MappedScene(registered, cam2world, K, points, colors, point_obs, reconstruction)


# --------------------------------------------------------------------------------------------- original names
def pycolmap_run_mapper(colmap_db_path: Any, recon_path: Any, image_root_path: Any):
    """The original's name: incremental mapping of ``colmap_db_path`` into ``recon_path`` (pycolmap)."""
    return run_mapper(colmap_db_path, image_root_path, recon_path, mapper="incremental")


def glomap_run_mapper(glomap_bin: Any, colmap_db_path: Any, recon_path: Any, image_root_path: Any):
    """The original's name: global (GLOMAP) mapping, now through ``pycolmap.global_mapping`` in process
    (``glomap_bin`` is ignored: no binary is needed)."""
    del glomap_bin
    return run_mapper(colmap_db_path, image_root_path, recon_path, mapper="global")


def pycolmap_run_triangulator(colmap_db_path: Any, prior_recon_path: Any, recon_path: Any, image_root_path: Any):
    """The original's name: triangulate the database's matches with the known poses of ``prior_recon_path``."""
    pycolmap = require_pycolmap()
    reconstruction = pycolmap.Reconstruction(os.fspath(prior_recon_path))
    os.makedirs(os.fspath(recon_path), exist_ok=True)
    return pycolmap.triangulate_points(reconstruction=reconstruction, database_path=os.fspath(colmap_db_path),
                                       image_path=os.fspath(image_root_path), output_path=os.fspath(recon_path),
                                       refine_intrinsics=False)
