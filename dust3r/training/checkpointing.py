"""Training checkpoints in the official format, written atomically, and the automatic resume.

A checkpoint is ``{'model', 'optimizer', 'scaler', 'args', 'epoch', 'best_so_far'}`` as the original writes it
(``AsymmetricMASt3R.from_pretrained`` reads ``model`` and ``args.model``; everything loads with
``torch.load(weights_only=True)``). ``epoch`` is the last *completed* epoch (-1 inside the first one). A
checkpoint written within an epoch (``--save_iter_freq``) adds ``data_iter_step``, the number of batches of epoch
``epoch + 1`` already trained, and ``iters_per_epoch``; the resumed run skips those batches of the (deterministic)
sampler order and continues the schedule from there.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from croco.utils.misc import atomic_write, is_main_process, load_checkpoint_safe

logger = logging.getLogger(__name__)

#: test hook, ``"SECONDS"`` or ``"SECONDS@N"``: sleep inside every (or only the N-th) checkpoint write of this
#: process, after the temporary file is written and before it replaces the target, so that a test can kill the
#: run in the middle of a save
SAVE_PAUSE_ENV = "DUST3R_TRAINING_TEST_PAUSE_IN_SAVE"
_saves_done = 0

LAST = "last"


@dataclass
class ResumeState:
    """Where a (resumed) run starts: first epoch, batches of that epoch already done, best test loss so far."""
    start_epoch: int = 0
    start_iter: int = 0
    best_so_far: float = math.inf


def checkpoint_path(output_dir: str, fname) -> Path:
    return Path(output_dir) / f"checkpoint-{fname}.pth"


def save_checkpoint(args: argparse.Namespace, epoch: int, model_without_ddp: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, loss_scaler, fname, best_so_far: Optional[float] = None,
                    data_iter_step: int = 0, iters_per_epoch: Optional[int] = None) -> Optional[Path]:
    """Write ``output_dir/checkpoint-{fname}.pth`` atomically (main process only; None elsewhere).

    Args:
        epoch: last completed epoch.
        data_iter_step: batches of epoch ``epoch + 1`` already trained (0: an epoch boundary).
        iters_per_epoch: batches per epoch, stored with a mid-epoch position to check it on resume.
    """
    if not is_main_process():
        return None
    path = checkpoint_path(args.output_dir, fname)
    to_save = {"model": model_without_ddp.state_dict(), "optimizer": optimizer.state_dict(),
               "scaler": loss_scaler.state_dict(), "args": args, "epoch": epoch}
    if best_so_far is not None:
        to_save["best_so_far"] = best_so_far
    if data_iter_step:
        to_save["data_iter_step"] = data_iter_step
        to_save["iters_per_epoch"] = iters_per_epoch
    pause = _test_pause()

    def write(tmp: str) -> None:
        torch.save(to_save, tmp)
        if pause > 0:
            logger.warning("%s=%g: pausing inside the write of %s", SAVE_PAUSE_ENV, pause, path)
            time.sleep(pause)

    where = f"epoch {epoch + 1}, iteration {data_iter_step}" if data_iter_step else f"end of epoch {epoch}"
    logger.info(">> Saving model to %s (%s) ...", path, where)
    atomic_write(path, write)
    return path


def _test_pause() -> float:
    """Seconds the :data:`SAVE_PAUSE_ENV` hook asks this save to pause (0 without the variable)."""
    global _saves_done
    _saves_done += 1
    seconds, _, nth = os.environ.get(SAVE_PAUSE_ENV, "").partition("@")
    if not seconds or (nth and int(nth) != _saves_done):
        return 0.0
    return float(seconds)


def save_final_model(args: argparse.Namespace, epoch: int, model_without_ddp: torch.nn.Module,
                     best_so_far: Optional[float] = None) -> Optional[Path]:
    """``output_dir/checkpoint-final.pth``: ``{'args', 'model', 'epoch'[, 'best_so_far']}`` (main process only)."""
    if not is_main_process():
        return None
    path = checkpoint_path(args.output_dir, "final")
    state = model_without_ddp if isinstance(model_without_ddp, dict) else model_without_ddp.state_dict()
    to_save = {"args": args, "model": {k: v.cpu() for k, v in state.items()}, "epoch": epoch}
    if best_so_far is not None:
        to_save["best_so_far"] = best_so_far
    logger.info(">> Saving model to %s ...", path)
    atomic_write(path, lambda tmp: torch.save(to_save, tmp))
    return path


def resume_checkpoint(path, model_without_ddp: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_scaler,
                      iters_per_epoch: int) -> ResumeState:
    """Restore model, optimizer, scaler and the data position from a checkpoint written by
    :func:`save_checkpoint`.

    A mid-epoch position written with another number of batches per epoch (batch size, world size or dataset
    changed) cannot be mapped onto the new sampler order: that epoch restarts from its first batch (logged).
    """
    ckpt = load_checkpoint_safe(path)
    model_without_ddp.load_state_dict(ckpt["model"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    if "scaler" in ckpt and ckpt["scaler"]:
        loss_scaler.load_state_dict(ckpt["scaler"])
    state = ResumeState(start_epoch=int(ckpt["epoch"]) + 1,
                        start_iter=int(ckpt.get("data_iter_step", 0) or 0),
                        best_so_far=float(ckpt.get("best_so_far", math.inf)))
    if state.start_iter and ckpt.get("iters_per_epoch") != iters_per_epoch:
        logger.warning("resume %s: the checkpoint was written at iteration %d of an epoch of %s batches, this run "
                       "has %d batches per epoch; restarting epoch %d from its first batch", path,
                       state.start_iter, ckpt.get("iters_per_epoch"), iters_per_epoch, state.start_epoch)
        state.start_iter = 0
    logger.info("Resumed from %s: epoch %d, iteration %d, best_so_far %g", path, state.start_epoch,
                state.start_iter, state.best_so_far)
    return state
