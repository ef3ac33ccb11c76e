"""MASt3R training: the DUSt3R loop (:mod:`dust3r.training`) with MASt3R's criteria
(:func:`mast3r.losses.parse_criterion`: ``Regr3D``, ``MatchingLoss``, ``InfoNCE``, ``APLoss``... are MASt3R's),
MASt3R's datasets (``namespace='mast3r'``: views with correspondences) and ``AsymmetricMASt3R`` as default model.

This is what the original's ``train.py`` did by monkeypatching MASt3R classes into DUSt3R's modules; here the
names are resolved explicitly and nothing in DUSt3R is modified.
"""
from __future__ import annotations

import argparse

import dust3r.training as dust3r_training
from dust3r.training import build_model, test_one_epoch, train_one_epoch  # noqa: F401  (the loop's API)

from . import datasets as _datasets  # noqa: F401  (registers the 'mast3r' dataset namespace)
from . import model as _model  # noqa: F401  (registers AsymmetricMASt3R for --model strings)
from .losses import parse_criterion

DEFAULT_MODEL = "AsymmetricMASt3R(patch_embed_cls='ManyAR_PatchEmbed')"
DATASET_NAMESPACE = "mast3r"


def get_args_parser() -> argparse.ArgumentParser:
    """DUSt3R's training command line with MASt3R's defaults."""
    parser = dust3r_training.get_args_parser(prog="MASt3R training")
    parser.set_defaults(model=DEFAULT_MODEL)
    return parser


def build_dataset(dataset, batch_size: int, num_workers: int, test: bool = False):
    """:func:`dust3r.training.build_dataset` over MASt3R's dataset classes."""
    return dust3r_training.build_dataset(dataset, batch_size, num_workers, test=test, namespace=DATASET_NAMESPACE)


def build_criteria(args: argparse.Namespace, device="cpu"):
    """(train, test) criteria of ``args`` with MASt3R's loss classes."""
    return dust3r_training.build_criteria(args, parse_criterion, device)


def train(args: argparse.Namespace) -> None:
    """Run MASt3R training as ``args`` says (see :func:`dust3r.training.train`)."""
    dust3r_training.train(args, parse_criterion=parse_criterion, dataset_namespace=DATASET_NAMESPACE)
