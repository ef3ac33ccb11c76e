"""Command-line multi-view reconstruction with MASt3R: sparse global alignment, or pycolmap mapping of MASt3R matches.

::

    python3 -m mast3r.reconstruct IMAGES_OR_DIR [...] --weights CKPT | --model_name NAME --out DIR [--overwrite] \\
        [--scene-graph complete|swin-N|logwin-N|oneref-ID|retrieval-Na-k --retrieval-model R.pth] \\
        [--image-size 512] [--known-intrinsics K.json] \\
        [--device cuda] [--niter1 500 --niter2 200 --lr1 0.07 --lr2 0.014 --optim-level refine+depth] \\
        [--formats glb,ply,colmap,nerfstudio,cameras,depth] \\
        [--mapper sparse_ga|colmap_global|colmap_incremental [--match-cache DIR] [--camera-model SIMPLE_PINHOLE]
         [--conf-thr 1.001] [--min-track-length 2]]

The pipeline is :mod:`mast3r.reconstruction` (the browser demo runs the same one)::

    validate_args -> load model -> run_sparse_pipeline -> export_scene (into a staging folder) -> move to --out

With ``--mapper colmap_global`` (GLOMAP) or ``colmap_incremental`` the cameras come from pycolmap's mappers on a
COLMAP database of MASt3R matches instead (:func:`mast3r.reconstruction.run_mapping_pipeline`, for sets of
hundreds of images): the matches stream through a resumable on-disk cache (``--match-cache``, reused by later
runs with the same model, images and options), and ``--out`` also gets ``mapper/`` (the database and the mapper's
own model with its full tracks, ``mapper/sparse/0``).

Everything that can be checked is checked first, by :func:`validate_args` (images exist and decode, output
folder writable, checkpoint holds a MASt3R model, device available, scene graph, intrinsics file): each problem
is printed as one ``error: ...`` line and the exit code is 2, before any model or image is loaded, and nothing is
written. ``--out`` is owned by the run: the results are written into a staging folder beside it and moved into
place at the end, so a failed run leaves nothing behind. An existing non-empty ``--out`` is refused unless
``--overwrite`` is given, which replaces it whole (never a mix of two runs).

``main(argv) -> int`` returns 0 on success, 2 for bad inputs, 1 for an unexpected failure (one line as well; the
traceback is logged at debug level).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from dust3r.app.checks import check_device, check_weights
from dust3r.app.flags import default_device
from dust3r.inputs import InputError, check_image_size, check_output_dir, check_scene_graph, read_image_size
from dust3r.reconstruction import fit_image_size
from dust3r.utils.views import model_patch_size
from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS, OPTIM_LEVELS
from mast3r.reconstruction import (ALL_FORMATS, DEFAULT_MODEL, MAPPERS, ReconstructError,  # noqa: F401
                                   SparseOptions, check_retrieval_input, collect_images, export_scene, parse_formats,
                                   read_known_intrinsics, run_mapping_pipeline, run_sparse_pipeline)

logger = logging.getLogger(__name__)

__all__ = ["SparseOptions", "run_sparse_pipeline", "collect_images", "read_known_intrinsics", "export_scene",
           "ValidatedInputs", "validate_args", "get_args_parser", "main", "cli", "ReconstructError"]

_parse_formats = parse_formats  # the name the first CLI used
#: the checkpoint classes this CLI can run (it needs descriptors)
MODEL_CLASSES = ("AsymmetricMASt3R",)


def get_args_parser() -> argparse.ArgumentParser:
    d = ALIGNMENT_DEFAULTS
    p = argparse.ArgumentParser(prog="mast3r-reconstruct",
                                description="Reconstruct cameras and a 3D point cloud from images with MASt3R.")
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", default=None, help="checkpoint file (.pth) or Hugging Face folder")
    src.add_argument("--model_name", "--model-name", dest="model_name", default=None,
                     help=f"hub checkpoint name (naver/<name>) or owner/name id (default {DEFAULT_MODEL})")
    p.add_argument("--out", required=True,
                   help="output folder (written at the end of the run; an existing non-empty one needs --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder whole")
    p.add_argument("--scene-graph", "--scene_graph", dest="scene_graph", default="complete",
                   help="complete | swin-N[-noncyclic] | logwin-N[-noncyclic] | oneref-ID | retrieval-Na-k "
                        "(with --retrieval-model)")
    p.add_argument("--image-size", "--image_size", dest="image_size", type=int, default=512,
                   help="long side of the network input (rounded to a multiple of the patch size)")
    p.add_argument("--known-intrinsics", "--known_intrinsics", dest="known_intrinsics", default=None,
                   help="JSON with fx, fy, cx, cy in original-image pixels, shared or per image")
    p.add_argument("--device", default=default_device())
    p.add_argument("--lr1", type=float, default=d["lr1"], help="coarse alignment learning rate")
    p.add_argument("--niter1", type=int, default=d["niter1"], help="coarse alignment iterations")
    p.add_argument("--lr2", type=float, default=d["lr2"], help="refinement learning rate")
    p.add_argument("--niter2", type=int, default=d["niter2"], help="refinement iterations")
    p.add_argument("--optim-level", "--optim_level", dest="optim_level", default=d["optim_level"],
                   choices=OPTIM_LEVELS)
    p.add_argument("--matching-conf-thr", "--matching_conf_thr", dest="matching_conf_thr", type=float,
                   default=d["matching_conf_thr"])
    p.add_argument("--shared-intrinsics", "--shared_intrinsics", dest="shared_intrinsics", action="store_true")
    p.add_argument("--min-conf-thr", "--min_conf_thr", dest="min_conf_thr", type=float, default=d["min_conf_thr"],
                   help="confidence threshold of the exported dense points")
    p.add_argument("--no-clean-depth", dest="clean_depth", action="store_false",
                   help="keep depth pixels that other views contradict")
    p.add_argument("--tsdf-thresh", "--TSDF_thresh", dest="tsdf_thresh", type=float, default=0.0)
    p.add_argument("--formats", default="glb,ply,colmap,cameras",
                   help=f"comma-separated subset of {','.join(ALL_FORMATS)} (or 'all')")
    p.add_argument("--retrieval-model", "--retrieval_model", dest="retrieval_model", default=None,
                   help="retrieval checkpoint for --scene-graph retrieval-Na-k")
    p.add_argument("--mapper", default="sparse_ga", choices=MAPPERS,
                   help="sparse_ga: MASt3R sparse global alignment; colmap_global / colmap_incremental: pycolmap's "
                        "GLOMAP / incremental mapper on MASt3R matches (large image sets)")
    p.add_argument("--match-cache", "--match_cache", dest="match_cache", default=None,
                   help="colmap mappers: persistent match cache folder (resumable; default: inside the run)")
    p.add_argument("--camera-model", "--camera_model", dest="camera_model", default="SIMPLE_PINHOLE",
                   choices=("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "OPENCV"),
                   help="colmap mappers: COLMAP camera model")
    p.add_argument("--conf-thr", "--conf_thr", dest="conf_thr", type=float, default=1.001,
                   help="colmap mappers: matches of lower descriptor confidence are dropped (the original's default)")
    p.add_argument("--min-track-length", "--min_len_track", dest="min_track_length", type=int, default=2,
                   help="colmap mappers: drop keypoints whose track spans fewer images")
    p.add_argument("--quiet", "-q", action="store_true", help="only errors")
    return p


@dataclass
class ValidatedInputs:
    """Everything :func:`main` needs, checked: no model or image loaded yet."""
    paths: List[str]
    out_dir: str
    formats: Tuple[str, ...]
    options: SparseOptions
    device: str
    image_size: int
    scene_graph: str
    known_K: Optional[Dict[int, np.ndarray]]
    source: Optional[str]  # checkpoint to load (None when a model object is given)
    mapping: Any = None  # MappingOptions of the colmap mappers (None: sparse_ga)


class InvalidInputs(ReconstructError):
    """One or more bad inputs; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _inside(path: str, folder: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, root]) == root


def _check_out(args: argparse.Namespace, inputs: Sequence[str]) -> str:
    out_dir = check_output_dir(args.out, overwrite=args.overwrite, what="--out")
    if any(_inside(p, out_dir) for p in inputs):
        raise ReconstructError(f"--out {args.out!r} contains input files; choose another output folder")
    return out_dir


def _image_size(size: int, paths: Optional[Sequence[str]], patch_size: int) -> int:
    """``--image-size`` checked, and fitted to the images when they could be read (see ``fit_image_size``)."""
    if paths is None:
        return check_image_size(size, patch_size, "--image-size")
    return fit_image_size(size, [read_image_size(p) for p in paths], patch_size, "--image-size")


def validate_args(args: argparse.Namespace, model: Any = None) -> ValidatedInputs:
    """Check every input of the command line before any heavy work.

    Raises:
        InvalidInputs: with one line per problem found (all checks run, except those that depend on a failed one).
    """
    problems: List[str] = []

    def attempt(check, *a, **k):
        try:
            return check(*a, **k)
        except InputError as exc:
            problems.append(str(exc))
            return None

    formats = attempt(parse_formats, args.formats)
    options = attempt(SparseOptions, lr1=args.lr1, niter1=args.niter1, lr2=args.lr2, niter2=args.niter2,
                      optim_level=args.optim_level, matching_conf_thr=args.matching_conf_thr,
                      shared_intrinsics=args.shared_intrinsics)
    paths = attempt(collect_images, args.images)
    image_size = attempt(_image_size, args.image_size, paths, model_patch_size(model))
    if paths is not None:
        attempt(check_scene_graph, args.scene_graph, max(len(paths), 2), retrieval=args.retrieval_model is not None)
    if args.retrieval_model is not None:
        attempt(check_retrieval_input, args.retrieval_model, "--retrieval-model")
    known = None
    if args.known_intrinsics and paths is not None:
        known = attempt(read_known_intrinsics, args.known_intrinsics, paths)
    inputs = list(paths or []) + ([args.known_intrinsics] if args.known_intrinsics else [])
    out_dir = attempt(_check_out, args, inputs)
    device = attempt(check_device, args.device)
    source = None
    if model is None:
        source = attempt(check_weights, args.weights, args.model_name or DEFAULT_MODEL, MODEL_CLASSES)
    mapping = attempt(_mapping_options, args, paths)
    if problems:
        raise InvalidInputs(problems)
    return ValidatedInputs(paths, out_dir, formats, options, device, image_size, args.scene_graph, known, source,
                           mapping)


def _mapping_options(args: argparse.Namespace, paths: Optional[Sequence[str]]):
    """:class:`mast3r.colmap.MappingOptions` for the colmap mappers (None for sparse_ga); checks their inputs."""
    if args.mapper == "sparse_ga":
        return None
    from mast3r.colmap import MappingOptions

    if paths is not None and len(paths) < 3:
        raise ReconstructError(f"--mapper {args.mapper} needs at least 3 images, got {len(paths)}")
    if args.match_cache and os.path.exists(args.match_cache) and not os.path.isdir(args.match_cache):
        raise ReconstructError(f"--match-cache {args.match_cache!r} exists and is not a folder")
    try:
        from mast3r.colmap.database import require_pycolmap

        require_pycolmap()
        return MappingOptions(conf_thr=args.conf_thr, camera_model=args.camera_model,
                              min_track_length=args.min_track_length, shared_intrinsics=args.shared_intrinsics)
    except (ImportError, ValueError) as exc:
        raise ReconstructError(f"--mapper {args.mapper}: {exc}") from None


def _staging_dir(out_dir: str) -> str:
    """A new folder beside ``out_dir`` (same file system, so the final move is a rename; mode from the umask)."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{uuid.uuid4().hex[:8]}")
    os.mkdir(staging)
    return staging


def _publish(staging: str, out_dir: str) -> None:
    """Move ``staging`` to ``out_dir``, replacing a previous ``out_dir`` whole."""
    if not os.path.lexists(out_dir):
        os.rename(staging, out_dir)
        return
    old = f"{staging}.old"
    os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except OSError:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _keep_mapper_outputs(result: Any, mapper_dir: str) -> None:
    """Leave the database and the largest model (``mapper/sparse/0``, full tracks) in ``mapper_dir``; drop the rest
    (the other models, a match cache kept there)."""
    sparse = os.path.join(mapper_dir, "sparse")
    shutil.rmtree(sparse, ignore_errors=True)
    os.makedirs(os.path.join(sparse, "0"))
    result.scene.reconstruction.write(os.path.join(sparse, "0"))
    shutil.rmtree(os.path.join(mapper_dir, "match_cache"), ignore_errors=True)


def _load_model(source: str, device: str):
    from dust3r.app.launch import load_model

    return load_model(source, device)


def main(argv: Optional[Sequence[str]] = None, model: Any = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 1 unexpected failure).

    ``model``: an already built model (tests, notebooks); otherwise loaded from ``--weights`` / ``--model_name``.
    """
    args = get_args_parser().parse_args(argv)
    verbose = not args.quiet
    try:
        inputs = validate_args(args, model)
    except InvalidInputs as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    staging = None
    try:
        with tqdm(total=3, desc="reconstruct", disable=not verbose, unit="step") as bar:
            bar.set_postfix_str("model")
            if model is None:
                model = _load_model(inputs.source, inputs.device)
            bar.update()
            staging = _staging_dir(inputs.out_dir)
            if inputs.mapping is None:
                bar.set_postfix_str(f"alignment of {len(inputs.paths)} images")
                scene, names = run_sparse_pipeline(model, inputs.paths, inputs.device, inputs.image_size,
                                                   inputs.scene_graph, inputs.options, None, inputs.known_K,
                                                   verbose=verbose, retrieval_model=args.retrieval_model)
            else:
                bar.set_postfix_str(f"{args.mapper} mapping of {len(inputs.paths)} images")
                scene, names, result = run_mapping_pipeline(
                    model, inputs.paths, inputs.device, os.path.join(staging, "mapper"), inputs.image_size,
                    inputs.scene_graph, args.mapper, inputs.mapping, args.match_cache, inputs.known_K,
                    verbose=verbose, retrieval_model=args.retrieval_model)
                _keep_mapper_outputs(result, os.path.join(staging, "mapper"))
            bar.update()
            bar.set_postfix_str("export")
            files = export_scene(scene, staging, inputs.formats, names, min_conf_thr=args.min_conf_thr,
                                 clean_depth=args.clean_depth, tsdf_thresh=args.tsdf_thresh)
            _publish(staging, inputs.out_dir)
            files = {fmt: os.path.join(inputs.out_dir, os.path.relpath(path, staging)) for fmt, path in files.items()}
            staging = None
            bar.update()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line for the user; the traceback at debug level
        logger.debug("reconstruction failed", exc_info=True)
        print(f"error: reconstruction failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    for fmt, path in files.items():
        print(f"{fmt}: {path}")
    return 0


def cli() -> None:
    """Console-script entry point (``mast3r-reconstruct``): logging to stderr, exit with :func:`main`'s code."""
    args = get_args_parser().parse_args()  # usage errors exit here, before logging is set up
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())


if __name__ == "__main__":
    cli()
