"""Mapping of many images: MASt3R sparse global alignment vs pycolmap's global mapper (GLOMAP) on MASt3R matches.

Time, peak memory and camera accuracy for N synthetic images (default 512x384, the oracle model of
:mod:`dust3r.synthetic`, noise-free). Each (N, method) runs in a fresh subprocess so that its peak RSS is its own.
Prints a Markdown table.

    python benchmarks/bench_mapping.py --sizes 16 32 64 128 256 --methods sparse_ga colmap_global
    python benchmarks/bench_mapping.py --sizes 16 --height 96 --width 128       # quick check

Scene: the cameras of the synthetic orbit spread over ``--turns`` of the circle (no two nearly coincide). Pairs:
``--graph`` (default ``retrieval-10-8``, ranked by the ground-truth overlap of the images as the similarity
matrix; ``swin-K`` / ``logwin-K`` also work). Accuracy: rotation error of all relative camera poses (median /
max, degrees) and the largest camera-centre error after a similarity alignment (% of the scene extent), over the
registered images. Peak RSS is the whole process's; "scene + oracle" is the RSS before the method starts (the
rendered scene and the oracle's ground truth, not part of a real run). ``colmap_global`` also reports the matching
time separately (the streamed matching writes a
disk cache: a second run would skip it).

Target (issue 13): N = 256 within 16 GB peak with rotation error < 0.5 degrees.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import List, Sequence

METHODS = ("sparse_ga", "colmap_global", "colmap_incremental")


def overlap_similarity(scene, step: int = 8):
    """(N, N) fraction of image i's pixels (every ``step``-th row / column) that image j sees unoccluded."""
    import numpy as np

    n = scene.n_views
    sim = np.eye(n)
    for i in range(n):
        pts = scene.pts3d[i][::step, ::step].reshape(-1, 3).astype(np.float64)
        for j in range(n):
            if i == j:
                continue
            xy, z = scene.project(j, pts)
            inside = (z > 0) & (xy[:, 0] > -0.5) & (xy[:, 0] < scene.width - 0.5) & (xy[:, 1] > -0.5) & \
                (xy[:, 1] < scene.height - 0.5)
            c = np.clip(np.rint(xy[:, 0]), 0, scene.width - 1).astype(int)
            r = np.clip(np.rint(xy[:, 1]), 0, scene.height - 1).astype(int)
            seen = inside & (np.abs(scene.depth[j][r, c] - z) <= 0.01 * np.abs(z) + 0.02)
            sim[i, j] = seen.mean()
    return sim


def make_bench_pairs(scene, views, graph: str):
    from dust3r.image_pairs import make_pairs

    sim = overlap_similarity(scene) if graph.startswith("retrieval") else None
    return make_pairs(views, scene_graph=graph, symmetrize=False, sim_mat=sim)


def run_one(n: int, method: str, graph: str, height: int, width: int, turns: float, threads: int,
            niter1: int, niter2: int) -> dict:
    """One measurement in this process."""
    from _memory import peak_rss_kb  # benchmarks/ is on sys.path when run as a script

    import numpy as np
    import torch

    from dust3r.synthetic import OracleModel, make_scene, pose_errors

    torch.set_num_threads(threads)
    scene = make_scene(n, height, width, seed=0, baseline=2 * np.pi * 2.8 * turns / n)
    views = scene.views()
    pairs = make_bench_pairs(scene, views, graph)
    model = OracleModel(scene)
    rss0 = peak_rss_kb() / 1e3
    start = time.perf_counter()
    row = dict(n=n, method=method, graph=graph, pairs=len(pairs), size=f"{width}x{height}")
    if method == "sparse_ga":
        from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS
        from mast3r.cloud_opt.sparse_ga import sparse_global_alignment

        lrs = {k: ALIGNMENT_DEFAULTS[k] for k in ("lr1", "lr2")}
        res = sparse_global_alignment([v["instance"] for v in views], pairs, None, model, niter1=niter1,
                                      niter2=niter2, opt_pp=False, verbose=False, **lrs)
        cam2world = res.get_im_poses().double().numpy()
        registered = np.ones(n, dtype=bool)
        row["match_s"] = float("nan")
    else:
        from mast3r.colmap import MappingOptions, run_colmap_mapping
        from mast3r.colmap.match_cache import MatchCache, compute_matches

        with tempfile.TemporaryDirectory(prefix="bench_mapping_") as work:
            t0 = time.perf_counter()
            compute_matches(model, views, pairs, MatchCache.for_model(os.path.join(work, "match_cache"), model),
                            verbose=False)
            row["match_s"] = time.perf_counter() - t0
            result = run_colmap_mapping(model, views, scene.names, pairs, work,
                                        options=MappingOptions(mapper=method.split("_", 1)[1]), verbose=False)
        cam2world, registered = result.scene.cam2world, result.scene.registered
    row["time_s"] = time.perf_counter() - start
    err = pose_errors(cam2world[registered], scene.cam2world[registered])
    row.update(registered=int(registered.sum()), peak_rss_mb=peak_rss_kb() / 1e3, rss_before_mb=rss0,
               rot_deg_median=err["rot_deg_median"], rot_deg_max=err["rot_deg"], centre_err_rel=err["center_err_rel"])
    return row


def main(sizes: Sequence[int], methods: Sequence[str] = ("sparse_ga", "colmap_global"), graph: str = "retrieval-10-8",
         height: int = 384, width: int = 512, turns: float = 0.9, threads: int = 1, niter1: int = 300,
         niter2: int = 300, max_sparse_ga: int = 256) -> List[dict]:
    from _subprocess import run_measurement  # benchmarks/ is on sys.path when run as a script

    rows = []
    for n in sizes:
        for method in methods:
            if method == "sparse_ga" and n > max_sparse_ga:
                continue
            cmd = [sys.executable, __file__, "--one", str(n), "--methods", method, "--graph", graph, "--height",
                   str(height), "--width", str(width), "--turns", str(turns), "--threads", str(threads),
                   "--niter1", str(niter1), "--niter2", str(niter2)]
            row = run_measurement(cmd, f"N={n} {method}")
            if row is not None:
                rows.append(row)
    print(f"\n{width}x{height} images, oracle model (noise-free), graph {graph}, {threads} thread(s)\n")
    print("| N | method | pairs | registered | matching (s) | total (s) | peak RSS (MB) | scene + oracle RSS (MB) | "
          "rot err med / max (deg) | centre err max (% extent) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        match = "-" if math.isnan(r["match_s"]) else f"{r['match_s']:.1f}"
        print(f"| {r['n']} | {r['method']} | {r['pairs']} | {r['registered']}/{r['n']} | {match} | {r['time_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} | "
              f"{r['rot_deg_median']:.3f} / {r['rot_deg_max']:.3f} | "
              f"{100 * r['centre_err_rel']:.2f} |")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--methods", nargs="+", default=["sparse_ga", "colmap_global"], choices=METHODS)
    parser.add_argument("--graph", default="retrieval-10-8", help="retrieval-Na-k (ground-truth overlap), swin-K...")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--turns", type=float, default=0.9, help="fraction of the orbit the cameras cover")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--niter1", type=int, default=300, help="sparse_ga coarse iterations")
    parser.add_argument("--niter2", type=int, default=300, help="sparse_ga refinement iterations")
    parser.add_argument("--max-sparse-ga", type=int, default=256, help="largest N run with sparse_ga")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.methods[0], args.graph, args.height, args.width, args.turns,
                                 args.threads, args.niter1, args.niter2)))
    else:
        main(args.sizes, args.methods, args.graph, args.height, args.width, args.turns, args.threads, args.niter1,
             args.niter2, args.max_sparse_ga)
