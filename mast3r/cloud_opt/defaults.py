"""The one set of default settings of the sparse global alignment.

Two named tables, every number in one place:

* ``SPARSE_GA_DEFAULTS``: the defaults of the function :func:`mast3r.cloud_opt.sparse_ga.sparse_global_alignment`
  (those of the original ``sparse_global_alignment`` / ``sparse_scene_optimizer``: coarse stage lr 0.2 for 500
  iterations, refinement lr 0.02 for 500). :class:`mast3r.cloud_opt.optimizer.OptimOptions` reads its defaults
  from it.
* ``ALIGNMENT_DEFAULTS``: the values the original MASt3R demo starts with (coarse stage lr 0.07 for 500
  iterations, refinement lr 0.014 for 200, refine+depth). The demo and the CLI read them from here; the entries
  that the demo shares with the function come from ``SPARSE_GA_DEFAULTS``.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Tuple

__all__ = ["OPTIM_LEVELS", "SPARSE_GA_DEFAULTS", "ALIGNMENT_DEFAULTS"]

#: ``coarse`` (3D matching loss only), ``refine`` (+ 2D reprojection), ``refine+depth`` (+ depth maps optimised)
OPTIM_LEVELS: Tuple[str, ...] = ("coarse", "refine", "refine+depth")

SPARSE_GA_DEFAULTS: Mapping[str, object] = MappingProxyType({
    "lr1": 0.2,                  # coarse alignment (3D matching loss)
    "niter1": 500,
    "lr2": 0.02,                 # refinement (2D reprojection loss)
    "niter2": 500,
    "opt_pp": True,              # refine the principal points
    "opt_depth": True,           # refine the anchor depths
    "schedule": "cosine",        # learning-rate decay (a name of dust3r.utils.schedules.SCHEDULES)
    "depth_mode": "add",
    "matching_conf_thr": 5.0,    # pairs whose best match confidence is not above it use the DUSt3R loss instead
    "loss_dust3r_w": 0.01,       # weight of that fallback loss
    "shared_intrinsics": False,
    "subsample": 8,              # anchor grid step (pixels)
})

ALIGNMENT_DEFAULTS: Mapping[str, object] = MappingProxyType({
    "lr1": 0.07,
    "niter1": 500,
    "lr2": 0.014,
    "niter2": 200,
    "optim_level": "refine+depth",
    "matching_conf_thr": SPARSE_GA_DEFAULTS["matching_conf_thr"],
    "shared_intrinsics": SPARSE_GA_DEFAULTS["shared_intrinsics"],
    "min_conf_thr": 1.5,         # display / export confidence threshold
    "subsample": SPARSE_GA_DEFAULTS["subsample"],
})
