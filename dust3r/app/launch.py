"""Serving a demo: address and port, model loading with one-line errors, launch and clean-up."""
from __future__ import annotations

import argparse
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from dust3r.inputs import InputError, check_image_size, check_writable_dir
from dust3r.reconstruction import UserInputError
from dust3r.utils.views import model_patch_size

from .checks import check_device, check_weights
from .sessions import SessionWorkspaces
from .widgets import CSS

logger = logging.getLogger(__name__)

__all__ = ["server_address", "free_port", "load_model", "launch_demo", "configure_tmp", "DemoInputs",
           "validate_demo_args", "serve"]


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


def load_model(source: str, device: str, verbose: bool = False):
    """The model of ``source`` (file, Hugging Face folder or hub id) on ``device``.

    Raises:
        UserInputError: one line naming ``source`` whatever went wrong (missing file, offline hub, bad file).
    """
    from dust3r.model_loading import load_pretrained

    try:
        return load_pretrained(source, device=device, verbose=verbose)
    except Exception as exc:  # any loading failure becomes one clear line
        logger.debug("loading %s failed", source, exc_info=True)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(f"cannot load model weights from {source!r}: {message}") from None


def configure_tmp(tmp_dir: Optional[str]) -> None:
    """With ``--tmp_dir``, keep gradio's upload cache there too (instead of the system temp folder).

    This sets ``GRADIO_TEMP_DIR`` (when unset) for the process: call it from a script's ``main`` only.
    """
    if tmp_dir:
        os.makedirs(tmp_dir, exist_ok=True)
        os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(os.path.abspath(tmp_dir), "gradio"))


def launch_demo(demo: Any, server_name: Optional[str] = None, local_network: bool = False,
                server_port: Optional[int] = None, share: bool = False, block: bool = True,
                quiet: bool = False) -> str:
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


@dataclass
class DemoInputs:
    """A demo's command line, checked (nothing loaded yet)."""
    source: Optional[str]  # checkpoint to load; None when a model object is given
    device: str
    image_size: int
    tmp_dir: Optional[str]


def validate_demo_args(args: argparse.Namespace, expected_classes: Sequence[str], model: Any = None) -> DemoInputs:
    """Check a demo's flags before the model is loaded or gradio imported.

    Checks: the checkpoint (a local file exists and holds one of ``expected_classes``), the device, the image
    size (rounded to the patch size with a note), ``--tmp_dir`` writable, ``--max_images`` positive.

    Raises:
        InputError: one line naming the first bad flag.
    """
    source = None if model is not None else check_weights(args.weights, args.model_name, expected_classes)
    device = check_device(args.device)
    image_size = check_image_size(args.image_size, model_patch_size(model), "--image_size")
    tmp_dir = check_writable_dir(args.tmp_dir, "--tmp_dir") if args.tmp_dir else None
    if args.max_images < 1:
        raise InputError(f"--max_images must be at least 1, got {args.max_images}")
    return DemoInputs(source, device, image_size, tmp_dir)


def serve(args: argparse.Namespace, build_demo: Callable[..., Any], checked: DemoInputs, model: Any = None,
          **build_kw: Any) -> None:
    """Load the model of ``checked`` (unless given), build the app and serve it as the flags say.

    The app is ``build_demo(model, device, image_size, tmp_dir, silent, max_images, gradio_delete_cache,
    **build_kw)``. A model that cannot be loaded, gradio missing and a port that cannot be bound end in
    ``SystemExit`` with one line.
    """
    try:
        if model is None:
            model = load_model(checked.source, checked.device, verbose=not args.silent)
        configure_tmp(checked.tmp_dir)
        demo = build_demo(model, checked.device, checked.image_size, checked.tmp_dir, args.silent, args.max_images,
                          args.gradio_delete_cache, **build_kw)
        launch_demo(demo, args.server_name, args.local_network, args.server_port, args.share, quiet=args.silent)
    except (InputError, OSError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from None


def exit_on_input_error(func: Callable[..., Any], *a: Any, **k: Any) -> Any:
    """``func(*a, **k)``, an :class:`InputError` turned into ``SystemExit('error: <message>')`` (one line)."""
    try:
        return func(*a, **k)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None

