"""Transformer building blocks of the CroCo family: MLP, (cross-)attention with RoPE, encoder/decoder blocks,
patch embedding.

Attribute names (``qkv``, ``projq`` ... ``norm_y``) are those of the released checkpoints and must not change.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`; the explicit softmax path is
kept only to test the fused one against it (``fused_attn = False``).
"""
from __future__ import annotations

import collections.abc
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def to_2tuple(x):
    """``x`` if it is already a (non-string) iterable, else ``(x, x)``."""
    if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
        return tuple(x)
    return (x, x)


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    """Stochastic depth: zero whole samples of a residual branch with probability ``drop_prob`` (training only)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and scale_by_keep:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path`."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self):
        return f"drop_prob={self.drop_prob:0.3f}"


class Mlp(nn.Module):
    """Two-layer perceptron ``fc2(act(fc1(x)))`` with optional dropout.

    Args:
        in_features: input dimension.
        hidden_features: hidden dimension (default: ``in_features``).
        out_features: output dimension (default: ``in_features``).
        act_layer: activation class (GELU, exact erf form).
        bias: bias for (fc1, fc2); a bool applies to both.
        drop: dropout after the activation and after fc2; a float applies to both.
    """

    def __init__(self, in_features: int, hidden_features: Optional[int] = None, out_features: Optional[int] = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, bias=True, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        bias1, bias2 = to_2tuple(bias)
        drop1, drop2 = to_2tuple(drop)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias1)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop1)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias2)
        self.drop2 = nn.Dropout(drop2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def _attend(q, k, v, fused: bool, dropout_p: float, scale: float) -> torch.Tensor:
    """Softmax attention of (B, heads, Nq, d) queries on (B, heads, Nk, d) keys/values."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    weights = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    if dropout_p:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


class Attention(nn.Module):
    """Multi-head self-attention with optional rotary position embedding.

    Args:
        dim: token dimension C (a multiple of ``num_heads``).
        rope: RoPE module applied to queries and keys, or None.
        num_heads: number of heads.
        qkv_bias: bias on the fused qkv projection.
        attn_drop: attention dropout (training only).
        proj_drop: dropout after the output projection.
    """

    fused_attn: bool = True

    def __init__(self, dim: int, rope: Optional[nn.Module] = None, num_heads: int = 8, qkv_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = rope

    def forward(self, x: torch.Tensor, xpos: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, N, C) tokens; xpos: (B, N, 2) (row, col) positions. Returns (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            qk = self.rope(qkv[:2], xpos)  # rotate queries and keys in one pass
            q, k = qk.unbind(0)
        else:
            q, k = qkv[0], qkv[1]
        drop = self.attn_drop.p if self.training else 0.0
        out = _attend(q, k, qkv[2], self.fused_attn, drop, self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class CrossAttention(nn.Module):
    """Multi-head attention of query tokens on another token set (the other view), with optional RoPE.

    Args: as :class:`Attention`; queries, keys and values have separate projections.
    """

    fused_attn: bool = True

    def __init__(self, dim: int, rope: Optional[nn.Module] = None, num_heads: int = 8, qkv_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = rope

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, N, C = t.shape
        return t.view(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)

    def forward(self, query, key, value, qpos, kpos) -> torch.Tensor:
        """query: (B, Nq, C); key, value: (B, Nk, C); qpos (B, Nq, 2), kpos (B, Nk, 2). Returns (B, Nq, C)."""
        B, Nq, C = query.shape
        q, k, v = self._heads(self.projq(query)), self._heads(self.projk(key)), self._heads(self.projv(value))
        if self.rope is not None:
            q, k = self.rope(q, qpos), self.rope(k, kpos)
        drop = self.attn_drop.p if self.training else 0.0
        out = _attend(q, k, v, self.fused_attn, drop, self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, Nq, C)))


class Block(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, act_layer=nn.GELU, norm_layer=nn.LayerNorm,
                 rope: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor, xpos: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, N, C), xpos: (B, N, 2). Returns (B, N, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x), xpos))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention on the other view's tokens (``y``), MLP; all pre-norm.

    Args:
        norm_mem: normalise the memory tokens ``y`` (``norm_y``) before cross-attention.
        (others as :class:`Block`)
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, act_layer=nn.GELU, norm_layer=nn.LayerNorm,
                 norm_mem: bool = True, rope: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.cross_attn = CrossAttention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias,
                                         attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.norm_y = norm_layer(dim) if norm_mem else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: Optional[torch.Tensor], ypos: Optional[torch.Tensor]):
        """x: (B, Nx, C) tokens to update; y: (B, Ny, C) memory. Returns (updated x, y unchanged)."""
        x = x + self.drop_path(self.attn(self.norm1(x), xpos))
        y_normed = self.norm_y(y)
        x = x + self.drop_path(self.cross_attn(self.norm2(x), y_normed, y_normed, xpos, ypos))
        x = x + self.drop_path(self.mlp(self.norm3(x)))
        return x, y


class PositionGetter:
    """(row, col) integer positions of an (h, w) token grid, row-major, cached per grid size and device."""

    def __init__(self):
        self.cache_positions: dict = {}

    def __call__(self, b: int, h: int, w: int, device) -> torch.Tensor:
        """Returns (b, h * w, 2) int64 positions."""
        key = (h, w, torch.device(device))
        grid = self.cache_positions.get(key)
        if grid is None:
            grid = torch.cartesian_prod(torch.arange(h, device=device), torch.arange(w, device=device))
            self.cache_positions[key] = grid
        return grid.view(1, h * w, 2).expand(b, -1, 2).clone()


class PatchEmbed(nn.Module):
    """Image to patch tokens with a strided convolution, plus the tokens' grid positions.

    Args:
        img_size: training image size (int or (H, W)); this base class checks inputs have exactly that size.
        patch_size: patch side (int or pair).
        in_chans: input channels.
        embed_dim: token dimension.
        norm_layer: optional norm applied to tokens.
        flatten: return (B, N, C) tokens rather than a (B, C, h, w) map.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768, norm_layer=None,
                 flatten: bool = True):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self.position_getter = PositionGetter()

    def _check_divisible(self, H: int, W: int) -> None:
        ph, pw = self.patch_size
        if H % ph or W % pw:
            raise ValueError(f"image size {H}x{W} (HxW) is not a multiple of the patch size {ph}x{pw}; "
                             f"resize or crop it (load_images does this)")

    def _embed(self, x: torch.Tensor):
        tokens = self.proj(x)
        pos = self.position_getter(x.shape[0], tokens.shape[2], tokens.shape[3], x.device)
        if self.flatten:
            tokens = tokens.flatten(2).transpose(1, 2)
        return self.norm(tokens), pos

    def forward(self, x: torch.Tensor, **kw):
        """x: (B, 3, H, W). Returns tokens (B, N, C) and positions (B, N, 2)."""
        H, W = x.shape[-2:]
        if (H, W) != self.img_size:
            raise ValueError(f"input image size {H}x{W} does not match the model's {self.img_size[0]}x{self.img_size[1]}")
        return self._embed(x)

    def _init_weights(self):
        w = self.proj.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
