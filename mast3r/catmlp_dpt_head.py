"""MASt3R heads: 3D points from a DPT (or a small conv head) plus dense local descriptors from an MLP, both fed
with the concatenation of encoder and last decoder tokens."""
from __future__ import annotations

import ast
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from croco.models.blocks import Mlp
from croco.models.dpt_block import Interpolate
from dust3r.heads.dpt_head import PixelwiseTaskWithDPT, dpt_hooks
from dust3r.heads.postprocess import reg_dense_conf, reg_dense_depth


def reg_desc(desc: torch.Tensor, mode) -> torch.Tensor:
    """Descriptor activation: ``'norm'`` = L2-normalise along the last dim."""
    if "norm" not in mode:
        raise ValueError(f"unknown desc_mode {mode!r}: expected 'norm'")
    return desc / desc.norm(dim=-1, keepdim=True)


def postprocess(out: torch.Tensor, depth_mode, conf_mode, desc_dim: Optional[int] = None, desc_mode="norm",
                two_confs: bool = False, desc_conf_mode=None) -> dict:
    """Raw (B, 3 + conf + desc_dim [+1], H, W) -> dict of ``pts3d`` (B, H, W, 3), ``conf`` (B, H, W),
    ``desc`` (B, H, W, desc_dim) and ``desc_conf`` (B, H, W) (a copy of ``conf`` unless ``two_confs``)."""
    desc_conf_mode = conf_mode if desc_conf_mode is None else desc_conf_mode
    fmap = out.permute(0, 2, 3, 1)
    res = {"pts3d": reg_dense_depth(fmap[..., 0:3], mode=depth_mode)}
    if conf_mode is not None:
        res["conf"] = reg_dense_conf(fmap[..., 3], mode=conf_mode)
    if desc_dim is not None:
        start = 3 + int(conf_mode is not None)
        res["desc"] = reg_desc(fmap[..., start:start + desc_dim], mode=desc_mode)
        if two_confs:
            res["desc_conf"] = reg_dense_conf(fmap[..., start + desc_dim], mode=desc_conf_mode)
        else:
            res["desc_conf"] = res["conf"].clone()
    return res


def _square_patch(net) -> int:
    ph, pw = net.patch_embed.patch_size
    if ph != pw:
        raise ValueError(f"MASt3R heads need square patches, got {ph}x{pw}")
    return ph


def _local_features(mlp: nn.Module, tokens: torch.Tensor, img_shape: Tuple[int, int], patch: int) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C_out / p^2, H, W) per-pixel features by pixel-unshuffling each token's output."""
    H, W = img_shape
    feat = mlp(tokens).transpose(-1, -2).reshape(tokens.shape[0], -1, H // patch, W // patch)
    return F.pixel_shuffle(feat, patch)


class Cat_MLP_LocalFeatures_DPT_Pts3d(PixelwiseTaskWithDPT):
    """DPT for 3D points + confidence, MLP for ``local_feat_dim``-d descriptors (+ their confidence).

    Args:
        net: the model (reads patch size, enc/dec dims, ``desc_mode``, ``two_confs``, ``desc_conf_mode``).
        has_conf: predict a confidence for the points.
        local_feat_dim: descriptor dimension.
        hidden_dim_factor: MLP hidden size / input size.
        (the rest: see PixelwiseTaskWithDPT)
    """

    def __init__(self, net, has_conf: bool = False, local_feat_dim: int = 16, hidden_dim_factor: float = 4.0,
                 hooks_idx=None, dim_tokens=None, num_channels: int = 1, postprocess=None, feature_dim: int = 256,
                 last_dim: int = 32, depth_mode=None, conf_mode=None, head_type: str = "regression", **kwargs):
        super().__init__(num_channels=num_channels, feature_dim=feature_dim, last_dim=last_dim, hooks_idx=hooks_idx,
                         dim_tokens=dim_tokens, depth_mode=depth_mode, postprocess=postprocess,
                         conf_mode=conf_mode, head_type=head_type)
        self.local_feat_dim = local_feat_dim
        self.patch_size = _square_patch(net)
        self.desc_mode = net.desc_mode
        self.has_conf = has_conf
        self.two_confs = net.two_confs
        self.desc_conf_mode = net.desc_conf_mode
        idim = net.enc_embed_dim + net.dec_embed_dim
        self.head_local_features = Mlp(in_features=idim, hidden_features=int(hidden_dim_factor * idim),
                                       out_features=(local_feat_dim + self.two_confs) * self.patch_size ** 2)

    def forward(self, decout: List[torch.Tensor], img_shape: Tuple[int, int]):
        """decout: encoder tokens then decoder block outputs (B, N, C_l); img_shape: (H, W)."""
        pts3d = self.dpt(decout, image_size=(img_shape[0], img_shape[1]))
        tokens = torch.cat([decout[0], decout[-1]], dim=-1)
        local = _local_features(self.head_local_features, tokens, img_shape, self.patch_size)
        out = torch.cat([pts3d, local], dim=1)
        if self.postprocess:
            out = self.postprocess(out, depth_mode=self.depth_mode, conf_mode=self.conf_mode,
                                   desc_dim=self.local_feat_dim, desc_mode=self.desc_mode, two_confs=self.two_confs,
                                   desc_conf_mode=self.desc_conf_mode)
        return out


class MLP_MiniConv_Head(nn.Module):
    """MLP predicting half-resolution features per token, then 2x upsampling and a small conv head.

    Args:
        idim: token dimension; mlp_hidden_dim: MLP hidden size; mlp_odim: channels predicted by the MLP;
        conv_inner_dim: channels of the 3x3 conv; odim: output channels; patch_size: token patch side;
        subpatch: upsampling factor after the MLP.
    """

    def __init__(self, idim: int, mlp_hidden_dim: int, mlp_odim: int, conv_inner_dim: int, odim: int,
                 patch_size: int, subpatch: int = 2, **kw):
        super().__init__()
        self.patch_size = patch_size
        self.subpatch = subpatch
        self.sub_patch_size = patch_size // subpatch
        self.mlp = Mlp(idim, mlp_hidden_dim, mlp_odim * self.sub_patch_size ** 2, **kw)
        self.head = nn.Sequential(
            Interpolate(scale_factor=subpatch, mode="bilinear", align_corners=True) if subpatch != 1 else nn.Identity(),
            nn.Conv2d(mlp_odim, conv_inner_dim, kernel_size=3, stride=1, padding=1),
            nn.ReLU(True),
            nn.Conv2d(conv_inner_dim, odim, kernel_size=1, stride=1, padding=0))

    def forward(self, decout: List[torch.Tensor], img_shape: Tuple[int, int]) -> torch.Tensor:
        H, W = img_shape
        tokens = decout[-1]
        feat = self.mlp(tokens).transpose(-1, -2).reshape(tokens.shape[0], -1, H // self.patch_size,
                                                         W // self.patch_size)
        return self.head(F.pixel_shuffle(feat, self.sub_patch_size))


class Cat_MLP_LocalFeatures_MiniConv_Pts3d(nn.Module):
    """Light MASt3R head: MLP + mini-conv for 3D points, MLP for descriptors."""

    def __init__(self, net, has_conf: bool = False, local_feat_dim: int = 16, hidden_dim_factor: float = 4.0,
                 mlp_odim: int = 24, conv_inner_dim: int = 100, subpatch: int = 2, **kw):
        super().__init__()
        self.local_feat_dim = local_feat_dim
        self.patch_size = _square_patch(net)
        self.depth_mode = net.depth_mode
        self.conf_mode = net.conf_mode
        self.desc_mode = net.desc_mode
        self.desc_conf_mode = net.desc_conf_mode
        self.has_conf = has_conf
        self.two_confs = net.two_confs
        idim = net.enc_embed_dim + net.dec_embed_dim
        self.head_pts3d = MLP_MiniConv_Head(idim=idim, mlp_hidden_dim=int(hidden_dim_factor * idim),
                                            mlp_odim=mlp_odim + has_conf, conv_inner_dim=conv_inner_dim,
                                            odim=3 + has_conf, subpatch=subpatch, patch_size=self.patch_size, **kw)
        self.head_local_features = Mlp(in_features=idim, hidden_features=int(hidden_dim_factor * idim),
                                       out_features=(local_feat_dim + self.two_confs) * self.patch_size ** 2)

    def forward(self, decout: List[torch.Tensor], img_shape: Tuple[int, int]) -> dict:
        tokens = torch.cat([decout[0], decout[-1]], dim=-1)
        pts3d = self.head_pts3d([tokens], img_shape)
        local = _local_features(self.head_local_features, tokens, img_shape, self.patch_size)
        return postprocess(torch.cat([pts3d, local], dim=1), depth_mode=self.depth_mode, conf_mode=self.conf_mode,
                           desc_dim=self.local_feat_dim, desc_mode=self.desc_mode, two_confs=self.two_confs,
                           desc_conf_mode=self.desc_conf_mode)


_CATCONV_ARGS = {"hidden_dim_factor": float, "mlp_odim": int, "conv_inner_dim": int, "subpatch": int}


def _parse_catconv_options(head_type: str) -> dict:
    """``'catconv:mlp_odim=32,subpatch=4'`` -> ``{'mlp_odim': 32, 'subpatch': 4}`` (literals only, no eval)."""
    if ":" not in head_type:
        return {}
    options = {}
    for item in filter(None, (s.strip() for s in head_type.split(":", 1)[1].split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in _CATCONV_ARGS or not value:
            raise ValueError(f"bad catconv option {item!r} in head_type {head_type!r}; allowed: {sorted(_CATCONV_ARGS)}")
        try:
            options[name] = _CATCONV_ARGS[name](ast.literal_eval(value.strip()))
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"bad value for {name!r} in head_type {head_type!r}") from None
    return options


def mast3r_head_factory(head_type: str, output_mode: str, net, has_conf: bool = False) -> nn.Module:
    """Build a MASt3R head: ``'catmlp+dpt'`` or ``'catconv[:opts]'`` with ``output_mode='pts3d+desc<D>'``."""
    if not output_mode.startswith("pts3d+desc") or not output_mode[len("pts3d+desc"):].isdigit():
        raise ValueError(f"unsupported output_mode {output_mode!r} for MASt3R (expected 'pts3d+desc<D>')")
    local_feat_dim = int(output_mode[len("pts3d+desc"):])
    if head_type == "catmlp+dpt":
        feature_dim = 256
        return Cat_MLP_LocalFeatures_DPT_Pts3d(
            net, local_feat_dim=local_feat_dim, has_conf=has_conf, num_channels=3 + has_conf,
            feature_dim=feature_dim, last_dim=feature_dim // 2, hooks_idx=dpt_hooks(net.dec_depth),
            dim_tokens=[net.enc_embed_dim] + [net.dec_embed_dim] * 3, postprocess=postprocess,
            depth_mode=net.depth_mode, conf_mode=net.conf_mode, head_type="regression")
    if head_type.split(":")[0] == "catconv":
        return Cat_MLP_LocalFeatures_MiniConv_Pts3d(net, local_feat_dim=local_feat_dim, has_conf=has_conf,
                                                    **_parse_catconv_options(head_type))
    raise ValueError(f"unsupported head_type {head_type!r} for MASt3R (expected 'catmlp+dpt' or 'catconv')")
