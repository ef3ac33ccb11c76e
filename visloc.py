#!/usr/bin/env python3
"""Visual localization with MASt3R: the original's ``visloc.py`` command line.

    python3 visloc.py --model_name MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric \\
        --dataset "VislocCambridgeLandmarks('/data/Cambridge_Landmarks/', subscene='ShopFacade', \\
                   pairsfile='APGeM-LM18_top50', topk=20)" \\
        --pixel_tol 5 --pnp_mode poselib --reprojection_error_diag_ratio 0.008 --output_dir /out/ShopFacade/loc

Each query is matched against its ``topk`` retrieved map images (:mod:`mast3r.localization`), the matched map
pixels are lifted to 3D and PnP-RANSAC gives the query pose. Results go to ``--output_dir`` in the benchmarks'
submission format (``*_results.txt``, ``*_ltvl.txt``; failed queries in ``*_failed.txt``, never as a pose), with
a thresholds table when the queries have ground truth. The exit status is the number of failed queries (capped
at 100; 0 when all were localized). Matches are cached in ``--output_dir/matches`` under a key of everything they
depend on (model weights, matching flags, images, map points).

The work is in :func:`main` (importable, takes an already built ``model`` too); argparse only under ``__main__``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from dust3r.app.flags import default_device, model_source
from dust3r.utils.device import resolve_device
from dust3r_visloc.datasets import build_dataset
from dust3r_visloc.evaluation import aggregate_stats, export_results, get_pose_error, summary_table
from dust3r_visloc.localization import HAS_POSELIB, HAS_PYCOLMAP, PNP_MODES, default_pnp_mode
from mast3r.localization import (EncoderCache, MatchingOptions, PairMatches, QueryResult, estimate_pose, match_query,
                                 model_maxdim)

logger = logging.getLogger("visloc")

MODEL_NAMES = ("MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric",)
MAX_EXIT_STATUS = 100
_CACHE_VERSION = 1


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visloc.py", description="visual localization with MASt3R")
    parser.add_argument("--dataset", type=str, required=True,
                        help="visloc dataset, e.g. \"VislocInLoc('/path/InLoc/', pairsfile='...', topk=20)\"")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=str, default=None, help="path to the model weights")
    weights.add_argument("--model_name", type=str, choices=list(MODEL_NAMES), help="name of the model weights")
    parser.add_argument("--confidence_threshold", type=float, default=1.001,
                        help="matches with a confidence lower than this are dropped")
    parser.add_argument("--pixel_tol", default=5, type=int,
                        help="max distance (pixels) of a reciprocal round trip from its map seed")
    parser.add_argument("--coarse_to_fine", action="store_true", default=False, help="do the matching coarse to fine")
    parser.add_argument("--max_image_size", type=int, default=None, help="max image size for the fine resolution")
    parser.add_argument("--c2f_crop_with_homography", action="store_true", default=False,
                        help="when using coarse to fine, crop with homographies to keep cx, cy centered")
    parser.add_argument("--device", type=str, default=default_device(),
                        help="pytorch device (default: cuda when available, else cpu)")
    parser.add_argument("--pnp_mode", type=str, default=default_pnp_mode(), choices=list(PNP_MODES),
                        help="pnp library (default: poselib when installed, else cv2)")
    reproj = parser.add_mutually_exclusive_group()
    reproj.add_argument("--reprojection_error", type=float, default=5.0, help="pnp reprojection error (pixels)")
    reproj.add_argument("--reprojection_error_diag_ratio", type=float, default=None,
                        help="pnp reprojection error as a ratio of the diagonal of the image")
    parser.add_argument("--max_batch_size", type=int, default=48,
                        help="max batch size for inference on crops when using coarse to fine")
    parser.add_argument("--pnp_max_points", type=int, default=100_000, help="pnp maximum number of points kept")
    parser.add_argument("--viz_matches", type=int, default=0,
                        help="save a figure of this many matches per pair in OUTPUT_DIR/viz_matches")
    parser.add_argument("--output_dir", type=str, default=None, help="output path")
    parser.add_argument("--output_label", type=str, default="", help="prefix for results files")
    return parser


@dataclass
class VislocSummary:
    """What a run produced."""
    results: List[QueryResult]
    pose_errors: Optional[List[float]]          # per query, inf when failed; None without ground truth
    angular_errors: Optional[List[float]]
    table: str
    files: List[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(not r.success for r in self.results)

    @property
    def exit_status(self) -> int:
        return min(self.n_failed, MAX_EXIT_STATUS)


# ---------------------------------------------------------------------------------------------- cache
def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the model's class, parameters and buffers (names, dtypes, shapes, values); tensors are hashed in
    parallel threads (hashlib releases the GIL), then combined in name order."""
    from concurrent.futures import ThreadPoolExecutor

    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))

    def one(name: str) -> bytes:
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h = hashlib.sha256(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))  # no copy of the (GB-sized) weights
        return h.digest()

    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for digest in pool.map(one, sorted(tensors)):
            h.update(digest)
    return h.hexdigest()


def _array_digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(f"{a.dtype}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class MatchCache:
    """Matches of (query, map) pairs on disk, keyed by the run settings (model weights digest, matching
    options, network size) and by the pair's content (both images, the map's 3D points and intrinsics)."""

    def __init__(self, folder: str, settings: Dict[str, Any]):
        self.settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.folder = os.path.join(folder, "matches", self.settings_key[:16])

    def path(self, query_view: dict, map_view: dict) -> str:
        content = _array_digest(np.asarray(query_view["rgb"]), np.asarray(map_view["rgb"]), map_view["pts3d"],
                                query_view["intrinsics"], map_view["intrinsics"], query_view["to_orig"])
        return os.path.join(self.folder, query_view["image_name"], f"{map_view['image_name']}.{content[:16]}.npz")

    def load(self, query_view: dict, map_view: dict) -> Optional[PairMatches]:
        path = self.path(query_view, map_view)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return PairMatches(z["valid_pts3d"], z["matches_im_query"], z["matches_im_map"], z["matches_conf"])
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache entry is recomputed
            logger.warning("ignoring unreadable match cache %s: %s", path, exc)
            return None

    def save(self, query_view: dict, map_view: dict, matches: PairMatches) -> None:
        from croco.utils.misc import atomic_write

        path = self.path(query_view, map_view)
        os.makedirs(os.path.dirname(path), exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **matches.as_dict())
        atomic_write(path, write)


# ---------------------------------------------------------------------------------------------- helpers
def _params_str(pixel_tol: int, coarse_to_fine: bool, max_image_size: Optional[int], homography: bool) -> str:
    s = f"tol_{pixel_tol}" + ("_c2f" if coarse_to_fine else "")
    if max_image_size is not None:
        s += f"_{max_image_size}"
    if coarse_to_fine and homography:
        s += "_with_homography"
    return s


def _save_viz(folder: str, query_view: dict, map_view: dict, matches: PairMatches, n_viz: int) -> None:
    """Side-by-side figure of ``n_viz`` matches (the original showed it in a blocking window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as pl

    if len(matches) == 0:
        return
    img0, img1 = np.asarray(query_view["rgb"]), np.asarray(map_view["rgb"])
    H = max(img0.shape[0], img1.shape[0])
    pad = [np.pad(im, ((0, H - im.shape[0]), (0, 0), (0, 0))) for im in (img0, img1)]
    sel = np.round(np.linspace(0, len(matches) - 1, n_viz)).astype(int)
    fig = pl.figure()
    pl.imshow(np.concatenate(pad, axis=1))
    cmap = pl.get_cmap("jet")
    for k, i in enumerate(sel):
        (x0, y0), (x1, y1) = matches.query_xy[i], matches.map_xy[i]
        pl.plot([x0, x1 + img0.shape[1]], [y0, y1], "-+", color=cmap(k / max(n_viz - 1, 1)), scalex=False, scaley=False)
    name = f"{query_view['image_name']}__{map_view['image_name']}".replace("/", "_") + ".png"
    os.makedirs(folder, exist_ok=True)
    fig.savefig(os.path.join(folder, name))
    pl.close(fig)


def _check_pnp_mode(pnp_mode: str) -> None:
    if pnp_mode not in PNP_MODES:
        raise ValueError(f"--pnp_mode must be one of {PNP_MODES}, got {pnp_mode!r}")
    if pnp_mode == "poselib" and not HAS_POSELIB:
        raise ValueError("--pnp_mode poselib needs the poselib package (pip install poselib)")
    if pnp_mode == "pycolmap" and not HAS_PYCOLMAP:
        raise ValueError("--pnp_mode pycolmap needs the pycolmap package (pip install pycolmap)")


def _localize_one(views: List[dict], model, opts: MatchingOptions, cache: Optional[MatchCache],
                  pnp: Dict[str, Any], viz_matches: int, viz_dir: Optional[str],
                  encoder_cache: Optional[EncoderCache] = None) -> QueryResult:
    query_view, map_views = views[0], views[1:]
    matches: List[Optional[PairMatches]] = [cache.load(query_view, m) if cache else None for m in map_views]
    todo = [k for k, m in enumerate(matches) if m is None]
    if todo:
        for k, m in zip(todo, match_query(query_view, [map_views[k] for k in todo], model, opts, encoder_cache)):
            matches[k] = m
            if cache is not None:
                cache.save(query_view, map_views[k], m)
    if viz_matches > 0 and viz_dir is not None:
        for map_view, m in zip(map_views, matches):
            _save_viz(viz_dir, query_view, map_view, m, viz_matches)
    return estimate_pose(query_view, matches, **pnp)


# ---------------------------------------------------------------------------------------------- main
def main(dataset: Any, weights: Optional[str] = None, model_name: Optional[str] = None,
         confidence_threshold: float = 1.001, pixel_tol: int = 5, coarse_to_fine: bool = False,
         max_image_size: Optional[int] = None, c2f_crop_with_homography: bool = False, device: Optional[str] = None,
         pnp_mode: Optional[str] = None, reprojection_error: float = 5.0,
         reprojection_error_diag_ratio: Optional[float] = None, max_batch_size: int = 48,
         pnp_max_points: int = 100_000, viz_matches: int = 0, output_dir: Optional[str] = None,
         output_label: str = "", model: Optional[torch.nn.Module] = None) -> VislocSummary:
    """Localize every query of ``dataset`` (a ``--dataset`` string or a dataset object).

    Args: the command-line flags (see ``--help``); ``model``: an already built model (then ``weights`` /
    ``model_name`` are not read). ``device`` None: cuda when available, else cpu; ``pnp_mode`` None: poselib
    when installed, else cv2.

    Returns:
        a :class:`VislocSummary` (per-query results, errors, the thresholds table, written files).

    Raises:
        ValueError: a bad dataset string or option (before any model is loaded).
    """
    device = str(resolve_device(device or default_device()))
    pnp_mode = pnp_mode or default_pnp_mode()
    _check_pnp_mode(pnp_mode)
    opts = MatchingOptions(pixel_tol=pixel_tol, coarse_to_fine=coarse_to_fine, max_image_size=max_image_size,
                           c2f_crop_with_homography=c2f_crop_with_homography, max_batch_size=max_batch_size,
                           device=device)
    dataset_name = dataset if isinstance(dataset, str) else type(dataset).__name__
    data = build_dataset(dataset) if isinstance(dataset, str) else dataset
    if model is None:
        from dust3r.app.launch import load_model

        model = load_model(model_source(weights, model_name), device)
    model = model.to(device).eval()
    data.set_resolution(model)

    params_str = _params_str(pixel_tol, coarse_to_fine, max_image_size, c2f_crop_with_homography)
    cache = None
    if output_dir is not None:
        settings = dict(version=_CACHE_VERSION, weights=weights_digest(model), maxdim=model_maxdim(model),
                        matching={k: v for k, v in asdict(opts).items() if k not in ("device", "max_batch_size")})
        cache = MatchCache(output_dir, settings)
    viz_dir = os.path.join(output_dir, "viz_matches") if output_dir is not None else None
    pnp = dict(pnp_mode=pnp_mode, reprojection_error=reprojection_error, conf_thr=confidence_threshold,
               reprojection_error_diag_ratio=reprojection_error_diag_ratio, pnp_max_points=pnp_max_points)

    encoder_cache = EncoderCache(model, device)  # map images retrieved by several queries are encoded once
    results: List[QueryResult] = []
    gts: List[Optional[np.ndarray]] = []
    progress = tqdm(range(len(data)), desc="localizing queries", unit="query")
    for idx in progress:
        name = str(data.scenes[idx]) if hasattr(data, "scenes") else str(idx)
        gt = None
        try:
            views = data[idx]
            name, gt = views[0]["image_name"], views[0].get("cam_to_world")
            with torch.no_grad():
                result = _localize_one(views, model, opts, cache, pnp, viz_matches, viz_dir, encoder_cache)
        except Exception as exc:  # one broken query (missing file, bad pairs) must not end the run
            logger.debug("query %s failed", name, exc_info=True)
            result = QueryResult(name, None, 0, f"{type(exc).__name__}: {exc}")
        gts.append(gt)
        if not result.success:
            logger.warning("query %s not localized: %s", name, result.reason)
        results.append(result)
        progress.set_postfix(failed=sum(not r.success for r in results))

    xp_label = params_str + f"_conf_{confidence_threshold}"
    if output_label:
        xp_label = output_label + "_" + xp_label
    xp_label += (f"_reproj_diag_{reprojection_error_diag_ratio}" if reprojection_error_diag_ratio is not None
                 else f"_reproj_err_{reprojection_error}")
    files = export_results(output_dir, xp_label, [r.name for r in results], [r.cam2world for r in results])

    n_failed = sum(not r.success for r in results)
    # a failed query counts as infinitely wrong, whether or not its ground truth could be read
    if any(gt is not None for gt in gts) and all(gt is not None for r, gt in zip(results, gts) if r.success):
        errors = [get_pose_error(r.cam2world, gt) if r.success else (float("inf"), float("inf"))
                  for r, gt in zip(results, gts)]
        t_err, r_err = [e[0] for e in errors], [e[1] for e in errors]
        table = summary_table(t_err, r_err, n_failed, title=f"{dataset_name} ({xp_label})")
        table += "\n" + aggregate_stats(dataset_name, t_err, r_err)
    else:
        t_err = r_err = None
        table = f"{dataset_name}: {len(results)} queries, {n_failed} failed (no ground truth: no accuracy table)"
    print(table)
    if n_failed:
        print(f"{n_failed} of {len(results)} queries failed" + (f" (listed in {files[2]})" if files else ""))
    return VislocSummary(results, t_err, r_err, table, files)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args()
    try:
        summary = main(**vars(args))
    except (ValueError, OSError, KeyError) as exc:  # bad dataset string / option / files, unloadable weights
        print(f"visloc.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(summary.exit_status)
