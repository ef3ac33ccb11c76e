"""Scene-graph strings of :func:`dust3r.image_pairs.make_pairs`: the grammar, parsed without building any pair.

Torch-free, so that front ends can refuse a bad string (:func:`dust3r.inputs.check_scene_graph`) before anything
heavy is imported or loaded.

Forms: ``complete``; ``swin[-N][-noncyclic|-cyclic]`` and ``logwin[-N][-noncyclic|-cyclic]`` (window N >= 1,
default 3); ``oneref[-ID]`` (reference image ID, default 0); ``retrieval[-Na[-k]]`` (``Na`` key images, default
20, and each image's ``k`` nearest other images, default 10; both capped by the number of images when the pairs are
built), which needs a similarity matrix from an image-retrieval model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["SceneGraph", "parse_scene_graph", "ACCEPTED_FORMS", "DEFAULT_KEY_IMAGES", "DEFAULT_NEIGHBOURS"]

ACCEPTED_FORMS = ("'complete', 'swin', 'swin-N', 'swin-N-noncyclic', 'logwin', 'logwin-N', "
                  "'logwin-N-noncyclic', 'oneref', 'oneref-ID', 'retrieval-Na-k' (N >= 1 a window size, ID an image "
                 "index, Na key images, k neighbours, with a similarity matrix)")
_WINDOW_RE = re.compile(r"^(swin|logwin)(?:-(\d+))?(?:-(noncyclic|cyclic))?$")
_ONEREF_RE = re.compile(r"^oneref(?:-(\d+))?$")
_RETRIEVAL_RE = re.compile(r"^retrieval(?:-(\d+)(?:-(\d+))?)?$")
_DEFAULT_WINDOW = 3
#: defaults of ``retrieval[-Na[-k]]`` (the original demo's slider defaults)
DEFAULT_KEY_IMAGES = 20
DEFAULT_NEIGHBOURS = 10


def _bad_graph(scene_graph: Any, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(f"unknown scene graph {scene_graph!r}{extra}; accepted forms: {ACCEPTED_FORMS}")


@dataclass(frozen=True)
class SceneGraph:
    """A parsed scene-graph string (see the module docstring for the forms).

    Attributes:
        kind: ``'complete'``, ``'swin'``, ``'logwin'``, ``'oneref'`` or ``'retrieval'``.
        window: window size N of ``swin`` / ``logwin`` (None otherwise).
        cyclic: whether a ``swin`` / ``logwin`` window wraps around the sequence.
        ref: reference image of ``oneref`` (None otherwise).
        key_images: number Na of key images of ``retrieval`` (None otherwise).
        neighbours: number k of nearest other images of ``retrieval`` (None otherwise).
    """

    kind: str
    window: Optional[int] = None
    cyclic: bool = True
    ref: Optional[int] = None
    key_images: Optional[int] = None
    neighbours: Optional[int] = None

    @property
    def needs_similarity(self) -> bool:
        """True for graphs built from an image-similarity matrix (``retrieval``)."""
        return self.kind == "retrieval"


def parse_scene_graph(scene_graph: Any, n_images: Optional[int] = None) -> SceneGraph:
    """Parse a scene-graph string as :func:`make_pairs` reads it, without building any pair.

    Front ends call it to refuse a bad string before loading a model or images.

    Args:
        scene_graph: e.g. ``'complete'``, ``'swin-2-noncyclic'``, ``'logwin'``, ``'oneref-3'``, ``'retrieval-20-10'``.
        n_images: number of images, when known: an ``oneref`` index must be below it.

    Returns:
        the :class:`SceneGraph`.

    Raises:
        ValueError: not a string, unknown form, window < 1, ``oneref`` index out of range (the message quotes
            the string and lists the accepted forms).
    """
    if not isinstance(scene_graph, str):
        raise _bad_graph(scene_graph, f"expected a string, got {type(scene_graph).__name__}")
    if scene_graph == "complete":
        return SceneGraph("complete")
    match = _WINDOW_RE.match(scene_graph)
    if match:
        kind, win, cyc = match.groups()
        window = int(win) if win is not None else _DEFAULT_WINDOW
        if window < 1:
            raise _bad_graph(scene_graph, "the window size must be at least 1")
        return SceneGraph(kind, window=window, cyclic=cyc != "noncyclic")
    match = _ONEREF_RE.match(scene_graph)
    if match:
        ref = int(match.group(1)) if match.group(1) is not None else 0
        if n_images is not None and ref >= n_images:
            raise ValueError(f"scene graph {scene_graph!r}: reference image {ref} is out of range "
                             f"for {n_images} image(s)")
        return SceneGraph("oneref", ref=ref)
    match = _RETRIEVAL_RE.match(scene_graph)
    if match:
        n_keys, k = match.groups()
        return SceneGraph("retrieval", key_images=int(n_keys) if n_keys is not None else DEFAULT_KEY_IMAGES,
                          neighbours=int(k) if k is not None else DEFAULT_NEIGHBOURS)
    if scene_graph.startswith("retrieval"):
        raise _bad_graph(scene_graph, "retrieval graphs read 'retrieval-Na-k': Na key images and k neighbours, "
                         "two non-negative integers")
    raise _bad_graph(scene_graph)
