"""Training steps of MASt3R on CPU: samples per second, peak memory and the loss, ours against the original.

Both implementations are driven the same way: the same model string (``--size tiny`` or ``full``, the released
checkpoint's ViT-L architecture), the same weights (a seeded value rule applied to every parameter by name, so no
weight file is shared), the same batch (a seeded synthetic batch of ``--batch_size`` pairs written once to a
``.npz``), the train criterion of the original README's command line, and one training step =
``loss_of_one_batch(batch, model, criterion, 'cpu', symmetrize_batch=True)`` + ``backward`` + AdamW step (each
implementation's own optimizer set-up: the original's ``torch.optim.AdamW`` over ``get_parameter_groups``, ours
from ``dust3r.training``). Each configuration runs in its own subprocess (peak RSS per configuration):

* ``ours``: this library; ``ours-gc``: with gradient checkpointing (``model.set_gradient_checkpointing(True)``);
* ``original``: the original code, from ``--original DIR`` (a checkout of naver/mast3r with its ``dust3r`` and
  ``dust3r/croco`` submodules). Its ``mast3r.losses`` imports scikit-learn only for an AP metric the train criterion
  does not use; when scikit-learn is absent a stand-in module that raises on use is put on its path.

The first step is a warm-up; the table gives the median of the next ``--steps`` steps, samples (pairs) per second,
the process CPU time per step (comparable on a busy machine, unlike wall time), the peak RSS of the process,
and the first step's loss (equal for both implementations up to float rounding).

Example (a quiet machine; the full size needs ~15 GB per configuration)::

    python benchmarks/bench_train.py --size tiny --steps 5 --original /tmp/orig_x
    python benchmarks/bench_train.py --size full --steps 3 --original /tmp/orig_x
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
ARCH = dict(
    full=dict(enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12),
    tiny=dict(enc_embed_dim=64, enc_depth=2, enc_num_heads=2, dec_embed_dim=48, dec_depth=10, dec_num_heads=2),
)
COMMON = dict(pos_embed="RoPE100", patch_embed_cls="ManyAR_PatchEmbed", img_size=(512, 512), head_type="catmlp+dpt",
              output_mode="pts3d+desc24", depth_mode=("exp", -float("inf"), float("inf")),
              conf_mode=("exp", 1, float("inf")), two_confs=True)
TRAIN_CRITERION = ("ConfLoss(Regr3D(L21, norm_mode='?avg_dis'), alpha=0.2) + 0.075*ConfMatchingLoss(MatchingLoss("
                   "InfoNCE(mode='proper', temperature=0.05), negatives_padding=0, blocksize=8192), alpha=10.0, "
                   "confmode='mean')")
CONFIGS = ("original", "ours", "ours-gc")


# ---------------------------------------------------------------------------------------------- shared inputs
def make_batch(path: Path, batch_size: int, height: int, width: int, n_corres: int, seed: int = 0) -> None:
    """A synthetic batch of ``batch_size`` pairs in the layout datasets collate (view1.<key>, view2.<key>)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    arrays = {}
    for v in (1, 2):
        depth = rng.uniform(1.0, 3.0, size=(batch_size, height, width)).astype(np.float32)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        f = 0.8 * width
        pts = np.stack([(xs - width / 2) / f * depth, (ys - height / 2) / f * depth, depth], axis=-1)
        valid = rng.random((batch_size, height, width)) > 0.05
        pose = np.tile(np.eye(4, dtype=np.float32), (batch_size, 1, 1))
        pose[:, :3, 3] = rng.normal(0, 0.1, size=(batch_size, 3))
        corres = np.stack([rng.integers(0, width, (batch_size, n_corres)),
                           rng.integers(0, height, (batch_size, n_corres))], axis=-1).astype(np.int64)
        arrays.update({
            f"view{v}.img": rng.uniform(-1, 1, size=(batch_size, 3, height, width)).astype(np.float32),
            f"view{v}.depthmap": depth,
            f"view{v}.pts3d": (pts + pose[:, None, None, :3, 3]).astype(np.float32),
            f"view{v}.valid_mask": valid, f"view{v}.sky_mask": ~valid & (rng.random(valid.shape) > 0.5),
            f"view{v}.camera_pose": pose,
            f"view{v}.camera_intrinsics": np.tile(np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]],
                                                           np.float32), (batch_size, 1, 1)),
            f"view{v}.true_shape": np.tile(np.int32([height, width]), (batch_size, 1)),
            f"view{v}.is_metric_scale": np.zeros(batch_size, bool),
            f"view{v}.corres": corres,
            f"view{v}.valid_corres": rng.random((batch_size, n_corres)) > 0.5,
        })
    np.savez(path, **arrays)


def load_batch(path: str, batch_size: int):
    import numpy as np
    import torch
    data = np.load(path)
    views = []
    for v in (1, 2):
        view = {k.split(".", 1)[1]: torch.from_numpy(data[k]) for k in data.files if k.startswith(f"view{v}.")}
        view["instance"] = [f"{i}_{v}" for i in range(batch_size)]
        view["idx"] = [torch.arange(batch_size), torch.zeros(batch_size, dtype=torch.long),
                       torch.full((batch_size,), v - 1)]
        view["dataset"] = ["synthetic"] * batch_size
        view["label"] = [f"scene{i}" for i in range(batch_size)]
        view["rng"] = torch.arange(batch_size)
        views.append(view)
    return views


def seeded_weights_(model, seed: int) -> None:
    """The same weights in both implementations: a value rule per parameter name (names are checkpoint-frozen)."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            if p.ndim > 1:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.uniform_(-0.05, 0.05, generator=gen)
                if name.endswith("norm.weight") or ".norm" in name and name.endswith(".weight"):
                    p.add_(1.0)


# ---------------------------------------------------------------------------------------------- workers
def _build_ours(size: str, gradient_checkpointing: bool):
    import torch
    from mast3r.losses import parse_criterion
    from mast3r.model import AsymmetricMASt3R
    model = AsymmetricMASt3R(**COMMON, **ARCH[size])
    if gradient_checkpointing:
        model.set_gradient_checkpointing(True)
    criterion = parse_criterion(TRAIN_CRITERION)
    from dust3r import training
    if hasattr(training, "build_optimizer"):
        optimizer_for = lambda m: training.build_optimizer(m, lr=1e-4, weight_decay=0.05)  # noqa: E731
    else:
        from croco.utils.misc import get_parameter_groups
        optimizer_for = lambda m: torch.optim.AdamW(get_parameter_groups(m, 0.05), lr=1e-4,  # noqa: E731
                                                    betas=(0.9, 0.95))
    from dust3r.inference import loss_of_one_batch
    return model, criterion, optimizer_for, loss_of_one_batch


def _build_original(size: str, original: str):
    """The original's own classes, built with Python calls (no string evaluation)."""
    import importlib.util
    import types
    if importlib.util.find_spec("sklearn") is None:  # only the AP metric (test criterion) needs it
        import importlib.machinery
        stub = types.ModuleType("sklearn")
        stub.metrics = types.ModuleType("sklearn.metrics")
        stub.__spec__ = importlib.machinery.ModuleSpec("sklearn", None, is_package=True)
        stub.metrics.__spec__ = importlib.machinery.ModuleSpec("sklearn.metrics", None)
        stub.metrics.average_precision_score = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no sklearn"))
        sys.modules.update({"sklearn": stub, "sklearn.metrics": stub.metrics})
    sys.path[:0] = [original]
    for name in [m for m in sys.modules if m.split(".")[0] in ("mast3r", "dust3r", "croco")]:
        del sys.modules[name]
    import torch
    import mast3r.utils.path_to_dust3r  # noqa: F401  (the original's own sys.path set-up)
    from dust3r.losses import L21
    from mast3r.losses import ConfLoss, ConfMatchingLoss, InfoNCE, MatchingLoss, Regr3D
    from mast3r.model import AsymmetricMASt3R
    import croco.utils.misc as misc
    from dust3r.inference import loss_of_one_batch
    for name in ("mast3r.model", "dust3r.inference", "croco.utils.misc"):
        assert str(Path(sys.modules[name].__file__)).startswith(str(Path(original))), f"{name} is not the original's"
    model = AsymmetricMASt3R(**COMMON, **ARCH[size])
    criterion = (ConfLoss(Regr3D(L21, norm_mode='?avg_dis'), alpha=0.2)
                 + 0.075 * ConfMatchingLoss(MatchingLoss(InfoNCE(mode='proper', temperature=0.05),
                                                         negatives_padding=0, blocksize=8192),
                                            alpha=10.0, confmode='mean'))
    optimizer_for = lambda m: torch.optim.AdamW(misc.get_parameter_groups(m, 0.05), lr=1e-4,  # noqa: E731
                                                betas=(0.9, 0.95))
    return model, criterion, optimizer_for, loss_of_one_batch


def worker(config: str, size: str, batch_path: str, batch_size: int, steps: int, threads: int,
           original: Optional[str]) -> Dict:
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if config == "original":
        model, criterion, optimizer_for, loss_of_one_batch = _build_original(size, original)
    else:
        model, criterion, optimizer_for, loss_of_one_batch = _build_ours(size, config == "ours-gc")
    seeded_weights_(model, seed=0)
    model.train(True)
    optimizer = optimizer_for(model)
    times: List[float] = []
    cpu_times: List[float] = []
    losses: List[float] = []
    for _ in range(steps + 1):
        batch = load_batch(batch_path, batch_size)  # fresh views each step (the loss may write into them)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_of_one_batch(batch, model, criterion, "cpu", symmetrize_batch=True, use_amp=False)["loss"][0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        losses.append(float(loss))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _memory import peak_rss_kb
    return dict(config=config, size=size, times=times[1:], cpu_times=cpu_times[1:], losses=losses,
                peak_rss_gb=peak_rss_kb() / 1e6)


# ---------------------------------------------------------------------------------------------- driver
def run_config(config: str, args, batch_path: Path) -> Dict:
    cmd = [sys.executable, __file__, "--worker", config, "--size", args.size, "--batch_path", str(batch_path),
           "--batch_size", str(args.batch_size), "--steps", str(args.steps), "--threads", str(args.threads)]
    if args.original:
        cmd += ["--original", args.original]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(results: List[Dict], batch_size: int) -> None:
    base = next((r for r in results if r["config"] == "original"), None)
    print(f"| config | size | median s / step | CPU s / step | samples/s | peak RSS GB | first loss |"
          + (" speed-up | CPU-time ratio | memory ratio | loss rel. diff |" if base else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|---|---|" if base else ""))
    for r in results:
        med, cpu = statistics.median(r["times"]), statistics.median(r["cpu_times"])
        row = (f"| {r['config']} | {r['size']} | {med:.2f} | {cpu:.2f} | {batch_size / med:.3f} | "
               f"{r['peak_rss_gb']:.2f} | {r['losses'][0]:.6f} |")
        if base:
            bmed, bcpu = statistics.median(base["times"]), statistics.median(base["cpu_times"])
            rel = abs(r["losses"][0] - base["losses"][0]) / max(abs(base["losses"][0]), 1e-12)
            row += (f" {bmed / med:.2f}x | {cpu / bcpu:.2f} | {r['peak_rss_gb'] / base['peak_rss_gb']:.2f} |"
                    f" {rel:.1e} |")
        print(row)


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(ARCH), default="tiny")
    p.add_argument("--configs", default=None, help=f"comma-separated subset of {CONFIGS}")
    p.add_argument("--original", default=None, help="checkout of the original naver/mast3r (with submodules)")
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--resolution", type=int, nargs=2, default=(224, 224), metavar=("W", "H"))
    p.add_argument("--n_corres", type=int, default=4096)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch_path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.batch_path, args.batch_size, args.steps, args.threads,
                                args.original)))
        return []
    configs = args.configs.split(",") if args.configs else [c for c in CONFIGS if c != "original" or args.original]
    with tempfile.TemporaryDirectory() as tmp:
        batch_path = Path(tmp) / "batch.npz"
        make_batch(batch_path, args.batch_size, args.resolution[1], args.resolution[0], args.n_corres)
        results = []
        for config in configs:
            results.append(run_config(config, args, batch_path))
            print(f"# {config}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print_table(results, args.batch_size)
    return results


if __name__ == "__main__":
    main()
