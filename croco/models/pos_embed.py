"""Positional encodings: fixed 2D sine-cosine tables and rotary embeddings (RoPE 2D).

RoPE 2D rotates query/key features by angles that depend on each token's (row, col) grid position: the first
half of every head's features encodes the row, the second half the column.  Within a half of size ``d`` the
rotation uses frequencies ``base ** (-2i / d)`` and the "rotate half" pairing (feature ``i`` with ``i + d/2``).
This matches the checkpoints' training exactly; the optional CUDA kernel in :mod:`croco.models.curope`
computes the same numbers.
"""
from __future__ import annotations

import logging
import weakref

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# fixed sine-cosine tables (CroCo pretraining with pos_embed='cosine')
# ----------------------------------------------------------------------------------------------------------
def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """Sine-cosine code of scalar positions.

    Args:
        embed_dim: even output dimension D.
        pos: positions, any shape (M values once flattened).
    Returns:
        (M, D) float64 array: ``[sin(pos * w), cos(pos * w)]`` with ``w_k = 10000 ** (-2k / D)``.
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.outer(np.asarray(pos, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size, n_cls_token: int = 0) -> np.ndarray:
    """2D sine-cosine table for a (rows, cols) token grid, row-major.

    Args:
        embed_dim: even output dimension D; half encodes the row, half the column.
        grid_size: int (square grid) or (rows, cols).
        n_cls_token: number of leading all-zero rows for class tokens.
    Returns:
        (n_cls_token + rows * cols, D) array.
    """
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    col_idx, row_idx = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    # the first half encodes the column index ("w goes first" in the MAE convention), the second the row
    table = np.concatenate([get_1d_sincos_pos_embed_from_grid(embed_dim // 2, col_idx),
                            get_1d_sincos_pos_embed_from_grid(embed_dim // 2, row_idx)], axis=1)
    if n_cls_token > 0:
        table = np.concatenate([np.zeros([n_cls_token, embed_dim]), table], axis=0)
    return table


def interpolate_pos_embed(model: torch.nn.Module, checkpoint_model: dict) -> None:
    """Resize the fixed ``enc_pos_embed`` / ``dec_pos_embed`` tables of a checkpoint to ``model``'s grid, in place.

    Square checkpoint tables are bicubically resampled to the model's (rows, cols) grid. Tables that already
    match are left alone; RoPE models have no such tables and are untouched.
    """
    patch = model.patch_embed.patch_size
    img_size = model.patch_embed.img_size
    new_grid = (img_size[0] // patch[0], img_size[1] // patch[1])
    for key in ("enc_pos_embed", "dec_pos_embed"):
        if key not in checkpoint_model:
            continue
        table = checkpoint_model[key]
        side = int(round(table.shape[-2] ** 0.5))
        if (side, side) == new_grid:
            continue
        if side * side != table.shape[-2]:
            raise ValueError(f"{key}: cannot interpolate a non-square table of {table.shape[-2]} positions")
        logger.info("interpolating %s from %dx%d to %dx%d", key, side, side, *new_grid)
        grid = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
        checkpoint_model[key] = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)


# ----------------------------------------------------------------------------------------------------------
# RoPE 2D
# ----------------------------------------------------------------------------------------------------------
class RoPE2D(torch.nn.Module):
    """Rotary position embedding over a 2D token grid (pure PyTorch).

    Args:
        freq: frequency base (100 for ``pos_embed='RoPE100'``).
        F0: scale applied to positions (1 in every released model).
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0, use_cuda_kernel: bool = True):
        super().__init__()
        self.base = float(freq)
        self.F0 = float(F0)
        self.use_cuda_kernel = use_cuda_kernel
        self._tables: dict = {}
        self._gather_cache: dict = {}
        self._cuda_impl = None  # cuRoPE2D instance, created on the first CUDA call when the extension is built

    def _cos_sin(self, dim: int, n_pos: int, device: torch.device, dtype: torch.dtype):
        """(n_pos, dim) cosine and sine tables for a 1D rotary code of size ``dim``."""
        key = (dim, n_pos, device, dtype)
        tables = self._tables.get(key)
        if tables is None:
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            t = torch.arange(n_pos, device=device, dtype=inv_freq.dtype)
            if self.F0 != 1.0:
                t = t * self.F0
            angles = torch.outer(t, inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            tables = (angles.cos(), angles.sin())
            if len(self._tables) > 64:  # bounded: shapes seen in practice are few
                self._tables.clear()
            self._tables[key] = tables
        return tables

    def _gathered(self, positions: torch.Tensor, dim: int, dtype: torch.dtype):
        """Per-token (B, 1, N, dim) cosines and signed sines, cached for the positions tensor being used.

        The sines of the first quarter of each half are negated so that the "rotate half" step becomes a plain
        swap of quarters ([a, b] -> [b, a]); ``(-b) * s == b * (-s)`` exactly, so results are unchanged.
        """
        key = (id(positions), dim, positions.device, dtype)
        hit = self._gather_cache.get(key)
        if hit is not None and hit[0]() is positions and hit[1] == positions._version:
            return hit[2], hit[3]
        half = dim // 2
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, positions.device, dtype)
        rows, cols = positions[..., 0], positions[..., 1]
        cos_full = torch.cat((F.embedding(rows, cos), F.embedding(cols, cos)), -1).unsqueeze(-3)
        sign = torch.ones(dim, device=positions.device, dtype=dtype)
        sign[: dim // 4] = -1
        sign[half: half + dim // 4] = -1
        sin_full = (torch.cat((F.embedding(rows, sin), F.embedding(cols, sin)), -1) * sign).unsqueeze(-3)
        if len(self._gather_cache) >= 8:
            self._gather_cache.pop(next(iter(self._gather_cache)))
        self._gather_cache[key] = (weakref.ref(positions), positions._version, cos_full, sin_full)
        return cos_full, sin_full

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``tokens`` by their grid positions.

        Args:
            tokens: (..., B, heads, N, D) with D a multiple of 4; leading dims broadcast (e.g. stacked q and k).
            positions: (B, N, 2) integer (row, col) of each token.
        Returns:
            Rotated tokens, same shape and dtype (a new tensor).
        """
        D = tokens.shape[-1]
        if D % 4:
            raise ValueError(f"RoPE2D needs a head dimension multiple of 4, got {D}")
        if positions.ndim != 3 or positions.shape[-1] != 2:
            raise ValueError(f"positions must be (B, N, 2), got {tuple(positions.shape)}")
        if tokens.is_cuda and self.use_cuda_kernel:
            kernel = self._cuda_kernel()
            if kernel is not None:
                return kernel(tokens, positions)
        cos, sin_signed = self._gathered(positions, D, tokens.dtype)
        # within each half [a, b] -> a*cos - b*sin, b*cos + a*sin
        a, b, c, d = tokens.chunk(4, dim=-1)
        out = tokens * cos
        out += torch.cat((b, a, d, c), dim=-1) * sin_signed
        return out

    def _cuda_kernel(self):
        if self._cuda_impl is None:
            try:
                from croco.models.curope import cuRoPE2D, is_available
            except ImportError:
                is_available = None
            if is_available is None or not is_available():
                self.use_cuda_kernel = False
                return None
            self._cuda_impl = cuRoPE2D(freq=self.base, F0=self.F0)
        return self._cuda_impl


def make_rope(pos_embed: str) -> RoPE2D | None:
    """RoPE module for a ``pos_embed`` string such as ``'RoPE100'``; None for ``'cosine'``.

    On CUDA tensors the module uses the compiled kernel of :mod:`croco.models.curope` when it is built, and the
    pure-PyTorch code otherwise (same numbers).
    """
    if pos_embed == "cosine":
        return None
    try:
        if not pos_embed.startswith("RoPE"):
            raise ValueError
        freq = float(pos_embed[len("RoPE"):])
    except ValueError:
        raise ValueError(f"unknown pos_embed {pos_embed!r}: expected 'cosine' or 'RoPE<freq>' (e.g. 'RoPE100')") from None
    return RoPE2D(freq=freq)
