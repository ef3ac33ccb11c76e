"""Visual localization: seconds per query and peak memory, ours vs the original code, on one synthetic dataset.

A synthetic scene (``dust3r.synthetic``, known poses) is written in the Cambridge Landmarks layout (COLMAP map
+ kapture queries + pairs file) and localized by

* ``ours``: ``visloc.main`` of this repository;
* ``original``: the original ``visloc.py`` (naver/mast3r with its dust3r and croco submodules) run unchanged
  with ``runpy`` on the same files, when ``--original-root`` points to an extracted copy (made from the mirrors
  with ``--extract-original``).

Each measurement runs in its own subprocess (``peak_rss_mb`` is its own), alternated ``ours, original, original,
ours, ...`` over ``--runs`` so that a load change on the machine hits both alike.

Models (``--model``): ``oracle`` (the ground-truth :class:`dust3r.synthetic.OracleModel`: both localize every
query, the time is everything but the network) or ``vitl-random`` (the full-size MASt3R architecture with random
weights: the network time of a real run; poses are then meaningless).

The original needs three packages this environment does not provide: ``torchvision`` (its image transforms; it
does not import here), ``roma`` (pose errors) and ``kapture_localization`` (the pairs-file reader). The benchmark
writes small stand-ins for the few functions it uses into a temporary folder *outside* the repository and puts
it on the original's ``sys.path`` only (see ``_SHIMS``); nothing of the project depends on them.

    python benchmarks/bench_visloc.py --extract-original /tmp/orig_visloc
    python benchmarks/bench_visloc.py --original-root /tmp/orig_visloc --height 384 --width 512 --queries 3 \\
        --topk 2 --model vitl-random --runs 2 --threads 2

Prints a Markdown table: seconds per query (median over runs; model loading excluded and reported apart), peak
RSS, localized queries and median errors.
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
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
MIRRORS = {"mast3r": "/work/.mirror/naver+mast3r/repo", "dust3r": "/work/.mirror/naver+dust3r/repo",
           "croco": "/work/.mirror/naver+croco/repo"}
# stand-ins for the original's missing dependencies (written to a temp folder, never inside the repository)
_SHIMS = {
    "torchvision/__init__.py": "from . import transforms, datasets\n",
    "torchvision/datasets/__init__.py": "",
    "torchvision/transforms/functional.py": (
        "import numpy as np, PIL.Image\n"
        "def to_pil_image(t):\n"
        "    a = t.detach().cpu().numpy()\n"
        "    a = a.transpose(1, 2, 0) if a.ndim == 3 else a\n"
        "    return PIL.Image.fromarray((a * 255).clip(0, 255).astype(np.uint8) if a.dtype != np.uint8 else a)\n"),
    "torchvision/transforms/__init__.py": (
        "import enum, numpy as np, PIL.Image, torch, torch.nn.functional as F\n"
        "from . import functional\n"
        "class InterpolationMode(enum.Enum):\n"
        "    NEAREST = 'nearest'; NEAREST_EXACT = 'nearest-exact'; BILINEAR = 'bilinear'; BICUBIC = 'bicubic'\n"
        "class Compose:\n"
        "    def __init__(self, ts): self.ts = ts\n"
        "    def __call__(self, x):\n"
        "        for t in self.ts: x = t(x)\n"
        "        return x\n"
        "class ToTensor:\n"
        "    def __call__(self, pic):\n"
        "        a = np.asarray(pic)\n"
        "        a = a[:, :, None] if a.ndim == 2 else a\n"
        "        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div(255)\n"
        "class Normalize:\n"
        "    def __init__(self, mean, std): self.mean, self.std = mean, std\n"
        "    def __call__(self, t):\n"
        "        m = torch.as_tensor(self.mean, dtype=t.dtype)[:, None, None]\n"
        "        s = torch.as_tensor(self.std, dtype=t.dtype)[:, None, None]\n"
        "        return (t - m) / s\n"
        "class Resize:\n"
        "    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, antialias=True):\n"
        "        self.size, self.mode = list(size), interpolation\n"
        "    def __call__(self, t):\n"
        "        if isinstance(t, PIL.Image.Image):\n"
        "            return t.resize(self.size[::-1], PIL.Image.BILINEAR)\n"
        "        if self.mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):\n"
        "            return F.interpolate(t[None].float(), size=self.size, mode=self.mode.value)[0].to(t.dtype)\n"
        "        return F.interpolate(t[None], size=self.size, mode='bilinear', antialias=True, align_corners=False)[0]\n"
        "class CenterCrop:\n"
        "    def __init__(self, size): self.size = list(size)\n"
        "    def __call__(self, t):\n"
        "        h, w = self.size; H, W = t.shape[-2:]\n"
        "        top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))\n"
        "        return t[..., top:top + h, left:left + w]\n"
        "class ColorJitter:\n"
        "    def __init__(self, *a, **k): pass\n"
        "    def __call__(self, x): return x\n"
        "class RandomCrop(CenterCrop):\n"
        "    pass\n"),
    "roma.py": (
        "import torch\n"
        "from scipy.spatial.transform import Rotation\n"
        "def rotmat_geodesic_distance(R1, R2):\n"
        "    R1, R2 = R1.double(), R2.double()\n"
        "    c = ((R1.transpose(-1, -2) @ R2).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2\n"
        "    return torch.arccos(c.clamp(-1, 1))\n"
        "def rotmat_to_unitquat(R):\n"
        "    return torch.as_tensor(Rotation.from_matrix(R.detach().cpu().numpy()).as_quat(), dtype=R.dtype)\n"
        "def unitquat_to_rotmat(q):\n"
        "    return torch.as_tensor(Rotation.from_quat(q.detach().cpu().numpy()).as_matrix(), dtype=q.dtype)\n"),
    "kapture_localization/__init__.py": "",
    "kapture_localization/utils/__init__.py": "",
    "kapture_localization/utils/pairsfile.py": (
        "from kapture.io.csv import table_from_file\n"
        "def get_ordered_pairs_from_file(path, query_records=None, map_records=None, topk_override=None):\n"
        "    pairs = {}\n"
        "    with open(path) as f:\n"
        "        for q, m, s in table_from_file(f):\n"
        "            pairs.setdefault(q, []).append((m, float(s)))\n"
        "    return {k: sorted(v, key=lambda x: x[1], reverse=True) for k, v in pairs.items()}\n"),
}


def extract_original(dest: str) -> str:
    """``git archive`` the original mast3r, with dust3r (and croco inside it) where its submodules go."""
    dest = os.path.abspath(dest)
    for name, sub in (("mast3r", ""), ("dust3r", "dust3r"), ("croco", "dust3r/croco")):
        target = os.path.join(dest, sub)
        os.makedirs(target, exist_ok=True)
        archive = subprocess.run(["git", f"--git-dir={MIRRORS[name]}", "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return dest


def write_dataset(folder: str, queries: int, topk: int, height: int, width: int, seed: int) -> str:
    """The synthetic dataset (Cambridge layout); returns its --dataset string."""
    from dust3r.synthetic import make_scene
    from dust3r_visloc.datasets.synthetic import write_synthetic_dataset

    scene = make_scene(n_views=2 * queries + 1, height=height, width=width, seed=seed)
    return write_synthetic_dataset(folder, scene, "cambridge", topk=topk).dataset_string


def _scene(queries: int, height: int, width: int, seed: int):
    from dust3r.synthetic import make_scene

    return make_scene(n_views=2 * queries + 1, height=height, width=width, seed=seed)


def _oracle(scene):
    from dust3r.synthetic import OracleModel

    model = OracleModel(scene)
    model.patch_embed.img_size = (512, 512)  # what the datasets read to pick the network resolution
    return model


def _random_checkpoint(path: str, seed: int = 0) -> None:
    """Full-size MASt3R with random weights, saved in the original's checkpoint format (args + model)."""
    import argparse as ap

    import torch

    from bench_inference import CONSTRUCTOR, _random_state_dict  # benchmarks/ is on sys.path as a script

    torch.save({"args": ap.Namespace(model=CONSTRUCTOR), "model": _random_state_dict(seed)}, path)


def _errors(results_file: str, gt: Dict[str, "object"]) -> Dict[str, float]:
    """Localized queries and median errors from a submission file (a missing or identity line is a failure)."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    def rotation_angle_deg(a, b):  # no project import: the original child has swapped the packages
        return np.degrees(Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude())

    t_err, r_err = [], []
    poses = {}
    if os.path.isfile(results_file):
        for line in Path(results_file).read_text().splitlines():
            name, *v = line.split()
            w2c = np.eye(4)
            w2c[:3, :3] = Rotation.from_quat([float(v[1]), float(v[2]), float(v[3]), float(v[0])]).as_matrix()
            w2c[:3, 3] = [float(x) for x in v[4:7]]
            poses[name] = np.linalg.inv(w2c)
    for name, c2w in gt.items():
        est = poses.get(name)
        if est is None:
            t_err.append(np.inf), r_err.append(np.inf)
        else:
            t_err.append(float(np.linalg.norm(est[:3, 3] - c2w[:3, 3])))
            r_err.append(float(rotation_angle_deg(est, c2w)))
    ok = [t < 0.25 and r < 2 for t, r in zip(t_err, r_err)]
    return dict(localized=int(sum(ok)), queries=len(gt), median_t_m=float(np.median(t_err)),
                median_r_deg=float(np.median(r_err)))


def _gt(queries: int, height: int, width: int, seed: int) -> Dict[str, "object"]:
    from dust3r_visloc.datasets.synthetic import split_views

    scene = _scene(queries, height, width, seed)
    q_idx, _ = split_views(scene.n_views)
    return {f"seq2/frame{k:05d}.png": scene.cam2world[k] for k in q_idx}, scene


def run_ours(a: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from _memory import peak_rss_kb

    import visloc

    torch.set_num_threads(a.threads)
    gt, scene = _gt(a.queries, a.height, a.width, a.seed)
    out = tempfile.mkdtemp(prefix="bench_visloc_ours_")
    start = time.perf_counter()
    if a.model == "oracle":
        model = _oracle(scene)
    else:
        from dust3r.app.launch import load_model

        model = load_model(a.checkpoint, "cpu")
    load_s = time.perf_counter() - start
    visloc.main(a.dataset, device="cpu", pnp_mode="poselib", pixel_tol=5, reprojection_error_diag_ratio=0.008,
                output_dir=out, output_label="bench", model=model)
    elapsed = time.perf_counter() - start - load_s
    files = [f for f in os.listdir(out) if f.endswith("_results.txt")]
    return dict(impl="ours", s_per_query=elapsed / a.queries, load_s=load_s, peak_rss_mb=peak_rss_kb() / 1e3,
                **_errors(os.path.join(out, files[0]), gt))


def run_original(a: argparse.Namespace) -> dict:
    """The original visloc.py under runpy; the oracle is built from this repository before the module swap."""
    import runpy

    import torch

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _memory import peak_rss_kb

    torch.set_num_threads(a.threads)
    gt, scene = _gt(a.queries, a.height, a.width, a.seed)
    model = _oracle(scene) if a.model == "oracle" else None
    # forget this repository's packages: the original's (same names) must be imported from here on
    for name in list(sys.modules):
        if name.split(".")[0] in ("dust3r", "mast3r", "croco", "dust3r_visloc", "visloc"):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != str(ROOT)]
    shims = tempfile.mkdtemp(prefix="bench_visloc_shims_")
    for rel, text in _SHIMS.items():
        os.makedirs(os.path.dirname(os.path.join(shims, rel)), exist_ok=True)
        Path(shims, rel).write_text(text)
    root = os.path.abspath(a.original_root)
    sys.path[:0] = [root, os.path.join(root, "dust3r"), shims]
    import mast3r.model as orig_model  # the original's

    load_s = [0.0]
    if model is not None:
        orig_model.AsymmetricMASt3R.from_pretrained = classmethod(lambda cls, *args, **kw: model)
    else:  # our temp checkpoint holds an argparse.Namespace: the original's torch.load needs weights_only=False
        _load = torch.load
        torch.load = lambda *args, **kw: _load(*args, **{**kw, "weights_only": False})
        _from_pretrained = orig_model.AsymmetricMASt3R.from_pretrained.__func__

        def timed(cls, *args, **kw):  # model loading is reported apart, as for ours
            t0 = time.perf_counter()
            try:
                return _from_pretrained(cls, *args, **kw)
            finally:
                load_s[0] += time.perf_counter() - t0
        orig_model.AsymmetricMASt3R.from_pretrained = classmethod(timed)
    out = tempfile.mkdtemp(prefix="bench_visloc_orig_")
    sys.argv = ["visloc.py", "--dataset", a.dataset, "--weights", a.checkpoint or "oracle", "--pixel_tol", "5",
                "--pnp_mode", "poselib", "--reprojection_error_diag_ratio", "0.008", "--device", "cpu",
                "--output_dir", out, "--output_label", "bench"]
    start = time.perf_counter()
    runpy.run_path(os.path.join(root, "visloc.py"), run_name="__main__")
    elapsed = time.perf_counter() - start - load_s[0]
    files = [f for f in os.listdir(out) if f.endswith("_results.txt")]
    return dict(impl="original", s_per_query=elapsed / a.queries, load_s=load_s[0], peak_rss_mb=peak_rss_kb() / 1e3,
                **_errors(os.path.join(out, files[0]) if files else "", gt))


def print_table(rows: List[dict], a: argparse.Namespace) -> None:
    print(f"\n{a.queries} queries, topk {a.topk}, {a.width}x{a.height}, model {a.model}, {a.threads} threads, "
          f"{a.runs} run(s) each\n")
    print("| impl | s / query (median) | runs | model load s | peak RSS MB | localized (0.25 m, 2 deg) | median t (m) "
          "| median R (deg) |")
    print("|---|---|---|---|---|---|---|---|")
    by: Dict[str, List[dict]] = {}
    for r in rows:
        by.setdefault(r["impl"], []).append(r)
    for impl, rs in by.items():
        last = rs[-1]
        runs = ", ".join(f"{r['s_per_query']:.2f}" for r in rs)
        print(f"| {impl} | {statistics.median(r['s_per_query'] for r in rs):.2f} | {runs} | {last['load_s']:.1f} | "
              f"{max(r['peak_rss_mb'] for r in rs):.0f} | {last['localized']}/{last['queries']} | "
              f"{last['median_t_m']:.4f} | {last['median_r_deg']:.4f} |")
    if "ours" in by and "original" in by:
        speedup = (statistics.median(r["s_per_query"] for r in by["original"])
                   / statistics.median(r["s_per_query"] for r in by["ours"]))
        print(f"\nspeed-up of ours over the original: {speedup:.2f}x")


def main(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    work = tempfile.mkdtemp(prefix="bench_visloc_")
    a.dataset = write_dataset(os.path.join(work, "data"), a.queries, a.topk, a.height, a.width, a.seed)
    a.checkpoint = None
    if a.model == "vitl-random":
        a.checkpoint = os.path.join(work, "mast3r_random.pth")
        _random_checkpoint(a.checkpoint)
    impls = ["ours"] + (["original"] if a.original_root else [])
    order = [impls[(k + r) % len(impls)] for r in range(a.runs) for k in range(len(impls))]
    rows = []
    for impl in order:
        cmd = [sys.executable, __file__, "--one", impl, "--dataset", a.dataset, "--queries", str(a.queries),
               "--topk", str(a.topk), "--height", str(a.height), "--width", str(a.width), "--seed", str(a.seed),
               "--model", a.model, "--threads", str(a.threads)]
        cmd += ["--checkpoint", a.checkpoint] if a.checkpoint else []
        cmd += ["--original-root", a.original_root] if a.original_root else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
        if not any(ln.startswith("{") for ln in proc.stdout.splitlines()):
            print(f"{impl}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    print_table(rows, a)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=["oracle", "vitl-random"], default="oracle")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--original-root", default=None, help="extracted original code (see --extract-original)")
    p.add_argument("--extract-original", default=None, metavar="DIR", help="extract the original code and exit")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.extract_original:
        print(extract_original(args.extract_original))
    elif args.one:
        row = run_ours(args) if args.one == "ours" else run_original(args)
        print(json.dumps(row))
    else:
        main(args)
