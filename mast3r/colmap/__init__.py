"""MASt3R-SfM mapping of large image sets with pycolmap (no ``colmap`` / ``glomap`` binary needed).

* :mod:`.match_cache`: streamed, resumable matching of many pairs into an on-disk, content-addressed cache;
* :mod:`.database`: the COLMAP database (cameras, images, keypoints, matches; two-view geometries by pycolmap's
  geometric verification);
* :mod:`.mapping`: ``pycolmap.global_mapping`` (GLOMAP) / ``pycolmap.incremental_mapping`` and the result per view;
* :mod:`.pipeline`: all of it in one call, :func:`run_colmap_mapping`.

pycolmap is imported only when a database is written or a mapper runs.
"""
from .database import DatabaseIndex, verify_database, write_colmap_database
from .mapping import MAPPERS, MappedScene, MappingError, mapped_scene, run_mapper
from .match_cache import MatchCache, PairMatches, compute_matches, unique_pairs
from .pipeline import MappingOptions, MappingResult, run_colmap_mapping

__all__ = ["MatchCache", "PairMatches", "compute_matches", "unique_pairs", "DatabaseIndex", "write_colmap_database",
           "verify_database", "MAPPERS", "MappedScene", "MappingError", "mapped_scene", "run_mapper",
           "MappingOptions", "MappingResult", "run_colmap_mapping"]
