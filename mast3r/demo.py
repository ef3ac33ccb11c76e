"""MASt3R browser demo (gradio): images in, cameras + 3D scene out, through the sparse global alignment.

Run ``python3 demo.py --weights checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth`` (or
``--model_name MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric`` for the Hugging Face hub) and open the printed
address. The server listens on 127.0.0.1 unless ``--local_network`` or ``--server_name`` say otherwise.

The page: multiple-image upload; coarse / fine learning rates and iterations; optimisation level (coarse,
refine, refine+depth); matching confidence threshold; shared intrinsics; scene graph (complete, swin, logwin,
oneref; retrieval only with ``--retrieval_model``) with window size / cyclic / reference id; **Run**. Then the
display options (min_conf_thr, cam_size, TSDF threshold, as pointcloud, mask sky, clean-up depth maps,
transparent cameras) re-render the stored scene *without* recomputing the alignment. The 3D view shows the GLB;
GLB, PLY, COLMAP (zip) and cameras JSON are offered as downloads.

Each browser session works in its own temporary folder (under ``--tmp_dir`` when given), removed when the page
is closed, when the session state expires, and when the server stops (:class:`dust3r.demo.SessionWorkspaces`).
The app is built by :func:`build_demo` from a model *object*, so tests can serve a tiny checkpoint or the
synthetic ``OracleModel``.
"""
import argparse
import logging
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from dust3r.demo import (DemoState, DisplayOptions, SessionWorkspaces, UserInputError, configure_tmp,  # noqa: F401
                         display_components, free_port, graph_sliders, launch_demo, make_blocks, max_window_size, model_source,
                         register_session_events, rerender_outputs, scene_graph_string, server_address,
                         validate_uploads, wire_display_events, _gradio, _session_id, _state_cleanup,
                         _upload_roots)
from dust3r.demo import get_args_parser as _base_args_parser
from dust3r.inference import inference
from dust3r.utils.image import load_images, rgb

from .fast_nn import fast_reciprocal_NNs
from .reconstruct import ReconstructError, SparseOptions, run_sparse_pipeline
from .viz import draw_matches

logger = logging.getLogger(__name__)

__all__ = ["get_args_parser", "model_source", "free_port", "server_address", "MatchResult", "match_two_images",
           "build_demo", "main"]

DEFAULT_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"


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
# the multi-view app
# ============================================================================================
def _graph_kinds(with_retrieval: bool) -> List[tuple]:
    kinds = [("complete: all possible image pairs", "complete"), ("swin: sliding window", "swin"),
             ("logwin: sliding window with long range", "logwin"), ("oneref: match one image with all", "oneref")]
    if with_retrieval:
        kinds.append(("retrieval: connect views based on similarity", "retrieval"))
    return kinds


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
        retrieval_model: enables the ``retrieval`` scene graph (the pairing itself needs the retrieval module).
        session_ttl: seconds a stored scene stays available without a new Run.

    Returns:
        the ``gr.Blocks`` app, with ``app.session_workspaces`` (:class:`SessionWorkspaces`).
    """
    gr = _gradio()
    workspaces = SessionWorkspaces(tmp_dir, prefix="mast3r_demo_")
    defaults = DisplayOptions()  # min_conf_thr 1.5, cam_size 0.2, point cloud, clean depth

    def run(files, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr, shared_intrinsics, scenegraph_type,
            winsize, win_cyclic, refid, min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth,
            transparent_cams, tsdf_thresh, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        display = DisplayOptions(min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams,
                                 tsdf_thresh)
        session = _session_id(request)
        workdir = workspaces.create(session)
        try:
            paths = validate_uploads(files, max_images, allowed_roots=_upload_roots(demo))
            graph = scene_graph_string(scenegraph_type, winsize, win_cyclic, refid)
            options = SparseOptions(lr1=float(lr1), niter1=int(niter1 or 0), lr2=float(lr2), niter2=int(niter2 or 0),
                                    optim_level=optim_level, matching_conf_thr=float(matching_conf_thr),
                                    shared_intrinsics=bool(shared_intrinsics))
            scene, names = run_sparse_pipeline(model, paths, device, image_size, graph, options,
                                               cache_dir=str(workdir / "cache"), verbose=not silent,
                                               progress=progress)
        except (UserInputError, ReconstructError) as exc:
            gr.Warning(str(exc))
            return None, None, None, f"**Error:** {exc}"
        state = DemoState(scene, session, workdir, names)
        workspaces.attach(session, state)
        progress(0.95, desc="rendering")
        glb, downloads, _ = rerender_outputs(state, display)
        n = len(paths)
        return state, glb, downloads, f"Reconstructed {n} image{'s' if n > 1 else ''} ({graph})."

    def update_graph_controls(files, win_cyclic, scenegraph_type):
        n = len(files) if files else 1
        windowed = scenegraph_type in ("swin", "logwin")
        winsize, refid = graph_sliders(gr, n, max_window_size(n, scenegraph_type, win_cyclic), windowed,
                                       scenegraph_type == "oneref")
        return gr.Column(visible=windowed), winsize, gr.Checkbox(value=win_cyclic, visible=windowed), refid

    def rerender(state, *display_values):
        return rerender_outputs(state, DisplayOptions(*display_values))

    with make_blocks(gr, "MASt3R Demo", delete_cache) as demo:
        # the scene is kept per session so that display options re-render without a new alignment
        state = gr.State(None, time_to_live=session_ttl, delete_callback=_state_cleanup(workspaces))
        gr.HTML('<h2 style="text-align: center;">MASt3R Demo</h2>')
        inputfiles = gr.File(file_count="multiple", label="Images", elem_id="inputfiles")
        with gr.Row():
            lr1 = gr.Slider(label="Coarse LR", value=0.07, minimum=0.01, maximum=0.2, step=0.01)
            niter1 = gr.Number(value=500, precision=0, minimum=0, maximum=10_000, label="num_iterations",
                               info="For coarse alignment!")
            lr2 = gr.Slider(label="Fine LR", value=0.014, minimum=0.005, maximum=0.05, step=0.001)
            niter2 = gr.Number(value=200, precision=0, minimum=0, maximum=100_000, label="num_iterations",
                               info="For refinement!")
            optim_level = gr.Dropdown(["coarse", "refine", "refine+depth"], value="refine+depth", label="OptLevel",
                                      info="Optimization level")
        with gr.Row():
            matching_conf_thr = gr.Slider(label="Matching Confidence Thr", value=5.0, minimum=0.0, maximum=30.0,
                                          step=0.1, info="Before Fallback to Regr3D!")
            shared_intrinsics = gr.Checkbox(value=False, label="Shared intrinsics",
                                            info="Only optimize one set of intrinsics for all views")
            scenegraph_type = gr.Dropdown(_graph_kinds(retrieval_model is not None), value="complete",
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

        graph_inputs = [inputfiles, win_cyclic, scenegraph_type]
        graph_outputs = [win_col, winsize, win_cyclic, refid]
        scenegraph_type.change(update_graph_controls, graph_inputs, graph_outputs)
        inputfiles.change(update_graph_controls, graph_inputs, graph_outputs)
        win_cyclic.change(update_graph_controls, graph_inputs, graph_outputs)
        run_btn.click(run, inputs=[inputfiles, optim_level, lr1, niter1, lr2, niter2, matching_conf_thr,
                                   shared_intrinsics, scenegraph_type, winsize, win_cyclic, refid] + display_inputs,
                      outputs=[state, outmodel, downloads, status], concurrency_limit=1)  # one alignment at a time
        wire_display_events(display_inputs, state, [outmodel, downloads, status], rerender)
        register_session_events(demo, workspaces)
    demo.session_workspaces = workspaces
    return demo


def main(args: argparse.Namespace, model: Any = None) -> None:
    """Serve the demo (``model``: an already built model, else loaded from ``--weights`` / ``--model_name``)."""
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO)
    if args.retrieval_model is not None:
        import importlib.util
        if importlib.util.find_spec("mast3r.retrieval") is None:
            raise SystemExit("--retrieval_model: image retrieval is not available in this installation; "
                             "use the complete / swin / logwin / oneref scene graphs")
    configure_tmp(args.tmp_dir)
    if model is None:
        from dust3r.model_loading import load_pretrained
        model = load_pretrained(model_source(args.weights, args.model_name), device=args.device,
                                verbose=not args.silent)
    demo = build_demo(model, args.device, args.image_size, args.tmp_dir, args.silent, args.max_images,
                      args.gradio_delete_cache, args.retrieval_model)
    launch_demo(demo, args.server_name, args.local_network, args.server_port, args.share, quiet=args.silent)
