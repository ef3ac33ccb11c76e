"""Checks of the run options: output folder, scene graph, image size and the kind of checkpoint given."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Iterable, Optional, Tuple, Union

from .base import InputError, show_path

logger = logging.getLogger(__name__)

__all__ = ["RESULT_NAMES", "MAX_WINDOW", "MAX_IMAGE_SIZE", "check_writable_dir", "check_output_dir",
           "check_scene_graph", "check_image_size", "check_checkpoint_kind"]

#: entries an export folder of ``mast3r.reconstruct`` / the demos may hold (``dust3r.export.export_all``)
RESULT_NAMES: Tuple[str, ...] = ("scene.glb", "scene.ply", "colmap", "colmap.zip", "nerfstudio", "cameras.json",
                                 "depth")
#: largest window size of ``swin-N`` / ``logwin-N`` (larger ones only slow down ``make_pairs``)
MAX_WINDOW = 10_000
#: largest accepted ``image_size`` (the official checkpoints are trained at 512 and 224)
MAX_IMAGE_SIZE = 4096

#: model class of each checkpoint family, as written in a checkpoint's constructor string
_FAMILIES = {"AsymmetricCroCo3DStereo": "DUSt3R", "AsymmetricMASt3R": "MASt3R", "CroCoNet": "CroCo"}


# ----------------------------------------------------------------------------------------------------------------
# output folder
# ----------------------------------------------------------------------------------------------------------------
def _probe_writable(folder: str, target: str, what: str) -> None:
    """Create and remove an empty folder in ``folder``: the only sure test (root passes ``os.access`` on /proc)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=folder))
    except OSError as exc:
        raise InputError(f"cannot write the {what} {show_path(target)}: {show_path(folder)} is not writable "
                         f"({exc.strerror or exc})") from None


def _absolute(path: Union[str, "os.PathLike[str]"], what: str) -> str:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InputError(f"the {what} must be a non-empty path, got {path!r}")
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.islink(target) and not os.path.exists(target):
        raise InputError(f"the {what} {show_path(target)} is a broken symbolic link or a link loop")
    return target


def check_writable_dir(path: Union[str, "os.PathLike[str]"], what: str = "folder") -> str:
    """Check that ``path`` is a folder that can be written to, or can be created; returns it absolute.

    Whatever the folder holds is accepted (see :func:`check_output_dir` for result folders). Nothing is created
    or changed: a temporary empty folder is made and removed to test writability (``os.access`` says yes to root
    even on ``/proc``).

    Raises:
        InputError: empty path, broken link, a path that is a file (or lies below one), or a location that cannot
            be written.
    """
    target = _absolute(path, what)
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise InputError(f"the {what} {show_path(target)} exists and is not a folder")
        _probe_writable(target, target, what)
        return target
    ancestor = os.path.dirname(target)
    while not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise InputError(f"cannot create the {what} {show_path(target)}: {show_path(ancestor)} is a file")
    _probe_writable(ancestor, target, what)
    return target


def check_output_dir(path: Union[str, "os.PathLike[str]"], overwrite: bool = False,
                     what: str = "output folder") -> str:
    """Check that results can be written to ``path`` without mixing them with other files; returns it absolute.

    Nothing is created or changed (a temporary empty folder is made and removed to test writability).

    Args:
        path: the output folder (it need not exist).
        overwrite: allow a non-empty folder that holds a previous result (one of :data:`RESULT_NAMES`), which
            the front end then replaces whole. A non-empty folder that holds no result is refused even then.
        what: what to call it in messages (e.g. ``"--out"``).

    Raises:
        InputError: empty path, a path that is a file (or lies below one), a non-empty folder without
            ``overwrite``, a folder that is not a result folder, or a location that cannot be written.
    """
    target = _absolute(path, what)
    if os.path.isdir(target):
        try:
            entries = sorted(os.listdir(target))
        except OSError as exc:
            raise InputError(f"cannot read the {what} {show_path(target)}: {exc.strerror or exc}") from None
        listed = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
        if entries and not overwrite:
            raise InputError(f"the {what} {show_path(target)} is not empty ({listed}); choose a new folder or "
                             "pass --overwrite to replace a previous result")
        if entries and not any(e in RESULT_NAMES for e in entries):
            raise InputError(f"the {what} {show_path(target)} holds files that are not a reconstruction "
                             f"result ({listed}); --overwrite only replaces a previous result folder")
    return check_writable_dir(target, what)


# ----------------------------------------------------------------------------------------------------------------
# scene graph
# ----------------------------------------------------------------------------------------------------------------
def check_scene_graph(text: str, n_images: int, retrieval: bool = False) -> str:
    """Check a :func:`dust3r.image_pairs.make_pairs` scene-graph string for ``n_images`` images; returns it stripped.

    Grammar: ``complete``; ``swin[-N][-noncyclic|-cyclic]`` and ``logwin[-N][-noncyclic|-cyclic]`` with a window
    ``1 <= N <=`` :data:`MAX_WINDOW`; ``oneref[-ID]`` with ``ID < n_images``; ``retrieval[-Na[-k]]`` only when
    ``retrieval`` is True (the caller has an image-retrieval model to compute the similarity matrix).

    Raises:
        InputError: anything else (the message quotes the string and lists the accepted forms).
    """
    from dust3r.scene_graph import parse_scene_graph  # torch-free: the one grammar of make_pairs

    if not isinstance(text, str):
        raise InputError(f"scene graph must be a string, got {type(text).__name__}")
    graph = text.strip()
    try:
        parsed = parse_scene_graph(graph, n_images)
    except (ValueError, NotImplementedError) as exc:
        raise InputError(str(exc)) from None
    if parsed.needs_similarity and not retrieval:
        raise InputError(f"scene graph {text!r} needs an image-retrieval model to rank the images (the demo's "
                         "--retrieval_model); without one use 'complete', 'swin-N', 'logwin-N' or 'oneref-ID'")
    if parsed.window is not None and parsed.window > MAX_WINDOW:
        raise InputError(f"scene graph {text!r}: the window size must be between 1 and {MAX_WINDOW}, "
                         f"got {parsed.window}")
    return graph


# ----------------------------------------------------------------------------------------------------------------
# image size
# ----------------------------------------------------------------------------------------------------------------
def check_image_size(size, patch_size: int = 16, what: str = "image size") -> int:
    """Check the network image size (long side, or 224 for the short-side square crop); returns the size to use.

    A size that is not a multiple of ``patch_size`` is rounded to the nearest multiple, with a logged note.

    Raises:
        InputError: not an integer, below ``2 * patch_size`` or above :data:`MAX_IMAGE_SIZE`.
    """
    if isinstance(size, bool) or not (isinstance(size, int) or (isinstance(size, float) and size.is_integer())):
        raise InputError(f"the {what} must be a positive integer, got {size!r}")
    size = int(size)
    patch_size = int(patch_size)
    if size <= 0:
        raise InputError(f"the {what} must be a positive integer, got {size}")
    if size < 2 * patch_size:
        raise InputError(f"the {what} {size} is too small: it must be at least {2 * patch_size} pixels "
                         f"(two {patch_size}-pixel patches); 512 or 224 for the official models")
    if size > MAX_IMAGE_SIZE:
        raise InputError(f"the {what} {size} is too large (at most {MAX_IMAGE_SIZE}; the official models are "
                         "trained at 512 and 224)")
    if size % patch_size:
        rounded = max(patch_size, int(round(size / patch_size)) * patch_size)
        logger.warning("the %s %d is not a multiple of the model's patch size %d: using %d instead", what, size,
                       patch_size, rounded)
        return rounded
    return size


# ----------------------------------------------------------------------------------------------------------------
# checkpoint kind
# ----------------------------------------------------------------------------------------------------------------
def _pth_class(path: str) -> str:
    """Class named by a ``.pth`` file's constructor string (tensors memory-mapped, never read)."""
    from dust3r.utils.checkpoint import KNOWN_MODEL_CLASSES, CheckpointError, load_checkpoint_file, parse_constructor

    try:
        constructor = load_checkpoint_file(path, mmap=True)["constructor"]
    except CheckpointError as exc:
        raise InputError(str(exc)) from None
    if not constructor:
        raise InputError(f"checkpoint {show_path(path)} holds weights but no model description (no 'args.model' "
                         "constructor string)")
    try:
        name, _ = parse_constructor(constructor, KNOWN_MODEL_CLASSES)
    except ValueError as exc:
        raise InputError(f"checkpoint {show_path(path)}: {exc}") from None
    return name


def _hf_dir_class(path: str) -> str:
    """Class of a ``save_pretrained`` folder from its ``config.json`` (``model_class``, else its MASt3R keys)."""
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise InputError(f"checkpoint folder {show_path(path)} has no config.json (not a Hugging Face model "
                         "folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {show_path(config_path)}: {exc}") from None
    if not isinstance(config, dict):
        raise InputError(f"{show_path(config_path)} must hold a JSON object")
    if isinstance(config.get("model_class"), str):
        return config["model_class"]
    return "AsymmetricMASt3R" if ("two_confs" in config or "desc_mode" in config) else "AsymmetricCroCo3DStereo"


def _hub_class(name: str) -> Optional[str]:
    """Class implied by an official hub id (``naver/MASt3R_...`` / ``naver/DUSt3R_...``), else None."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    if base.startswith("mast3r"):
        return "AsymmetricMASt3R"
    if base.startswith("dust3r"):
        return "AsymmetricCroCo3DStereo"
    return None


def check_checkpoint_kind(path_or_name: Union[str, "os.PathLike[str]"],
                          expected_class_names: Union[str, Iterable[str]]) -> Optional[str]:
    """Check that a checkpoint holds one of the expected model classes, without loading its weights.

    Args:
        path_or_name: an official ``.pth`` file (its constructor string is read, the tensors are memory-mapped
            and never read), a ``save_pretrained`` folder (its ``config.json``) or a hub id (only the official
            ``MASt3R_*`` / ``DUSt3R_*`` names are recognised offline).
        expected_class_names: e.g. ``"AsymmetricMASt3R"`` or ``("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")``.

    Returns:
        the class name the checkpoint holds, or None for a hub id whose class cannot be told from its name.

    Raises:
        InputError: the path does not exist, is empty / truncated / not a checkpoint / unsafe, has no model
            description, or holds another class (the message says which, e.g. a DUSt3R file given for MASt3R).
    """
    expected = (expected_class_names,) if isinstance(expected_class_names, str) else tuple(expected_class_names)
    name = os.fspath(path_or_name)
    local = os.path.expanduser(name)
    if os.path.isfile(local):
        found: Optional[str] = _pth_class(local)
    elif os.path.isdir(local):
        found = _hf_dir_class(local)
    elif os.path.lexists(local):
        raise InputError(f"checkpoint {show_path(name)} is a broken symbolic link or not a regular file")
    elif (os.path.isabs(local) or local.startswith(".") or local.count("/") != 1
          or local.lower().endswith((".pth", ".pt", ".bin", ".safetensors"))):
        raise InputError(f"checkpoint not found: {show_path(name)} (no such file or folder, and not a hub id "
                         "of the form owner/name)")
    else:
        found = _hub_class(name)
    if found is not None and found not in expected:
        family = _FAMILIES.get(found, found)
        wanted = " or ".join(f"{c} ({_FAMILIES.get(c, c)})" for c in expected)
        raise InputError(f"checkpoint {show_path(name)} holds a {family} model ({found}), but {wanted} is needed")
    return found
