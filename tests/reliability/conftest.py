"""Shared pieces of the reliability suite: a workspace of good and bad inputs, and the observables of a run.

Observables (preferred over wall time): every ``torch.nn.Module`` forward is counted by a global forward pre-hook
(a bad input must be refused before the first one), calls of the one model-loading path
(``dust3r.model_loading.load_pretrained``, replaced by a spy that returns a :class:`SpyModel`) are counted (a bad
input must be refused before the model is loaded), the output folder's parent is snapshotted (a refused run leaves
it exactly as it was: no result, no staging folder), and the exit code and ``error:`` lines are captured.
"""
from __future__ import annotations

import time
from typing import Any, List, Sequence

import pytest
import torch

from .support import RunResult, SpyModel, Workspace, write_image


@pytest.fixture
def ws(tmp_path, tiny_pth, tiny_hf) -> Workspace:
    w = Workspace(tmp_path, tiny_pth, tiny_hf)
    w.images = [write_image(w.img_dir / f"img_{i:03d}.png", (64, 48), seed=i) for i in range(3)]
    (tmp_path / "outparent").mkdir()
    return w


@pytest.fixture
def forward_counter():
    """``counter()`` -> number of nn.Module forward calls since the fixture started (global hook)."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield lambda: calls[0]
    handle.remove()


@pytest.fixture
def model_loads(monkeypatch) -> List[str]:
    """Replace the model-loading path by a spy: the list of sources it was asked to load; it returns a SpyModel."""
    import dust3r.model_loading as model_loading

    calls: List[str] = []

    def spy(name_or_path, *args, **kwargs):
        calls.append(str(name_or_path))
        return SpyModel()

    monkeypatch.setattr(model_loading, "load_pretrained", spy)
    return calls


@pytest.fixture
def run_cli(capsys, forward_counter, model_loads):
    """``run_cli(argv, model=...)`` -> :class:`RunResult` of ``mast3r.reconstruct.main`` run in-process."""
    def run(argv: Sequence[str], model: Any = None) -> RunResult:
        from mast3r.reconstruct import main

        capsys.readouterr()
        before, loads_before = forward_counter(), len(model_loads)
        start = time.process_time()  # CPU time: the test machine may be shared, wall time is noisy
        try:
            code = main([str(a) for a in argv], model=model)
        except SystemExit as exc:  # argparse errors exit 2 by themselves
            code = exc.code
        seconds = time.process_time() - start
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if "error:" in ln]  # also argparse's "prog: error: ..."
        return RunResult(code, errors, err, forward_counter() - before, model_loads[loads_before:], seconds)
    return run
