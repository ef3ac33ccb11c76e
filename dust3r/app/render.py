"""A reconstructed scene -> the files a demo shows (GLB for the 3D view, downloads, the dense gallery).

Everything goes through :func:`dust3r.export.export_all`; nothing here changes the scene (display options only
select what is written).
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .sessions import DemoState

logger = logging.getLogger(__name__)

__all__ = ["DOWNLOAD_FORMATS", "DisplayOptions", "write_scene_files", "write_glb", "render_state",
           "rerender_outputs", "colorize", "dense_gallery"]

#: downloads offered next to the 3D view
DOWNLOAD_FORMATS: Tuple[str, ...] = ("glb", "ply", "colmap", "cameras")


@dataclass
class DisplayOptions:
    """How a reconstructed scene is shown; changing these never reruns the alignment.

    ``min_conf_thr`` is in the confidence units of the model (as the original demos).
    """
    min_conf_thr: float = 1.5
    cam_size: float = 0.2
    as_pointcloud: bool = True
    mask_sky: bool = False
    clean_depth: bool = True
    transparent_cams: bool = False
    tsdf_thresh: float = 0.0

    def export_options(self) -> Dict[str, Any]:
        """The keyword arguments of :func:`dust3r.export.export_all` for these options."""
        return dict(min_conf_thr=float(self.min_conf_thr), clean_depth=bool(self.clean_depth),
                    mask_sky=bool(self.mask_sky), tsdf_thresh=float(self.tsdf_thresh),
                    as_pointcloud=bool(self.as_pointcloud), cam_size=float(self.cam_size),
                    transparent_cams=bool(self.transparent_cams))


def write_scene_files(scene: Any, out_dir: os.PathLike, display: DisplayOptions, names: Optional[List[str]] = None,
                      formats: Iterable[str] = DOWNLOAD_FORMATS) -> Dict[str, str]:
    """Render ``scene`` (a sparse or dense aligner output) to files with :func:`dust3r.export.export_all`.

    Args:
        scene: an aligner scene (``imgs``, ``get_im_poses``, ``get_intrinsics``...).
        out_dir: folder for the files (created).
        display: display options (confidence threshold, clean-up, sky mask, TSDF, GLB style).
        names: image names (COLMAP / cameras JSON); default ``image_000.png``...
        formats: subset of ``dust3r.export.ALL_FORMATS``.

    Returns:
        ``{format: path}``; for ``colmap`` the path of ``colmap.zip`` (model + images).
    """
    from dust3r.export import export_all

    files = export_all(scene, str(out_dir), formats=tuple(formats), names=list(names) if names else None,
                       colmap_zip=True, **display.export_options())
    if "colmap" in files:
        files["colmap"] = files.pop("colmap_zip")
    return {k: str(v) for k, v in files.items()}


def write_glb(scene: Any, path: os.PathLike, display: DisplayOptions, names: Optional[Sequence[str]] = None) -> str:
    """Write only the GLB of ``scene`` (an aligner scene or a ``SceneData``) at ``path`` (atomically); returns
    the path."""
    from dust3r.export import SceneData, export_glb

    opts = display.export_options()
    data = scene if isinstance(scene, SceneData) else SceneData.from_scene(
        scene, min_conf_thr=opts["min_conf_thr"], clean_depth=opts["clean_depth"], mask_sky=opts["mask_sky"],
        tsdf_thresh=opts["tsdf_thresh"], names=list(names) if names else None)
    return str(export_glb(data, os.fspath(path), as_pointcloud=opts["as_pointcloud"], cam_size=opts["cam_size"],
                          transparent_cams=opts["transparent_cams"]))


def render_state(state: DemoState, display: DisplayOptions) -> Dict[str, str]:
    """Write the files of ``state`` into a fresh ``render_NNN`` folder of its session, removing the previous one."""
    with state.lock:
        previous = state.workdir / f"render_{state.renders:03d}"
        state.renders += 1
        files = write_scene_files(state.scene, state.workdir / f"render_{state.renders:03d}", display, state.names)
        if previous.is_dir():
            shutil.rmtree(previous, ignore_errors=True)
    return files


def rerender_outputs(state: Optional[DemoState], display: DisplayOptions):
    """(model3d path, download paths, status text) of a stored scene re-rendered with ``display``."""
    if not isinstance(state, DemoState) or state.scene is None:
        return None, None, "Nothing to show yet: upload images and press **Run**."
    if not state.workdir.is_dir():
        return None, None, "This session has expired: press **Run** again."
    try:
        files = render_state(state, display)
    except Exception as exc:  # keep the UI alive whatever the export hits
        from ._gradio import gradio

        logger.exception("rendering failed")
        gradio().Warning(f"Rendering failed: {exc}")
        return None, None, f"Rendering failed: {exc}"
    return files.get("glb"), [files[k] for k in DOWNLOAD_FORMATS if k in files], "Display updated."


def colorize(maps: Sequence[np.ndarray]) -> List[np.ndarray]:
    """(H, W) maps -> (H, W, 3) float32 images in [0, 1], normalised by the global max, jet colour map."""
    vmax = max(float(np.nanmax(m)) for m in maps) or 1.0
    try:
        from matplotlib import colormaps
    except ImportError:  # pragma: no cover - matplotlib is a demo extra
        return [np.repeat(np.clip(m / vmax, 0, 1)[..., None], 3, -1).astype(np.float32) for m in maps]
    cmap = colormaps["jet"]
    return [cmap(np.clip(m / vmax, 0, 1))[..., :3].astype(np.float32) for m in maps]


def dense_gallery(scene: Any) -> List[np.ndarray]:
    """rgb, depth, confidence images (H, W, 3) of every view of a dense scene (the gallery under the 3D view)."""
    from dust3r.utils.device import to_numpy

    depths = [np.asarray(d) for d in to_numpy(list(scene.get_depthmaps()))]
    confs = [np.asarray(c) for c in to_numpy(list(getattr(scene, "im_conf", depths)))]
    out: List[np.ndarray] = []
    for img, d, c in zip(scene.imgs, colorize(depths), colorize(confs)):
        out += [np.asarray(img, dtype=np.float32), d, c]
    return out
