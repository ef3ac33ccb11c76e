"""``fast_reciprocal_NNs`` on full-size descriptor maps: time, speed-up over the original, peak memory, matches.

Descriptor maps are 384x512x24 (cached under ``benchmarks/results/``), from one of these sources:

* ``model``: one symmetric-pair forward pass of the full-size MASt3R architecture with random weights (noisy,
  weakly distinctive descriptors: few round trips, many seeds collapse onto the same pixels);
* ``synthetic``: the ground-truth descriptor fields of a synthetic scene rendered at 512x384
  (:func:`dust3r.utils.synthetic.make_scene`, two orbit views, returned by
  :class:`dust3r.utils.synthetic.OracleModel`): smooth and distinctive like a trained model's, so nearly every
  seed walks several round trips to a match;
* ``gaussian``: unit-norm Gaussian noise.

Implementations, each call in its own subprocess (its peak memory is its own) and the two alternated run by run
(``ours, original, original, ours, ...``) so that a load change on the machine hits both alike:

* ``ours``: :func:`mast3r.fast_nn.fast_reciprocal_NNs` (``subsample_or_initxy1=8``, ``block_size=2**13``, as the
  sparse global alignment calls it);
* ``original``: the original ``mast3r/fast_nn.py`` when ``--original FILE`` points to a copy of it (loaded from that
  file, nothing installed); its matches are checked to be identical to ours.

Timings need a quiet machine (see benchmarks/README.md): the load average before and after is printed under the
table. The speed-up is the ratio of the median wall times; the CPU-time ratio (median process CPU time of the
original over ours) is less sensitive to other work on the machine, most of all with ``--threads 1``.

Example::

    python benchmarks/bench_fast_nn.py --threads 2 --runs 5 --original /path/to/naver/mast3r/mast3r/fast_nn.py
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SOURCES = ("model", "synthetic", "gaussian")
SOURCE_LABELS = {"model": "random-weight MASt3R forward", "synthetic": "synthetic scene, ground-truth descriptors",
                 "gaussian": "unit Gaussian noise"}
HEIGHT, WIDTH, DIM = 384, 512, 24


def _peak_rss_mb() -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _memory import peak_rss_kb
    return peak_rss_kb() / 1e3


def _model_descriptors(seed: int):
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
    return out["pred1"]["desc"][0].float().numpy(), out["pred2"]["desc"][0].float().numpy()


def _synthetic_descriptors(seed: int):
    from dust3r.utils.synthetic import OracleModel, make_scene
    scene = make_scene(2, HEIGHT, WIDTH, seed=seed)
    views = scene.views()
    pred1, pred2 = OracleModel(scene, desc_dim=DIM)(views[0], views[1])
    return pred1["desc"][0].numpy(), pred2["desc"][0].numpy()


def make_descriptors(source: str, seed: int = 0, threads: int = 2) -> Path:
    """Write (or reuse) ``desc1``/``desc2`` maps (384, 512, 24) float32 and return the .npz path."""
    import numpy as np
    import torch
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"fast_nn_desc_{source}_{seed}.npz"
    if path.exists():
        return path
    torch.set_num_threads(threads)
    if source == "gaussian":
        gen = torch.Generator().manual_seed(seed)
        d = torch.nn.functional.normalize(torch.randn(2, HEIGHT, WIDTH, DIM, generator=gen), dim=-1)
        desc1, desc2 = d[0].numpy(), d[1].numpy()
    elif source == "synthetic":
        desc1, desc2 = _synthetic_descriptors(seed)
    else:
        desc1, desc2 = _model_descriptors(seed)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez(tmp, desc1=desc1, desc2=desc2)
    tmp.replace(path)
    return path


def _load_original(path: str):
    spec = importlib.util.spec_from_file_location("original_fast_nn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fast_reciprocal_NNs


def run_one(impl: str, desc_path: str, subsample: int, dist: str, threads: int, original: Optional[str]) -> dict:
    """Time one call in this process (after a tiny warm-up call); return a JSON-able dict."""
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    arrays = np.load(desc_path)
    d1, d2 = torch.from_numpy(arrays["desc1"]), torch.from_numpy(arrays["desc2"])
    if impl == "original":
        fn = _load_original(original)
    else:
        from mast3r.fast_nn import fast_reciprocal_NNs as fn
    kw = dict(subsample_or_initxy1=subsample, device="cpu", dist=dist, block_size=2 ** 13)
    fn(d1[:16, :16].contiguous(), d2[:16, :16].contiguous(), **kw)  # thread pools, BLAS, lazy imports
    t0, c0 = time.perf_counter(), time.process_time()
    xy1, xy2 = fn(d1, d2, **kw)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    digest = hashlib.sha256(np.ascontiguousarray(xy1).tobytes() + np.ascontiguousarray(xy2).tobytes()).hexdigest()
    return dict(impl=impl, seconds=seconds, cpu_seconds=cpu_seconds, threads=torch.get_num_threads(),
                matches=int(len(xy1)), digest=digest, peak_rss_mb=_peak_rss_mb())


def _child(impl: str, desc_path: Path, subsample: int, dist: str, threads: int, original: Optional[str]) -> dict:
    cmd = [sys.executable, __file__, "--_child", f"{impl}::{desc_path}", "--subsample", str(subsample),
           "--dist", dist, "--threads", str(threads)]
    if original:
        cmd += ["--original", original]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{impl} on {desc_path.name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(desc_path: Path, dist: str, impls: Sequence[str], runs: int, subsample: int, threads: int,
            original: Optional[str]) -> Dict[str, List[dict]]:
    """``runs`` single-call subprocesses per implementation, alternated (ABBA order)."""
    out: Dict[str, List[dict]] = {impl: [] for impl in impls}
    for r in range(runs):
        for impl in (impls if r % 2 == 0 else list(reversed(impls))):
            out[impl].append(_child(impl, desc_path, subsample, dist, threads, original))
            print(f"  {desc_path.stem} {dist} run {r + 1}/{runs} {impl}: {out[impl][-1]['seconds']:.3f} s",
                  file=sys.stderr)
    return out


def _row(source: str, dist: str, res: Dict[str, List[dict]]) -> str:
    ours = res["ours"]
    t_ours = statistics.median(r["seconds"] for r in ours)
    rss_ours = max(r["peak_rss_mb"] for r in ours)
    cells = [SOURCE_LABELS[source], f"`{dist}`", f"{t_ours:.3f}"]
    if "original" in res:
        orig = res["original"]
        t_orig = statistics.median(r["seconds"] for r in orig)
        same = all(r["digest"] == ours[0]["digest"] for r in ours + orig)
        cpu = statistics.median(r["cpu_seconds"] for r in orig) / statistics.median(r["cpu_seconds"] for r in ours)
        cells += [f"{t_orig:.3f}", f"**{t_orig / t_ours:.1f}x**", f"{cpu:.1f}x",
                  f"{rss_ours:.0f} / {max(r['peak_rss_mb'] for r in orig):.0f}", str(ours[0]["matches"]),
                  "yes" if same else "NO"]
    else:
        cells += [f"{rss_ours:.0f}", str(ours[0]["matches"])]
    return "| " + " | ".join(cells) + " |"


def main(sources: Sequence[str] = ("model", "synthetic"), dists: Sequence[str] = ("dot",), runs: int = 3,
         threads: int = 2, subsample: int = 8, seed: int = 0, original: Optional[str] = None) -> int:
    """Measure, print a Markdown table; return 1 if the original's matches differ from ours, else 0."""
    load_before = os.getloadavg()
    impls = ["ours"] + (["original"] if original else [])
    rows, identical = [], True
    for source in sources:
        desc_path = make_descriptors(source, seed, threads)
        for dist in dists:
            res = measure(desc_path, dist, impls, runs, subsample, threads, original)
            identical &= all(r["digest"] == res["ours"][0]["digest"] for rs in res.values() for r in rs)
            rows.append(_row(source, dist, res))
    load_after = os.getloadavg()

    print(f"\nfast_reciprocal_NNs, {HEIGHT}x{WIDTH}x{DIM} maps, subsample={subsample}, block_size=8192, "
          f"{threads} thread(s), median of {runs} alternated runs (one call per process)\n")
    if original:
        print("| descriptors | dist | ours (s) | original (s) | speed-up | CPU-time ratio | peak RSS ours / original "
              "(MB) | matches | identical |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    else:
        print("| descriptors | dist | ours (s) | peak RSS (MB) | matches |")
        print("| --- | --- | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nload average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} "
          "CPUs" + (" -- the machine was busy: timings are not representative" if max(load_before[0], load_after[0])
                    > 0.5 * (os.cpu_count() or 1) else ""))
    return 0 if identical else 1


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", "--sources", dest="sources", nargs="+", choices=SOURCES,
                   default=["model", "synthetic"], help="descriptor maps to match (default: model synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights / scene / noise")
    p.add_argument("--subsample", type=int, default=8, help="seed grid step")
    p.add_argument("--dist", nargs="+", choices=["dot", "l2"], default=["dot"], help="distance(s) (default: dot)")
    p.add_argument("--runs", type=int, default=3, help="calls per implementation and configuration")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--original", default=None, help="path to the original mast3r/fast_nn.py, to compare with")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1 or args.threads < 1 or args.subsample < 1:
        p.error("--runs, --threads and --subsample must be >= 1")
    if args.original and not Path(args.original).is_file():
        p.error(f"--original {args.original}: no such file")
    return args


if __name__ == "__main__":
    ARGS = _parse(None)
    if ARGS._child:  # inside a per-call subprocess
        IMPL, DESC = ARGS._child.split("::", 1)
        print(json.dumps(run_one(IMPL, DESC, ARGS.subsample, ARGS.dist[0], ARGS.threads, ARGS.original)))
        sys.exit(0)
    sys.exit(main(ARGS.sources, ARGS.dist, ARGS.runs, ARGS.threads, ARGS.subsample, ARGS.seed, ARGS.original))
