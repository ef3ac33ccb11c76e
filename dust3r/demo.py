"""Browser demos (gradio): shared server / session plumbing, and the DUSt3R dense global-alignment demo.

``python3 demo_dust3r_ga.py --weights CHECKPOINT`` serves :func:`build_demo`: upload images, pick a scene graph
and an optimisation schedule, press **Run**; the images go through
``load_images -> make_pairs -> inference -> global_aligner(...).compute_global_alignment`` and the result is
shown as a GLB in a 3D viewer, with GLB / PLY / COLMAP / cameras-JSON downloads. Display options (confidence
threshold, camera size, point cloud or mesh, sky mask, depth clean-up, transparent cameras) re-render the stored
scene without recomputing the alignment.

The pieces that the MASt3R demo (:mod:`mast3r.demo`) shares live here too:

* :func:`get_args_parser`: the original command-line flags;
* :func:`server_address` / :func:`free_port`: the server listens on ``127.0.0.1`` unless ``--local_network``
  (``0.0.0.0``) or ``--server_name`` say otherwise, on the first free port from 7860;
* :class:`SessionWorkspaces`: one private temporary directory per browser session, removed when the session
  ends (gradio's ``unload`` event), when its state expires, and when the server stops;
* :func:`validate_uploads`: uploaded files must be readable images, between 1 and ``max_images`` of them;
* :func:`write_scene_files`: a scene (sparse or dense aligner output) -> GLB + downloads via :mod:`dust3r.export`.

gradio, trimesh and matplotlib are imported only when a demo is built or rendered.
"""
import argparse
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "get_args_parser", "server_address", "free_port", "model_source", "UserInputError", "validate_uploads",
    "SessionWorkspaces", "DisplayOptions", "DemoState", "write_scene_files", "scene_graph_string",
    "max_window_size", "reconstruct_dense", "build_demo", "launch_demo", "main",
]

HUB_OWNER = "naver"
DUST3R_MODELS = ("DUSt3R_ViTLarge_BaseDecoder_512_dpt", "DUSt3R_ViTLarge_BaseDecoder_512_linear",
                 "DUSt3R_ViTLarge_BaseDecoder_224_linear")
#: downloads offered next to the 3D view
DOWNLOAD_FORMATS = ("glb", "ply", "colmap", "cameras")
CSS = ".gradio-container {margin: 0 !important; min-width: 100%};"


# ============================================================================================
# command line and server address
# ============================================================================================
def get_args_parser(prog: str = "dust3r demo", default_model: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of the original demos (``--weights`` or ``--model_name``, server, device, image size...)."""
    p = argparse.ArgumentParser(prog=prog, description="3D reconstruction demo in the browser (gradio)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local_network", action="store_true",
                       help="make the app reachable from the local network (listen on 0.0.0.0)")
    where.add_argument("--server_name", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--image_size", type=int, default=512,
                   help="long side the images are resized to (512 or 224 for the official checkpoints)")
    p.add_argument("--server_port", type=int, default=None,
                   help="port to serve on (default: the first free port from 7860)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", default=None, help="path to a checkpoint (.pth file or Hugging Face folder)")
    weights.add_argument("--model_name", default=default_model,
                         help="checkpoint name on the Hugging Face hub (naver/<name>) or an owner/name hub id")
    p.add_argument("--retrieval_model", default=None, help="retrieval model (enables the 'retrieval' scene graph)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="pytorch device")
    p.add_argument("--tmp_dir", default=None, help="folder for the per-session temporary files")
    p.add_argument("--silent", action="store_true", help="less logging")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    p.add_argument("--gradio_delete_cache", type=int, default=None,
                   help="every this many seconds, delete gradio's cached files older than this many seconds")
    p.add_argument("--max_images", type=int, default=64, help="most images accepted in one upload")
    return p


def model_source(weights: Optional[str], model_name: Optional[str]) -> str:
    """The checkpoint to load: ``--weights`` if given, else the hub id of ``--model_name``."""
    if weights:
        return weights
    if not model_name:
        raise ValueError("give a checkpoint with --weights PATH or --model_name NAME")
    return model_name if "/" in model_name else f"{HUB_OWNER}/{model_name}"


def server_address(server_name: Optional[str], local_network: bool) -> str:
    """``--server_name`` if given, else ``0.0.0.0`` with ``--local_network``, else ``127.0.0.1``."""
    return server_name or ("0.0.0.0" if local_network else "127.0.0.1")


def free_port(start: int = 7860, host: str = "127.0.0.1", tries: int = 100) -> int:
    """First port >= ``start`` that can be bound on ``host``."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    raise OSError(f"no free port in [{start}, {start + tries})")


def _gradio():
    try:
        import gradio as gr
    except ImportError as exc:  # pragma: no cover - gradio is a demo extra
        raise ImportError("the browser demo needs gradio: pip install gradio (or pip install -e .[demo])") from exc
    return gr


# ============================================================================================
# uploads and per-session folders
# ============================================================================================
class UserInputError(ValueError):
    """Something the user gave (uploads, options) that the demo cannot use; the message is shown in the UI."""


def _upload_path(item: Any) -> str:
    """A gradio upload (str path, or an object with ``.name`` / ``.path``) as a path string."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    for attr in ("path", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, str):
            return value
    raise UserInputError(f"unexpected upload object of type {type(item).__name__}")


def validate_uploads(files: Optional[Sequence[Any]], max_images: int, min_images: int = 1,
                     allowed_roots: Optional[Sequence[str]] = None) -> List[str]:
    """Check the uploaded files and return their paths, in upload order.

    Every file must be a regular file (no folder, no symlink), inside one of ``allowed_roots`` when given, and
    decode as an image (Pillow); there must be ``min_images`` to ``max_images`` of them.

    Raises:
        UserInputError: with a message naming the first bad file (by base name) or the count problem.
    """
    import PIL.Image

    paths = [_upload_path(f) for f in (files or [])]
    if len(paths) < min_images:
        raise UserInputError(f"Please upload at least {min_images} image{'s' if min_images > 1 else ''} "
                             f"(got {len(paths)}).")
    if len(paths) > max_images:
        raise UserInputError(f"Too many images: {len(paths)} uploaded, at most {max_images} are accepted.")
    roots = [os.path.realpath(r) for r in (allowed_roots or [])]
    for path in paths:
        name = os.path.basename(path)
        if os.path.islink(path) or not os.path.isfile(path):
            raise UserInputError(f"{name!r} is not a regular uploaded file.")
        real = os.path.realpath(path)
        if roots and not any(os.path.commonpath([real, r]) == r for r in roots):
            raise UserInputError(f"{name!r} is not in the upload folder.")
        try:
            with PIL.Image.open(path) as img:
                img.verify()
        except Exception:  # PIL raises many types for non-images; the message is what matters
            raise UserInputError(f"{name!r} is not an image that can be read (expected JPEG, PNG, ...).") from None
    return paths


class SessionWorkspaces:
    """One private temporary folder per browser session, under a root folder owned by the server.

    ``create(session_id)`` makes ``<root>/session_<random>`` (mode 0700); ``release(session_id)`` removes it;
    ``close()`` removes the root. Thread-safe: gradio runs events in worker threads.
    """

    def __init__(self, parent: Optional[str] = None, prefix: str = "demo_"):
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._dirs: Dict[str, Path] = {}
        self._states: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def create(self, session_id: Optional[str]) -> Path:
        """The folder of ``session_id``, created on first use."""
        key = session_id or f"anonymous-{uuid.uuid4().hex}"
        with self._lock:
            path = self._dirs.get(key)
            if path is None or not path.is_dir():
                path = Path(tempfile.mkdtemp(prefix="session_", dir=self.root))
                self._dirs[key] = path
                logger.debug("session %s -> %s", key, path)
            return path

    def attach(self, session_id: Optional[str], state: "DemoState") -> None:
        """Remember the session's current scene so that ending the session also frees it (GPU memory)."""
        if session_id:
            with self._lock:
                self._states[session_id] = state

    def get(self, session_id: Optional[str]) -> Optional[Path]:
        with self._lock:
            return self._dirs.get(session_id) if session_id else None

    def release(self, session_id: Optional[str]) -> None:
        """Remove the folder of ``session_id`` and drop its scene (no-op if it has none)."""
        with self._lock:
            path = self._dirs.pop(session_id, None) if session_id else None
            state = self._states.pop(session_id, None) if session_id else None
        if state is not None:
            state.scene = None  # gradio keeps a closed session's state for a while: free the scene now
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            logger.debug("session %s ended, removed %s", session_id, path)

    def active(self) -> Dict[str, Path]:
        """``{session_id: folder}`` of the sessions that still have a folder."""
        with self._lock:
            return dict(self._dirs)

    def close(self) -> None:
        """Remove every session folder and the root."""
        with self._lock:
            self._dirs.clear()
            self._states.clear()
        shutil.rmtree(self.root, ignore_errors=True)


# ============================================================================================
# scene -> files
# ============================================================================================
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


@dataclass
class DemoState:
    """What a session keeps between events (held in a ``gr.State``): the aligned scene and where its files go."""
    scene: Any
    session_id: Optional[str]
    workdir: Path
    names: List[str] = field(default_factory=list)
    renders: int = 0
    # display events of one session may run concurrently (one gradio queue per event listener)
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)


def write_scene_files(scene: Any, out_dir: os.PathLike, display: DisplayOptions, names: Optional[List[str]] = None,
                      formats: Iterable[str] = DOWNLOAD_FORMATS) -> Dict[str, str]:
    """Render ``scene`` (a sparse or dense aligner output) to files with :func:`dust3r.export.export_all`.

    Args:
        scene: object exposing the scene contract (``imgs``, ``get_im_poses``, ``get_intrinsics``...).
        out_dir: folder for the files (created).
        display: display options (confidence threshold, clean-up, sky mask, TSDF, GLB style).
        names: image names (COLMAP / cameras JSON); default ``image_000.png``...
        formats: subset of ``glb``, ``ply``, ``colmap``, ``cameras``.

    Returns:
        ``{format: path}``; for ``colmap`` the path of ``colmap.zip`` (model + images).
    """
    from dust3r.export import export_all

    files = export_all(scene, str(out_dir), formats=tuple(formats), min_conf_thr=float(display.min_conf_thr),
                       clean_depth=bool(display.clean_depth), mask_sky=bool(display.mask_sky),
                       tsdf_thresh=float(display.tsdf_thresh), names=list(names) if names else None,
                       as_pointcloud=bool(display.as_pointcloud), cam_size=float(display.cam_size),
                       transparent_cams=bool(display.transparent_cams), colmap_zip=True)
    if "colmap" in files:
        files["colmap"] = files.pop("colmap_zip")
    return {k: str(v) for k, v in files.items()}


def render_state(state: DemoState, display: DisplayOptions) -> Dict[str, str]:
    """Write the files of ``state`` into a fresh ``render_NNN`` folder of its session, removing the previous one."""
    with state.lock:
        previous = state.workdir / f"render_{state.renders:03d}"
        state.renders += 1
        files = write_scene_files(state.scene, state.workdir / f"render_{state.renders:03d}", display, state.names)
        if previous.is_dir():
            shutil.rmtree(previous, ignore_errors=True)
    return files


# ============================================================================================
# scene graph controls
# ============================================================================================
def scene_graph_string(kind: str, winsize: int = 1, win_cyclic: bool = False, refid: int = 0) -> str:
    """The ``make_pairs`` scene graph of the UI choices, e.g. ``('swin', 2, False)`` -> ``'swin-2-noncyclic'``."""
    if kind in ("swin", "logwin"):
        graph = f"{kind}-{int(winsize)}"
        return graph if win_cyclic else graph + "-noncyclic"
    if kind == "oneref":
        return f"oneref-{int(refid)}"
    if kind in ("complete", "retrieval"):
        return kind
    raise UserInputError(f"unknown scene graph type {kind!r}")


def max_window_size(n_images: int, kind: str, win_cyclic: bool) -> int:
    """Largest useful window for ``swin`` / ``logwin`` on ``n_images`` (>= 1)."""
    n = max(int(n_images), 1)
    if kind == "swin":
        return max(1, math.ceil((n - 1) / 2)) if win_cyclic else max(1, n - 1)
    if kind == "logwin":
        if win_cyclic:
            half = math.ceil((n - 1) / 2)
            return max(1, math.ceil(math.log2(half))) if half > 1 else 1
        return max(1, math.ceil(math.log2(n))) if n > 1 else 1
    return 1


def graph_sliders(gr, n_images: int, top: int, windowed: bool, oneref: bool):
    """Updated (window size, reference id) sliders for ``n_images`` uploads and a largest window ``top``.

    gradio wants minimum < maximum, so the sliders' ranges never collapse to one value.
    """
    return (gr.Slider(value=top, minimum=1, maximum=max(top, 2), visible=windowed),
            gr.Slider(value=0, minimum=0, maximum=max(n_images - 1, 1), visible=oneref))


def prepare_views(paths: Sequence[str], image_size: int, patch_size: int = 16, verbose: bool = False):
    """``load_images`` on the paths; a single image is paired with a copy of itself (as the original demos)."""
    import copy

    from dust3r.utils.image import load_images

    try:
        views = load_images(list(paths), size=int(image_size), verbose=verbose, patch_size=patch_size)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"Could not read the images: {exc}") from None
    if len(views) == 1:
        twin = copy.deepcopy(views[0])
        twin["idx"], twin["instance"] = 1, "1"
        views.append(twin)
    return views, unique_names(paths, len(views))


def unique_names(paths: Sequence[str], count: int) -> List[str]:
    """``count`` distinct image names from the base names of ``paths`` (``name_1.ext``... where they repeat, and
    for the copy made of a single image): COLMAP and nerfstudio exports need distinct names."""
    names: List[str] = []
    for k in range(count):
        stem, ext = os.path.splitext(os.path.basename(paths[min(k, len(paths) - 1)]))
        name, n = stem + ext, 1
        while name in names:
            name = f"{stem}_{n}{ext}"
            n += 1
        names.append(name)
    return names


def _patch_size(model: Any) -> int:
    ps = getattr(getattr(model, "patch_embed", None), "patch_size", 16)
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


# ============================================================================================
# DUSt3R dense global alignment
# ============================================================================================
def reconstruct_dense(model: Any, paths: Sequence[str], device: str, image_size: int, scene_graph: str = "complete",
                      schedule: str = "linear", niter: int = 300, lr: float = 0.01, verbose: bool = False):
    """Images -> dense global alignment (DUSt3R recipe); returns ``(scene, names)``.

    Two images give a ``PairViewer`` (no optimisation), more a ``PointCloudOptimizer`` initialised with the
    minimum spanning tree and optimised for ``niter`` steps with the ``schedule`` learning-rate schedule.
    """
    from dust3r.cloud_opt import GlobalAlignerMode, global_aligner
    from dust3r.image_pairs import make_pairs
    from dust3r.inference import inference

    views, names = prepare_views(paths, image_size, _patch_size(model), verbose)
    try:
        pairs = make_pairs(views, scene_graph=scene_graph, prefilter=None, symmetrize=True)
    except (ValueError, NotImplementedError) as exc:
        raise UserInputError(str(exc)) from None
    output = inference(pairs, model, device, batch_size=1, verbose=verbose)
    mode = GlobalAlignerMode.PointCloudOptimizer if len(views) > 2 else GlobalAlignerMode.PairViewer
    scene = global_aligner(output, device=device, mode=mode, verbose=verbose)
    if mode == GlobalAlignerMode.PointCloudOptimizer and int(niter) > 0:
        scene.compute_global_alignment(init="mst", niter=int(niter), schedule=schedule, lr=float(lr))
    return scene, names


def _colorize(maps: Sequence[np.ndarray]) -> List[np.ndarray]:
    """(H, W) maps -> (H, W, 3) float images in [0, 1], normalised by the global max, jet colour map."""
    vmax = max(float(np.nanmax(m)) for m in maps) or 1.0
    try:
        from matplotlib import colormaps
        cmap = colormaps["jet"]
        return [cmap(np.clip(m / vmax, 0, 1))[..., :3].astype(np.float32) for m in maps]
    except ImportError:  # pragma: no cover
        return [np.repeat(np.clip(m / vmax, 0, 1)[..., None], 3, -1).astype(np.float32) for m in maps]


def dense_gallery(scene: Any) -> List[np.ndarray]:
    """rgb, depth, confidence images of every view (for the gallery under the 3D view)."""
    def numpy(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    depths = [numpy(d) for d in scene.get_depthmaps()]
    confs = [numpy(c) for c in getattr(scene, "im_conf", depths)]
    out: List[np.ndarray] = []
    for img, d, c in zip(scene.imgs, _colorize(depths), _colorize(confs)):
        out += [np.asarray(img, dtype=np.float32), d, c]
    return out


# ============================================================================================
# gradio app
# ============================================================================================
def _session_id(request: Any) -> Optional[str]:
    return getattr(request, "session_hash", None) if request is not None else None


def _upload_roots(demo: Any) -> Optional[List[str]]:
    """Where gradio stores this app's uploads (its cache folder): uploaded paths must lie inside."""
    root = getattr(demo, "GRADIO_CACHE", None)
    return [str(root)] if root else None


def _state_cleanup(workspaces: SessionWorkspaces) -> Callable[[Any], None]:
    def cleanup(state: Any) -> None:
        if isinstance(state, DemoState):
            workspaces.release(state.session_id)
    return cleanup


def make_blocks(gr, title: str, delete_cache: Optional[int]):
    """``gr.Blocks`` with gradio's cache clean-up when ``delete_cache`` seconds are given."""
    kw = {"title": title}
    if delete_cache:
        kw["delete_cache"] = (int(delete_cache), int(delete_cache))
    return gr.Blocks(**kw)


def register_session_events(demo, workspaces: SessionWorkspaces) -> None:
    """Create the session folder when a page loads, remove it when the page is closed (gradio ``unload``)."""
    gr = _gradio()

    def on_load(request: gr.Request):
        workspaces.create(_session_id(request))

    def on_unload(request: gr.Request):
        workspaces.release(_session_id(request))

    demo.load(on_load, inputs=None, outputs=None)
    demo.unload(on_unload)


def display_components(gr, defaults: DisplayOptions, with_tsdf: bool):
    """The display controls, in :class:`DisplayOptions` field order (TSDF last, only when ``with_tsdf``)."""
    with gr.Row():
        min_conf_thr = gr.Slider(label="min_conf_thr", value=defaults.min_conf_thr, minimum=0.0, maximum=20.0,
                                 step=0.1)
        cam_size = gr.Slider(label="cam_size", value=defaults.cam_size, minimum=0.001, maximum=1.0, step=0.001)
        tsdf = gr.Slider(label="TSDF Threshold", value=defaults.tsdf_thresh, minimum=0.0, maximum=1.0, step=0.01,
                         visible=with_tsdf)
    with gr.Row():
        as_pointcloud = gr.Checkbox(value=defaults.as_pointcloud, label="As pointcloud")
        mask_sky = gr.Checkbox(value=defaults.mask_sky, label="Mask sky")
        clean_depth = gr.Checkbox(value=defaults.clean_depth, label="Clean-up depthmaps")
        transparent_cams = gr.Checkbox(value=defaults.transparent_cams, label="Transparent cameras")
    return [min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams, tsdf]


def wire_display_events(display_inputs: List[Any], state, outputs: List[Any], rerender: Callable) -> None:
    """Re-render (never realign) when a display option changes; sliders on release, checkboxes on change."""
    inputs = [state] + display_inputs
    for comp in display_inputs:
        event = comp.release if hasattr(comp, "release") and comp.__class__.__name__ == "Slider" else comp.change
        event(rerender, inputs=inputs, outputs=outputs)


def rerender_outputs(state: Optional[DemoState], display: DisplayOptions):
    """(model3d path, download paths, status text) of a stored scene re-rendered with ``display``."""
    gr = _gradio()
    if not isinstance(state, DemoState) or state.scene is None:
        return None, None, "Nothing to show yet: upload images and press **Run**."
    if not state.workdir.is_dir():
        return None, None, "This session has expired: press **Run** again."
    try:
        files = render_state(state, display)
    except Exception as exc:  # keep the UI alive whatever the export hits
        logger.exception("rendering failed")
        gr.Warning(f"Rendering failed: {exc}")
        return None, None, f"Rendering failed: {exc}"
    return files.get("glb"), [files[k] for k in DOWNLOAD_FORMATS if k in files], "Display updated."


def build_demo(model: Any, device: str, image_size: int = 512, tmp_dir: Optional[str] = None, silent: bool = False,
               max_images: int = 64, delete_cache: Optional[int] = None, session_ttl: float = 4 * 3600):
    """The DUSt3R dense global-alignment app (a ``gr.Blocks``), serving ``model`` (any DUSt3R / MASt3R model).

    The returned app carries ``app.session_workspaces`` (:class:`SessionWorkspaces`), to close when the server
    stops (``launch_demo`` does).
    """
    gr = _gradio()
    workspaces = SessionWorkspaces(tmp_dir, prefix="dust3r_demo_")
    defaults = DisplayOptions(min_conf_thr=3.0, cam_size=0.05, as_pointcloud=False)

    def run(files, schedule, niter, scenegraph_type, winsize, refid, min_conf_thr, cam_size, as_pointcloud, mask_sky,
            clean_depth, transparent_cams, tsdf_thresh, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        display = DisplayOptions(min_conf_thr, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams,
                                 tsdf_thresh)
        session = _session_id(request)
        try:
            paths = validate_uploads(files, max_images, allowed_roots=_upload_roots(demo))
            graph = scene_graph_string(scenegraph_type, winsize, True, refid)
            progress(0.05, desc="inference + global alignment")
            scene, names = reconstruct_dense(model, paths, device, image_size, graph, schedule, int(niter or 0),
                                             verbose=not silent)
        except UserInputError as exc:
            gr.Warning(str(exc))
            return None, None, None, [], f"**Error:** {exc}"
        state = DemoState(scene, session, workspaces.create(session), names)
        workspaces.attach(session, state)
        progress(0.9, desc="export")
        glb, downloads, _ = rerender_outputs(state, display)
        return state, glb, downloads, dense_gallery(scene), f"Reconstructed {len(paths)} image(s)."

    def update_graph_controls(files, scenegraph_type):
        n = len(files) if files else 1
        return graph_sliders(gr, n, max_window_size(n, "swin", True), scenegraph_type == "swin",
                             scenegraph_type == "oneref")

    def rerender(state, *display_values):
        return rerender_outputs(state, DisplayOptions(*display_values))

    with make_blocks(gr, "DUSt3R Demo", delete_cache) as demo:
        state = gr.State(None, time_to_live=session_ttl, delete_callback=_state_cleanup(workspaces))
        gr.HTML('<h2 style="text-align: center;">DUSt3R Demo</h2>')
        inputfiles = gr.File(file_count="multiple", label="Images")
        with gr.Row():
            schedule = gr.Dropdown(["linear", "cosine"], value="linear", label="schedule",
                                   info="For global alignment!")
            niter = gr.Number(value=300, precision=0, minimum=0, maximum=5000, label="num_iterations",
                              info="For global alignment!")
            scenegraph_type = gr.Dropdown([("complete: all possible image pairs", "complete"),
                                           ("swin: sliding window", "swin"),
                                           ("oneref: match one image with all", "oneref")],
                                          value="complete", label="Scenegraph", info="Define how to make pairs",
                                          interactive=True)
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


def launch_demo(demo, server_name: Optional[str] = None, local_network: bool = False,
                server_port: Optional[int] = None, share: bool = False, block: bool = True, quiet: bool = False):
    """Serve ``demo`` on 127.0.0.1 (or as told) and the first free port from 7860; clean up session folders on exit.

    With ``block=False`` the call returns once the server runs (``demo.close()`` and
    ``demo.session_workspaces.close()`` are then the caller's). Returns the URL.
    """
    host = server_address(server_name, local_network)
    port = server_port or free_port(7860, host)
    workspaces: Optional[SessionWorkspaces] = getattr(demo, "session_workspaces", None)
    allowed = [str(workspaces.root)] if workspaces is not None else None
    logger.info("serving on http://%s:%d (session files in %s)", host, port,
                workspaces.root if workspaces else "?")
    try:
        demo.queue()
        demo.launch(server_name=host, server_port=port, share=share, allowed_paths=allowed, css=CSS, quiet=quiet,
                    prevent_thread_lock=not block, show_error=True)
    finally:
        if block and workspaces is not None:
            workspaces.close()
    return f"http://{host}:{port}"


def load_model(args: argparse.Namespace):
    """The model named by ``--weights`` / ``--model_name`` on ``--device``."""
    from dust3r.model_loading import load_pretrained

    return load_pretrained(model_source(args.weights, args.model_name), device=args.device, verbose=not args.silent)


def configure_tmp(tmp_dir: Optional[str]) -> None:
    """With ``--tmp_dir``, keep gradio's upload cache there too (instead of the system temp folder)."""
    if tmp_dir:
        os.makedirs(tmp_dir, exist_ok=True)
        os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(os.path.abspath(tmp_dir), "gradio"))


def main(args: argparse.Namespace, model: Any = None) -> None:
    """Run the DUSt3R global-alignment demo (``model``: an already built model, else loaded from the flags)."""
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO)
    configure_tmp(args.tmp_dir)
    if model is None:
        model = load_model(args)
    demo = build_demo(model, args.device, args.image_size, args.tmp_dir, args.silent, args.max_images,
                      args.gradio_delete_cache)
    launch_demo(demo, args.server_name, args.local_network, args.server_port, args.share, quiet=args.silent)
