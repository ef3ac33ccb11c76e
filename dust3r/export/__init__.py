"""Exports of a reconstruction: GLB, PLY, COLMAP, nerfstudio, cameras JSON, depth maps.

Every exporter consumes a :class:`SceneData` (a plain numpy snapshot, :mod:`dust3r.export.scene_data`; build it
from an aligner scene with :meth:`SceneData.from_scene`) and writes atomically (temporary file + rename), so a
failure leaves no half-written file behind; file modes follow the umask. :func:`export_all` does everything at
once for the demo / CLI, all or nothing. ``ALL_FORMATS`` / ``DEFAULT_FORMATS`` / :data:`EXPORT_OUTPUTS` are the one
registry of formats: front ends take their choices from here.

Conventions: ``cam2world`` 4x4 with OpenCV axes (x right, y down, z forward); pixel (x, y) with integer
coordinates at pixel centres; COLMAP and nerfstudio files use their own pixel convention (top-left pixel centre
at (0.5, 0.5)) and nerfstudio its OpenGL camera axes: see the docstrings of :mod:`.colmap` and :mod:`.nerfstudio`.
"""
from __future__ import annotations

import inspect
import logging
import os
import shutil
import zipfile
from typing import Any, Callable, Dict, Sequence, Tuple

from ._common import atomic_file, check_out_dir, entry_conflicts, make_temp_dir, replace_entries
from .cameras import cameras_dict, export_cameras_json
from .colmap import (ColmapCamera, ColmapImage, ColmapPoint3D, export_colmap, qvec_to_rotmat, read_colmap_model,
                     rotmat_to_qvec)
from .depth import export_depthmaps, resample_to_original
from .glb import build_glb_scene, export_glb
from .nerfstudio import OPENCV_TO_OPENGL, export_nerfstudio
from .ply import export_ply, write_ply
from .scene_data import DenseSceneLike, SceneData, SceneLike, SparseSceneLike, as_scene_data, require_scene_data

logger = logging.getLogger(__name__)

__all__ = [
    "SceneData", "SceneLike", "DenseSceneLike", "SparseSceneLike", "export_all", "export_glb", "export_ply",
    "export_colmap", "read_colmap_model", "export_nerfstudio", "export_cameras_json", "export_depthmaps",
    "build_glb_scene", "cameras_dict", "resample_to_original", "write_ply", "rotmat_to_qvec", "qvec_to_rotmat",
    "ColmapCamera", "ColmapImage", "ColmapPoint3D", "OPENCV_TO_OPENGL", "ALL_FORMATS", "DEFAULT_FORMATS",
    "EXPORT_OUTPUTS", "OUTPUT_NAMES", "zip_folder",
]

#: the format registry: format -> exporter (its keyword options are what export_all accepts for that format)
_EXPORTERS: Dict[str, Callable[..., Any]] = {
    "glb": export_glb, "ply": export_ply, "colmap": export_colmap, "nerfstudio": export_nerfstudio,
    "cameras": export_cameras_json, "depth": export_depthmaps,
}
#: what each format writes into export_all's folder: (entry name, is a folder)
EXPORT_OUTPUTS: Dict[str, Tuple[Tuple[str, bool], ...]] = {
    "glb": (("scene.glb", False),), "ply": (("scene.ply", False),),
    "colmap": (("colmap", True), ("colmap.zip", False)), "nerfstudio": (("nerfstudio", True),),
    "cameras": (("cameras.json", False),), "depth": (("depth", True),),
}
#: every entry export_all may write into its folder, in format order
OUTPUT_NAMES: Tuple[str, ...] = tuple(name for outs in EXPORT_OUTPUTS.values() for name, _ in outs)
#: every format export_all knows, and the default selection (the front ends take their choices from here)
ALL_FORMATS: Tuple[str, ...] = tuple(_EXPORTERS)
DEFAULT_FORMATS: Tuple[str, ...] = ("glb", "ply", "colmap", "nerfstudio", "cameras")

_FROM_SCENE_KW = ("min_conf_thr", "clean_depth", "mask_sky", "tsdf_thresh", "subsample", "names")
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


def _check_formats(formats: Any) -> Tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in ALL_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {ALL_FORMATS}, got {formats}")
    return formats


def _check_options(kw: Dict[str, Any]) -> None:
    known = set(_FROM_SCENE_KW).union(*(_accepted(_EXPORTERS[f]) for f in ALL_FORMATS))
    known |= {f"{f}_{p}" for f in ALL_FORMATS for p in _accepted(_EXPORTERS[f])}
    bad = sorted(set(kw) - known)
    if bad:
        raise TypeError(f"export_all got unexpected keyword argument(s) {bad}")


def _options(fmt: str, kw: Dict[str, Any]) -> Dict[str, Any]:
    """The options of ``kw`` that format ``fmt``'s exporter takes; ``<fmt>_<option>`` wins over ``<option>``."""
    accepted = _accepted(_EXPORTERS[fmt])
    opts = {k: v for k, v in kw.items() if k in accepted}
    prefix = fmt + "_"
    opts.update({k[len(prefix):]: v for k, v in kw.items() if k.startswith(prefix) and k[len(prefix):] in accepted})
    return opts


def _export_one(fmt: str, data: SceneData, root: str, colmap_images: bool, colmap_zip: bool,
                kw: Dict[str, Any]) -> Dict[str, str]:
    """Write format ``fmt`` of ``data`` into folder ``root``; returns format -> path written."""
    opts = _options(fmt, kw)
    if fmt == "colmap":
        folder = os.path.join(root, "colmap")
        images_dir = os.path.join(folder, "images") if colmap_images else None
        out = {fmt: export_colmap(data, os.path.join(folder, "sparse", "0"), images_dir=images_dir, **opts)}
        if colmap_zip:
            out["colmap_zip"] = zip_folder(folder, os.path.join(root, "colmap.zip"), "colmap")
        return out
    if fmt == "depth":
        folder = os.path.join(root, "depth")
        export_depthmaps(data, folder, **opts)
        return {fmt: folder}
    name = EXPORT_OUTPUTS[fmt][0][0]
    return {fmt: _EXPORTERS[fmt](data, os.path.join(root, name), **opts)}


def export_all(scene_or_data: Any, out_dir: Any, formats: Sequence[str] = DEFAULT_FORMATS,
               colmap_images: bool = True, colmap_zip: bool = True, **kw: Any) -> Dict[str, str]:
    """Export a scene in several formats into ``out_dir``, all or nothing.

    Layout: ``scene.glb``, ``scene.ply``, ``colmap/sparse/0/`` (model) + ``colmap/images/`` (if
    ``colmap_images``) + ``colmap.zip`` (zip of ``colmap/``, if ``colmap_zip``), ``nerfstudio/transforms.json``
    (+ images), ``cameras.json``, ``depth/`` (see :data:`EXPORT_OUTPUTS`).

    Everything is written into a staging folder inside ``out_dir`` first; only when every format succeeded are
    the entries moved into place, each replacing an earlier entry of the same name whole (an old ``colmap/``
    folder is replaced, not merged). A failure leaves ``out_dir`` as it was. An entry of the other kind in the
    way (e.g. a file named ``colmap``) is refused before any work. Other entries of ``out_dir`` are left alone.

    Args:
        scene_or_data: a :class:`SceneData` or an aligner scene (:class:`SparseSceneLike` /
            :class:`DenseSceneLike`, converted with :meth:`SceneData.from_scene`; the scene is not modified).
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
        dict format -> final path (``colmap`` -> model folder, plus ``colmap_zip``; ``depth`` -> folder).
    """
    formats = _check_formats(formats)
    _check_options(kw)
    out_dir = check_out_dir(out_dir)
    entries = {name: is_dir for f in formats for name, is_dir in EXPORT_OUTPUTS[f]
               if name != "colmap.zip" or colmap_zip}
    bad = entry_conflicts(out_dir, entries)
    if bad:
        raise ValueError("export_all: " + "; ".join(bad))
    data = require_scene_data(as_scene_data(scene_or_data, **{k: v for k, v in kw.items() if k in _FROM_SCENE_KW}),
                              "export_all")

    staging = make_temp_dir(out_dir)
    try:
        written: Dict[str, str] = {}
        for fmt in formats:
            written.update(_export_one(fmt, data, staging, colmap_images, colmap_zip, kw))
        replace_entries(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out = {k: os.path.join(out_dir, os.path.relpath(p, staging)) for k, p in written.items()}
    logger.info("exported %s to %s", ", ".join(out), out_dir)
    return out
