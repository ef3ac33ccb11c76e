"""DUSt3R model: a siamese CroCo encoder, two cross-attending decoders and two heads that predict both views'
3D points in the first view's camera frame.

Loading (``from_pretrained`` / ``load_model``) accepts an official ``.pth``, a local Hugging Face directory
(``config.json`` + ``model.safetensors``) or a hub id, through one secure path (:mod:`dust3r.model_loading`):
no code from the file is ever run.
"""
from __future__ import annotations

import logging
import os
from copy import deepcopy
from typing import Dict, List, Tuple

import huggingface_hub
import torch
import torch.utils.checkpoint

from croco.models.croco import CroCoNet

from .heads import head_factory
from .model_loading import load_pretrained, register_model, split_pretrained_kwargs
from .patch_embed import get_patch_embed
from .utils.checkpoint import with_second_decoder, write_safetensors
from .utils.misc import fill_default_args, freeze_all_params, interleave, is_symmetrized, transpose_to_landscape

logger = logging.getLogger(__name__)

inf = float("inf")


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """Reduced-precision tensors to float32 (heads always run in at least float32); others unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def load_model(model_path: str, device="cpu", verbose: bool = True):
    """Load any supported checkpoint (``.pth`` file, HF directory or hub id) and move it to ``device``.

    The model class comes from the checkpoint (DUSt3R or MASt3R). See :func:`dust3r.model_loading.load_pretrained`.
    """
    return load_pretrained(model_path, device=device, verbose=verbose)


def true_shape_of(view: dict) -> torch.Tensor:
    """(B, 2) int tensor of a view's true image sizes (H, W): ``view['true_shape']`` or the size of ``view['img']``
    (B, 3, H, W) when absent."""
    img = view["img"]
    shape = view.get("true_shape")
    if shape is None:
        return torch.tensor(img.shape[-2:], device=img.device)[None].repeat(img.shape[0], 1)
    return torch.as_tensor(shape, device=img.device).reshape(img.shape[0], 2)


def _cross_pair(blk1, blk2, f1, f2, pos1, pos2):
    """One step of the two decoders: each view's block cross-attends to the other view's previous tokens."""
    return blk1(f1, f2, pos1, pos2)[0], blk2(f2, f1, pos2, pos1)[0]


@register_model
class AsymmetricCroCo3DStereo(
    CroCoNet,
    huggingface_hub.PyTorchModelHubMixin,
    library_name="dust3r",
    repo_url="https://github.com/naver/dust3r",
    tags=["image-to-3d"],
):
    """Two views in, two pointmaps out, both expressed in view 1's camera frame.

    Args:
        output_mode: ``'pts3d'``.
        head_type: ``'linear'`` or ``'dpt'``.
        depth_mode: ``(kind, vmin, vmax)`` activation of the point coordinates (see ``reg_dense_depth``).
        conf_mode: ``(kind, vmin, vmax)`` activation of the confidence, or None for no confidence.
        freeze: ``'none'``, ``'mask'`` or ``'encoder'`` (parameters excluded from training).
        landscape_only: heads expect a landscape-layout batch (portrait images stored transposed).
        patch_embed_cls: ``'PatchEmbedDust3R'`` (any orientation) or ``'ManyAR_PatchEmbed'``.
        **croco_kwargs: CroCoNet arguments (img_size, enc_embed_dim, enc_depth, ..., pos_embed).

    Forward: ``model(view1, view2)`` with views holding ``img`` (B, 3, H, W), optional ``true_shape`` (B, 2) and
    ``instance`` (list of B labels; consecutive swapped pairs let the encoder run once per image). Returns
    ``res1 = {'pts3d': (B, H, W, 3), 'conf': (B, H, W)}`` in view 1's frame and
    ``res2 = {'pts3d_in_other_view': (B, H, W, 3), 'conf': (B, H, W)}``, also in view 1's frame.
    """

    def __init__(self, output_mode: str = "pts3d", head_type: str = "linear", depth_mode=("exp", -inf, inf),
                 conf_mode=("exp", 1, inf), freeze: str = "none", landscape_only: bool = True,
                 patch_embed_cls: str = "PatchEmbedDust3R", **croco_kwargs):
        self.patch_embed_cls = patch_embed_cls
        self.croco_args = fill_default_args(croco_kwargs, CroCoNet.__init__)
        super().__init__(**croco_kwargs)
        self.dec_blocks2 = deepcopy(self.dec_blocks)
        self.set_downstream_head(output_mode, head_type, landscape_only, depth_mode, conf_mode, **croco_kwargs)
        self.set_freeze(freeze)

    # ---- loading ----
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, device=None, verbose: bool = False, **kw):
        """Load an official ``.pth``, a ``save_pretrained`` directory or a hub id (e.g.
        ``'naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt'``).

        Keyword args: ``device``; hub options ``cache_dir``, ``revision``, ``token``, ``local_files_only``,
        ``force_download``; any other keyword is a constructor argument that overrides the stored one (e.g.
        ``landscape_only=True``, ``freeze='encoder'``), as the original hub mixin passes them to the model.
        The checkpoint must hold this class or a subclass of it (an error says what it holds otherwise). Models are
        built with ``PatchEmbedDust3R`` and ``landscape_only=False`` unless overridden (as the original
        ``load_model`` does), so landscape and portrait images work whatever the checkpoint's form. The returned
        model is in eval mode.
        """
        hub_kw, model_kw = split_pretrained_kwargs(kw)
        return load_pretrained(pretrained_model_name_or_path, device=device, expected_cls=cls, verbose=verbose,
                               model_kwargs=model_kw, **hub_kw)

    @classmethod
    def describes_config(cls, config: dict) -> bool:
        """Whether a ``config.json`` (which names no class) holds this architecture: pointmaps only."""
        return config.get("output_mode", "pts3d") == "pts3d"

    def load_state_dict(self, ckpt, strict: bool = True, assign: bool = False):
        """As ``nn.Module.load_state_dict``; CroCo-pretraining checkpoints (no ``dec_blocks2``) get the first
        decoder's weights copied into the second."""
        return super().load_state_dict(with_second_decoder(ckpt), strict=strict, assign=assign)

    def _save_pretrained(self, save_directory) -> None:
        """Write ``model.safetensors`` as the original ``save_pretrained`` does: names that share one parameter
        are stored once (under the alphabetically first name) and the others recorded as aliases in the metadata;
        tensors are written contiguous."""
        write_safetensors(self.state_dict(), os.path.join(save_directory, "model.safetensors"))

    # ---- construction ----
    def _set_patch_embed(self, img_size=224, patch_size=16, enc_embed_dim=768):
        self.patch_embed = get_patch_embed(self.patch_embed_cls, img_size, patch_size, enc_embed_dim)

    def _set_prediction_head(self, *args, **kwargs):
        """DUSt3R has no CroCo pretraining head."""

    def set_freeze(self, freeze: str) -> None:
        groups = {"none": [], "mask": [self.mask_token],
                  "encoder": [self.mask_token, self.patch_embed, self.enc_blocks]}
        if freeze not in groups:
            raise ValueError(f"unknown freeze {freeze!r}; expected one of {sorted(groups)}")
        self.freeze = freeze
        freeze_all_params(groups[freeze])

    @staticmethod
    def _check_img_size(img_size, patch_size) -> Tuple[int, int]:
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"img_size={img_size} must be a multiple of patch_size={patch_size}")
        return img_size

    def set_downstream_head(self, output_mode, head_type, landscape_only, depth_mode, conf_mode, patch_size=16,
                            img_size=224, **kw):
        self._check_img_size(img_size, patch_size)
        self.output_mode = output_mode
        self.head_type = head_type
        self.depth_mode = depth_mode
        self.conf_mode = conf_mode
        self.downstream_head1 = head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))
        self.downstream_head2 = head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))
        self._set_head_wrappers(landscape_only)

    def _set_head_wrappers(self, landscape_only: bool) -> None:
        self.landscape_only = landscape_only
        self.head1 = transpose_to_landscape(self.downstream_head1, activate=landscape_only)
        self.head2 = transpose_to_landscape(self.downstream_head2, activate=landscape_only)

    # ---- gradient checkpointing (training) ----
    #: recompute each encoder / decoder block's activations in the backward pass instead of keeping them
    gradient_checkpointing: bool = False

    def set_gradient_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in training: with autograd on, each encoder block and each pair of decoder
        blocks keeps only its input and recomputes its activations during ``backward`` (about one extra forward of
        the transformer per step). No effect on outputs, on inference or under ``torch.no_grad``."""
        self.gradient_checkpointing = bool(enable)

    def _run_block(self, fn, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # ---- forward pieces ----
    def _encode_image(self, image: torch.Tensor, true_shape: torch.Tensor):
        """image (B, 3, H, W), true_shape (B, 2) -> tokens (B, N, enc_dim), positions (B, N, 2), None."""
        x, pos = self.patch_embed(image, true_shape=true_shape)
        for blk in self.enc_blocks:
            x = self._run_block(blk, x, pos)
        return self.enc_norm(x), pos, None

    def _encode_image_pairs(self, img1, img2, true_shape1, true_shape2):
        """Encode both views; one batched pass when they share a shape."""
        if img1.shape[-2:] == img2.shape[-2:]:
            out, pos, _ = self._encode_image(torch.cat((img1, img2), dim=0),
                                             torch.cat((true_shape1, true_shape2), dim=0))
            out, out2 = out.chunk(2, dim=0)
            pos, pos2 = pos.chunk(2, dim=0)
        else:
            out, pos, _ = self._encode_image(img1, true_shape1)
            out2, pos2, _ = self._encode_image(img2, true_shape2)
        return out, out2, pos, pos2

    _true_shape = staticmethod(true_shape_of)

    def _encode_symmetrized(self, view1: dict, view2: dict):
        """Encode a batch of pairs; for a symmetrized batch ((a, b), (b, a), ...) each image is encoded once."""
        img1, img2 = view1["img"], view2["img"]
        shape1, shape2 = self._true_shape(view1), self._true_shape(view2)
        if "instance" in view1 and "instance" in view2 and is_symmetrized(view1, view2):
            feat1, feat2, pos1, pos2 = self._encode_image_pairs(img1[::2], img2[::2], shape1[::2], shape2[::2])
            feat1, feat2 = interleave(feat1, feat2)
            pos1, pos2 = interleave(pos1, pos2)
        else:
            feat1, feat2, pos1, pos2 = self._encode_image_pairs(img1, img2, shape1, shape2)
        return (shape1, shape2), (feat1, feat2), (pos1, pos2)

    def _decoder(self, f1, pos1, f2, pos2):
        """Run both decoders side by side, each cross-attending to the other's previous output.

        Returns two lists of dec_depth + 1 tensors: the encoder tokens, then each block's output, the last
        one normalised by ``dec_norm``.
        """
        outs1: List[torch.Tensor] = [f1]
        outs2: List[torch.Tensor] = [f2]
        f1, f2 = self.decoder_embed(f1), self.decoder_embed(f2)
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2):
            f1, f2 = self._run_block(_cross_pair, blk1, blk2, f1, f2, pos1, pos2)
            outs1.append(f1)
            outs2.append(f2)
        outs1[-1] = self.dec_norm(outs1[-1])
        outs2[-1] = self.dec_norm(outs2[-1])
        return outs1, outs2

    # without autograd, heads run on this many images at a time: the DPT's full-resolution activations
    # dominate peak memory and convolutions are as fast image by image, so chunking only lowers the peak
    head_chunk_size: int = 1

    def _downstream_head(self, head_num: int, decout: List[torch.Tensor], img_shape: torch.Tensor) -> Dict:
        head = self.head1 if head_num == 1 else self.head2
        B, step = decout[0].shape[0], max(1, int(self.head_chunk_size))
        if torch.is_grad_enabled() or B <= step:
            return head(decout, img_shape)
        parts = [head([d[s:s + step] for d in decout], img_shape[s:s + step]) for s in range(0, B, step)]
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    def forward(self, view1: dict, view2: dict):
        (shape1, shape2), (feat1, feat2), (pos1, pos2) = self._encode_symmetrized(view1, view2)
        dec1, dec2 = self._decoder(feat1, pos1, feat2, pos2)
        with torch.autocast(device_type=feat1.device.type, enabled=False):
            res1 = self._downstream_head(1, [upcast(tok) for tok in dec1], shape1)
            res2 = self._downstream_head(2, [upcast(tok) for tok in dec2], shape2)
        res2["pts3d_in_other_view"] = res2.pop("pts3d")
        return res1, res2
