"""Command-line multi-view reconstruction with MASt3R's sparse global alignment.

::

    python3 -m mast3r.reconstruct IMAGES_OR_DIR [...] --weights CKPT | --model_name NAME --out DIR \\
        [--scene-graph complete|swin-N|logwin-N|oneref-ID] [--image-size 512] [--known-intrinsics K.json] \\
        [--device cuda] [--niter1 500 --niter2 200 --lr1 0.07 --lr2 0.014 --optim-level refine+depth] \\
        [--formats glb,ply,colmap,nerfstudio,cameras,depth]

Pipeline (the same as the browser demo, :func:`run_sparse_pipeline`)::

    load_images -> make_pairs(scene_graph, symmetrize=True) -> sparse_global_alignment -> export_all

``--known-intrinsics`` reads a JSON file with intrinsics in **original-image pixels** (pixel centres at
integer coordinates), either one shared camera ``{"fx":..., "fy":..., "cx":..., "cy":...}`` (or ``{"K": 3x3}``)
or one entry per image base name ``{"img_000.png": {"fx":..., ...}, ...}``; images without an entry keep
estimated intrinsics. They are mapped to network pixels through the resize/crop of each image and given to the
aligner, which keeps them fixed.

``main(argv) -> int`` returns 0 on success and prints one ``error: ...`` line (exit code 2) for bad inputs
(missing path, no images, unreadable weights, bad intrinsics file, bad scene graph).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

__all__ = ["SparseOptions", "run_sparse_pipeline", "collect_images", "read_known_intrinsics",
           "get_args_parser", "main", "cli", "ReconstructError"]

DEFAULT_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
ALL_FORMATS = ("glb", "ply", "colmap", "nerfstudio", "cameras", "depth")
OPTIM_LEVELS = ("coarse", "refine", "refine+depth")


class ReconstructError(ValueError):
    """A user-facing problem with the inputs of a reconstruction (message printed as one line)."""


@dataclass
class SparseOptions:
    """Options of the sparse global alignment (defaults of the original demo).

    lr1 / niter1: coarse alignment (3D matching loss); lr2 / niter2: refinement (2D reprojection loss);
    optim_level: ``coarse`` (no refinement), ``refine`` or ``refine+depth`` (also optimises depth maps);
    matching_conf_thr: matches under this descriptor confidence are dropped;
    shared_intrinsics: one set of intrinsics for every image.
    """
    lr1: float = 0.07
    niter1: int = 500
    lr2: float = 0.014
    niter2: int = 200
    optim_level: str = "refine+depth"
    matching_conf_thr: float = 5.0
    shared_intrinsics: bool = False

    def __post_init__(self):
        if self.optim_level not in OPTIM_LEVELS:
            raise ReconstructError(f"optim level must be one of {OPTIM_LEVELS}, got {self.optim_level!r}")
        for name in ("niter1", "niter2"):
            if int(getattr(self, name)) < 0:
                raise ReconstructError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr1", "lr2"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ReconstructError(f"{name} must be a positive number, got {value}")


# ============================================================================================
# inputs
# ============================================================================================
def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image paths from files and folders (a folder contributes its image files sorted by name)."""
    from dust3r.utils.image import HEIF_EXTENSIONS, IMAGE_EXTENSIONS, heif_available

    exts = IMAGE_EXTENSIONS + (HEIF_EXTENSIONS if heif_available() else ())
    paths: List[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(exts) and os.path.isfile(os.path.join(item, n)))
            if not found:
                raise ReconstructError(f"no images found in folder {item!r} (looked for {', '.join(exts)})")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise ReconstructError(f"no such image file or folder: {item!r}")
    if not paths:
        raise ReconstructError("no input images given")
    return paths


def _parse_K(entry: Any, where: str) -> np.ndarray:
    """One intrinsics entry (``{fx, fy, cx, cy}`` or ``{"K": 3x3}`` or a 3x3 list) -> (3, 3) float64."""
    if isinstance(entry, dict) and "K" in entry:
        entry = entry["K"]
    if isinstance(entry, dict):
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in entry]
        if missing:
            raise ReconstructError(f"{where}: missing {', '.join(missing)} (expected fx, fy, cx, cy or K)")
        try:
            fx, fy, cx, cy = (float(entry[k]) for k in ("fx", "fy", "cx", "cy"))
        except (TypeError, ValueError):
            raise ReconstructError(f"{where}: fx, fy, cx, cy must be numbers") from None
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    else:
        try:
            K = np.asarray(entry, dtype=np.float64)
        except (TypeError, ValueError):
            raise ReconstructError(f"{where}: expected {{fx, fy, cx, cy}} or a 3x3 matrix") from None
        if K.shape != (3, 3):
            raise ReconstructError(f"{where}: expected a 3x3 matrix, got shape {K.shape}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ReconstructError(f"{where}: focal lengths must be positive finite numbers")
    return K


def read_known_intrinsics(path: str, image_paths: Sequence[str]) -> Dict[int, np.ndarray]:
    """``{image index: K (3, 3) in original pixels}`` from a JSON file (see the module docstring)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ReconstructError(f"known intrinsics file not found: {path!r}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ReconstructError(f"cannot read known intrinsics file {path!r}: {exc}") from None
    if isinstance(raw, list) or (isinstance(raw, dict) and ("K" in raw or "fx" in raw)):
        K = _parse_K(raw, path)
        return {i: K for i in range(len(image_paths))}
    if not isinstance(raw, dict):
        raise ReconstructError(f"{path}: expected a JSON object")
    by_name = {os.path.basename(p): i for i, p in enumerate(image_paths)}
    by_path = {os.path.abspath(p): i for i, p in enumerate(image_paths)}
    out: Dict[int, np.ndarray] = {}
    for key, entry in raw.items():
        idx = by_name.get(os.path.basename(key), by_path.get(os.path.abspath(key)))
        if idx is None:
            raise ReconstructError(f"{path}: intrinsics given for {key!r}, which is not one of the input images")
        out[idx] = _parse_K(entry, f"{path}[{key!r}]")
    missing = [os.path.basename(p) for i, p in enumerate(image_paths) if i not in out]
    if missing:
        logger.warning("no known intrinsics for %d image(s) (%s): they will be estimated", len(missing),
                       ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return out


# ============================================================================================
# pipeline
# ============================================================================================
def _unique_keys(paths: Sequence[str]) -> List[str]:
    """Distinct identifiers for the aligner (its caches and init dict are keyed by image name)."""
    keys: List[str] = []
    for p in paths:
        key = os.path.abspath(p)
        while key in keys:
            key += "_2"
        keys.append(key)
    return keys


def run_sparse_pipeline(model: Any, paths: Sequence[str], device: str, image_size: int = 512,
                        scene_graph: str = "complete", options: Optional[SparseOptions] = None,
                        cache_dir: Optional[str] = None, known_K: Optional[Dict[int, np.ndarray]] = None,
                        verbose: bool = True, progress=None) -> Tuple[Any, List[str]]:
    """Images -> MASt3R sparse global alignment. Returns ``(scene, names)`` (a ``SparseGA``, image names).

    Args:
        model: AsymmetricMASt3R (or anything with its forward interface).
        paths: image files; one image is paired with a copy of itself.
        device: torch device for the network and the optimisation.
        image_size: long side after resize (512 / 224 for the official checkpoints).
        scene_graph: ``make_pairs`` scene graph (``complete``, ``swin-N[-noncyclic]``, ``logwin-N``, ``oneref-ID``).
        options: :class:`SparseOptions`.
        cache_dir: folder for the aligner's per-pair caches (a temporary folder if None).
        known_K: ``{image index: K (3, 3) original pixels}`` (see :func:`read_known_intrinsics`).
        verbose: progress bars and logs.
        progress: optional ``callable(fraction, desc)`` (the demo's ``gr.Progress``).
    """
    import copy

    from dust3r.demo import unique_names
    from dust3r.image_pairs import make_pairs
    from dust3r.utils.image import load_images
    from mast3r.cloud_opt.sparse_ga import sparse_global_alignment

    opts = options or SparseOptions()
    report = progress or (lambda *a, **k: None)
    ps = getattr(getattr(model, "patch_embed", None), "patch_size", 16)
    ps = int(ps[0] if isinstance(ps, (tuple, list)) else ps)

    report(0.02, desc="loading images")
    try:
        views = load_images(list(paths), size=int(image_size), verbose=verbose, patch_size=ps)
    except (OSError, ValueError, TypeError) as exc:
        raise ReconstructError(f"cannot load the images: {exc}") from None
    keys = _unique_keys(paths)
    if len(views) == 1:
        twin = copy.deepcopy(views[0])
        twin["idx"], twin["instance"] = 1, "1"
        views.append(twin)
        keys.append(keys[0] + "_2")
    try:
        pairs = make_pairs(views, scene_graph=scene_graph, prefilter=None, symmetrize=True)
    except (ValueError, NotImplementedError) as exc:
        raise ReconstructError(str(exc)) from None
    if not pairs:
        raise ReconstructError(f"scene graph {scene_graph!r} gives no image pairs for {len(views)} images")

    kw: Dict[str, Any] = dict(lr1=float(opts.lr1), niter1=int(opts.niter1), lr2=float(opts.lr2),
                              niter2=0 if opts.optim_level == "coarse" else int(opts.niter2),
                              opt_depth="depth" in opts.optim_level, shared_intrinsics=bool(opts.shared_intrinsics),
                              matching_conf_thr=float(opts.matching_conf_thr), device=device, verbose=verbose)
    if known_K:  # original-image pixels, converted by the aligner with each view's resize/crop metadata
        kw.update(known_intrinsics={int(i): np.asarray(K, dtype=np.float64) for i, K in known_K.items()},
                  known_intrinsics_space="original")
    report(0.1, desc=f"matching {len(pairs)} pairs + alignment")
    with tempfile.TemporaryDirectory(prefix="mast3r_cache_") as tmp_cache:
        cache = cache_dir or tmp_cache
        os.makedirs(cache, exist_ok=True)
        scene = sparse_global_alignment(keys, pairs, cache, model, **kw)
    if getattr(scene, "views_meta", None) is None:
        try:
            scene.views_meta = [{k: v.get(k) for k in ("orig_shape", "resized_shape", "crop_offset", "resize_scale",
                                                         "filepath", "true_shape", "instance")} for v in views]
        except AttributeError:  # pragma: no cover - scene objects with slots
            pass
    report(0.9, desc="alignment done")
    return scene, unique_names(paths, len(keys))


# ============================================================================================
# exports
# ============================================================================================
def export_scene(scene: Any, out_dir: str, formats: Sequence[str], names: Sequence[str], min_conf_thr: float = 1.5,
                 clean_depth: bool = True, tsdf_thresh: float = 0.0) -> Dict[str, str]:
    """Write ``formats`` of ``scene`` into ``out_dir`` with :func:`dust3r.export.export_all`.

    Layout: ``scene.glb``, ``scene.ply``, ``colmap/sparse/0/`` + ``colmap/images/`` + ``colmap.zip``,
    ``nerfstudio/transforms.json`` (+ images), ``cameras.json``, ``depth/<stem>_depth.npy|png`` (original size).
    """
    from dust3r.export import export_all

    files = export_all(scene, out_dir, formats=tuple(formats), min_conf_thr=float(min_conf_thr),
                       clean_depth=bool(clean_depth), tsdf_thresh=float(tsdf_thresh), names=list(names))
    return {k: str(v) for k, v in files.items()}


# ============================================================================================
# command line
# ============================================================================================
def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mast3r-reconstruct",
                                description="Reconstruct cameras and a 3D point cloud from images with MASt3R.")
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", default=None, help="checkpoint file (.pth) or Hugging Face folder")
    src.add_argument("--model_name", "--model-name", dest="model_name", default=None,
                     help=f"hub checkpoint name (naver/<name>) or owner/name id, e.g. {DEFAULT_MODEL}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scene-graph", "--scene_graph", dest="scene_graph", default="complete",
                   help="complete | swin-N[-noncyclic] | logwin-N[-noncyclic] | oneref-ID")
    p.add_argument("--image-size", "--image_size", dest="image_size", type=int, default=512)
    p.add_argument("--known-intrinsics", "--known_intrinsics", dest="known_intrinsics", default=None,
                   help="JSON with fx, fy, cx, cy in original-image pixels, shared or per image name")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    d = SparseOptions()
    p.add_argument("--lr1", type=float, default=d.lr1, help="coarse alignment learning rate")
    p.add_argument("--niter1", type=int, default=d.niter1, help="coarse alignment iterations")
    p.add_argument("--lr2", type=float, default=d.lr2, help="refinement learning rate")
    p.add_argument("--niter2", type=int, default=d.niter2, help="refinement iterations")
    p.add_argument("--optim-level", "--optim_level", dest="optim_level", default=d.optim_level, choices=OPTIM_LEVELS)
    p.add_argument("--matching-conf-thr", "--matching_conf_thr", dest="matching_conf_thr", type=float,
                   default=d.matching_conf_thr)
    p.add_argument("--shared-intrinsics", "--shared_intrinsics", dest="shared_intrinsics", action="store_true")
    p.add_argument("--min-conf-thr", "--min_conf_thr", dest="min_conf_thr", type=float, default=1.5,
                   help="confidence threshold of the exported dense points")
    p.add_argument("--no-clean-depth", dest="clean_depth", action="store_false",
                   help="keep depth pixels that other views contradict")
    p.add_argument("--tsdf-thresh", "--TSDF_thresh", dest="tsdf_thresh", type=float, default=0.0)
    p.add_argument("--formats", default="glb,ply,colmap,cameras",
                   help=f"comma-separated subset of {','.join(ALL_FORMATS)} (or 'all')")
    p.add_argument("--quiet", "-q", action="store_true", help="only errors")
    return p


def _parse_formats(text: str) -> Tuple[str, ...]:
    items = [f.strip().lower() for f in text.split(",") if f.strip()]
    if items == ["all"]:
        return ALL_FORMATS
    bad = [f for f in items if f not in ALL_FORMATS]
    if bad or not items:
        raise ReconstructError(f"--formats: unknown format(s) {bad or text!r}; choose from {', '.join(ALL_FORMATS)}")
    return tuple(dict.fromkeys(items))


def _load_model(args: argparse.Namespace):
    from dust3r.model_loading import load_pretrained

    source = args.weights
    if not source:
        name = args.model_name or DEFAULT_MODEL
        source = name if "/" in name else f"naver/{name}"
    elif not os.path.exists(source):
        raise ReconstructError(f"weights not found: {source!r}")
    try:
        return load_pretrained(source, device=args.device)
    except Exception as exc:  # any loading failure becomes one clear line
        raise ReconstructError(f"cannot load model weights from {source!r}: {type(exc).__name__}: {exc}") from None


def main(argv: Optional[Sequence[str]] = None, model: Any = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 1 unexpected failure).

    ``model``: an already built model (tests, notebooks); otherwise loaded from ``--weights`` / ``--model_name``.
    """
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    verbose = not args.quiet
    try:
        formats = _parse_formats(args.formats)
        options = SparseOptions(lr1=args.lr1, niter1=args.niter1, lr2=args.lr2, niter2=args.niter2,
                                optim_level=args.optim_level, matching_conf_thr=args.matching_conf_thr,
                                shared_intrinsics=args.shared_intrinsics)
        if args.image_size <= 0:
            raise ReconstructError(f"--image-size must be positive, got {args.image_size}")
        paths = collect_images(args.images)
        known = read_known_intrinsics(args.known_intrinsics, paths) if args.known_intrinsics else None
        out_dir = os.path.abspath(args.out)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ReconstructError(f"--out {args.out!r} exists and is not a folder")
        with tqdm(total=3, desc="reconstruct", disable=not verbose, unit="step") as bar:
            bar.set_postfix_str("model")
            if model is None:
                model = _load_model(args)
            bar.update()
            bar.set_postfix_str(f"alignment of {len(paths)} images")
            scene, names = run_sparse_pipeline(model, paths, args.device, args.image_size, args.scene_graph,
                                               options, None, known, verbose=verbose)
            bar.update()
            bar.set_postfix_str("export")
            files = export_scene(scene, out_dir, formats, names, min_conf_thr=args.min_conf_thr,
                                 clean_depth=args.clean_depth, tsdf_thresh=args.tsdf_thresh)
            bar.update()
    except ReconstructError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line for the user; the traceback at debug level
        logger.debug("reconstruction failed", exc_info=True)
        print(f"error: reconstruction failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for fmt, path in files.items():
        print(f"{fmt}: {path}")
    return 0


def cli() -> None:
    """Console-script entry point (``mast3r-reconstruct``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
