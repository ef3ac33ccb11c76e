"""The DUSt3R dense global-alignment demo (gradio).

``python3 demo_dust3r_ga.py --weights CHECKPOINT`` serves :func:`build_demo`: upload images, pick a scene graph
and an optimisation schedule, press **Run**; the images go through :func:`dust3r.reconstruction.reconstruct_dense`
(``load_images -> make_pairs -> inference -> global_aligner(...).compute_global_alignment``) and the result is
shown as a GLB in a 3D viewer, with GLB / PLY / COLMAP / cameras-JSON downloads. Display options (confidence
threshold, camera size, point cloud or mesh, sky mask, depth clean-up, transparent cameras) re-render the stored
scene without recomputing the alignment.

The plumbing both demos share (flags, sessions, rendering, widgets, launch) is the public package
:mod:`dust3r.app`; its names stay importable from here, as they were. The original's headless entry points
(:func:`get_3D_model_from_scene`, :func:`get_reconstructed_scene`, :func:`set_scenegraph_options`,
:func:`main_demo`) keep their signatures.

gradio, trimesh and matplotlib are imported only when a demo is built or rendered.
"""

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from dust3r.app import (CSS, DOWNLOAD_FORMATS, DUST3R_MODELS, HUB_OWNER, DemoState,  # noqa: F401
                        DisplayOptions, SessionWorkspaces, colorize, configure_tmp, dense_gallery,
                        display_components, free_port, get_args_parser, gradio, graph_kinds, graph_sliders,
                        launch_demo, make_blocks, max_window_size, model_source, register_session_events,
                        render_state, rerender_outputs, scene_graph_string, server_address, session_id,
                        state_cleanup, upload_path, upload_roots, validate_uploads, wire_display_events, write_glb,
                        write_scene_files)
from dust3r.app.launch import DemoInputs, exit_on_input_error, serve, validate_demo_args
from dust3r.app.launch import load_model as _load_source
from dust3r.inputs import InputError
from dust3r.reconstruction import (DENSE_DEFAULTS, UserInputError, prepare_views,  # noqa: F401
                                   reconstruct_dense, unique_names)

logger = logging.getLogger(__name__)

__all__ = [
    "get_args_parser", "server_address", "free_port", "model_source", "UserInputError", "validate_uploads",
    "SessionWorkspaces", "DisplayOptions", "DemoState", "write_scene_files", "scene_graph_string",
    "max_window_size", "reconstruct_dense", "DenseRun", "validate_run", "validate_args", "build_demo",
    "launch_demo", "main", "get_3D_model_from_scene", "get_reconstructed_scene", "set_scenegraph_options",
    "main_demo",
]

#: accepted checkpoints: DUSt3R and MASt3R (a MASt3R model also predicts pointmaps)
MODEL_CLASSES = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")

# the first demo module's private names, used by older code
_gradio, _session_id, _state_cleanup, _upload_roots = gradio, session_id, state_cleanup, upload_roots
_colorize = colorize


# ============================================================================================
# one Run: inputs checked first
# ============================================================================================
@dataclass
class DenseRun:
    """The inputs of one Run of the dense demo, checked."""
    paths: List[str]
    scene_graph: str
    schedule: str
    niter: int


def validate_run(files: Optional[Sequence[Any]], schedule: str, niter: Any, scenegraph_type: str, winsize: Any,
                 refid: Any, max_images: int, allowed_roots: Optional[Sequence[str]] = None,
                 uploaded: bool = True) -> DenseRun:
    """Check a Run's images and options before any inference.

    ``uploaded``: the files are browser uploads (:func:`validate_uploads`: regular files inside
    ``allowed_roots``); otherwise they are the caller's own paths (:func:`dust3r.inputs.check_image_files`).

    Raises:
        InputError: the first problem, as one line for the page.
    """
    from dust3r.inputs import check_image_files, check_scene_graph

    paths = (validate_uploads(files, max_images, allowed_roots=allowed_roots) if uploaded
             else check_image_files([upload_path(f) for f in files or []]))
    graph = check_scene_graph(scene_graph_string(scenegraph_type, winsize or 1, True, refid or 0),
                              max(len(paths), 2))
    if schedule not in ("linear", "cosine"):
        raise UserInputError(f"unknown schedule {schedule!r} (linear or cosine)")
    iterations = int(niter or 0)
    if iterations < 0:
        raise UserInputError(f"num_iterations must be >= 0, got {iterations}")
    return DenseRun(paths, graph, schedule, iterations)


# ============================================================================================
# the app
# ============================================================================================
def build_demo(model: Any, device: str, image_size: int = 512, tmp_dir: Optional[str] = None, silent: bool = False,
               max_images: int = 64, delete_cache: Optional[int] = None, session_ttl: float = 4 * 3600):
    """The DUSt3R dense global-alignment app (a ``gr.Blocks``), serving ``model`` (any DUSt3R / MASt3R model).

    The returned app carries ``app.session_workspaces`` (:class:`SessionWorkspaces`), to close when the server
    stops (``launch_demo`` does).
    """
    gr = gradio()
    workspaces = SessionWorkspaces(tmp_dir, prefix="dust3r_demo_")
    defaults = DisplayOptions(min_conf_thr=3.0, cam_size=0.05, as_pointcloud=False)

    def run(files, schedule, niter, scenegraph_type, winsize, refid, min_conf_thr, cam_size, as_pointcloud, mask_sky,
            clean_depth, transparent_cams, tsdf_thresh, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        display = DisplayOptions(min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams,
                                 tsdf_thresh)
        session = session_id(request)
        try:
            checked = validate_run(files, schedule, niter, scenegraph_type, winsize, refid, max_images,
                                   upload_roots(demo))
            progress(0.05, desc="inference + global alignment")
            scene, names = reconstruct_dense(model, checked.paths, device, image_size, checked.scene_graph,
                                             checked.schedule, checked.niter, verbose=not silent)
        except InputError as exc:
            gr.Warning(str(exc))
            return None, None, None, [], f"**Error:** {exc}"
        state = DemoState(scene, session, workspaces.create(session), names)
        workspaces.attach(session, state)
        progress(0.9, desc="export")
        glb, downloads, _ = rerender_outputs(state, display)
        return state, glb, downloads, dense_gallery(scene), f"Reconstructed {len(checked.paths)} image(s)."

    def update_graph_controls(files, scenegraph_type):
        n = len(files) if files else 1
        return graph_sliders(gr, n, max_window_size(n, "swin", True), scenegraph_type == "swin",
                             scenegraph_type == "oneref")

    def rerender(state, *display_values):
        return rerender_outputs(state, DisplayOptions(*display_values))

    with make_blocks(gr, "DUSt3R Demo", delete_cache) as demo:
        state = gr.State(None, time_to_live=session_ttl, delete_callback=state_cleanup(workspaces))
        gr.HTML('<h2 style="text-align: center;">DUSt3R Demo</h2>')
        inputfiles = gr.File(file_count="multiple", label="Images")
        with gr.Row():
            schedule = gr.Dropdown(["linear", "cosine"], value=DENSE_DEFAULTS["schedule"], label="schedule",
                                   info="For global alignment!")
            niter = gr.Number(value=DENSE_DEFAULTS["niter"], precision=0, minimum=0, maximum=5000,
                              label="num_iterations", info="For global alignment!")
            scenegraph_type = gr.Dropdown(graph_kinds(with_logwin=False), value="complete", label="Scenegraph",
                                          info="Define how to make pairs", interactive=True)
            winsize = gr.Slider(label="Scene Graph: Window Size", value=1, minimum=1, maximum=2, step=1,
                                visible=False)
            refid = gr.Slider(label="Scene Graph: Id", value=0, minimum=0, maximum=1, step=1, visible=False)
        run_btn = gr.Button("Run", variant="primary")
        display_inputs = display_components(gr, defaults, with_tsdf=False)
        status = gr.Markdown("Upload images and press **Run**.", elem_id="status")
        outmodel = gr.Model3D(label="3D scene", elem_id="model3d")
        downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        gallery = gr.Gallery(label="rgb, depth, confidence", columns=3, height="auto")

        scenegraph_type.change(update_graph_controls, [inputfiles, scenegraph_type], [winsize, refid])
        inputfiles.change(update_graph_controls, [inputfiles, scenegraph_type], [winsize, refid])
        run_btn.click(run, inputs=[inputfiles, schedule, niter, scenegraph_type, winsize, refid] + display_inputs,
                      outputs=[state, outmodel, downloads, gallery, status], concurrency_limit=1)
        wire_display_events(display_inputs, state, [outmodel, downloads, status], rerender)
        register_session_events(demo, workspaces)
    demo.session_workspaces = workspaces
    return demo


# ============================================================================================
# the original's headless entry points
# ============================================================================================
def get_3D_model_from_scene(outdir, silent, scene, min_conf_thr=3, as_pointcloud=False, mask_sky=False,
                            clean_depth=False, transparent_cams=False, cam_size=0.05):
    """Write ``<outdir>/scene.glb`` of a dense ``scene`` (the original's signature); returns its path.

    ``None`` when ``scene`` is None. The scene is not changed (the display options only select what is written).
    """
    if scene is None:
        return None
    display = DisplayOptions(min_conf_thr=float(min_conf_thr), cam_size=float(cam_size),
                             as_pointcloud=bool(as_pointcloud), mask_sky=bool(mask_sky),
                             clean_depth=bool(clean_depth), transparent_cams=bool(transparent_cams))
    outfile = write_glb(scene, os.path.join(os.fspath(outdir), "scene.glb"), display)
    if not silent:
        logger.info("exported the 3D scene to %s", outfile)
    return outfile


def _convert_scene_output_to_glb(outdir, imgs, pts3d, mask, focals, cams2world, cam_size=0.05, cam_color=None,
                                 as_pointcloud=False, transparent_cams=False, silent=False):
    """The original's GLB writer from arrays: ``imgs`` N (H, W, 3) in [0, 1], ``pts3d`` N (H, W, 3) or (H*W, 3)
    world points, ``mask`` N (H, W) or (H*W,) bool, ``focals`` N, ``cams2world`` (N, 4, 4). Writes
    ``<outdir>/scene.glb`` (principal points at the image centres) and returns its path."""
    from dust3r.export import SceneData, export_glb
    from dust3r.utils.device import to_numpy

    images = [np.asarray(im, dtype=np.float32) for im in to_numpy(list(imgs))]
    shapes = [im.shape[:2] for im in images]
    points = [np.asarray(p, dtype=np.float32).reshape(h, w, 3) for p, (h, w) in zip(to_numpy(list(pts3d)), shapes)]
    masks = [np.asarray(m, dtype=bool).reshape(h, w) & np.isfinite(p).all(-1)
             for m, p, (h, w) in zip(to_numpy(list(mask)), points, shapes)]
    f = np.asarray(to_numpy(focals), dtype=np.float64).reshape(len(images), -1)[:, 0]
    K = np.stack([[[fi, 0.0, w / 2], [0.0, fi, h / 2], [0.0, 0.0, 1.0]] for fi, (h, w) in zip(f, shapes)])
    data = SceneData(images=images, K=K, cam2world=np.asarray(to_numpy(cams2world), dtype=np.float64),
                     pts3d=points, masks=masks)
    outfile = export_glb(data, os.path.join(os.fspath(outdir), "scene.glb"), as_pointcloud=bool(as_pointcloud),
                         cam_size=float(cam_size), transparent_cams=bool(transparent_cams), cam_color=cam_color)
    if not silent:
        logger.info("exported the 3D scene to %s", outfile)
    return outfile


def get_reconstructed_scene(outdir, model, device, silent, image_size, filelist, schedule, niter, min_conf_thr,
                            as_pointcloud, mask_sky, clean_depth, transparent_cams, cam_size, scenegraph_type,
                            winsize, refid):
    """Images -> dense global alignment -> ``<outdir>/scene.glb`` (the original's signature).

    Returns:
        ``(scene, glb path, gallery)`` with the gallery as rgb, depth, confidence images (H, W, 3) per view.

    Raises:
        InputError: bad files or options, before any inference.
    """
    checked = validate_run(filelist, schedule, niter, scenegraph_type, winsize, refid, max_images=0, uploaded=False)
    scene, _ = reconstruct_dense(model, checked.paths, device, image_size, checked.scene_graph, checked.schedule,
                                 checked.niter, verbose=not silent)
    outfile = get_3D_model_from_scene(outdir, silent, scene, min_conf_thr, as_pointcloud, mask_sky, clean_depth,
                                      transparent_cams, cam_size)
    return scene, outfile, dense_gallery(scene)


def set_scenegraph_options(inputfiles, winsize, refid, scenegraph_type):
    """Updated (window size, reference id) sliders for the uploads and the scene-graph kind (gradio event)."""
    n = len(inputfiles) if inputfiles is not None else 1
    return graph_sliders(gradio(), n, max_window_size(n, "swin", True), scenegraph_type == "swin",
                         scenegraph_type == "oneref")


def main_demo(tmpdirname, model, device, image_size, server_name, server_port, silent=False):
    """Build and serve the demo (the original's signature); session folders go under ``tmpdirname``."""
    demo = build_demo(model, device, image_size, tmpdirname, silent)
    launch_demo(demo, server_name, False, server_port, quiet=silent)


# ============================================================================================
# command line
# ============================================================================================
def load_model(args: argparse.Namespace):
    """The model named by ``--weights`` / ``--model_name`` on ``--device`` (one-line :class:`InputError`)."""
    return _load_source(model_source(args.weights, args.model_name), args.device, verbose=not args.silent)


def validate_args(args: argparse.Namespace, model: Any = None) -> DemoInputs:
    """Check the flags before the model is loaded (see :func:`dust3r.app.launch.validate_demo_args`)."""
    return validate_demo_args(args, MODEL_CLASSES, model)


def main(args: argparse.Namespace, model: Any = None) -> None:
    """Run the DUSt3R global-alignment demo (``model``: an already built model, else loaded from the flags).

    Bad flags, a checkpoint that cannot be loaded and a busy port end in ``SystemExit`` with one line.
    """
    checked = exit_on_input_error(validate_args, args, model)
    serve(args, build_demo, checked, model)
