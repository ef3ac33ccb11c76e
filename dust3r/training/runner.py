""":func:`train`: set-up (torchrun process group, seeds, data, model, criteria, optimizer, automatic resume) and
the epoch loop (checkpoints, tests, ``log.txt``, tensorboard)."""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

import croco.utils.misc as misc
from croco.utils.misc import NativeScalerWithGradNormCount as NativeScaler

from ..losses import parse_criterion as dust3r_parse_criterion
from .args import amp_dtype, check_args
from .builders import (build_criteria, build_dataset, build_model, build_optimizer, build_test_loaders,
                       load_pretrained_weights)
from .checkpointing import LAST, ResumeState, checkpoint_path, resume_checkpoint, save_checkpoint, save_final_model
from .loop import test_one_epoch, train_one_epoch

logger = logging.getLogger(__name__)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Turn on activation recomputation through the model's ``set_gradient_checkpointing`` hook."""
    hook = getattr(model, "set_gradient_checkpointing", None)
    if hook is None:
        raise ValueError(f"--gradient_checkpointing: {type(model).__name__} does not support gradient "
                         "checkpointing (no set_gradient_checkpointing method)")
    hook(True)


def _remove_stale_temporaries(output_dir: str) -> None:
    """Temporary files of checkpoint writes that a killed run left behind (the checkpoints themselves are
    intact: a write only replaces its target once complete)."""
    for tmp in glob.glob(os.path.join(glob.escape(output_dir), ".checkpoint-*.pth.*.tmp")):
        logger.info("removing %s, left by an interrupted checkpoint write", tmp)
        os.remove(tmp)


@dataclass
class _Run:
    """Everything the epoch loop touches."""
    args: argparse.Namespace
    device: torch.device
    model: torch.nn.Module
    model_without_ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_scaler: NativeScaler
    data_loader_train: object
    data_loader_test: Dict[str, object]
    train_criterion: Callable
    test_criterion: Callable
    log_writer: Optional[object] = None
    best_so_far: float = float("inf")
    last_saved_iter: int = 0
    iters_per_epoch: int = field(init=False)

    def __post_init__(self):
        self.iters_per_epoch = len(self.data_loader_train)

    def save(self, epoch: int, fname: str, data_iter_step: int = 0) -> None:
        if self.log_writer is not None:  # the logs on disk reach at least as far as the checkpoint
            self.log_writer.flush()
        save_checkpoint(self.args, epoch, self.model_without_ddp, self.optimizer, self.loss_scaler, fname,
                        best_so_far=self.best_so_far, data_iter_step=data_iter_step,
                        iters_per_epoch=self.iters_per_epoch)

    def on_optimizer_step(self, epoch: int, n_done: int) -> None:
        """Mid-epoch ``checkpoint-last.pth`` every ``--save_iter_freq`` batches (not at the epoch's end, where
        the epoch-boundary checkpoint follows)."""
        freq = getattr(self.args, "save_iter_freq", 0)
        if freq and n_done - self.last_saved_iter >= freq and n_done < self.iters_per_epoch:
            self.save(epoch - 1, LAST, data_iter_step=n_done)
            self.last_saved_iter = n_done

    def evaluate(self, epoch: int) -> tuple:
        """Test on every test set; returns (stats per test set, whether a new best ``loss_med`` was reached)."""
        test_stats, new_best = {}, False
        for name, loader in self.data_loader_test.items():
            stats = test_one_epoch(self.model, self.test_criterion, loader, self.device, epoch, args=self.args,
                                   log_writer=self.log_writer, prefix=name)
            test_stats[name] = stats
            if stats["loss_med"] < self.best_so_far:
                self.best_so_far, new_best = stats["loss_med"], True
        return test_stats, new_best

    def write_log_stats(self, epoch: int, train_stats: dict, test_stats: dict) -> None:
        if not misc.is_main_process():
            return
        if self.log_writer is not None:
            self.log_writer.flush()
        log_stats = dict(epoch=epoch, **{f"train_{k}": v for k, v in train_stats.items()})
        for name, stats in test_stats.items():
            log_stats.update({f"{name}_{k}": v for k, v in stats.items()})
        with open(os.path.join(self.args.output_dir, "log.txt"), mode="a", encoding="utf-8") as f:
            f.write(json.dumps(log_stats) + "\n")

    def fit(self, state: ResumeState) -> None:
        args = self.args
        logger.info("Start training for %d epochs", args.epochs)
        start_time = time.time()
        train_stats: dict = {}
        for epoch in range(state.start_epoch, args.epochs + 1):
            mid_epoch = epoch == state.start_epoch and state.start_iter > 0
            if epoch > state.start_epoch and (args.save_freq and epoch % args.save_freq == 0 or epoch == args.epochs):
                self.save(epoch - 1, LAST)
            test_stats, new_best = {}, False
            # a run resumed within an epoch already tested (and logged) the boundary before it
            if not mid_epoch and epoch > 0 and args.eval_freq > 0 and epoch % args.eval_freq == 0:
                test_stats, new_best = self.evaluate(epoch)
            if not mid_epoch:
                self.write_log_stats(epoch, train_stats, test_stats)
            if epoch > state.start_epoch:
                if args.keep_freq and epoch % args.keep_freq == 0:
                    self.save(epoch - 1, str(epoch))
                if new_best:
                    self.save(epoch - 1, "best")
            if epoch >= args.epochs:
                break
            start_iter = state.start_iter if epoch == state.start_epoch else 0
            self.last_saved_iter = start_iter
            train_stats = train_one_epoch(self.model, self.train_criterion, self.data_loader_train, self.optimizer,
                                          self.device, epoch, self.loss_scaler, args, log_writer=self.log_writer,
                                          start_iter=start_iter, on_optimizer_step=self.on_optimizer_step)
        logger.info("Training time %s", datetime.timedelta(seconds=int(time.time() - start_time)))
        save_final_model(args, args.epochs, self.model_without_ddp, best_so_far=self.best_so_far)


def train(args: argparse.Namespace, *, parse_criterion: Optional[Callable] = None,
          dataset_namespace: str = "dust3r") -> None:
    """Train as the command line ``args`` says (see :func:`~dust3r.training.get_args_parser`).

    Under ``torchrun`` each process joins the process group (``RANK``/``WORLD_SIZE`` environment); alone, it
    trains single-process. A ``checkpoint-last.pth`` in ``args.output_dir`` is resumed automatically.

    Args:
        parse_criterion: criterion-string parser (default: :func:`dust3r.losses.parse_criterion`; the MASt3R
            front end passes its own, where Regr3D, MatchingLoss... are MASt3R's).
        dataset_namespace: the namespace of :func:`dust3r.datasets.parse_dataset` the dataset strings are built in
            (``'dust3r'``, or one a front end registered).
    """
    misc.init_distributed_mode(args)
    rank = misc.get_rank()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_args(args, device)
    logger.info("output_dir: %s", args.output_dir)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _remove_stale_temporaries(args.output_dir)
    last = checkpoint_path(args.output_dir, LAST)
    args.resume = str(last) if last.is_file() else None  # automatic resume
    logger.info("arguments:\n%s", "\n".join(f"  {k}: {v!r}" for k, v in sorted(vars(args).items())))

    seed = args.seed + rank
    torch.manual_seed(seed)
    np.random.seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.disable_cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True  # as the original (GPUs >= Ampere)

    data_loader_train = build_dataset(args.train_dataset, args.batch_size, args.num_workers, test=False,
                                      namespace=dataset_namespace)
    if len(data_loader_train) == 0:
        raise ValueError(f"--train_dataset has {len(data_loader_train.dataset)} pairs, fewer than one batch per "
                         f"process (--batch_size {args.batch_size} x {misc.get_world_size()} processes): nothing "
                         "to train on")
    data_loader_test = build_test_loaders(args.test_dataset, args.batch_size, args.num_workers,
                                          namespace=dataset_namespace)

    logger.info("Loading model: %s", args.model)
    model = build_model(args.model)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    train_criterion, test_criterion = build_criteria(args, parse_criterion or dust3r_parse_criterion, device)
    model.to(device)
    if args.pretrained and not args.resume:
        load_pretrained_weights(model, args.pretrained)

    eff_batch_size = args.batch_size * args.accum_iter * misc.get_world_size()
    if args.lr is None:  # only the base lr is given
        args.lr = args.blr * eff_batch_size / 256
    logger.info("base lr: %.2e, actual lr: %.2e, accumulate grad iterations: %d, effective batch size: %d",
                args.lr * 256 / eff_batch_size, args.lr, args.accum_iter, eff_batch_size)

    model_without_ddp = model
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[args.gpu] if device.type == "cuda" else None, find_unused_parameters=True,
            static_graph=True)
        model_without_ddp = model.module
    # following timm: no weight decay for biases and norm layers
    optimizer = build_optimizer(model_without_ddp, args.lr, args.weight_decay)
    loss_scaler = NativeScaler(enabled=amp_dtype(args.amp) == torch.float16, device=device.type)

    state = ResumeState()
    if args.resume:
        state = resume_checkpoint(args.resume, model_without_ddp, optimizer, loss_scaler, len(data_loader_train))
    args.start_epoch = state.start_epoch

    log_writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency, needed on rank 0 only
        log_writer = SummaryWriter(log_dir=args.log_dir or args.output_dir)
    run = _Run(args, device, model, model_without_ddp, optimizer, loss_scaler, data_loader_train, data_loader_test,
               train_criterion, test_criterion, log_writer=log_writer, best_so_far=state.best_so_far)
    try:
        run.fit(state)
    finally:
        if log_writer is not None:
            log_writer.close()
