"""Time, peak memory and accuracy of the sparse global alignment on synthetic scenes (oracle model, CPU).

Each (size, graph) runs in a fresh subprocess so the peak RSS is that of one alignment. Prints a Markdown table.

    python benchmarks/bench_sparse_ga.py --sizes 4 8 16 32 64 --graphs swin-3 complete --max-complete 32

The model is the ground-truth oracle of :mod:`dust3r.utils.synthetic`, by default with its descriptor confidence
lowered on the pixels the other view of a pair does not see (``--oracle covisible``, as a trained MASt3R does);
``--oracle plain`` keeps the oracle's uniform confidence, whose wrong matches between non-overlapping parts of
two views then weigh as much as the right ones. Accuracy: errors of the relative poses of all camera pairs
(rotation, translation direction) and of the focal lengths, median and max, and the largest camera-centre error
after a similarity alignment, relative to the largest distance between two cameras. With more than ~22 views
the orbit of the synthetic scene wraps around and some cameras nearly coincide: the direction between two such
cameras is ill-defined, so the max translation-direction error is large there while the centres are right.

Predictions are streamed: ``forward_batch_pairs`` pairs of dense predictions at a time, reduced at once to
matches, anchor-grid samples and per-image running sums (the canonical views), so the memory grows with the
number of images and matches, not with the number of dense pairwise predictions.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Sequence


def run_one(n: int, graph: str, niter1: int, niter2: int, height: int, width: int, oracle: str = "covisible",
            threads: int = 1) -> dict:
    """Align one synthetic scene of ``n`` views in this process; returns the measurements."""
    from _memory import peak_rss_kb  # benchmarks/ is on sys.path when run as a script
    import time

    import numpy as np
    import torch

    from dust3r.image_pairs import make_pairs
    from dust3r.utils.synthetic import OracleModel, make_scene, pose_errors
    from mast3r.cloud_opt.sparse_ga import sparse_global_alignment
    from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS

    torch.set_num_threads(threads)
    scene = make_scene(n, height, width, seed=0)
    views = scene.views()
    pairs = make_pairs(views, scene_graph=graph, symmetrize=False)
    model = OracleModel(scene, hidden_desc_conf=0.1 if oracle == "covisible" else None)
    rss0 = peak_rss_kb() / 1e3
    start = time.perf_counter()
    # the demo's learning rates (the numbers in benchmarks/README.md were measured with them)
    lrs = {k: ALIGNMENT_DEFAULTS[k] for k in ("lr1", "lr2")}
    res = sparse_global_alignment([v["instance"] for v in views], pairs, None, model, niter1=niter1, niter2=niter2,
                                  opt_pp=False, verbose=False, **lrs)
    elapsed = time.perf_counter() - start
    err = pose_errors(res.get_im_poses().double().numpy(), scene.cam2world)
    focal = np.abs(res.get_focals().double().numpy() / scene.K[:, 0, 0] - 1)
    return dict(n=n, graph=graph, pairs=len(pairs), niter=f"{niter1}+{niter2}", time_s=elapsed,
                peak_rss_mb=peak_rss_kb() / 1e3, rss_before_mb=rss0,
                rot_deg_median=err["rot_deg_median"], rot_deg_max=err["rot_deg"],
                trans_deg_median=err["trans_dir_deg_median"], trans_deg_max=err["trans_dir_deg"],
                focal_err_median=float(np.median(focal)), focal_err_max=float(focal.max()),
                centre_err_rel=err["center_err_rel"])


PAIR_COUNT_GRAPHS = ("complete", "swin-3", "swin-3-noncyclic", "logwin-3", "oneref-0")


def print_pair_counts(sizes: Sequence[int], graphs: Sequence[str] = PAIR_COUNT_GRAPHS) -> None:
    """Markdown table: number of pairs :func:`make_pairs` gives (``symmetrize=False``) per scene graph and N."""
    import numpy as np
    import torch

    from dust3r.image_pairs import make_pairs

    print("| N | " + " | ".join(graphs) + " |")
    print("|---|" + "---|" * len(graphs))
    for n in sizes:
        views = [dict(img=torch.zeros(1, 3, 16, 16), true_shape=np.int32([[16, 16]]), idx=i, instance=str(i))
                 for i in range(n)]
        counts = [len(make_pairs(views, scene_graph=g, symmetrize=False)) for g in graphs]
        print(f"| {n} | " + " | ".join(str(c) for c in counts) + " |")
    print()


def main(sizes: Sequence[int], graphs: Sequence[str] = ("swin-3", "complete"), max_complete: int = 32,
         niter1: int = 300, niter2: int = 300, height: int = 48, width: int = 64, oracle: str = "covisible",
         threads: int = 1) -> List[dict]:
    from _subprocess import run_measurement  # benchmarks/ is on sys.path when run as a script

    print("pairs per scene graph (each pair is run in both directions by the alignment)\n")
    print_pair_counts(sizes)
    rows = []
    for n in sizes:
        for graph in graphs:
            if graph == "complete" and n > max_complete:
                continue
            cmd = [sys.executable, __file__, "--one", str(n), "--graphs", graph, "--niter1", str(niter1),
                   "--niter2", str(niter2), "--height", str(height), "--width", str(width), "--oracle", oracle,
                   "--threads", str(threads)]
            row = run_measurement(cmd, f"N={n} {graph}")
            if row is not None:
                rows.append(row)
    print(f"{width}x{height} images, oracle={oracle}, {threads} thread(s)\n")
    print("| N | graph | pairs | iters | time (s) | peak RSS (MB) | rot err med / max (deg) | "
          "trans dir err med / max (deg) | focal err med / max (%) | centre err max (% extent) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['graph']} | {r['pairs']} | {r['niter']} | {r['time_s']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['rot_deg_median']:.2f} / {r['rot_deg_max']:.2f} | {r['trans_deg_median']:.2f} / "
              f"{r['trans_deg_max']:.2f} | {100 * r['focal_err_median']:.2f} / {100 * r['focal_err_max']:.2f} | "
              f"{100 * r['centre_err_rel']:.2f} |")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--graphs", nargs="+", default=["swin-3", "complete"],
                        help="scene graphs (complete, swin-K, logwin-K, oneref-0...)")
    parser.add_argument("--max-complete", type=int, default=32, help="largest N run with the complete graph")
    parser.add_argument("--niter1", type=int, default=300, help="coarse iterations")
    parser.add_argument("--niter2", type=int, default=300, help="refinement iterations")
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--oracle", choices=("covisible", "plain"), default="covisible")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.graphs[0], args.niter1, args.niter2, args.height, args.width,
                                 args.oracle, args.threads)))
    else:
        main(args.sizes, args.graphs, args.max_complete, args.niter1, args.niter2, args.height, args.width,
             args.oracle, args.threads)
