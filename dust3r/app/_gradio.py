"""The one lazy importer of gradio for the app modules (importing :mod:`dust3r.app` never imports gradio)."""
from __future__ import annotations


def gradio():
    """The ``gradio`` module, with an actionable message when it is not installed."""
    try:
        import gradio as gr
    except ImportError as exc:  # pragma: no cover - gradio is a demo extra
        raise ImportError("the browser demo needs gradio: pip install gradio (or pip install -e .[demo])") from exc
    return gr
