"""Exports of a reconstruction: GLB, PLY, COLMAP, nerfstudio, cameras JSON, depth maps.

Every exporter consumes a :class:`SceneData` (a plain numpy snapshot; build it from an aligner scene with
:meth:`SceneData.from_scene`) and writes atomically (temporary file + rename), so a failure leaves no
half-written file behind. :func:`export_all` does everything at once for the demo / CLI.

Conventions: ``cam2world`` 4x4 with OpenCV axes (x right, y down, z forward); pixel (x, y) with integer
coordinates at pixel centres; COLMAP and nerfstudio files use their own pixel convention (top-left pixel centre
at (0.5, 0.5)) and nerfstudio its OpenGL camera axes: see the docstrings of :mod:`.colmap` and :mod:`.nerfstudio`.
"""
from __future__ import annotations

import inspect
import logging
import os
import zipfile
from typing import Any, Callable, Dict, Sequence

from ._common import SceneData, as_scene_data, atomic_file, check_out_dir
from .cameras import cameras_dict, export_cameras_json
from .colmap import (ColmapCamera, ColmapImage, ColmapPoint3D, export_colmap, qvec_to_rotmat, read_colmap_model,
                     rotmat_to_qvec)
from .depth import export_depthmaps, resample_to_original
from .glb import build_glb_scene, export_glb
from .nerfstudio import OPENCV_TO_OPENGL, export_nerfstudio
from .ply import export_ply, write_ply

logger = logging.getLogger(__name__)

__all__ = [
    "SceneData", "export_all", "export_glb", "export_ply", "export_colmap", "read_colmap_model",
    "export_nerfstudio", "export_cameras_json", "export_depthmaps", "build_glb_scene", "cameras_dict",
    "resample_to_original", "write_ply", "rotmat_to_qvec", "qvec_to_rotmat", "ColmapCamera", "ColmapImage",
    "ColmapPoint3D", "OPENCV_TO_OPENGL", "ALL_FORMATS", "DEFAULT_FORMATS", "zip_folder",
]

#: every format export_all knows, and the default selection
ALL_FORMATS = ("glb", "ply", "colmap", "nerfstudio", "cameras", "depth")
DEFAULT_FORMATS = ("glb", "ply", "colmap", "nerfstudio", "cameras")

_FROM_SCENE_KW = ("min_conf_thr", "clean_depth", "mask_sky", "tsdf_thresh", "subsample", "names")
_EXPORTERS: Dict[str, Callable[..., Any]] = {
    "glb": export_glb, "ply": export_ply, "colmap": export_colmap, "nerfstudio": export_nerfstudio,
    "cameras": export_cameras_json, "depth": export_depthmaps,
}
_MANAGED = {"data", "path", "out_dir", "images_dir"}


def _accepted(func: Callable[..., Any]) -> set:
    return {p for p in inspect.signature(func).parameters if p not in _MANAGED}


def zip_folder(folder: str, zip_path: str, arc_root: str) -> str:
    """Zip ``folder`` recursively into ``zip_path`` (atomic), entries under ``arc_root/``."""
    with atomic_file(zip_path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for root, _dirs, files in os.walk(folder):
                for name in sorted(files):
                    full = os.path.join(root, name)
                    zf.write(full, os.path.join(arc_root, os.path.relpath(full, folder)))
    return zip_path


def export_all(scene_or_data: Any, out_dir: Any, formats: Sequence[str] = DEFAULT_FORMATS,
               colmap_images: bool = True, colmap_zip: bool = True, **kw: Any) -> Dict[str, str]:
    """Export a scene in several formats into ``out_dir``.

    Layout: ``scene.glb``, ``scene.ply``, ``colmap/sparse/0/`` (model) + ``colmap/images/`` (if
    ``colmap_images``) + ``colmap.zip`` (zip of ``colmap/``, if ``colmap_zip``), ``nerfstudio/transforms.json``
    (+ images), ``cameras.json``, ``depth/``.

    Args:
        scene_or_data: a :class:`SceneData` or an aligner scene (converted with :meth:`SceneData.from_scene`).
        out_dir: output folder (created).
        formats: subset of ``ALL_FORMATS``.
        colmap_images: write the images next to the COLMAP model.
        colmap_zip: also write ``colmap.zip``.
        **kw: options of :meth:`SceneData.from_scene` (min_conf_thr, clean_depth, mask_sky, tsdf_thresh,
            subsample, names) and of the exporters (e.g. ``as_pointcloud``, ``cam_size``, ``binary``,
            ``camera_model``, ``max_points``, ``original_resolution``, ``depth_format``); each is passed to every
            function that accepts it; ``<format>_<option>`` (e.g. ``colmap_max_points=50_000``,
            ``glb_as_pointcloud=False``) applies to that format only and wins over the plain name.

    Returns:
        dict format -> path written (``colmap`` -> model folder, plus ``colmap_zip``; ``depth`` -> folder).
    """
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    unknown = [f for f in formats if f not in ALL_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {ALL_FORMATS}, got {formats}")
    known = set(_FROM_SCENE_KW).union(*(_accepted(_EXPORTERS[f]) for f in ALL_FORMATS))
    known |= {f"{f}_{p}" for f in ALL_FORMATS for p in _accepted(_EXPORTERS[f])}
    bad = sorted(set(kw) - known)
    if bad:
        raise TypeError(f"export_all got unexpected keyword argument(s) {bad}")
    out_dir = check_out_dir(out_dir)
    data = as_scene_data(scene_or_data, **{k: v for k, v in kw.items() if k in _FROM_SCENE_KW})

    def options(fmt: str) -> Dict[str, Any]:
        accepted = _accepted(_EXPORTERS[fmt])
        opts = {k: v for k, v in kw.items() if k in accepted}
        opts.update({k[len(fmt) + 1:]: v for k, v in kw.items()
                     if k.startswith(fmt + "_") and k[len(fmt) + 1:] in accepted})
        return opts

    out: Dict[str, str] = {}
    for fmt in formats:
        if fmt == "glb":
            out[fmt] = export_glb(data, os.path.join(out_dir, "scene.glb"), **options(fmt))
        elif fmt == "ply":
            out[fmt] = export_ply(data, os.path.join(out_dir, "scene.ply"), **options(fmt))
        elif fmt == "colmap":
            root = os.path.join(out_dir, "colmap")
            images_dir = os.path.join(root, "images") if colmap_images else None
            out[fmt] = export_colmap(data, os.path.join(root, "sparse", "0"), images_dir=images_dir,
                                     **options(fmt))
            if colmap_zip:
                out["colmap_zip"] = zip_folder(root, os.path.join(out_dir, "colmap.zip"), "colmap")
        elif fmt == "nerfstudio":
            out[fmt] = export_nerfstudio(data, os.path.join(out_dir, "nerfstudio"), **options(fmt))
        elif fmt == "cameras":
            out[fmt] = export_cameras_json(data, os.path.join(out_dir, "cameras.json"))
        elif fmt == "depth":
            folder = os.path.join(out_dir, "depth")
            export_depthmaps(data, folder, **options(fmt))
            out[fmt] = folder
    logger.info("exported %s to %s", ", ".join(out), out_dir)
    return out
