"""DUSt3R dense global alignment: many pairwise pointmaps -> one consistent scene (cameras, depths, points).

Example::

    output = inference(make_pairs(views, scene_graph="complete"), model, device)
    scene = global_aligner(output, device, mode=GlobalAlignerMode.PointCloudOptimizer)
    loss = scene.compute_global_alignment(init="mst", niter=300, schedule="cosine", lr=0.01)
    poses, focals, pts3d = scene.get_im_poses(), scene.get_focals(), scene.get_pts3d()
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Dict, Union

from .base_opt import BasePCOptimizer
from .modular_optimizer import ModularPointCloudOptimizer
from .optimizer import PointCloudOptimizer
from .pair_viewer import PairViewer

__all__ = ["GlobalAlignerMode", "global_aligner", "BasePCOptimizer", "PointCloudOptimizer",
           "ModularPointCloudOptimizer", "PairViewer"]


class GlobalAlignerMode(Enum):
    PointCloudOptimizer = "PointCloudOptimizer"
    ModularPointCloudOptimizer = "ModularPointCloudOptimizer"
    PairViewer = "PairViewer"


_CLASSES = {
    GlobalAlignerMode.PointCloudOptimizer: PointCloudOptimizer,
    GlobalAlignerMode.ModularPointCloudOptimizer: ModularPointCloudOptimizer,
    GlobalAlignerMode.PairViewer: PairViewer,
}


def global_aligner(dust3r_output: Dict[str, Any], device, mode: Union[GlobalAlignerMode, str] =
                   GlobalAlignerMode.PointCloudOptimizer, **optim_kw) -> BasePCOptimizer:
    """Build the aligner of ``mode`` on the pairwise predictions and move it to ``device``.

    Args:
        dust3r_output: dict with ``view1``, ``view2``, ``pred1``, ``pred2`` (``dust3r.inference.inference``).
        device: torch device of the optimisation.
        mode: a :class:`GlobalAlignerMode` (or its name).
        optim_kw: constructor arguments (min_conf_thr, conf, dist, optimize_pp, verbose, ...).
    """
    if not isinstance(dust3r_output, dict):
        raise ValueError(f"dust3r_output must be the dict returned by inference(), got {type(dust3r_output).__name__}")
    missing = [k for k in ("view1", "view2", "pred1", "pred2") if k not in dust3r_output]
    if missing:
        raise ValueError(f"dust3r_output lacks {missing} (expected the dict returned by dust3r.inference.inference)")
    if isinstance(mode, str):
        try:
            mode = GlobalAlignerMode(mode)
        except ValueError as exc:
            raise ValueError(f"unknown global aligner mode {mode!r}: expected one of "
                             f"{[m.value for m in GlobalAlignerMode]}") from exc
    if mode not in _CLASSES:
        raise NotImplementedError(f"Unknown mode {mode}")
    view1, view2, pred1, pred2 = (dust3r_output[k] for k in ("view1", "view2", "pred1", "pred2"))
    return _CLASSES[mode](view1, view2, pred1, pred2, **optim_kw).to(device)
