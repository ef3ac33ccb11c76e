"""Patch embeddings of DUSt3R: any image size that is a multiple of the patch size, and the many-aspect-ratio
variant used in training.

* :class:`PatchEmbedDust3R` embeds every image as it is (landscape or portrait).
* :class:`ManyAR_PatchEmbed` expects a batch stored in landscape layout (W >= H) in which portrait images
  (``true_shape`` H > W) are stored transposed; it transposes them back before embedding, so the tokens always
  follow the true orientation. Both give the same tokens for the same true image.
"""
from __future__ import annotations

import torch

from croco.models.blocks import PatchEmbed

PATCH_EMBED_CLASSES = ("PatchEmbedDust3R", "ManyAR_PatchEmbed")


def get_patch_embed(patch_embed_cls: str, img_size, patch_size: int, enc_embed_dim: int) -> PatchEmbed:
    """Build a patch embedding by class name (``'PatchEmbedDust3R'`` or ``'ManyAR_PatchEmbed'``)."""
    classes = {"PatchEmbedDust3R": PatchEmbedDust3R, "ManyAR_PatchEmbed": ManyAR_PatchEmbed}
    if patch_embed_cls not in classes:
        raise ValueError(f"unknown patch_embed_cls {patch_embed_cls!r}; expected one of {PATCH_EMBED_CLASSES}")
    return classes[patch_embed_cls](img_size, patch_size, 3, enc_embed_dim)


class PatchEmbedDust3R(PatchEmbed):
    """Patch embedding for images of any size that is a multiple of the patch size."""

    def forward(self, x: torch.Tensor, **kw):
        """x: (B, 3, H, W). Returns tokens (B, N, C) and (row, col) positions (B, N, 2)."""
        self._check_divisible(*x.shape[-2:])
        return self._embed(x)


class ManyAR_PatchEmbed(PatchEmbed):
    """Patch embedding for a landscape-layout batch mixing landscape and (transposed) portrait images.

    Args: as :class:`croco.models.blocks.PatchEmbed`.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True):
        self.embed_dim = embed_dim
        super().__init__(img_size, patch_size, in_chans, embed_dim, norm_layer, flatten)

    def forward(self, img: torch.Tensor, true_shape: torch.Tensor):
        """img: (B, 3, H, W) with W >= H; true_shape: (B, 2) true (height, width) of each image.

        Returns tokens (B, N, C) and positions (B, N, 2) in each image's true orientation.
        """
        B, _, H, W = img.shape
        if W < H:
            raise ValueError(f"ManyAR_PatchEmbed needs a landscape-layout batch (W >= H), got {H}x{W}; store portrait "
                             f"images transposed, or use PatchEmbedDust3R (what from_pretrained builds)")
        self._check_divisible(H, W)
        if tuple(true_shape.shape) != (B, 2):
            raise ValueError(f"true_shape must be ({B}, 2), got {tuple(true_shape.shape)}")
        gh, gw = H // self.patch_size[0], W // self.patch_size[1]
        portrait = true_shape[:, 0] > true_shape[:, 1]
        landscape = ~portrait
        x = img.new_zeros((B, gh * gw, self.embed_dim))
        pos = img.new_zeros((B, gh * gw, 2), dtype=torch.int64)
        if landscape.any():
            x[landscape] = self.proj(img[landscape]).flatten(2).transpose(1, 2).to(x.dtype)
            pos[landscape] = self.position_getter(1, gh, gw, img.device)
        if portrait.any():
            x[portrait] = self.proj(img[portrait].transpose(-1, -2)).flatten(2).transpose(1, 2).to(x.dtype)
            pos[portrait] = self.position_getter(1, gw, gh, img.device)
        return self.norm(x), pos
