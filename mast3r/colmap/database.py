"""Write MASt3R matches into a COLMAP database (pycolmap 4.x ``pycolmap.Database``), for COLMAP's mappers.

:func:`write_colmap_database` streams the matches of a :class:`~mast3r.colmap.match_cache.MatchCache` into a new
database file, in three passes over the pair files (only one pair is in memory at a time, plus the per-image
keypoint tables):

1. the keypoints of each image: the distinct network pixels that take part in a confident match
   (``conf >= conf_thr``), and the per-image focal estimates;
2. optionally (``min_track_length > 2``) the tracks: keypoints linked by matches form connected components, and
   keypoints in components seen by fewer than ``min_track_length`` images are dropped (short tracks carry little
   geometry and most of the outliers);
3. cameras, images, keypoints and the matches of every pair with at least ``min_matches`` of them.

Coordinates: keypoints are written in ORIGINAL-image pixels in COLMAP's convention (top-left pixel centre at
(0.5, 0.5)), mapped from network pixels with the view's resize/crop record
(:func:`dust3r.utils.image_coords.pixels_to_original`); cameras likewise (principal point at the image centre,
focal from MASt3R's pointmaps, flagged as a prior focal length). Two-view geometries are then estimated by
pycolmap's geometric verification (:func:`verify_database`), as COLMAP's own pipeline does.

The original's helpers (``get_im_matches``, ``export_images``, ``export_matches``...) drove a kapture
``COLMAPDatabase`` with the matches of a whole scene in memory; they live in :mod:`mast3r.colmap.compat` and are
importable from here under their names.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dust3r.export.colmap import COLMAP_PIXEL_OFFSET
from dust3r.utils.views import GEOMETRY_KEYS

from .compat import (_camera_params, convert_im_matches_pairs, export_images, export_matches, get_im_matches,
                     get_im_matches_from_cache)
from .match_cache import MatchCache, PairMatches, unique_pairs

logger = logging.getLogger(__name__)

__all__ = ["CAMERA_MODELS", "DatabaseIndex", "write_colmap_database", "verify_database", "network_to_colmap_pixels",
           "colmap_to_network_intrinsics", "network_to_colmap_intrinsics", "require_pycolmap", "quiet_colmap_log",
           "convert_im_matches_pairs", "get_im_matches", "get_im_matches_from_cache", "export_images", "export_matches"]

#: camera models this writer supports: name -> params from (fx, fy, cx, cy)
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "OPENCV")


def require_pycolmap():
    """``import pycolmap`` (>= 3.12 with ``Database.open`` and ``global_mapping``), or an actionable error."""
    try:
        import pycolmap
    except ImportError:
        raise ImportError("COLMAP mapping needs pycolmap (pip install 'pycolmap>=3.12')") from None
    if not hasattr(pycolmap.Database, "open") or not hasattr(pycolmap, "global_mapping"):
        raise ImportError(f"pycolmap {getattr(pycolmap, '__version__', '?')} is too old for COLMAP mapping: it "
                          "needs Database.open and global_mapping (pip install -U 'pycolmap>=3.12')")
    return pycolmap


def quiet_colmap_log() -> None:
    """COLMAP logs every step at INFO through glog (process-wide); keep its warnings and errors only."""
    pycolmap = require_pycolmap()
    try:
        if pycolmap.logging.minloglevel < 1:
            pycolmap.logging.minloglevel = 1
    except AttributeError:  # pragma: no cover - other pycolmap builds
        pass


# --------------------------------------------------------------------------------------------- coordinates
def _has_geometry(view: Mapping[str, Any]) -> bool:
    return all(view.get(k) is not None for k in GEOMETRY_KEYS)


def _network_size(view: Mapping[str, Any]) -> Tuple[int, int]:
    """``(H, W)`` of a view's network image."""
    return tuple(int(v) for v in np.asarray(view["true_shape"]).reshape(-1)[:2])


def _original_size(view: Mapping[str, Any]) -> Tuple[int, int]:
    """``(H, W)`` of a view's original image (network size without the resize record)."""
    if _has_geometry(view):
        return tuple(int(v) for v in np.asarray(view["orig_shape"]).reshape(-1)[:2])
    return _network_size(view)


def network_to_colmap_pixels(xy: np.ndarray, view: Mapping[str, Any]) -> np.ndarray:
    """(K, 2) network pixels (x, y) -> (K, 2) float32 original-image pixels in COLMAP's convention."""
    from dust3r.utils.image_coords import pixels_to_original

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if _has_geometry(view):
        xy = pixels_to_original(xy, view)
    return (xy + COLMAP_PIXEL_OFFSET).astype(np.float32)


def network_to_colmap_intrinsics(K: np.ndarray, view: Mapping[str, Any]) -> np.ndarray:
    """(3, 3) network intrinsics (OpenCV) -> (3, 3) original-image intrinsics in COLMAP's pixel convention."""
    from dust3r.utils.geometry import opencv_to_colmap_intrinsics
    from dust3r.utils.image_coords import intrinsics_to_original

    K = np.asarray(K, dtype=np.float64)
    if _has_geometry(view):
        K = intrinsics_to_original(K, view)
    return opencv_to_colmap_intrinsics(K)


def colmap_to_network_intrinsics(K: np.ndarray, view: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`network_to_colmap_intrinsics`."""
    from dust3r.utils.geometry import colmap_to_opencv_intrinsics
    from dust3r.utils.image_coords import intrinsics_from_original

    K = colmap_to_opencv_intrinsics(np.asarray(K, dtype=np.float64))
    return intrinsics_from_original(K, view) if _has_geometry(view) else K


# --------------------------------------------------------------------------------------------- result
@dataclass
class DatabaseIndex:
    """What :func:`write_colmap_database` wrote, to map the mapper's output back to the views.

    Attributes:
        path: the database file.
        names: image names in the database, one per view.
        image_ids: COLMAP image id of each view.
        keypoints: per view, (P_i,) int64 sorted flat network-pixel indices (``y * W + x``) of its keypoints, in
            database order (keypoint k of the image is pixel ``keypoints[i][k]``).
        n_pairs: image pairs written with matches.
        n_matches: matches written in all.
    """
    path: str
    names: List[str]
    image_ids: List[int]
    keypoints: List[np.ndarray]
    n_pairs: int
    n_matches: int

    def image_index(self) -> Dict[int, int]:
        """``{COLMAP image id: view index}``."""
        return {int(iid): k for k, iid in enumerate(self.image_ids)}


# --------------------------------------------------------------------------------------------- passes
def _flat(xy: np.ndarray, W: int) -> np.ndarray:
    return xy[:, 1].astype(np.int64) * W + xy[:, 0].astype(np.int64)


def _iter_pairs(cache: MatchCache, fps: Sequence[str], pairs: Sequence[Tuple[int, int]], conf_thr: float):
    for i, j in pairs:
        m = cache.load(fps[i], fps[j])
        if m is None:
            raise ValueError(f"no matches in the cache for pair ({i}, {j}): run compute_matches first")
        yield i, j, m.confident(conf_thr)


def _collect_keypoints(cache, fps, pairs, widths, conf_thr) -> Tuple[List[np.ndarray], List[List[float]]]:
    """Pass 1: per image the sorted distinct flat pixels in confident matches, and its focal estimates."""
    n = len(fps)
    parts: List[List[np.ndarray]] = [[] for _ in range(n)]
    focals: List[List[float]] = [[] for _ in range(n)]
    for i, j, m in _iter_pairs(cache, fps, pairs, conf_thr):
        for k, xy, f in ((i, m.xy_i, m.focal_i), (j, m.xy_j, m.focal_j)):
            if len(xy):
                parts[k].append(np.unique(_flat(xy, widths[k])))
            if np.isfinite(f) and f > 0:
                focals[k].append(float(f))
        for k in (i, j):  # keep the per-image list short: merge as we go
            if len(parts[k]) > 16:
                parts[k] = [np.unique(np.concatenate(parts[k]))]
    keypoints = [np.unique(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
    return keypoints, focals


def _pair_keypoint_ids(m: PairMatches, i: int, j: int, keypoints: List[np.ndarray], widths) -> np.ndarray:
    """(K, 2) keypoint indices of a pair's matches (rows whose keypoints were dropped removed, duplicates too)."""
    out = []
    for k, xy in ((i, m.xy_i), (j, m.xy_j)):
        flat = _flat(xy, widths[k])
        pos = np.searchsorted(keypoints[k], flat).clip(max=max(len(keypoints[k]) - 1, 0))
        found = keypoints[k][pos] == flat if len(keypoints[k]) else np.zeros(len(flat), bool)
        out.append(np.where(found, pos, -1))
    ids = np.stack(out, axis=1)
    ids = ids[(ids >= 0).all(axis=1)]
    return np.unique(ids, axis=0) if len(ids) else ids.reshape(0, 2)


def _filter_tracks(cache, fps, pairs, keypoints, widths, conf_thr, min_track_length) -> List[np.ndarray]:
    """Pass 2: drop the keypoints whose track (connected component of matches) spans < min_track_length images."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.concatenate([[0], np.cumsum([len(k) for k in keypoints])])
    rows, cols = [], []
    for i, j, m in _iter_pairs(cache, fps, pairs, conf_thr):
        ids = _pair_keypoint_ids(m, i, j, keypoints, widths)
        rows.append(ids[:, 0] + offsets[i])
        cols.append(ids[:, 1] + offsets[j])
    total = int(offsets[-1])
    if total == 0:
        return keypoints
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(total, total))
    _, label = connected_components(graph, directed=False)
    image_of = np.repeat(np.arange(len(keypoints)), np.diff(offsets))
    # number of distinct images per component
    distinct = np.unique(np.stack([label, image_of], axis=1), axis=0)
    n_images = np.bincount(distinct[:, 0], minlength=label.max() + 1)
    keep = n_images[label] >= min_track_length
    kept = [kp[keep[offsets[k]:offsets[k + 1]]] for k, kp in enumerate(keypoints)]
    logger.info("tracks: kept %d of %d keypoints in tracks of >= %d images", int(keep.sum()), total,
                min_track_length)
    return kept


def _intrinsics(views, focals, known_K, shared: bool) -> List[np.ndarray]:
    """Network-pixel K of each view: known (original pixels, converted), else focal from the pointmaps."""
    from dust3r.utils.image_coords import intrinsics_from_original

    all_votes = [f for votes in focals for f in votes]
    fallback = float(np.median(all_votes)) if all_votes else None
    Ks = []
    for k, view in enumerate(views):
        H, W = _network_size(view)
        if known_K is not None and k in known_K:
            K = np.asarray(known_K[k], dtype=np.float64)
            Ks.append(intrinsics_from_original(K, view) if _has_geometry(view) else K)
            continue
        f = fallback if shared or not focals[k] else float(np.median(focals[k]))
        if f is None:
            f = 1.2 * max(H, W)  # COLMAP's default guess
        Ks.append(np.array([[f, 0, (W - 1) / 2.0], [0, f, (H - 1) / 2.0], [0, 0, 1.0]]))
    return Ks


# --------------------------------------------------------------------------------------------- writer
def write_colmap_database(db_path: Any, views: Sequence[Dict[str, Any]], names: Sequence[str], cache: MatchCache,
                          pairs: Sequence[Any], fingerprints: Sequence[str], conf_thr: float = 1.001,
                          camera_model: str = "SIMPLE_PINHOLE", shared_intrinsics: bool = False,
                          min_track_length: int = 2, min_matches: int = 15,
                          known_K: Optional[Mapping[int, np.ndarray]] = None) -> DatabaseIndex:
    """Create the COLMAP database ``db_path`` from cached MASt3R matches (see the module docstring).

    Args:
        db_path: new database file (an existing file is refused: COLMAP would append to it).
        views: the ``load_images`` views (network size ``true_shape``, resize record for original pixels).
        names: one unique image name per view (relative paths under the mapper's ``image_path``).
        cache: the match cache holding every pair.
        pairs: the image pairs (see :func:`mast3r.colmap.match_cache.unique_pairs`).
        fingerprints: :func:`image_fingerprint` of each view (the cache keys).
        conf_thr: matches under this confidence are dropped.
        camera_model: one of :data:`CAMERA_MODELS`.
        shared_intrinsics: one camera for all images (they must share one original size).
        min_track_length: keep keypoints whose track spans at least this many images (2 keeps all).
        min_matches: pairs with fewer matches are not written.
        known_K: ``{view index: K (3, 3) in original pixels, OpenCV convention}`` (prior focal and centre).

    Returns:
        :class:`DatabaseIndex`.

    Raises:
        ValueError: bad arguments, an existing ``db_path``, a pair missing from the cache.
    """
    pycolmap = require_pycolmap()
    db_path = os.path.abspath(os.fspath(db_path))
    if os.path.exists(db_path):
        raise ValueError(f"COLMAP database {db_path!r} already exists; remove it or choose another path")
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {CAMERA_MODELS}, got {camera_model!r}")
    names = [str(n) for n in names]
    if len(names) != len(views) or len(set(names)) != len(names):
        raise ValueError(f"names must be {len(views)} unique image names, got {len(names)} ({len(set(names))} unique)")
    if len(fingerprints) != len(views):
        raise ValueError(f"{len(fingerprints)} fingerprints for {len(views)} views")
    if int(min_track_length) < 2:
        raise ValueError(f"min_track_length must be >= 2, got {min_track_length}")
    sizes = [_original_size(v) for v in views]
    if shared_intrinsics and len(set(sizes)) > 1:
        raise ValueError(f"shared_intrinsics needs images of one size, got {sorted(set(sizes))} (H, W)")
    pairs = unique_pairs(pairs, len(views))
    widths = [_network_size(v)[1] for v in views]

    keypoints, focals = _collect_keypoints(cache, fingerprints, pairs, widths, conf_thr)
    if min_track_length > 2:
        keypoints = _filter_tracks(cache, fingerprints, pairs, keypoints, widths, conf_thr, int(min_track_length))
    Ks = _intrinsics(views, focals, known_K, shared_intrinsics)

    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    n_pairs = n_matches = 0
    with pycolmap.Database.open(db_path) as db:
        with pycolmap.DatabaseTransaction(db):
            camera_ids: List[int] = []
            for k, view in enumerate(views):
                if shared_intrinsics and camera_ids:
                    camera_ids.append(camera_ids[0])
                    continue
                H0, W0 = sizes[k]
                K = network_to_colmap_intrinsics(Ks[k], view)
                cam = pycolmap.Camera(model=camera_model, width=W0, height=H0, params=_camera_params(camera_model, K),
                                      has_prior_focal_length=True)
                camera_ids.append(int(db.write_camera(cam)))
            image_ids = []
            for k, view in enumerate(views):
                image_ids.append(int(db.write_image(pycolmap.Image(name=names[k], camera_id=camera_ids[k]))))
                W = widths[k]
                xy = np.stack([keypoints[k] % W, keypoints[k] // W], axis=1)
                db.write_keypoints(image_ids[-1], network_to_colmap_pixels(xy, view).reshape(-1, 2))
            for i, j, m in _iter_pairs(cache, fingerprints, pairs, conf_thr):
                ids = _pair_keypoint_ids(m, i, j, keypoints, widths)
                if len(ids) < min_matches:
                    continue
                db.write_matches(image_ids[i], image_ids[j], ids.astype(np.uint32))
                n_pairs += 1
                n_matches += len(ids)
    logger.info("COLMAP database %s: %d images, %d keypoints, %d pairs, %d matches", db_path, len(views),
                sum(len(k) for k in keypoints), n_pairs, n_matches)
    return DatabaseIndex(db_path, names, image_ids, keypoints, n_pairs, n_matches)


def verify_database(db_path: Any, max_error: float = 4.0, min_inliers: int = 15, num_threads: int = -1) -> int:
    """Estimate the two-view geometry of every matched pair (pycolmap geometric verification, RANSAC on the
    matches); returns the number of verified pairs.

    Args:
        db_path: the database.
        max_error: RANSAC inlier threshold in pixels (original images).
        min_inliers: pairs with fewer inliers are not verified.
        num_threads: -1 for all cores.
    """
    pycolmap = require_pycolmap()
    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.min_num_inliers = int(min_inliers)
    tvg.ransac.max_error = float(max_error)
    verifier = pycolmap.GeometricVerifierOptions()
    verifier.num_threads = int(num_threads)
    pycolmap.geometric_verification(os.fspath(db_path), verifier_options=verifier, two_view_geometry_options=tvg)
    with pycolmap.Database.open(os.fspath(db_path)) as db:
        return int(db.num_verified_image_pairs())
