"""DUSt3R training: ``train(args)`` and ``get_args_parser()`` (the original's API, used by downstream projects),
the epoch functions, data / model / criterion builders and checkpointing.

MASt3R's front end (``train.py``) runs the same loop with MASt3R's criteria, datasets
and model. Nothing here evaluates a string: models, criteria and datasets are parsed with :mod:`ast` against
allow-lists.
"""
from __future__ import annotations

from .args import AMP_CHOICES, amp_dtype, check_args, get_args_parser
from .builders import (build_criteria, build_dataset, build_model, build_optimizer, build_test_loaders,
                       load_pretrained_weights, split_dataset_sum, test_set_name)
from .checkpointing import (SAVE_PAUSE_ENV, ResumeState, checkpoint_path, resume_checkpoint, save_checkpoint,
                            save_final_model)
from .loop import SkipBatches, set_epoch, skip_batches, test_one_epoch, train_one_epoch
from .runner import enable_gradient_checkpointing, train

__all__ = [
    "train", "get_args_parser", "train_one_epoch", "test_one_epoch", "build_dataset", "build_test_loaders",
    "build_model", "build_optimizer", "build_criteria", "load_pretrained_weights", "save_checkpoint", "save_final_model",
    "resume_checkpoint", "checkpoint_path", "ResumeState", "SkipBatches", "skip_batches", "set_epoch",
    "split_dataset_sum", "test_set_name", "amp_dtype", "check_args", "AMP_CHOICES", "SAVE_PAUSE_ENV",
    "enable_gradient_checkpointing",
]
