"""The front-end layer the browser demos share (gradio imported lazily, only when a page is built or served).

* :mod:`.flags`: the original command-line flags (:func:`get_args_parser`) and :func:`model_source`;
* :mod:`.checks`: command-line checks run before any heavy work (device, checkpoint kind), on top of
  :mod:`dust3r.inputs`;
* :mod:`.sessions`: upload checks, one private folder per browser session (:class:`SessionWorkspaces`), the
  per-session :class:`DemoState`;
* :mod:`.render`: scene -> GLB and downloads (:func:`write_scene_files`), re-render on display changes;
* :mod:`.widgets`: the page, scene-graph controls, display sliders and their events;
* :mod:`.launch`: address (127.0.0.1 unless told otherwise), free port, model loading, launch and clean-up.

The demos themselves are :mod:`dust3r.demo` (dense global alignment) and :mod:`mast3r.demo` (sparse); the
pipelines they run live in the non-UI modules :mod:`dust3r.reconstruction` and :mod:`mast3r.reconstruction`.
"""
from .checks import check_device, check_weights
from .flags import DUST3R_MODELS, HUB_OWNER, default_device, get_args_parser, model_source
from .launch import configure_tmp, free_port, launch_demo, load_model, server_address
from .render import (DOWNLOAD_FORMATS, DisplayOptions, colorize, dense_gallery, render_state, rerender_outputs,
                     write_glb, write_scene_files)
from .sessions import (DemoState, SessionWorkspaces, UserInputError, register_session_events, session_id,
                       state_cleanup, upload_path, upload_roots, validate_uploads)
from .widgets import (CSS, GRAPH_KINDS, display_components, gradio, graph_kinds, graph_sliders, make_blocks,
                      max_window_size, retrieval_sliders, scene_graph_string, wire_display_events)

__all__ = [
    "check_device", "check_weights",
    "DUST3R_MODELS", "HUB_OWNER", "default_device", "get_args_parser", "model_source",
    "configure_tmp", "free_port", "launch_demo", "load_model", "server_address",
    "DOWNLOAD_FORMATS", "DisplayOptions", "colorize", "dense_gallery", "render_state", "rerender_outputs",
    "write_glb", "write_scene_files",
    "DemoState", "SessionWorkspaces", "UserInputError", "register_session_events", "session_id", "state_cleanup",
    "upload_path", "upload_roots", "validate_uploads",
    "CSS", "GRAPH_KINDS", "display_components", "gradio", "graph_kinds", "graph_sliders", "make_blocks",
    "max_window_size", "retrieval_sliders", "scene_graph_string", "wire_display_events",
]
