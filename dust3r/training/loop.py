"""One epoch of training (:func:`train_one_epoch`) and of testing (:func:`test_one_epoch`), and the data position
of a resumed epoch (:func:`skip_batches`).

Per-iteration learning-rate schedule (warm-up + half cosine, updated every ``accum_iter`` batches), symmetrized
batches (each pair also seen as (view2, view1)), gradient accumulation, optional mixed precision (GPU), tensorboard
scalars every ``print_freq`` optimizer steps, a progress bar on rank 0.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import math
from collections import defaultdict
from typing import Callable, Dict, Iterable, Optional, Sized

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

import croco.utils.misc as misc

from ..inference import loss_of_one_batch
from .args import amp_dtype

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ data position
class SkipBatches(Sampler):
    """A batch sampler without the first ``n_skip`` batches of ``batch_sampler`` (a resumed epoch)."""

    def __init__(self, batch_sampler: Iterable, n_skip: int):
        self.batch_sampler, self.n_skip = batch_sampler, n_skip

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.n_skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.n_skip)


def set_epoch(data_loader, epoch: int) -> None:
    """Tell the dataset and the samplers which epoch starts (shuffling order, per-epoch RNG)."""
    for obj in (getattr(data_loader, "dataset", None), getattr(data_loader, "sampler", None),
                getattr(data_loader, "batch_sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def skip_batches(data_loader: DataLoader, n_skip: int) -> DataLoader:
    """``data_loader`` starting at its batch ``n_skip`` of the current epoch (call :func:`set_epoch` first).

    Only sampler indices are skipped: the skipped samples are never loaded.
    """
    if n_skip <= 0:
        return data_loader
    extra = {"prefetch_factor": data_loader.prefetch_factor} if data_loader.num_workers > 0 else {}
    return DataLoader(data_loader.dataset, batch_sampler=SkipBatches(data_loader.batch_sampler, n_skip),
                      num_workers=data_loader.num_workers, collate_fn=data_loader.collate_fn,
                      pin_memory=data_loader.pin_memory, worker_init_fn=data_loader.worker_init_fn,
                      multiprocessing_context=data_loader.multiprocessing_context,
                      generator=data_loader.generator, timeout=data_loader.timeout, **extra)


# ------------------------------------------------------------------------------------------------------- epochs
def _float(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _floats(details: dict) -> Dict[str, float]:
    """Criterion details as plain floats (some are tensors that still require grad)."""
    return {k: _float(v) for k, v in details.items()}


def train_one_epoch(model: torch.nn.Module, criterion: Callable, data_loader: Sized, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, loss_scaler, args: argparse.Namespace, log_writer=None, *,
                    start_iter: int = 0, on_optimizer_step: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train one epoch; returns the epoch averages of ``loss``, ``lr`` and every criterion detail.

    Args:
        start_iter: batches of this epoch already trained (a resumed run): they are skipped, and the schedule
            continues from ``epoch + start_iter / len(data_loader)``.
        on_optimizer_step: called as ``f(epoch, n_batches_done)`` after each optimizer step.
    """
    model.train(True)
    metric_logger = misc.MetricLogger(delimiter="  ")
    metric_logger.add_meter("lr", misc.SmoothedValue(window_size=1, fmt="{value:.6f}"))
    header = f"Epoch: [{epoch}]"
    accum_iter = args.accum_iter
    use_amp = amp_dtype(args.amp)
    set_epoch(data_loader, epoch)
    n_iters = len(data_loader)
    loader = skip_batches(data_loader, start_iter)
    optimizer.zero_grad()
    progress = tqdm(total=n_iters, initial=start_iter, desc=header, dynamic_ncols=True,
                    disable=None if misc.is_main_process() else True)
    for data_iter_step, batch in enumerate(metric_logger.log_every(loader, args.print_freq, header), start_iter):
        epoch_f = epoch + data_iter_step / n_iters
        if data_iter_step % accum_iter == 0:  # a per-iteration schedule, updated at each optimizer step
            misc.adjust_learning_rate(optimizer, epoch_f, args)

        loss, loss_details = loss_of_one_batch(batch, model, criterion, device, symmetrize_batch=True,
                                               use_amp=use_amp, ret="loss")
        loss_value = _float(loss)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss is {loss_value} at epoch {epoch}, iteration {data_iter_step} "
                                     f"({_floats(loss_details)}); stopping")
        update = (data_iter_step + 1) % accum_iter == 0
        loss_scaler(loss / accum_iter, optimizer, parameters=model.parameters(), update_grad=update)
        if update:
            optimizer.zero_grad()
        del loss, batch

        lr = optimizer.param_groups[0]["lr"]
        details = _floats(loss_details)
        metric_logger.update(epoch=epoch_f, lr=lr, loss=loss_value, **details)
        progress.update(1)
        progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)

        if update and (data_iter_step + 1) % (accum_iter * args.print_freq) == 0:
            loss_value_reduce = misc.all_reduce_mean(loss_value)  # a collective: every rank runs it
            if log_writer is not None:
                # x-axis: 1000 x epoch, so that curves of runs with other batch sizes line up
                epoch_1000x = int(epoch_f * 1000)
                log_writer.add_scalar("train_loss", loss_value_reduce, epoch_1000x)
                log_writer.add_scalar("train_lr", lr, epoch_1000x)
                log_writer.add_scalar("train_iter", epoch_1000x, epoch_1000x)
                for name, val in details.items():
                    log_writer.add_scalar("train_" + name, val, epoch_1000x)
        if update and on_optimizer_step is not None:
            on_optimizer_step(epoch, data_iter_step + 1)
    progress.close()

    metric_logger.synchronize_between_processes()
    logger.info("Averaged stats: %s", metric_logger)
    return {k: meter.global_avg for k, meter in metric_logger.meters.items()}


@torch.no_grad()
def test_one_epoch(model: torch.nn.Module, criterion: Callable, data_loader: Sized, device: torch.device,
                   epoch: int, args: argparse.Namespace, log_writer=None, prefix: str = "test") -> dict:
    """Evaluate ``criterion`` over ``data_loader``; returns ``{<name>_avg, <name>_med}`` for ``loss`` and every
    criterion detail (averages over all ranks, medians of this rank's values)."""
    model.eval()
    metric_logger = misc.MetricLogger(delimiter="  ")
    metric_logger.meters = defaultdict(lambda: misc.SmoothedValue(window_size=9 ** 9))
    header = f"Test Epoch: [{epoch}]"
    use_amp = amp_dtype(args.amp)
    set_epoch(data_loader, epoch)
    for batch in metric_logger.log_every(data_loader, args.print_freq, header):
        loss, loss_details = loss_of_one_batch(batch, model, criterion, device, symmetrize_batch=True,
                                               use_amp=use_amp, ret="loss")
        metric_logger.update(loss=_float(loss), **_floats(loss_details))
    metric_logger.synchronize_between_processes()
    logger.info("Averaged stats: %s", metric_logger)
    aggs = (("avg", "global_avg"), ("med", "median"))
    results = {f"{k}_{tag}": getattr(meter, attr) for k, meter in metric_logger.meters.items() for tag, attr in aggs}
    if log_writer is not None:
        for name, val in results.items():
            log_writer.add_scalar(prefix + "_" + name, val, 1000 * epoch)
    return results
