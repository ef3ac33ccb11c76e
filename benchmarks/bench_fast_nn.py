"""``fast_reciprocal_NNs`` on full-size descriptor maps: time, peak memory, match count.

Descriptor maps are 384x512x24, taken from one symmetric-pair forward pass of the full-size MASt3R architecture
with random weights (``--source model``, cached under ``benchmarks/results/``), or unit-norm Gaussian noise
(``--source gaussian``, instant).  Each configuration runs in its own subprocess so its peak memory is its own:

* ``ours``: :func:`mast3r.fast_nn.fast_reciprocal_NNs` (``subsample_or_initxy1=8, dist='dot'`` by default).
* ``original``: the original ``mast3r/fast_nn.py`` when ``--original FILE`` points to a copy of it (it is loaded
  from that file, nothing is installed); its matches are checked to be identical to ours.

Example::

    python benchmarks/bench_fast_nn.py --threads 2 --runs 3 --original /path/to/naver/mast3r/mast3r/fast_nn.py
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _peak_rss_mb() -> float:
    from _memory import peak_rss_kb  # benchmarks/ is on sys.path when run as a script
    return peak_rss_kb() / 1e3


def make_descriptors(source: str, seed: int = 0, threads: int = 2) -> Path:
    """Write (or reuse) ``desc1``/``desc2`` maps (384, 512, 24) float32 and return the .npz path."""
    import numpy as np
    import torch
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"fast_nn_desc_{source}_{seed}.npz"
    if path.exists():
        return path
    torch.set_num_threads(threads)
    if source == "gaussian":
        gen = torch.Generator().manual_seed(seed)
        d = torch.nn.functional.normalize(torch.randn(2, 384, 512, 24, generator=gen), dim=-1)
        desc1, desc2 = d[0].numpy(), d[1].numpy()
    else:  # a forward pass of the full-size architecture with random weights
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_inference import CONSTRUCTOR, _pair, _random_state_dict

        from dust3r.inference import inference
        from dust3r.model_loading import build_model, model_classes, normalise_model_kwargs
        from dust3r.utils.checkpoint import parse_constructor
        cls_name, kwargs = parse_constructor(CONSTRUCTOR, ["AsymmetricMASt3R"])
        model = build_model(model_classes()[cls_name], normalise_model_kwargs(kwargs))
        model.load_state_dict(_random_state_dict(seed), assign=True)
        model.eval()
        print("computing full-size random-weight descriptors (one symmetric pair) ...", file=sys.stderr)
        out = inference(_pair("cpu"), model, "cpu", batch_size=2, verbose=False)
        desc1 = out["pred1"]["desc"][0].float().numpy()
        desc2 = out["pred2"]["desc"][0].float().numpy()
    np.savez(path, desc1=desc1, desc2=desc2)
    return path


def _load_original(path: str):
    spec = importlib.util.spec_from_file_location("original_fast_nn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fast_reciprocal_NNs


def run_one(impl: str, desc_path: str, subsample: int, dist: str, runs: int, threads: int,
            original: Optional[str]) -> dict:
    """Time ``runs`` calls in this process; return a JSON-able dict (matches saved next to the descriptors)."""
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    arrays = np.load(desc_path)
    d1, d2 = torch.from_numpy(arrays["desc1"]), torch.from_numpy(arrays["desc2"])
    if impl == "original":
        fn = _load_original(original)
    else:
        from mast3r.fast_nn import fast_reciprocal_NNs as fn
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        xy1, xy2 = fn(d1, d2, subsample_or_initxy1=subsample, device="cpu", dist=dist, block_size=2 ** 13)
        times.append(time.perf_counter() - t0)
    digest = hashlib.sha256(np.ascontiguousarray(xy1).tobytes() + np.ascontiguousarray(xy2).tobytes()).hexdigest()
    return dict(impl=impl, median_s=statistics.median(times), runs=runs, threads=torch.get_num_threads(),
                matches=int(len(xy1)), digest=digest, peak_rss_mb=_peak_rss_mb())


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=["model", "gaussian"], default="model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subsample", type=int, default=8)
    p.add_argument("--dist", choices=["dot", "l2"], default="dot")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--original", default=None, help="path to the original mast3r/fast_nn.py, to compare with")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:  # inside a per-configuration subprocess
        impl, desc_path = args._child.split("::", 1)
        print(json.dumps(run_one(impl, desc_path, args.subsample, args.dist, args.runs, args.threads,
                                 args.original)))
        return 0

    desc_path = make_descriptors(args.source, args.seed, args.threads)
    impls = ["ours"] + (["original"] if args.original else [])
    rows = []
    for impl in impls:
        cmd = [sys.executable, __file__, "--_child", f"{impl}::{desc_path}", "--subsample", str(args.subsample),
               "--dist", args.dist, "--runs", str(args.runs), "--threads", str(args.threads)]
        if args.original:
            cmd += ["--original", args.original]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return res.returncode
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))

    print(f"\nfast_reciprocal_NNs, 384x512x24 maps ({args.source} descriptors), subsample={args.subsample}, "
          f"dist='{args.dist}', {args.threads} threads, median of {args.runs}\n")
    print("| implementation | median time (s) | speed-up | peak RSS (MB) | matches | identical to ours |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    ref = rows[0]
    base = rows[-1]["median_s"]
    for r in rows:
        print(f"| {r['impl']} | {r['median_s']:.3f} | {base / r['median_s']:.2f}x | {r['peak_rss_mb']:.0f} | "
              f"{r['matches']} | {'yes' if r['digest'] == ref['digest'] else 'NO'} |")
    return 0 if all(r["digest"] == ref["digest"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
