"""Command line of the training loop: the original's flags (``dust3r/training.py`` and MASt3R's ``train.py``)
plus the options this implementation adds (mid-epoch checkpoints, a separate log directory, bf16)."""
from __future__ import annotations

import argparse
import logging
from typing import Optional

import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "AsymmetricCroCo3DStereo(patch_embed_cls='ManyAR_PatchEmbed')"
DEFAULT_TRAIN_CRITERION = "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"

#: ``--amp`` values -> autocast dtype (None: fp32). ``1`` is the original's fp16 autocast.
AMP_CHOICES = {"0": None, "1": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}


def get_args_parser(prog: str = "DUST3R training") -> argparse.ArgumentParser:
    """The training command line (``add_help=False`` as the original, so front ends can add ``-h``)."""
    parser = argparse.ArgumentParser(prog, add_help=False)
    # model and criterion
    parser.add_argument("--model", default=DEFAULT_MODEL, type=str,
                        help="constructor string of the model, e.g. \"AsymmetricMASt3R(enc_embed_dim=1024, ...)\" "
                             "(parsed, never evaluated: a registered class with literal keyword arguments)")
    parser.add_argument("--pretrained", default=None,
                        help="checkpoint to start from (loaded non-strictly, e.g. DUSt3R weights into MASt3R; "
                             "ignored when resuming from output_dir/checkpoint-last.pth)")
    parser.add_argument("--train_criterion", default=DEFAULT_TRAIN_CRITERION, type=str, help="train criterion")
    parser.add_argument("--test_criterion", default=None, type=str,
                        help="test criterion (default: the train criterion)")
    parser.add_argument("--gradient_checkpointing", action="store_true", default=False,
                        help="recompute activations in the backward pass (models that support it)")

    # datasets
    parser.add_argument("--train_dataset", required=True, type=str, help="training set, e.g. \"1000 @ Co3d(...)\"")
    parser.add_argument("--test_dataset", default="", type=str,
                        help="test set(s), '+'-separated; each is evaluated and logged on its own")

    # training
    parser.add_argument("--seed", default=0, type=int, help="random seed (each rank adds its rank)")
    parser.add_argument("--batch_size", default=64, type=int,
                        help="batch size per process (effective batch size: batch_size * accum_iter * world size)")
    parser.add_argument("--accum_iter", default=1, type=int,
                        help="gradient accumulation iterations (a larger effective batch under memory limits)")
    parser.add_argument("--epochs", default=800, type=int, help="number of epochs (the schedule's length)")
    parser.add_argument("--weight_decay", type=float, default=0.05, help="weight decay (default: 0.05)")
    parser.add_argument("--lr", type=float, default=None, metavar="LR", help="learning rate (absolute lr)")
    parser.add_argument("--blr", type=float, default=1.5e-4, metavar="LR",
                        help="base learning rate when --lr is not given: lr = blr * effective batch size / 256")
    parser.add_argument("--min_lr", type=float, default=0.0, metavar="LR",
                        help="final learning rate of the half-cosine schedule")
    parser.add_argument("--warmup_epochs", type=float, default=40, metavar="N",
                        help="epochs of linear learning-rate warm-up")
    parser.add_argument("--amp", type=str, default="0", choices=sorted(AMP_CHOICES),
                        help="automatic mixed precision on GPU: 0 (fp32), 1 or fp16 (with loss scaling), bf16")
    parser.add_argument("--disable_cudnn_benchmark", action="store_true", default=False,
                        help="set cudnn.benchmark = False")

    # others
    parser.add_argument("--num_workers", default=8, type=int, help="data-loading worker processes per rank")
    parser.add_argument("--world_size", default=1, type=int,
                        help="number of distributed processes (set by torchrun through WORLD_SIZE)")
    parser.add_argument("--local_rank", default=-1, type=int, help="set by torchrun through LOCAL_RANK")
    parser.add_argument("--dist_url", default="env://", help="url used to set up distributed training")

    parser.add_argument("--eval_freq", type=int, default=1, help="test every N epochs (0: never)")
    parser.add_argument("--save_freq", default=1, type=int,
                        help="write checkpoint-last.pth every N epochs")
    parser.add_argument("--keep_freq", default=20, type=int,
                        help="keep a checkpoint-N.pth every N epochs")
    parser.add_argument("--print_freq", default=20, type=int,
                        help="log progress (text and tensorboard) every N iterations")
    parser.add_argument("--save_iter_freq", default=0, type=int,
                        help="also write checkpoint-last.pth every N iterations within an epoch (0: only at "
                             "epoch ends); a restarted run resumes from that iteration")

    # output
    parser.add_argument("--output_dir", default="./output/", type=str,
                        help="where checkpoints, log.txt and (by default) the tensorboard logs go")
    parser.add_argument("--log_dir", default=None, type=str, help="tensorboard directory (default: output_dir)")
    return parser


def amp_dtype(amp) -> Optional[torch.dtype]:
    """The autocast dtype of an ``--amp`` value (``0``/``1`` ints of the original's API accepted)."""
    key = str(int(amp)) if isinstance(amp, (bool, int)) else str(amp)
    if key not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {sorted(AMP_CHOICES)}, got {amp!r}")
    return AMP_CHOICES[key]


def check_args(args: argparse.Namespace, device: torch.device) -> None:
    """Refuse option combinations that cannot work, with a message that says what to do."""
    for name in ("batch_size", "accum_iter", "epochs", "print_freq"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("save_freq", "keep_freq", "eval_freq", "save_iter_freq", "num_workers"):
        if getattr(args, name, 0) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.warmup_epochs < 0:
        raise ValueError(f"--warmup_epochs must be >= 0, got {args.warmup_epochs}")
    if amp_dtype(args.amp) is not None and device.type != "cuda":
        raise ValueError(f"--amp {args.amp} needs a CUDA GPU (mixed precision training is GPU-only here); "
                         "this run is on the CPU: train in fp32 with --amp 0")
