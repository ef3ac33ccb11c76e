"""CroCoNet: the cross-view completion network (ViT encoder + cross-attention decoder) used as backbone.

For pretraining, a masked view 1 is reconstructed from the encoder tokens of both views. DUSt3R and MASt3R
subclass it, replace the patch embedding and the prediction head, and add a second decoder.
"""
from __future__ import annotations

from functools import partial
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from .blocks import Block, DecoderBlock, PatchEmbed
from .pos_embed import get_2d_sincos_pos_embed, make_rope


class RandomMask(nn.Module):
    """Random boolean mask over the patches: exactly ``int(mask_ratio * num_patches)`` True per sample."""

    def __init__(self, num_patches: int, mask_ratio: float):
        super().__init__()
        self.num_patches = num_patches
        self.num_mask = int(mask_ratio * num_patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) tokens. Returns (B, N) bool, True = masked."""
        ranks = torch.rand(x.shape[0], self.num_patches, device=x.device).argsort(dim=1)
        return ranks < self.num_mask


class CroCoNet(nn.Module):
    """Cross-view completion network.

    Args:
        img_size: training image size (int or (H, W)).
        patch_size: patch side in pixels.
        mask_ratio: fraction of view-1 patches masked during pretraining.
        enc_embed_dim, enc_depth, enc_num_heads: encoder width, depth and heads.
        dec_embed_dim, dec_depth, dec_num_heads: decoder width, depth and heads.
        mlp_ratio: MLP hidden size / token size.
        norm_layer: normalisation layer factory (LayerNorm, eps 1e-6).
        norm_im2_in_dec: normalise view-2 tokens in the decoder's cross-attention.
        pos_embed: ``'cosine'`` (fixed tables) or ``'RoPE<freq>'`` (rotary, e.g. ``'RoPE100'``).
    """

    def __init__(self, img_size=224, patch_size: int = 16, mask_ratio: float = 0.9, enc_embed_dim: int = 768,
                 enc_depth: int = 12, enc_num_heads: int = 12, dec_embed_dim: int = 512, dec_depth: int = 8,
                 dec_num_heads: int = 16, mlp_ratio: float = 4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                 norm_im2_in_dec: bool = True, pos_embed: str = "cosine"):
        super().__init__()
        self._set_patch_embed(img_size, patch_size, enc_embed_dim)
        self._set_mask_generator(self.patch_embed.num_patches, mask_ratio)

        self.pos_embed = pos_embed
        self.rope = make_rope(pos_embed)
        if self.rope is None:  # fixed sine-cosine tables added to the tokens
            grid = self.patch_embed.grid_size
            self.register_buffer("enc_pos_embed", torch.from_numpy(get_2d_sincos_pos_embed(enc_embed_dim, grid)).float())
            self.register_buffer("dec_pos_embed", torch.from_numpy(get_2d_sincos_pos_embed(dec_embed_dim, grid)).float())
        else:
            self.enc_pos_embed = None
            self.dec_pos_embed = None

        self.enc_depth = enc_depth
        self.enc_embed_dim = enc_embed_dim
        self.enc_blocks = nn.ModuleList([
            Block(enc_embed_dim, enc_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer, rope=self.rope)
            for _ in range(enc_depth)])
        self.enc_norm = norm_layer(enc_embed_dim)

        self._set_mask_token(dec_embed_dim)
        self._set_decoder(enc_embed_dim, dec_embed_dim, dec_num_heads, dec_depth, mlp_ratio, norm_layer,
                          norm_im2_in_dec)
        self._set_prediction_head(dec_embed_dim, patch_size)
        self.initialize_weights()

    # ---- construction hooks (overridden by subclasses) ----
    def _set_patch_embed(self, img_size=224, patch_size=16, enc_embed_dim=768):
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, enc_embed_dim)

    def _set_mask_generator(self, num_patches, mask_ratio):
        self.mask_generator = RandomMask(num_patches, mask_ratio)

    def _set_mask_token(self, dec_embed_dim):
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))

    def _set_decoder(self, enc_embed_dim, dec_embed_dim, dec_num_heads, dec_depth, mlp_ratio, norm_layer,
                     norm_im2_in_dec):
        self.dec_depth = dec_depth
        self.dec_embed_dim = dec_embed_dim
        self.decoder_embed = nn.Linear(enc_embed_dim, dec_embed_dim, bias=True)
        self.dec_blocks = nn.ModuleList([
            DecoderBlock(dec_embed_dim, dec_num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                         norm_mem=norm_im2_in_dec, rope=self.rope)
            for _ in range(dec_depth)])
        self.dec_norm = norm_layer(dec_embed_dim)

    def _set_prediction_head(self, dec_embed_dim, patch_size):
        self.prediction_head = nn.Linear(dec_embed_dim, patch_size ** 2 * 3, bias=True)

    # ---- initialisation ----
    def initialize_weights(self):
        """MAE-style init: xavier-uniform linears and patch projection, unit LayerNorms, N(0, 0.02) mask token.

        Skipped for parameters on the meta device (models built only to receive checkpoint weights).
        """
        if any(p.is_meta for p in self.parameters()):
            return
        self.patch_embed._init_weights()
        if getattr(self, "mask_token", None) is not None:
            torch.nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    # ---- forward pieces ----
    def _encode_image(self, image: torch.Tensor, do_mask: bool = False, return_all_blocks: bool = False):
        """Encode (B, 3, H, W) images.

        Returns (tokens, positions, masks): tokens (B, Nvis, C) after ``enc_norm`` (or the list of every block's
        output with the last normalised when ``return_all_blocks``), positions (B, N, 2) of all patches, masks
        (B, N) bool (True = masked; all False without masking).
        """
        x, pos = self.patch_embed(image)
        if self.enc_pos_embed is not None:
            x = x + self.enc_pos_embed[None]
        B, N, C = x.shape
        if do_mask:
            masks = self.mask_generator(x)
            x = x[~masks].view(B, -1, C)
            posvis = pos[~masks].view(B, -1, 2)
        else:
            masks = torch.zeros((B, N), dtype=torch.bool, device=x.device)
            posvis = pos
        outs = []
        for blk in self.enc_blocks:
            x = blk(x, posvis)
            outs.append(x)
        if return_all_blocks:
            outs[-1] = self.enc_norm(outs[-1])
            return outs, pos, masks
        return self.enc_norm(x), pos, masks

    def _decoder(self, feat1, pos1, masks1, feat2, pos2, return_all_blocks: bool = False):
        """Decode view 1 (masked tokens re-inserted as ``mask_token``) with cross-attention on view 2.

        masks1 may be None (view 1 fully visible). Returns (B, N, dec_dim) tokens, or every block's output.
        """
        visf1 = self.decoder_embed(feat1)
        f2 = self.decoder_embed(feat2)
        B, Nenc, C = visf1.shape
        if masks1 is None:
            f1 = visf1
        else:
            f1 = self.mask_token.repeat(B, masks1.shape[1], 1).to(dtype=visf1.dtype)
            f1[~masks1] = visf1.reshape(B * Nenc, C)
        if self.dec_pos_embed is not None:
            f1 = f1 + self.dec_pos_embed
            f2 = f2 + self.dec_pos_embed
        outs: List[torch.Tensor] = []
        for blk in self.dec_blocks:
            f1, f2 = blk(f1, f2, pos1, pos2)
            outs.append(f1)
        if return_all_blocks:
            outs[-1] = self.dec_norm(outs[-1])
            return outs
        return self.dec_norm(f1)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3) patches in (row, col, channel) order."""
        p = self.patch_embed.patch_size[0]
        B, C, H, W = imgs.shape
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor, channels: int = 3, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(B, L, p*p*channels) -> (B, channels, H, W); ``grid`` = (rows, cols), default square."""
        p = self.patch_embed.patch_size[0]
        if grid is None:
            side = int(round(x.shape[1] ** 0.5))
            if side * side != x.shape[1]:
                raise ValueError(f"{x.shape[1]} patches do not form a square grid; pass grid=(rows, cols)")
            grid = (side, side)
        h, w = grid
        x = x.reshape(x.shape[0], h, w, p, p, channels).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], channels, h * p, w * p)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor):
        """Pretraining pass. img1, img2: (B, 3, H, W).

        Returns (prediction (B, N, p*p*3), mask of view 1 (B, N), target patches of view 1 (B, N, p*p*3)).
        """
        feat1, pos1, mask1 = self._encode_image(img1, do_mask=True)
        feat2, pos2, _ = self._encode_image(img2, do_mask=False)
        decfeat = self._decoder(feat1, pos1, mask1, feat2, pos2)
        return self.prediction_head(decfeat), mask1, self.patchify(img1)
