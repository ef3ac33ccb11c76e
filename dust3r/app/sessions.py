"""Per-session state of a demo: upload checks, one private folder per browser session, the stored scene.

gradio is imported only inside :func:`register_session_events`.
"""

import logging
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from dust3r.reconstruction import UserInputError

logger = logging.getLogger(__name__)

__all__ = ["UserInputError", "upload_path", "validate_uploads", "SessionWorkspaces", "DemoState", "session_id",
           "upload_roots", "state_cleanup", "register_session_events"]


def upload_path(item: Any) -> str:
    """A gradio upload (str path, or an object with ``.path`` / ``.name``) as a path string."""
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

    paths = [upload_path(f) for f in (files or [])]
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
        self._states: Dict[str, DemoState] = {}
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

    def attach(self, session_id: Optional[str], state: DemoState) -> None:
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


def session_id(request: Any) -> Optional[str]:
    """The browser session of a gradio request (None outside a request)."""
    return getattr(request, "session_hash", None) if request is not None else None


def upload_roots(demo: Any) -> Optional[List[str]]:
    """Where gradio stores this app's uploads (its cache folder): uploaded paths must lie inside."""
    root = getattr(demo, "GRADIO_CACHE", None)
    return [str(root)] if root else None


def state_cleanup(workspaces: SessionWorkspaces) -> Callable[[Any], None]:
    """``gr.State`` delete callback: an expired state releases its session folder."""
    def cleanup(state: Any) -> None:
        if isinstance(state, DemoState):
            workspaces.release(state.session_id)
    return cleanup


def register_session_events(demo: Any, workspaces: SessionWorkspaces) -> None:
    """Create the session folder when a page loads, remove it when the page is closed (gradio ``unload``)."""
    from ._gradio import gradio

    gr = gradio()

    def on_load(request: gr.Request):
        workspaces.create(session_id(request))

    def on_unload(request: gr.Request):
        workspaces.release(session_id(request))

    demo.load(on_load, inputs=None, outputs=None)
    demo.unload(on_unload)
