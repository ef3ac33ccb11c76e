"""``torchrun train.py`` end to end on CPU (gloo): the README's demo command on synthetic Co3d-layout data with a
tiny model trains (total and matching loss fall), writes checkpoints that ``from_pretrained`` loads, and survives
SIGKILL, in the middle of an epoch and in the middle of a checkpoint write: the same command resumes from
``checkpoint-last.pth`` with epoch, optimizer and sampler position intact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from croco.utils.misc import load_checkpoint_safe
from datasets_preprocess.make_synthetic_co3d import main as make_synthetic_co3d
from dust3r.training import SAVE_PAUSE_ENV
from mast3r.model import AsymmetricMASt3R
from tests.mast3r.test_training import demo_argv

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _torchrun(argv, log_path: Path, nproc: int = 2, env_extra=None) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=nproc train.py argv``, output to ``log_path`` (a file, not a pipe:
    nobody reads while the run goes on)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(SAVE_PAUSE_ENV, None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py",
           *argv]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    proc.log_path = log_path
    return proc


def _descendants(pid: int) -> list:
    """Process ids below ``pid`` (torchrun starts its workers in sessions of their own, so killing torchrun's
    process group does not reach them)."""
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every worker at once, as a machine failure would."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _finish(proc: subprocess.Popen, timeout: float = 420) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(proc)
        proc.wait()
        pytest.fail(f"train.py did not finish in {timeout} s:\n{proc.log_path.read_text()[-5000:]}")
    out = proc.log_path.read_text()
    assert proc.returncode == 0, out[-5000:]
    return out


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 300) -> str:
    """SIGKILL torchrun and its workers as soon as ``condition()`` holds."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"train.py ended (rc {proc.returncode}) before the kill point:\n"
                        f"{proc.log_path.read_text()[-5000:]}")
        if time.time() > deadline:
            _kill_all(proc)
            pytest.fail("kill point not reached in time")
        time.sleep(0.2)
    _kill_all(proc)
    proc.wait()
    return proc.log_path.read_text()


def _log(output_dir: Path) -> list:
    return [json.loads(line) for line in (output_dir / "log.txt").read_text().splitlines()]


def _scalars(output_dir: Path, tag: str) -> list:
    """[(step, value)] of a tensorboard scalar, per event file in write order (one file per run)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    runs = []
    for path in sorted(output_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        values = []
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    v = value.simple_value if value.HasField("simple_value") else value.tensor.float_val[0]
                    values.append((event.step, v))
        runs.append(values)
    return runs


_seen_positions: dict = {}


def _position(path: Path):
    """(epoch, data_iter_step) of a checkpoint, None while it does not exist (re-read only when it changed)."""
    try:
        stamp = (path, path.stat().st_mtime_ns, path.stat().st_ino)
    except FileNotFoundError:
        return None
    if stamp not in _seen_positions:
        ckpt = load_checkpoint_safe(path)
        _seen_positions[stamp] = (ckpt["epoch"], ckpt.get("data_iter_step", 0))
    return _seen_positions[stamp]


def _adam_steps(ckpt) -> int:
    return int(next(iter(ckpt["optimizer"]["state"].values()))["step"])


@pytest.fixture(scope="module")
def synthetic_co3d(tmp_path_factory) -> Path:
    return Path(make_synthetic_co3d(str(tmp_path_factory.mktemp("synthetic_co3d")), n_sequences=2, n_frames=12,
                                    image_size=(128, 96), seed=0))


def test_torchrun_demo_command_trains(tmp_path, synthetic_co3d):
    """2 processes x 25 batches x 4 epochs: the losses fall, every checkpoint loads with from_pretrained."""
    out = tmp_path / "demo"
    log = _finish(_torchrun(demo_argv(synthetic_co3d, out, train_size=100, epochs=4, eval_freq=2, keep_freq=2,
                                      print_freq=5), tmp_path / "demo.log"))
    assert "Start training for 4 epochs" in log
    entries = _log(out)
    assert [e["epoch"] for e in entries] == [0, 1, 2, 3, 4]
    first, last = entries[1], entries[4]  # train stats of epochs 0 and 3 (averaged over both ranks)
    assert last["train_loss"] <= first["train_loss"] - 0.3 * abs(first["train_loss"])
    assert last["train_MatchingLoss"] <= 0.7 * first["train_MatchingLoss"]
    assert "4 @ Co3d_loss_med" in entries[2] and "4 @ Co3d_loss_med" in entries[4]
    names = sorted(p.name for p in out.glob("checkpoint-*.pth"))
    assert {"checkpoint-last.pth", "checkpoint-best.pth", "checkpoint-2.pth", "checkpoint-4.pth",
            "checkpoint-final.pth"} <= set(names)
    last_ckpt = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert last_ckpt["epoch"] == 3 and _adam_steps(last_ckpt) == 4 * 25
    assert (last_ckpt["args"].world_size, last_ckpt["args"].distributed, last_ckpt["args"].dist_backend) == \
        (2, True, "gloo")
    reference = load_checkpoint_safe(out / "checkpoint-final.pth")["model"]
    for name in names:
        model = AsymmetricMASt3R.from_pretrained(str(out / name))
        assert type(model) is AsymmetricMASt3R
        if name in ("checkpoint-last.pth", "checkpoint-4.pth"):  # the weights after the last epoch
            for key, value in model.state_dict().items():
                torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_sigkill_during_save_and_mid_epoch_then_resume(tmp_path, synthetic_co3d):
    """Kill 1: during the third checkpoint write (paused by the test hook) -> checkpoint-last.pth is the second
    one, intact. Kill 2: in the middle of epoch 1. Each restart of the same command resumes where the last
    checkpoint says; the optimizer ends with exactly the steps of an uninterrupted run and the loss curve
    continues from where it was."""
    out = tmp_path / "run"
    argv = demo_argv(synthetic_co3d, out, train_size=40, epochs=2, eval_freq=1, keep_freq=0, save_iter_freq=3,
                     print_freq=1)
    last = out / "checkpoint-last.pth"
    iters = 10  # 40 pairs / (2 ranks x batch 2)

    # run 1: saves at iterations 3, 6, 9 of epoch 0; the third write pauses -> kill inside it
    proc = _torchrun(argv, tmp_path / "run1.log", env_extra={SAVE_PAUSE_ENV: "60@3"})
    _kill_when(proc, lambda: "pausing inside the write" in proc.log_path.read_text())
    assert len(list(out.glob(".checkpoint-last.pth.*.tmp"))) == 1  # the interrupted write
    assert _position(last) == (-1, 6)  # the previous checkpoint, complete and loadable
    assert AsymmetricMASt3R.from_pretrained(str(last)) is not None

    # run 2: resumes at epoch 0 iteration 6; killed in epoch 1 once it has checkpointed iteration 3 (its saves:
    # (epoch 0, it 9), end of epoch 0, best, (epoch 1, it 3), (epoch 1, it 6): the fifth pauses, so that the kill
    # lands before it whatever the machine's speed)
    proc = _torchrun(argv, tmp_path / "run2.log", env_extra={SAVE_PAUSE_ENV: "60@5"})
    run2 = _kill_when(proc, lambda: _position(last) == (0, 3))
    assert "Resumed from" in run2 and "epoch 0, iteration 6" in run2
    assert "left by an interrupted checkpoint write" in run2  # run 1's temporary file, removed at start

    # run 3: resumes at epoch 1 iteration 3 and finishes
    run3 = _finish(_torchrun(argv, tmp_path / "run3.log"))
    assert "epoch 1, iteration 3" in run3
    assert not list(out.glob(".checkpoint-*.tmp"))
    ckpt = load_checkpoint_safe(last)
    assert ckpt["epoch"] == 1 and "data_iter_step" not in ckpt
    assert _adam_steps(ckpt) == 2 * iters  # no optimizer step lost or repeated
    assert [e["epoch"] for e in _log(out)] == [0, 1, 2]  # each epoch logged once

    # tensorboard: each run continues at the position its checkpoint stored (x-axis = 1000 x epoch)
    runs = _scalars(out, "train_loss")
    assert len(runs) == 3
    steps = [[step for step, _ in run] for run in runs]
    assert steps[1][0] == 600 and steps[2][0] == 1300 and steps[2][-1] == 1900
    assert steps[0][-1] >= 800  # run 1 had trained past iteration 8 when its save at 9 was killed
    # the curve continues: the resumed runs start near where the previous one was, far below the start
    start = sum(v for _, v in runs[0][:3]) / 3
    assert sum(v for _, v in runs[2][:3]) / 3 < 0.8 * start
    assert sum(v for _, v in runs[1][:3]) / 3 < 0.9 * start
