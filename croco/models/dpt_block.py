"""DPT (dense prediction transformer) output adapter: turns tokens from four transformer layers into a dense
full-resolution map.

Each hooked layer is reshaped to its token grid, resampled to 4x, 2x, 1x and 1/2 of the grid
(``act_postprocess``), projected to ``feature_dim`` channels (``scratch.layer{1..4}_rn``), then fused coarse to
fine by residual refinement blocks (``scratch.refinenet{4..1}``), each upsampling 2x; a small conv head
(``head``) gives ``num_channels`` maps at the image resolution.

Module names follow the released checkpoints; ``scratch.layer_rn`` is a second name for the four projection
convolutions (checkpoints store their weights under both names).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


class Interpolate(nn.Module):
    """Resampling by a fixed scale factor (``F.interpolate``)."""

    def __init__(self, scale_factor: float, mode: str, align_corners: bool = False):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)


def _conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=bias)


class ResidualConvUnit_custom(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` (optionally with batch norm after each conv)."""

    def __init__(self, features: int, activation: nn.Module, bn: bool):
        super().__init__()
        self.bn = bn
        self.conv1 = _conv3x3(features, features, bias=not bn)
        self.conv2 = _conv3x3(features, features, bias=not bn)
        if bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.activation(x))
        if self.bn:
            out = self.bn1(out)
        out = self.conv2(self.activation(out))
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock_custom(nn.Module):
    """Refinement stage: add the refined skip input, refine, upsample 2x (bilinear, corners aligned), 1x1 conv.

    Args:
        features: channels.
        activation: activation module used inside the residual units.
        bn: batch norm in the residual units.
        expand: halve the output channels.
        align_corners: bilinear upsampling mode.
        width_ratio: non-1 values select the aspect-ratio-changing upsampling of CroCo-Stereo.
    """

    def __init__(self, features: int, activation: nn.Module, deconv: bool = False, bn: bool = False,
                 expand: bool = False, align_corners: bool = True, width_ratio: float = 1):
        super().__init__()
        self.width_ratio = width_ratio
        self.deconv = deconv
        self.align_corners = align_corners
        self.expand = expand
        out_features = features // 2 if expand else features
        self.out_conv = nn.Conv2d(features, out_features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = ResidualConvUnit_custom(features, activation, bn)
        self.resConfUnit2 = ResidualConvUnit_custom(features, activation, bn)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """xs: the coarser path (B, C, h, w) and optionally a skip input of the same size."""
        output = xs[0]
        if len(xs) == 2:
            res = self.resConfUnit1(xs[1])
            if self.width_ratio != 1:
                res = F.interpolate(res, size=output.shape[2:], mode="bilinear")
            output = output + res
        output = self.resConfUnit2(output)
        if self.width_ratio != 1:
            h, w = output.shape[2:]
            new_w = 3 * w if (w / h) < (2 / 3) * self.width_ratio else int(self.width_ratio * 2 * h)
            output = F.interpolate(output, size=(2 * h, new_w), mode="bilinear")
        else:
            output = F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        return self.out_conv(output)


def make_fusion_block(features: int, use_bn: bool, width_ratio: float = 1) -> FeatureFusionBlock_custom:
    return FeatureFusionBlock_custom(features, nn.ReLU(False), deconv=False, bn=use_bn, expand=False,
                                     align_corners=True, width_ratio=width_ratio)


def make_scratch(in_shape: Sequence[int], out_shape: int, groups: int = 1, expand: bool = False) -> nn.Module:
    """Container with the four 3x3 projections ``layer{1..4}_rn`` (also listed as ``layer_rn``)."""
    scratch = nn.Module()
    widths = [out_shape * (2 ** i if expand else 1) for i in range(4)]
    convs = [nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False, groups=groups)
             for cin, cout in zip(in_shape, widths)]
    for i, conv in enumerate(convs):
        setattr(scratch, f"layer{i + 1}_rn", conv)
    scratch.layer_rn = nn.ModuleList(convs)
    return scratch


def _resampler(cin: int, cout: int, level: int) -> nn.Sequential:
    """1x1 projection then resampling of a token grid by 4x, 2x, 1x or 1/2 (level 0..3)."""
    proj = nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0)
    if level == 0:
        return nn.Sequential(proj, nn.ConvTranspose2d(cout, cout, kernel_size=4, stride=4, padding=0))
    if level == 1:
        return nn.Sequential(proj, nn.ConvTranspose2d(cout, cout, kernel_size=2, stride=2, padding=0))
    if level == 2:
        return nn.Sequential(proj)
    return nn.Sequential(proj, nn.Conv2d(cout, cout, kernel_size=3, stride=2, padding=1))


class DPTOutputAdapter(nn.Module):
    """DPT decoder over four hooked token layers.

    Args:
        num_channels: output channels.
        stride_level: output stride relative to the image (1 = full resolution).
        patch_size: token patch size (int or pair).
        main_tasks: tasks whose tokens are concatenated (one here).
        hooks: indices into the list of layer outputs given to ``forward``.
        layer_dims: channels after ``act_postprocess`` at the four scales.
        feature_dim: channels of the fusion path.
        last_dim: channels of the last hidden conv of the regression head.
        use_bn: batch norm in the residual units.
        dim_tokens_enc: token dimension of each hooked layer (int or 4 ints); required before use.
        head_type: ``'regression'`` (conv head) or ``'semseg'``.
        output_width_ratio: see :class:`FeatureFusionBlock_custom`.
    """

    def __init__(self, num_channels: int = 1, stride_level: int = 1, patch_size: Union[int, Tuple[int, int]] = 16,
                 main_tasks: Sequence[str] = ("rgb",), hooks: Sequence[int] = (2, 5, 8, 11),
                 layer_dims: Sequence[int] = (96, 192, 384, 768), feature_dim: int = 256, last_dim: int = 32,
                 use_bn: bool = False, dim_tokens_enc: Optional[Union[int, Sequence[int]]] = None,
                 head_type: str = "regression", output_width_ratio: float = 1, **kwargs):
        super().__init__()
        self.num_channels = num_channels
        self.stride_level = stride_level
        self.patch_size = patch_size if isinstance(patch_size, tuple) else (patch_size, patch_size)
        self.main_tasks = tuple(main_tasks)
        self.hooks = list(hooks)
        self.layer_dims = list(layer_dims)
        self.feature_dim = feature_dim
        self.head_type = head_type
        self.P_H = max(1, self.patch_size[0] // stride_level)
        self.P_W = max(1, self.patch_size[1] // stride_level)

        self.scratch = make_scratch(self.layer_dims, feature_dim, groups=1, expand=False)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", make_fusion_block(feature_dim, use_bn, output_width_ratio))

        if head_type == "regression":
            self.head = nn.Sequential(
                _conv3x3(feature_dim, feature_dim // 2),
                Interpolate(scale_factor=2, mode="bilinear", align_corners=True),
                _conv3x3(feature_dim // 2, last_dim),
                nn.ReLU(True),
                nn.Conv2d(last_dim, num_channels, kernel_size=1, stride=1, padding=0))
        elif head_type == "semseg":
            self.head = nn.Sequential(
                nn.Conv2d(feature_dim, feature_dim, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(feature_dim) if use_bn else nn.Identity(),
                nn.ReLU(True),
                nn.Dropout(0.1, False),
                nn.Conv2d(feature_dim, num_channels, kernel_size=1),
                Interpolate(scale_factor=2, mode="bilinear", align_corners=True))
        else:
            raise ValueError(f"DPT head_type must be 'regression' or 'semseg', got {head_type!r}")

        self.dim_tokens_enc = None
        if dim_tokens_enc is not None:
            self.init(dim_tokens_enc=dim_tokens_enc)

    def init(self, dim_tokens_enc: Union[int, Sequence[int]] = 768) -> None:
        """Create the per-layer resamplers for tokens of the given dimension(s)."""
        dims = [dim_tokens_enc] * 4 if isinstance(dim_tokens_enc, int) else list(dim_tokens_enc)
        self.dim_tokens_enc = [d * len(self.main_tasks) for d in dims]
        self.act_postprocess = nn.ModuleList(
            [_resampler(self.dim_tokens_enc[i], self.layer_dims[i], i) for i in range(4)])

    def _token_grids(self, encoder_tokens: List[torch.Tensor], image_size) -> List[torch.Tensor]:
        H, W = image_size
        n_h, n_w = H // (self.stride_level * self.P_H), W // (self.stride_level * self.P_W)
        grids = []
        for hook in self.hooks:
            tokens = encoder_tokens[hook]
            B, N, C = tokens.shape
            if N != n_h * n_w:
                raise ValueError(f"{N} tokens do not match an image of {H}x{W} ({n_h}x{n_w} patches)")
            grids.append(tokens.transpose(1, 2).reshape(B, C, n_h, n_w))
        return grids

    def forward(self, encoder_tokens: List[torch.Tensor], image_size: Tuple[int, int]) -> torch.Tensor:
        """encoder_tokens: list of (B, N, C_l) layer outputs; image_size: (H, W). Returns (B, num_channels, H, W)."""
        if self.dim_tokens_enc is None:
            raise RuntimeError("DPTOutputAdapter.init(dim_tokens_enc) must be called first")
        grids = self._token_grids(encoder_tokens, image_size)
        feats = [self.scratch.layer_rn[i](self.act_postprocess[i](g)) for i, g in enumerate(grids)]
        # the 1/2-scale level is computed with stride 2 and padding 1, so on odd grids it upsamples one row or
        # column too many: crop it to the next level's size
        path = self.scratch.refinenet4(feats[3])[:, :, :feats[2].shape[2], :feats[2].shape[3]]
        path = self.scratch.refinenet3(path, feats[2])
        path = self.scratch.refinenet2(path, feats[1])
        path = self.scratch.refinenet1(path, feats[0])
        return self.head(path)
