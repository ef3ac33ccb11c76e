"""MASt3R browser demo (gradio): images in, cameras + 3D scene out, through the sparse global alignment.

Run ``python3 demo.py`` (the official checkpoint from the Hugging Face hub, downloaded once) or
``python3 demo.py --weights checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth`` and open the
printed address. The server listens on 127.0.0.1 unless ``--local_network`` or ``--server_name`` say otherwise.

The page: multiple-image upload; coarse / fine learning rates and iterations; optimisation level (coarse,
refine, refine+depth); matching confidence threshold; shared intrinsics; scene graph (complete, swin, logwin,
oneref; retrieval only with ``--retrieval_model``) with window size / cyclic / reference id (for retrieval:
number of key images / neighbours); **Run**. Then the
display options (min_conf_thr, cam_size, TSDF threshold, as pointcloud, mask sky, clean-up depth maps,
transparent cameras) re-render the stored scene *without* recomputing the alignment. The 3D view shows the GLB;
GLB, PLY, COLMAP (zip) and cameras JSON are offered as downloads.

A Run goes through :func:`validate_run` (uploads, options, scene graph) and then
:func:`mast3r.reconstruction.run_sparse_pipeline`, the pipeline of the CLI too. Each browser session works in its
own temporary folder (:class:`dust3r.app.SessionWorkspaces`). The app is built by :func:`build_demo` from a model
*object*, so tests can serve a tiny checkpoint or the synthetic ``OracleModel``. The original's headless entry
points (:func:`get_reconstructed_scene`, :func:`get_3D_model_from_scene`, :class:`SparseGAState`,
:func:`set_scenegraph_options`, :func:`main_demo`) keep their signatures.
"""

import argparse
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from dust3r.app import (DemoState, DisplayOptions, SessionWorkspaces, UserInputError,  # noqa: F401
                        configure_tmp, display_components, free_port, gradio, graph_kinds, graph_sliders,
                        launch_demo, make_blocks, max_window_size, model_source, register_session_events,
                        rerender_outputs, retrieval_sliders, scene_graph_string, server_address, session_id,
                        state_cleanup, upload_path,
                        upload_roots, validate_uploads, wire_display_events, write_glb)
from dust3r.app import get_args_parser as _base_args_parser
from dust3r.app.launch import DemoInputs, exit_on_input_error, serve, validate_demo_args
from dust3r.inference import inference
from dust3r.inputs import InputError, check_image_files, check_scene_graph
from dust3r.utils.image import load_images, rgb
from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS, OPTIM_LEVELS

from .fast_nn import fast_reciprocal_NNs
from .reconstruction import (DEFAULT_MODEL, ReconstructError, SparseOptions, check_retrieval_input,  # noqa: F401
                             run_sparse_pipeline)
from .viz import draw_matches

logger = logging.getLogger(__name__)

__all__ = ["get_args_parser", "model_source", "free_port", "server_address", "MatchResult", "match_two_images",
           "SparseRun", "validate_run", "validate_args", "check_retrieval_model", "build_demo", "main",
           "SparseGAState", "get_3D_model_from_scene", "get_reconstructed_scene", "set_scenegraph_options",
           "main_demo"]

#: the demo needs descriptors: MASt3R checkpoints only
MODEL_CLASSES = ("AsymmetricMASt3R",)


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the original demo: --model_name / --weights, --retrieval_model, --device, --image_size,
    --server_name / --local_network, --server_port, --share, --tmp_dir, --silent, --gradio_delete_cache."""
    return _base_args_parser(prog="mast3r demo", default_model=DEFAULT_MODEL)


# ============================================================================================
# two-view matching (kept from the first demo; handy in notebooks)
# ============================================================================================
@dataclass
class MatchResult:
    """Matches between two images in network pixels, with the images (H, W, 3) in [0, 1]."""
    img0: np.ndarray
    img1: np.ndarray
    xy0: np.ndarray
    xy1: np.ndarray

    def drawing(self, n_viz: Optional[int] = 20) -> np.ndarray:
        return draw_matches(self.img0, self.img1, self.xy0, self.xy1, n_viz=n_viz)


def match_two_images(model, images: Sequence, device: str, image_size: int = 512, subsample: int = 8,
                     border: int = 3) -> MatchResult:
    """Inference on the pair and reciprocal descriptor matches, without matches within ``border`` px of an edge."""
    if len(images) != 2:
        raise ValueError(f"the matching demo needs exactly 2 images, got {len(images)}")
    views = load_images(list(images), size=image_size, verbose=False)
    out = inference([tuple(views)], model, device, batch_size=1, verbose=False)
    pred1, pred2 = out["pred1"], out["pred2"]
    if "desc" not in pred1:
        raise ValueError("this checkpoint predicts no descriptors (a DUSt3R model?): use a MASt3R checkpoint")
    desc1, desc2 = pred1["desc"].squeeze(0), pred2["desc"].squeeze(0)
    xy0, xy1 = fast_reciprocal_NNs(desc1, desc2, subsample_or_initxy1=subsample, device=device, dist="dot",
                                   block_size=2 ** 13)
    shapes = [np.asarray(v["true_shape"]).reshape(2) for v in views]
    keep = np.ones(len(xy0), dtype=bool)
    for xy, (H, W) in zip((xy0, xy1), shapes):
        keep &= (xy[:, 0] >= border) & (xy[:, 0] < W - border) & (xy[:, 1] >= border) & (xy[:, 1] < H - border)
    imgs = [rgb(v["img"])[0] for v in views]
    return MatchResult(imgs[0], imgs[1], np.asarray(xy0)[keep], np.asarray(xy1)[keep])


# ============================================================================================
# one Run: inputs checked first
# ============================================================================================
@dataclass
class SparseRun:
    """The inputs of one Run of the sparse demo, checked."""
    paths: List[str]
    scene_graph: str
    options: SparseOptions


def validate_run(files: Optional[Sequence[Any]], optim_level: str, lr1: Any, niter1: Any, lr2: Any, niter2: Any,
                 matching_conf_thr: Any, shared_intrinsics: Any, scenegraph_type: str, winsize: Any, win_cyclic: Any,
                 refid: Any, max_images: int, allowed_roots: Optional[Sequence[str]] = None,
                 uploaded: bool = True, retrieval: bool = False) -> SparseRun:
    """Check a Run's images and options before any inference.

    ``uploaded``: the files are browser uploads (:func:`dust3r.app.validate_uploads`: regular files inside
    ``allowed_roots``, at most ``max_images``); otherwise the caller's own paths
    (:func:`dust3r.inputs.check_image_files`). ``retrieval``: a retrieval model is available (``retrieval``
    graphs are refused otherwise).

    Raises:
        InputError: the first problem, as one line.
    """
    paths = (validate_uploads(files, max_images, allowed_roots=allowed_roots) if uploaded
             else check_image_files([upload_path(f) for f in files or []]))
    graph = check_scene_graph(scene_graph_string(scenegraph_type, winsize or 1, bool(win_cyclic), refid or 0),
                              max(len(paths), 2), retrieval=retrieval)
    options = SparseOptions(lr1=float(lr1), niter1=int(niter1 or 0), lr2=float(lr2), niter2=int(niter2 or 0),
                            optim_level=optim_level, matching_conf_thr=float(matching_conf_thr),
                            shared_intrinsics=bool(shared_intrinsics))
    return SparseRun(paths, graph, options)


# ============================================================================================
# the multi-view app
# ============================================================================================
def build_demo(model: Any, device: str, image_size: int = 512, tmp_dir: Optional[str] = None, silent: bool = False,
               max_images: int = 64, delete_cache: Optional[int] = None, retrieval_model: Optional[str] = None,
               session_ttl: float = 4 * 3600):
    """The MASt3R sparse-alignment app (a ``gr.Blocks``), serving ``model``.

    Args:
        model: AsymmetricMASt3R or any model with its forward interface (e.g. ``OracleModel``).
        device: torch device of the model and the optimisation.
        image_size: long side of the network input (512 / 224 for the official checkpoints).
        tmp_dir: parent folder of the per-session folders (system temp folder if None).
        silent: fewer logs / progress bars on the server side.
        max_images: most images accepted in one upload.
        delete_cache: gradio cache clean-up period and age in seconds (``--gradio_delete_cache``).
        retrieval_model: retrieval checkpoint (with its ``_codebook.pkl``): enables the ``retrieval`` scene graph.
        session_ttl: seconds a stored scene stays available without a new Run.

    Returns:
        the ``gr.Blocks`` app, with ``app.session_workspaces`` (:class:`SessionWorkspaces`).
    """
    gr = gradio()
    workspaces = SessionWorkspaces(tmp_dir, prefix="mast3r_demo_")
    d = ALIGNMENT_DEFAULTS
    defaults = DisplayOptions(min_conf_thr=d["min_conf_thr"])  # cam_size 0.2, point cloud, clean depth

    def run(files, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr, shared_intrinsics, scenegraph_type,
            winsize, win_cyclic, refid, min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth,
            transparent_cams, tsdf_thresh, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        display = DisplayOptions(min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams,
                                 tsdf_thresh)
        session = session_id(request)
        workdir = workspaces.create(session)
        try:
            checked = validate_run(files, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr,
                                   shared_intrinsics, scenegraph_type, winsize, win_cyclic, refid, max_images,
                                   upload_roots(demo), retrieval=retrieval_model is not None)
            scene, names = run_sparse_pipeline(model, checked.paths, device, image_size, checked.scene_graph,
                                               checked.options, cache_dir=str(workdir / "cache"),
                                               verbose=not silent, progress=progress, retrieval_model=retrieval_model)
        except InputError as exc:
            gr.Warning(str(exc))
            return None, None, None, f"**Error:** {exc}"
        state = DemoState(scene, session, workdir, names)
        workspaces.attach(session, state)
        progress(0.95, desc="rendering")
        glb, downloads, _ = rerender_outputs(state, display)
        n = len(checked.paths)
        return state, glb, downloads, f"Reconstructed {n} image{'s' if n > 1 else ''} ({checked.scene_graph})."

    def rerender(state, *display_values):
        return rerender_outputs(state, DisplayOptions(*display_values))

    with make_blocks(gr, "MASt3R Demo", delete_cache) as demo:
        # the scene is kept per session so that display options re-render without a new alignment
        state = gr.State(None, time_to_live=session_ttl, delete_callback=state_cleanup(workspaces))
        gr.HTML('<h2 style="text-align: center;">MASt3R Demo</h2>')
        inputfiles = gr.File(file_count="multiple", label="Images", elem_id="inputfiles")
        with gr.Row():
            lr1 = gr.Slider(label="Coarse LR", value=d["lr1"], minimum=0.01, maximum=0.2, step=0.01)
            niter1 = gr.Number(value=d["niter1"], precision=0, minimum=0, maximum=10_000, label="num_iterations",
                               info="For coarse alignment!")
            lr2 = gr.Slider(label="Fine LR", value=d["lr2"], minimum=0.005, maximum=0.05, step=0.001)
            niter2 = gr.Number(value=d["niter2"], precision=0, minimum=0, maximum=100_000, label="num_iterations",
                               info="For refinement!")
            optim_level = gr.Dropdown(list(OPTIM_LEVELS), value=d["optim_level"], label="OptLevel",
                                      info="Optimization level")
        with gr.Row():
            matching_conf_thr = gr.Slider(label="Matching Confidence Thr", value=d["matching_conf_thr"], minimum=0.0,
                                          maximum=30.0, step=0.1, info="Before Fallback to Regr3D!")
            shared_intrinsics = gr.Checkbox(value=d["shared_intrinsics"], label="Shared intrinsics",
                                            info="Only optimize one set of intrinsics for all views")
            scenegraph_type = gr.Dropdown(graph_kinds(with_retrieval=retrieval_model is not None), value="complete",
                                          label="Scenegraph", info="Define how to make pairs", interactive=True)
            with gr.Column(visible=False) as win_col:
                winsize = gr.Slider(label="Scene Graph: Window Size", value=1, minimum=1, maximum=2, step=1)
                win_cyclic = gr.Checkbox(value=False, label="Cyclic sequence")
            refid = gr.Slider(label="Scene Graph: Id", value=0, minimum=0, maximum=1, step=1, visible=False)
        run_btn = gr.Button("Run", variant="primary", elem_id="run")
        display_inputs = display_components(gr, defaults, with_tsdf=True)
        status = gr.Markdown("Upload images and press **Run**.", elem_id="status")
        outmodel = gr.Model3D(label="3D scene", elem_id="model3d", height=480)
        downloads = gr.File(label="Downloads (GLB, PLY, COLMAP zip, cameras JSON)", file_count="multiple",
                            interactive=False, elem_id="downloads")

        graph_inputs = [inputfiles, win_cyclic, refid, scenegraph_type]
        graph_outputs = [win_col, winsize, win_cyclic, refid]
        for component in (scenegraph_type, inputfiles, win_cyclic):
            component.change(set_scenegraph_options, graph_inputs, graph_outputs)
        run_btn.click(run, inputs=[inputfiles, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr,
                                   shared_intrinsics, scenegraph_type, winsize, win_cyclic, refid] + display_inputs,
                      outputs=[state, outmodel, downloads, status], concurrency_limit=1)  # one alignment at a time
        wire_display_events(display_inputs, state, [outmodel, downloads, status], rerender)
        register_session_events(demo, workspaces)
    demo.session_workspaces = workspaces
    return demo


# ============================================================================================
# the original's headless entry points
# ============================================================================================
class SparseGAState:
    """A sparse scene with its cache folder and GLB file (the original's state object).

    ``close()`` removes ``cache_dir`` and ``outfile_name``; garbage collection does too when ``should_delete``
    (the original removed them on collection whatever the flag; here files a caller did not ask to delete stay).
    """

    def __init__(self, sparse_ga, should_delete=False, cache_dir=None, outfile_name=None):
        self.sparse_ga = sparse_ga
        self.cache_dir = cache_dir
        self.outfile_name = outfile_name
        self.should_delete = should_delete

    def close(self) -> None:
        """Remove the cache folder and the GLB file (idempotent)."""
        if self.cache_dir is not None and os.path.isdir(self.cache_dir):
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir = None
        if self.outfile_name is not None and os.path.isfile(self.outfile_name):
            os.remove(self.outfile_name)
        self.outfile_name = None

    def __del__(self):
        if getattr(self, "should_delete", False):
            self.close()


def get_3D_model_from_scene(silent, scene_state, min_conf_thr=2, as_pointcloud=False, mask_sky=False,
                            clean_depth=False, transparent_cams=False, cam_size=0.05, TSDF_thresh=0):
    """Write the GLB of ``scene_state.sparse_ga`` at ``scene_state.outfile_name`` (the original's signature).

    Returns the path, or None without a state or file name. The scene is not changed.
    """
    if scene_state is None or scene_state.outfile_name is None:
        return None
    display = DisplayOptions(min_conf_thr=float(min_conf_thr), cam_size=float(cam_size),
                             as_pointcloud=bool(as_pointcloud), mask_sky=bool(mask_sky),
                             clean_depth=bool(clean_depth), transparent_cams=bool(transparent_cams),
                             tsdf_thresh=float(TSDF_thresh))
    outfile = write_glb(scene_state.sparse_ga, scene_state.outfile_name, display)
    if not silent:
        logger.info("exported the 3D scene to %s", outfile)
    return outfile


def get_reconstructed_scene(outdir, gradio_delete_cache, model, device, silent, image_size, current_scene_state,
                            filelist, optim_level, lr1, niter1, lr2, niter2, min_conf_thr, matching_conf_thr,
                            as_pointcloud, mask_sky, clean_depth, transparent_cams, cam_size, scenegraph_type,
                            winsize, win_cyclic, refid, TSDF_thresh, shared_intrinsics, retrieval_model=None, **kw):
    """Images -> sparse global alignment -> GLB in ``outdir`` (the original's signature).

    ``retrieval_model`` (keyword): retrieval checkpoint for ``scenegraph_type='retrieval'`` (``winsize`` key images,
    ``refid`` neighbours).

    The cache folder and GLB file of ``current_scene_state`` are reused when given; otherwise a new
    ``*_cache`` folder (with ``gradio_delete_cache``) or ``<outdir>/cache``, and a new ``*_scene.glb`` file.
    ``**kw`` goes to :func:`mast3r.cloud_opt.sparse_ga.sparse_global_alignment`.

    Returns:
        ``(SparseGAState, glb path)``.

    Raises:
        InputError: bad files or options, before any inference.
    """
    checked = validate_run(filelist, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr, shared_intrinsics,
                           scenegraph_type, winsize, win_cyclic, refid, max_images=0, uploaded=False,
                           retrieval=retrieval_model is not None)
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    if current_scene_state is not None and current_scene_state.cache_dir is not None:
        cache_dir = current_scene_state.cache_dir
    elif gradio_delete_cache:
        cache_dir = tempfile.mkdtemp(suffix="_cache", dir=outdir)
    else:
        cache_dir = os.path.join(outdir, "cache")
    scene, _ = run_sparse_pipeline(model, checked.paths, device, image_size, checked.scene_graph, checked.options,
                                   cache_dir=cache_dir, verbose=not silent, retrieval_model=retrieval_model, **kw)
    if current_scene_state is not None and current_scene_state.outfile_name is not None:
        outfile_name = current_scene_state.outfile_name
    else:
        fd, outfile_name = tempfile.mkstemp(suffix="_scene.glb", dir=outdir)
        os.close(fd)
    scene_state = SparseGAState(scene, gradio_delete_cache, cache_dir, outfile_name)
    outfile = get_3D_model_from_scene(silent, scene_state, min_conf_thr, as_pointcloud, mask_sky, clean_depth,
                                      transparent_cams, cam_size, TSDF_thresh)
    return scene_state, outfile


def set_scenegraph_options(inputfiles, win_cyclic, refid, scenegraph_type):
    """(window column, window size, cyclic, reference id) updates for the uploads and the scene-graph kind."""
    gr = gradio()
    n = len(inputfiles) if inputfiles is not None else 1
    if scenegraph_type == "retrieval":  # window size -> key images, reference id -> neighbours
        keys, neighbours = retrieval_sliders(gr, n)
        return gr.Column(visible=True), keys, gr.Checkbox(value=bool(win_cyclic), visible=False), neighbours
    windowed = scenegraph_type in ("swin", "logwin")
    winsize, refid_slider = graph_sliders(gr, n, max_window_size(n, scenegraph_type, bool(win_cyclic)), windowed,
                                          scenegraph_type == "oneref")
    cyclic = gr.Checkbox(value=bool(win_cyclic), label="Cyclic sequence", visible=windowed)
    return gr.Column(visible=windowed), winsize, cyclic, refid_slider


def main_demo(tmpdirname, model, device, image_size, server_name, server_port, silent=False, share=False,
              gradio_delete_cache=False, retrieval_model=None):
    """Build and serve the demo (the original's signature); session folders go under ``tmpdirname``."""
    demo = build_demo(model, device, image_size, tmpdirname, silent, delete_cache=gradio_delete_cache or None,
                      retrieval_model=retrieval_model)
    launch_demo(demo, server_name, False, server_port, share=share, quiet=silent)


# ============================================================================================
# command line
# ============================================================================================
def validate_args(args: argparse.Namespace, model: Any = None) -> DemoInputs:
    """Check the flags before the model is loaded (see :func:`dust3r.app.launch.validate_demo_args`)."""
    if args.retrieval_model is not None:
        check_retrieval_model(args.retrieval_model)
    return validate_demo_args(args, MODEL_CLASSES, model)


def check_retrieval_model(path: str) -> None:
    """Check ``--retrieval_model`` before anything is loaded (:func:`mast3r.reconstruction.check_retrieval_input`).

    Raises:
        InputError: one line saying why image retrieval is not available.
    """
    check_retrieval_input(path)


def main(args: argparse.Namespace, model: Any = None) -> None:
    """Serve the demo (``model``: an already built model, else loaded from ``--weights`` / ``--model_name``).

    Bad flags, a checkpoint that cannot be loaded and a busy port end in ``SystemExit`` with one line.
    """
    checked = exit_on_input_error(validate_args, args, model)
    serve(args, build_demo, checked, model, retrieval_model=args.retrieval_model)
