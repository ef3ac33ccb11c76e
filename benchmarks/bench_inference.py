"""Pair inference of the full-size MASt3R architecture: time and peak memory.

Builds ``MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric`` with random weights (or loads ``--weights``), runs one
symmetric pair of 512x384 images through :func:`dust3r.inference.inference` and prints a Markdown table:
median wall time of ``--runs`` runs, threads, peak resident memory of the process.

Each configuration runs in its own subprocess so peak memory is measured per configuration:

* ``ours``: this library as users run it (meta-device build + weights assigned, encoder once per image, fused
  attention, default batch size).
* ``ours-b1``: same with ``batch_size=1``.
* ``original-style``: our modules driven the way the original code runs: randomly initialised model, weights
  copied in with ``load_state_dict`` from a full in-memory state dict, explicit softmax attention, every pair
  in its own batch with its own encoder passes.
* ``original-b1`` / ``original-b2``: the original code itself with batch size 1 / 2, when
  ``--original-runner PATH`` points to a script that runs it (see :func:`run_original` and benchmarks/README.md).

On a GPU, ``--device cuda --amp bf16`` reports milliseconds per pair with bfloat16 autocast.

Example::

    python benchmarks/bench_inference.py --threads 2 --runs 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
CONSTRUCTOR = ("AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
               "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), "
               "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, "
               "dec_depth=12, dec_num_heads=12, two_confs=True)")


def _peak_rss_gb() -> float:
    from _memory import peak_rss_kb  # benchmarks/ is on sys.path when run as a script
    return peak_rss_kb() / 1e6


def _random_state_dict(seed: int):
    """Random full-size weights (deterministic), as a plain state dict."""
    import torch

    from dust3r.model_loading import build_model, model_classes, normalise_model_kwargs
    from dust3r.utils.checkpoint import parse_constructor
    cls_name, kwargs = parse_constructor(CONSTRUCTOR, ["AsymmetricMASt3R"])
    model = build_model(model_classes()[cls_name], normalise_model_kwargs(kwargs)).to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02 if p.ndim > 1 else 0.01, generator=gen)
    return model.state_dict()


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write a full-size random-weight checkpoint in the official .pth layout."""
    import torch
    sd = _random_state_dict(seed)
    torch.save({"model": sd, "args": argparse.Namespace(model=CONSTRUCTOR)}, path)
    return path


def _pair(device):
    import numpy as np
    import torch
    gen = torch.Generator().manual_seed(1)
    views = [dict(img=torch.rand(1, 3, 384, 512, generator=gen) * 2 - 1, true_shape=np.int32([[384, 512]]), idx=i,
                  instance=str(i)) for i in range(2)]
    return [(views[1], views[0]), (views[0], views[1])]


def run_config(config: str, weights: str, runs: int, threads: int, device: str, amp: Optional[str]) -> dict:
    """Load, then time ``runs`` symmetric-pair inferences in this process. Returns a result dict."""
    import torch
    torch.set_num_threads(threads)
    from croco.models.blocks import Attention, CrossAttention
    from dust3r.inference import inference, loss_of_one_batch
    from dust3r.utils.device import collate_with_cat, to_cpu
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[amp]
    t0 = time.perf_counter()
    if config == "original-style":
        from dust3r.model_loading import model_classes, normalise_model_kwargs
        from dust3r.utils.checkpoint import parse_constructor
        ckpt = torch.load(weights, map_location="cpu", weights_only=False)
        cls_name, kwargs = parse_constructor(ckpt["args"].model, ["AsymmetricMASt3R"])
        model = model_classes()[cls_name](**normalise_model_kwargs(kwargs))  # random init, then copy
        model.load_state_dict(ckpt["model"], strict=False)
        del ckpt
        model = model.to(device)
        Attention.fused_attn = CrossAttention.fused_attn = False
    else:
        from mast3r.model import AsymmetricMASt3R
        model = AsymmetricMASt3R.from_pretrained(weights, device=device)
    load_s = time.perf_counter() - t0
    pairs = _pair(device)
    times: List[float] = []
    for _ in range(runs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        if config == "original-style":
            with torch.no_grad():
                for pair in pairs:  # batch of one pair: no encoder sharing
                    to_cpu(loss_of_one_batch(collate_with_cat([pair]), model, None, device))
        else:
            inference(pairs, model, device, batch_size=1 if config == "ours-b1" else 8, verbose=False, amp=amp_dtype)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    res = dict(config=config, device=device, threads=torch.get_num_threads(), amp=amp or "fp32", load_s=load_s,
               times=times, median_s=statistics.median(times), peak_rss_gb=_peak_rss_gb())
    if device.startswith("cuda"):
        res["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return res


def _subprocess(args: List[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_original(runner: str, weights: str, runs: int, threads: int, batch_size: int = 1) -> dict:
    """Run an external script that times the original implementation on the same checkpoint and pair.

    The script gets ``--size full --ckpt PATH --runs N --threads T --batch-size B`` and prints one JSON line with
    per-run times (``times`` or ``run_times_s``, seconds) and the peak RSS (``peak_rss_gb`` or ``peak_rss_mb``).
    """
    cmd = [sys.executable, runner, "--size", "full", "--ckpt", weights, "--runs", str(runs), "--threads",
           str(threads), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"original runner failed:\n{out.stderr[-3000:]}")
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    times = raw.get("times", raw.get("run_times_s"))
    peak = raw["peak_rss_gb"] if "peak_rss_gb" in raw else raw["peak_rss_mb"] / 1e3
    return dict(config=f"original-b{batch_size}", device="cpu", threads=threads, amp="fp32", times=times,
                median_s=statistics.median(times), peak_rss_gb=peak)


def print_table(results: List[dict]) -> None:
    base = next((r for r in results if r["config"].startswith("original")), None)
    print("| config | device | threads | precision | median s / symmetric pair | s / forward | peak RSS GB |"
          + (" speed-up | memory ratio |" if base else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
    for r in results:
        row = (f"| {r['config']} | {r['device']} | {r['threads']} | {r['amp']} | {r['median_s']:.2f} | "
               f"{r['median_s'] / 2:.2f} | {r['peak_rss_gb']:.2f} |")
        if base:
            row += f" {base['median_s'] / r['median_s']:.2f}x | {r['peak_rss_gb'] / base['peak_rss_gb']:.2f} |"
        print(row)


def main(configs: List[str], runs: int = 3, threads: int = 2, device: str = "cpu", amp: Optional[str] = None,
         weights: Optional[str] = None, original_runner: Optional[str] = None) -> List[dict]:
    tmp = None
    if weights is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_mast3r_")
        weights = str(Path(tmp.name) / "mast3r_random.pth")
        print(f"writing a random-weight full-size checkpoint to {weights} ...", file=sys.stderr)
        make_checkpoint(Path(weights))
    results = []
    try:
        for config in configs:
            if config.startswith("original-b"):
                if not original_runner:
                    continue
                res = run_original(original_runner, weights, runs, threads, int(config[len("original-b"):]))
            else:
                extra = ["--amp", amp] if amp else []
                res = _subprocess(["--one", config, "--weights", weights, "--runs", str(runs), "--threads",
                                   str(threads), "--device", device, *extra])
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print_table(results)
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="original-b1,original-b2,original-style,ours,ours-b1",
                   help="comma-separated: original-b1, original-b2 (need --original-runner), original-style, ours, "
                        "ours-b1")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["bf16", "fp16"], default=None)
    p.add_argument("--weights", default=None, help="a .pth to load (default: random weights written to a temp file)")
    p.add_argument("--original-runner", default=None, help="script running the original implementation")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_config(a.one, a.weights, a.runs, a.threads, a.device, a.amp)))
    else:
        main(a.configs.split(","), a.runs, a.threads, a.device, a.amp, a.weights, a.original_runner)
