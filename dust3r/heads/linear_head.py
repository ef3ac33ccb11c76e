"""Linear head: each decoder token predicts the 3D points (and confidences) of its p x p pixels."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .postprocess import postprocess


class LinearPts3d(nn.Module):
    """Per-token linear projection to (3 + conf) * p^2 values, unshuffled into a dense map.

    Args:
        net: the model (reads ``patch_embed.patch_size``, ``dec_embed_dim``, ``depth_mode``, ``conf_mode``).
        has_conf: also predict a confidence channel.
    """

    def __init__(self, net: nn.Module, has_conf: bool = False):
        super().__init__()
        self.patch_size = net.patch_embed.patch_size[0]
        self.depth_mode = net.depth_mode
        self.conf_mode = net.conf_mode
        self.has_conf = has_conf
        self.proj = nn.Linear(net.dec_embed_dim, (3 + has_conf) * self.patch_size ** 2)

    def setup(self, croconet):
        pass

    def forward(self, decout: List[torch.Tensor], img_shape: Tuple[int, int]) -> dict:
        """decout: decoder layer outputs, the last (B, N, C) is used; img_shape: (H, W)."""
        H, W = img_shape
        p = self.patch_size
        tokens = decout[-1]
        B = tokens.shape[0]
        feat = self.proj(tokens).transpose(-1, -2).reshape(B, -1, H // p, W // p)
        return postprocess(F.pixel_shuffle(feat, p), self.depth_mode, self.conf_mode)
