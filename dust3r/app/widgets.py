"""gradio widgets the demos share: the page, scene-graph controls, display sliders and their events.

gradio is imported lazily (:func:`gradio`), when a page is built.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Tuple

from dust3r.reconstruction import UserInputError
from dust3r.scene_graph import DEFAULT_KEY_IMAGES, DEFAULT_NEIGHBOURS

from ._gradio import gradio  # noqa: F401  (public through dust3r.app)
from .render import DisplayOptions

__all__ = ["CSS", "gradio", "make_blocks", "GRAPH_KINDS", "graph_kinds", "scene_graph_string", "max_window_size",
           "graph_sliders", "retrieval_sliders", "display_components", "wire_display_events"]

CSS = ".gradio-container {margin: 0 !important; min-width: 100%};"

#: (label, value) of the scene graphs the demos offer; ``retrieval`` only with a retrieval model
GRAPH_KINDS: Tuple[Tuple[str, str], ...] = (
    ("complete: all possible image pairs", "complete"), ("swin: sliding window", "swin"),
    ("logwin: sliding window with long range", "logwin"), ("oneref: match one image with all", "oneref"))


def make_blocks(gr: Any, title: str, delete_cache: Optional[int]):
    """``gr.Blocks`` with gradio's cache clean-up when ``delete_cache`` seconds are given."""
    kw = {"title": title}
    if delete_cache:
        kw["delete_cache"] = (int(delete_cache), int(delete_cache))
    return gr.Blocks(**kw)


def graph_kinds(with_logwin: bool = True, with_retrieval: bool = False) -> List[Tuple[str, str]]:
    """The scene-graph dropdown choices."""
    kinds = [k for k in GRAPH_KINDS if with_logwin or k[1] != "logwin"]
    if with_retrieval:
        kinds.append(("retrieval: connect views based on similarity", "retrieval"))
    return kinds


def scene_graph_string(kind: str, winsize: int = 1, win_cyclic: bool = False, refid: int = 0) -> str:
    """The ``make_pairs`` scene graph of the UI choices, e.g. ``('swin', 2, False)`` -> ``'swin-2-noncyclic'``;
    ``retrieval`` reads ``winsize`` as the number of key images and ``refid`` as the number of neighbours.

    Raises:
        UserInputError: an unknown kind.
    """
    if kind in ("swin", "logwin"):
        graph = f"{kind}-{int(winsize)}"
        return graph if win_cyclic else graph + "-noncyclic"
    if kind == "oneref":
        return f"oneref-{int(refid)}"
    if kind == "retrieval":  # the original's reuse of the sliders: window size = key images, id = neighbours
        return f"retrieval-{int(winsize)}-{int(refid)}"
    if kind == "complete":
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


def retrieval_sliders(gr: Any, n_images: int):
    """(key images, neighbours) sliders of the ``retrieval`` graph for ``n_images`` uploads (the original's
    defaults: min(20, n) key images, min(n - 1, 10) neighbours, as the ``retrieval`` scene graph's)."""
    n = max(int(n_images), 2)
    return (gr.Slider(label="Retrieval: Num. key images", value=min(DEFAULT_KEY_IMAGES, n), minimum=0, maximum=n,
                      step=1, visible=True),
            gr.Slider(label="Retrieval: Num neighbors", value=min(n - 1, DEFAULT_NEIGHBOURS), minimum=1,
                      maximum=max(n - 1, 2), step=1, visible=True))


def graph_sliders(gr: Any, n_images: int, top: int, windowed: bool, oneref: bool):
    """Updated (window size, reference id) sliders for ``n_images`` uploads and a largest window ``top``.

    gradio wants minimum < maximum, so the sliders' ranges never collapse to one value.
    """
    return (gr.Slider(label="Scene Graph: Window Size", value=top, minimum=1, maximum=max(top, 2), step=1,
                      visible=windowed),
            gr.Slider(label="Scene Graph: Id", value=0, minimum=0, maximum=max(n_images - 1, 1), step=1,
                      visible=oneref))


def display_components(gr: Any, defaults: DisplayOptions, with_tsdf: bool) -> List[Any]:
    """The display controls, in :class:`DisplayOptions` field order (TSDF last, only shown when ``with_tsdf``)."""
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


def wire_display_events(display_inputs: List[Any], state: Any, outputs: List[Any], rerender: Callable) -> None:
    """Re-render (never realign) when a display option changes; sliders on release, checkboxes on change."""
    inputs = [state] + display_inputs
    for comp in display_inputs:
        event = comp.release if comp.__class__.__name__ == "Slider" and hasattr(comp, "release") else comp.change
        event(rerender, inputs=inputs, outputs=outputs)
