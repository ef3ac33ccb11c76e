"""visloc.py end to end on synthetic datasets in every benchmark layout, with the oracle model: every query
within 1 cm / 0.1 deg with each PnP library, the thresholds table, submission files, failed queries, the
match cache and its key, and every command line of the README (tests/data/visloc/visloc_commands.md)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import visloc
from dust3r.synthetic import OracleModel, make_scene
from dust3r.utils.pose_metrics import rotation_angle_deg
from dust3r_visloc.datasets import build_dataset
from dust3r_visloc.datasets.synthetic import LAYOUTS, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ROOT / "tests" / "data" / "visloc" / "visloc_commands.md"


class CountingOracle(OracleModel):
    def __init__(self, scene, **kw):
        super().__init__(scene, **kw)
        self.patch_embed.img_size = (128, 128)
        self.calls = 0
        # the oracle's behaviour comes from its seed, not from tensors: expose it as a weight, as a network has
        self.seed_weight = torch.nn.Parameter(torch.tensor(float(self.seed)), requires_grad=False)

    def forward(self, view1, view2):
        self.calls += 1
        return super().forward(view1, view2)


@pytest.fixture(scope="module")
def scene():
    return make_scene(n_views=5, height=96, width=128, seed=0)


@pytest.fixture(scope="module")
def model(scene):
    return CountingOracle(scene)


def _check_localized(summary, data):
    assert summary.n_failed == 0 and summary.exit_status == 0
    for res in summary.results:
        gt = data.gt_cam2world[res.name]
        assert np.linalg.norm(res.cam2world[:3, 3] - gt[:3, 3]) < 0.01, res.name
        assert float(rotation_angle_deg(res.cam2world, gt)) < 0.1, res.name


# the dense-3D layouts seed matches at every map pixel: slower
@pytest.mark.parametrize("layout", [pytest.param(lay, marks=pytest.mark.slow) if lay in ("sevenscenes", "inloc")
                                    else lay for lay in LAYOUTS])
def test_every_layout_localizes_with_every_pnp_mode(layout, scene, model, tmp_path, capsys):
    data = write_synthetic_dataset(str(tmp_path / "data"), scene, layout, topk=1 if layout in ("sevenscenes", "inloc")
                                   else 2)
    out = str(tmp_path / "out")
    calls = model.calls
    for k, mode in enumerate(("poselib", "cv2", "pycolmap")):
        summary = visloc.main(data.dataset_string, model=model, pnp_mode=mode, device="cpu", output_dir=out,
                              pixel_tol=5, reprojection_error_diag_ratio=0.008)
        _check_localized(summary, data)
        if k == 0:
            calls_first = model.calls - calls
            assert calls_first >= 1
        else:  # later runs read the matches from the cache: no forward pass
            assert model.calls - calls == calls_first
    printed = capsys.readouterr().out
    assert "(0.25 m, 2 deg) |    100.0%" in printed and "(5 m, 10 deg) |    100.0%" in printed
    assert "median rotation" in printed
    results = Path(summary.files[0]).read_text().splitlines()
    assert sorted(line.split()[0] for line in results) == sorted(data.query_names)
    assert Path(summary.files[2]).read_text() == ""


def test_failed_queries_are_reported_not_identity(scene, model, tmp_path, capsys):
    data = write_synthetic_dataset(str(tmp_path / "data"), scene, "cambridge", topk=1)
    # the second query's only retrieved image is not in the map: that query fails, the run goes on
    pairs = tmp_path / "data" / "ShopFacade" / "pairsfile" / "query" / "APGeM-LM18_top50.txt"
    lines = pairs.read_text().splitlines()
    broken = data.query_names[1]
    lines = [ln for ln in lines if not ln.startswith(broken + ",")] + [f"{broken}, seq1/missing.png, 1.0"]
    pairs.write_text("\n".join(lines) + "\n")
    summary = visloc.main(data.dataset_string, model=model, pnp_mode="poselib", device="cpu",
                          output_dir=str(tmp_path / "out"))
    assert summary.n_failed == 1 and summary.exit_status == 1
    failed = [r for r in summary.results if not r.success]
    assert failed[0].name == broken and failed[0].cam2world is None and "missing.png" in failed[0].reason
    assert Path(summary.files[2]).read_text() == broken + "\n"
    written = [line.split()[0] for line in Path(summary.files[0]).read_text().splitlines()]
    assert broken not in written and len(written) == len(data.query_names) - 1
    assert summary.pose_errors[summary.results.index(failed[0])] == float("inf")
    assert "1 of 2 queries failed" in capsys.readouterr().out


def test_bad_dataset_string_exits_2_without_running_it(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "visloc.py"), "--weights", "x.pth", "--dataset",
                           "__import__('os').system('echo pwned')"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "pwned" not in proc.stdout
    assert "visloc.py: error:" in proc.stderr and "must be a call" in proc.stderr


@pytest.mark.slow  # a fresh interpreter loading torch and the model: ~20 s on 2 busy cores
def test_exit_status_is_the_number_of_failed_queries(tiny_pth, tmp_path):
    """The command line with a checkpoint (a tiny MASt3R, input 80x64): with every match below the confidence
    threshold each query fails; the run still ends normally, lists them, and exits with their count."""
    small = make_scene(n_views=7, height=64, width=80, seed=4)  # 3 queries (2 would read like a usage error)
    data = write_synthetic_dataset(str(tmp_path / "data"), small, "cambridge", topk=1)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "visloc.py"), "--weights", str(tiny_pth("mast3r_tiny_a")),
                           "--dataset", data.dataset_string, "--device", "cpu", "--confidence_threshold", "1e9",
                           "--output_dir", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "3 of 3 queries failed" in proc.stdout and "no matches" in proc.stderr
    failed = next(out.glob("*_failed.txt")).read_text().split()
    assert sorted(failed) == sorted(data.query_names)
    assert next(out.glob("*_results.txt")).read_text() == ""


def test_cache_is_keyed_by_the_weights(scene, tmp_path):
    data = write_synthetic_dataset(str(tmp_path / "data"), scene, "cambridge", topk=1, n_queries=1)
    out = str(tmp_path / "out")
    m1 = CountingOracle(scene)
    m2 = CountingOracle(scene, seed=1)  # other descriptors = other weights
    assert visloc.weights_digest(m1) == visloc.weights_digest(CountingOracle(scene))
    assert visloc.weights_digest(m1) != visloc.weights_digest(m2)
    visloc.main(data.dataset_string, model=m1, device="cpu", output_dir=out)
    visloc.main(data.dataset_string, model=m2, device="cpu", output_dir=out)
    assert m2.calls >= 1  # not served m1's matches
    assert len(os.listdir(os.path.join(out, "matches"))) == 2
    visloc.main(data.dataset_string, model=m1, device="cpu", output_dir=out, pixel_tol=3)
    assert len(os.listdir(os.path.join(out, "matches"))) == 3  # matching settings are in the key too


def test_viz_matches_saves_figures(scene, model, tmp_path):
    data = write_synthetic_dataset(str(tmp_path / "data"), scene, "aachen", topk=1, n_queries=1)
    summary = visloc.main(data.dataset_string, model=model, device="cpu", output_dir=str(tmp_path / "out"),
                          viz_matches=5)
    assert summary.n_failed == 0
    figures = os.listdir(tmp_path / "out" / "viz_matches")
    assert len(figures) == 1 and figures[0].endswith(".png")


def test_device_default_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert visloc.get_args_parser().parse_args(["--dataset", "x", "--weights", "w"]).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert visloc.get_args_parser().parse_args(["--dataset", "x", "--weights", "w"]).device == "cuda"


def _readme_commands():
    text = COMMANDS.read_text()
    return [block.strip().replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


_SCENES = {"VislocAachenDayNight": ("aachen", ["day", "night", "all"]),
           "VislocSevenScenes": ("sevenscenes", ["chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs"]),
           "VislocCambridgeLandmarks": ("cambridge", ["ShopFacade", "GreatCourt", "KingsCollege", "OldHospital",
                                                     "StMarysChurch"]),
           "VislocInLoc": ("inloc", [None])}


def test_every_readme_command_line_parses(tmp_path):
    small = make_scene(n_views=5, height=48, width=64, seed=1)  # two queries: one day, one night
    commands = _readme_commands()
    assert len(commands) == 6
    parser = visloc.get_args_parser()
    seen = set()
    for command in commands:
        cls = re.search(r"(Visloc\w+)\(", command).group(1)
        layout, scenes = _SCENES[cls]
        for scene_name in scenes:
            root = tmp_path / layout
            text = command.replace("${scene}", scene_name or "")
            text = re.sub(r"/path/to/prepared/[^'\"]*?/'", f"{root}/'", text)
            text = text.replace("/path/to/output", str(tmp_path / "output"))
            argv = shlex.split(text)
            assert argv[:2] == ["python3", "visloc.py"]
            args = parser.parse_args(argv[2:])
            assert args.pnp_mode == "poselib" and args.pixel_tol == 5 and args.reprojection_error_diag_ratio == 0.008
            kwargs = re.search(r"pairsfile='([^']+)'", args.dataset).group(1)
            write_synthetic_dataset(str(root), small, layout, subscene=scene_name, pairsfile=kwargs)
            ds = build_dataset(args.dataset)
            assert len(ds) >= 1
            seen.add(cls)
            if "--coarse_to_fine" in argv:
                assert args.coarse_to_fine and args.c2f_crop_with_homography and args.max_batch_size == 48
    assert seen == set(_SCENES)
