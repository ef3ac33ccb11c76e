"""The real entry point, ``python -m mast3r.reconstruct``, on bad inputs: exit 2, ``error:`` lines, no traceback.

``counting=True`` runs the module the way ``-m`` does (``runpy``) under a global ``nn.Module`` forward hook that
prints ``forwards=<n>`` at exit, so a row can assert that no model forward ran in the real process.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import torch

from .support import FAIL_FAST_S, tree_snapshot, write_image

#: interpreter start-up and imports (torch) come on top of the in-process limit
STARTUP_S = 15.0


def _cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_COUNTING = ("import atexit, runpy, sys, torch; n = [0]; "
             "torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: n.__setitem__(0, n[0] + 1)); "
             "atexit.register(lambda: print(f'forwards={n[0]}', file=sys.stderr)); "
             "runpy.run_module('mast3r.reconstruct', run_name='__main__', alter_sys=True)")


def _run(argv, cwd, counting: bool = False):
    """Run the CLI; returns ``(CompletedProcess, CPU seconds it used)`` (CPU time: the machine may be shared)."""
    env = dict(os.environ, PYTHONWARNINGS="default")
    start = _cpu_seconds_of_children()
    entry = ["-c", _COUNTING] if counting else ["-m", "mast3r.reconstruct"]
    proc = subprocess.run([sys.executable, *entry, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)
    return proc, _cpu_seconds_of_children() - start


def _forwards(proc) -> int:
    return int(next(ln for ln in proc.stderr.splitlines() if ln.startswith("forwards="))[len("forwards="):])


def test_dust3r_checkpoint_given_to_mast3r(tmp_path, tiny_pth):
    imgs = [write_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(2)]
    ckpt = tiny_pth("dust3r_tiny_linear")
    (tmp_path / "outparent").mkdir()
    proc, seconds = _run([*imgs, "--weights", ckpt, "--out", tmp_path / "outparent" / "out", "--image-size", "64"],
                         tmp_path, counting=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and ckpt.name in errors[0] and "DUSt3R" in errors[0], proc.stderr[-2000:]
    assert _forwards(proc) == 0
    assert seconds < FAIL_FAST_S + STARTUP_S
    assert tree_snapshot(tmp_path / "outparent") == {}


def test_several_bad_inputs_each_get_one_line(tmp_path):
    imgs = [write_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(2)]
    argv = [*imgs, "--out", "/proc/x", "--scene-graph", "swin-abc", "--image-size", "0", "--weights",
            tmp_path / "missing.pth"]
    expected = ["/proc/x", "swin-abc", "--image-size", "missing.pth"]
    if not torch.cuda.is_available():
        argv += ["--device", "cuda"]
        expected.append("cuda")
    proc, seconds = _run(argv, tmp_path, counting=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and _forwards(proc) == 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    for name in expected:
        assert sum(name in ln for ln in errors) >= 1, f"no error line names {name}: {errors}"
    assert seconds < FAIL_FAST_S + STARTUP_S
    assert not os.path.exists("/proc/x")


def test_unknown_hub_id_fails_fast_in_one_line(tmp_path):
    imgs = [write_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(2)]
    proc, seconds = _run([*imgs, "--model_name", "nobody-h5/no-such-model", "--out", tmp_path / "out",
                          "--image-size", "64", "--quiet"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nobody-h5/no-such-model" in lines[0], lines
    assert seconds < FAIL_FAST_S + STARTUP_S
    assert not (tmp_path / "out").exists()
