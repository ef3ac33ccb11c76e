"""Prediction heads of DUSt3R."""
from .dpt_head import create_dpt_head
from .linear_head import LinearPts3d


def head_factory(head_type: str, output_mode: str, net, has_conf: bool = False):
    """Build a DUSt3R head: ``'linear'`` or ``'dpt'`` with ``output_mode='pts3d'``."""
    if output_mode == "pts3d" and head_type == "linear":
        return LinearPts3d(net, has_conf)
    if output_mode == "pts3d" and head_type == "dpt":
        return create_dpt_head(net, has_conf=has_conf)
    raise ValueError(f"unsupported head_type={head_type!r} with output_mode={output_mode!r} for DUSt3R "
                     f"(expected 'linear' or 'dpt' with 'pts3d'; MASt3R heads need AsymmetricMASt3R)")
