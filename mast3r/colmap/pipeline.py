"""MASt3R-SfM for large image sets: pairs -> streamed matches -> COLMAP database -> pycolmap mapper -> scene.

::

    views, pairs ──compute_matches──> MatchCache (disk, resumable)
                 ──write_colmap_database──> database.db ──verify_database──> two-view geometries
                 ──run_mapper('global' | 'incremental')──> pycolmap.Reconstruction
                 ──mapped_scene──> MappedScene

Memory grows with the number of images and matches, never with the number of dense pairwise predictions
(:func:`mast3r.colmap.match_cache.compute_matches` keeps ``batch_size`` pairs of them at a time). Everything the
mapper wrote (database, models) stays in ``work_dir``.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from .database import CAMERA_MODELS, DatabaseIndex, quiet_colmap_log, verify_database, write_colmap_database
from .mapping import MAPPERS, MappedScene, MappingError, mapped_scene, run_mapper
from .match_cache import MatchCache, compute_matches, unique_pairs

logger = logging.getLogger(__name__)

__all__ = ["MappingOptions", "MappingResult", "run_colmap_mapping"]


@dataclass
class MappingOptions:
    """Options of :func:`run_colmap_mapping`.

    mapper: ``'global'`` (GLOMAP) or ``'incremental'``; subsample / pixel_tol: matcher seed grid and tolerance;
    conf_thr: matches under this descriptor confidence are dropped (MASt3R's is > 1; 1.001 is the original's
    default); camera_model: COLMAP camera model of the database; shared_intrinsics: one camera for every image;
    min_track_length: keypoints whose track spans fewer images are dropped (2 keeps all); min_matches: fewer
    matches (or verified inliers) and a pair is ignored; max_error: RANSAC threshold (pixels) of the geometric
    verification; batch_size: pairs per forward pass; seed: random seed of the mapper; tracks_per_view: tracks per
    image the global mapper's positioning uses (see :func:`mast3r.colmap.mapping.run_mapper`).
    """
    mapper: str = "global"
    subsample: int = 8
    pixel_tol: float = 0.0
    conf_thr: float = 1.001
    camera_model: str = "SIMPLE_PINHOLE"
    shared_intrinsics: bool = False
    min_track_length: int = 2
    min_matches: int = 15
    max_error: float = 4.0
    batch_size: int = 4
    seed: int = 0
    tracks_per_view: int = 1000

    def __post_init__(self) -> None:
        if self.mapper not in MAPPERS:
            raise ValueError(f"mapper must be one of {MAPPERS}, got {self.mapper!r}")
        if self.camera_model not in CAMERA_MODELS:
            raise ValueError(f"camera_model must be one of {CAMERA_MODELS}, got {self.camera_model!r}")
        for name, low in (("subsample", 1), ("min_track_length", 2), ("min_matches", 1), ("batch_size", 1),
                          ("tracks_per_view", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("pixel_tol", "conf_thr", "max_error"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if self.pixel_tol < 0 or self.max_error <= 0:
            raise ValueError(f"pixel_tol must be >= 0 and max_error > 0, got {self.pixel_tol}, {self.max_error}")


@dataclass
class MappingResult:
    """What :func:`run_colmap_mapping` produced: the scene, the database index, matching statistics, folders."""
    scene: MappedScene
    index: DatabaseIndex
    match_stats: Dict[str, int]
    verified_pairs: int
    model_dir: str


def run_colmap_mapping(model: Any, views: Sequence[Dict[str, Any]], names: Sequence[str], pairs: Sequence[Any],
                       work_dir: Any, cache_dir: Optional[Any] = None, image_dir: Optional[Any] = None,
                       device: Any = "cpu", options: Optional[MappingOptions] = None,
                       known_K: Optional[Mapping[int, np.ndarray]] = None, verbose: bool = True,
                       progress=None) -> MappingResult:
    """Map ``views`` with MASt3R matches and a pycolmap mapper.

    Args:
        model: MASt3R model (or the synthetic oracle).
        views: ``load_images`` views.
        names: unique image names (paths relative to ``image_dir``, used in the database and the model).
        pairs: image pairs, ``(i, j)`` or ``(view_i, view_j)`` (any scene graph, e.g. retrieval's).
        work_dir: the database ``database.db`` and the mapper's models ``sparse/<k>`` go here (both replaced when a
            run is repeated in the same folder: the matches, the costly part, stay in the cache).
        cache_dir: persistent match cache (resumable across runs); default ``work_dir/match_cache``.
        image_dir: folder of the image files (point colours); default ``work_dir``.
        device: torch device for the model and the matcher.
        options: :class:`MappingOptions`.
        known_K: ``{view index: K (3, 3) original pixels}`` priors.
        verbose: progress bars; progress: optional ``callable(fraction, desc=...)``.

    Raises:
        ValueError: bad inputs (no pairs, names...); MappingError: the mapper registered nothing.
    """
    from mast3r.cloud_opt.forward_cache import image_fingerprint

    opts = options or MappingOptions()
    report = progress or (lambda *a, **k: None)
    if len(views) < 2:
        raise ValueError(f"mapping needs at least 2 images, got {len(views)}")
    pairs = unique_pairs(pairs, len(views))
    if not pairs:
        raise ValueError("no image pairs to match")
    work_dir = os.path.abspath(os.fspath(work_dir))
    os.makedirs(work_dir, exist_ok=True)
    quiet_colmap_log()  # COLMAP's INFO log is one line per step; its warnings stay
    cache = MatchCache.for_model(cache_dir or os.path.join(work_dir, "match_cache"), model, opts.subsample,
                                 opts.pixel_tol)
    fps = [image_fingerprint(v) for v in views]
    report(0.05, desc=f"matching {len(pairs)} pairs")
    stats = compute_matches(model, views, pairs, cache, device, opts.batch_size, verbose, fps,
                            progress=lambda f, desc="": report(0.05 + 0.6 * f, desc=desc))
    report(0.65, desc="COLMAP database")
    db_path, model_dir = os.path.join(work_dir, "database.db"), os.path.join(work_dir, "sparse")
    for stale in (db_path, db_path + "-wal", db_path + "-shm"):  # derived from the cache: rebuilt every run
        if os.path.isfile(stale):
            logger.info("replacing %s from an earlier run", stale)
            os.remove(stale)
    shutil.rmtree(model_dir, ignore_errors=True)
    index = write_colmap_database(db_path, views, names, cache, pairs, fps,
                                  opts.conf_thr, opts.camera_model, opts.shared_intrinsics, opts.min_track_length,
                                  opts.min_matches, known_K)
    if index.n_pairs == 0:
        raise MappingError(f"no pair has {opts.min_matches} matches above confidence {opts.conf_thr}: nothing to map")
    verified = verify_database(index.path, opts.max_error, opts.min_matches)
    logger.info("geometric verification: %d of %d pairs verified", verified, index.n_pairs)
    if verified == 0:
        raise MappingError("no image pair passed the geometric verification: nothing to map")
    report(0.75, desc=f"{opts.mapper} mapping")
    rec = run_mapper(index.path, image_dir or work_dir, model_dir, opts.mapper, opts.min_matches, seed=opts.seed,
                     tracks_per_view=opts.tracks_per_view)
    scene = mapped_scene(rec, index, views)
    if scene.n_registered < len(views):
        missing = [names[k] for k in np.flatnonzero(~scene.registered)]
        logger.warning("%d of %d images were not registered: %s", len(missing), len(views),
                       ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    report(0.95, desc="mapping done")
    return MappingResult(scene, index, stats, verified, model_dir)
