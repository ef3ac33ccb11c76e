"""DPT head of DUSt3R: dense 3D points (+ confidence) from the encoder output and three decoder layers."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from croco.models.dpt_block import DPTOutputAdapter

from .postprocess import postprocess as pts3d_postprocess


class DPTOutputAdapter_fix(DPTOutputAdapter):
    """DPT adapter as used by DUSt3R (kept under its historical name)."""


class PixelwiseTaskWithDPT(nn.Module):
    """DPT adapter followed by an activation (``postprocess``) producing the output dict.

    Args:
        n_cls_token: must be 0.
        hooks_idx: indices of the 4 layers read from the list given to forward.
        dim_tokens: token dimension of each hooked layer.
        output_width_ratio, num_channels, feature_dim, last_dim, head_type: see DPTOutputAdapter.
        postprocess: ``f(raw, depth_mode, conf_mode) -> dict`` or None to return the raw map.
        depth_mode, conf_mode: passed to ``postprocess``.
    """

    def __init__(self, *, n_cls_token: int = 0, hooks_idx: Optional[Sequence[int]] = None,
                 dim_tokens: Optional[Sequence[int]] = None, output_width_ratio: float = 1, num_channels: int = 1,
                 postprocess: Optional[Callable] = None, depth_mode=None, conf_mode=None, **kwargs):
        super().__init__()
        if n_cls_token != 0:
            raise ValueError("PixelwiseTaskWithDPT does not support class tokens (n_cls_token must be 0)")
        self.return_all_layers = True
        self.postprocess = postprocess
        self.depth_mode = depth_mode
        self.conf_mode = conf_mode
        dpt_args = dict(output_width_ratio=output_width_ratio, num_channels=num_channels, **kwargs)
        if hooks_idx is not None:
            dpt_args["hooks"] = hooks_idx
        self.dpt = DPTOutputAdapter_fix(**dpt_args)
        self.dpt.init(**({} if dim_tokens is None else {"dim_tokens_enc": dim_tokens}))

    def forward(self, x: List[torch.Tensor], img_info: Tuple[int, int]):
        """x: list of layer outputs (B, N, C_l); img_info: (H, W)."""
        out = self.dpt(x, image_size=(img_info[0], img_info[1]))
        if self.postprocess:
            out = self.postprocess(out, self.depth_mode, self.conf_mode)
        return out


def dpt_hooks(dec_depth: int) -> List[int]:
    """Layers read by the DPT heads: encoder output (0) and decoder blocks at 1/2, 3/4 and the end."""
    if dec_depth < 10:
        raise ValueError(f"DPT heads need dec_depth >= 10, got {dec_depth}")
    return [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth]


def create_dpt_head(net: nn.Module, has_conf: bool = False) -> PixelwiseTaskWithDPT:
    """DPT head predicting 3D points (+ confidence) for ``net`` (reads its dims, depth and modes)."""
    feature_dim = 256
    return PixelwiseTaskWithDPT(num_channels=3 + has_conf, feature_dim=feature_dim, last_dim=feature_dim // 2,
                                hooks_idx=dpt_hooks(net.dec_depth),
                                dim_tokens=[net.enc_embed_dim] + [net.dec_embed_dim] * 3,
                                postprocess=pts3d_postprocess, depth_mode=net.depth_mode,
                                conf_mode=net.conf_mode, head_type="regression")
