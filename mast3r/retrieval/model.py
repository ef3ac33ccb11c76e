"""The retrieval head on MASt3R's encoder (MASt3R-SfM), with the original's names and state-dict keys.

Data flow of :class:`RetrievalModel`, per image (B = batch, N = encoder tokens, C = encoder width, D = output width)::

    view {'img' (B, 3, H, W), 'true_shape' (B, 2)}
      -> backbone._encode_image          tokens (B, N, C)           (frozen MASt3R encoder)
      -> prewhiten  (Whitener, float64)  (x - m) @ p                (B, N, C)
      -> projector  (Linear [LayerNorm GELU Linear]*)               (B, N, D)  (+ prewhitened tokens if residual)
      -> attention = L2 norm of the projected token                 (B, N)
      -> postwhiten (Whitener, float64)                             (B, N, D)
      -> forward_local:  the nfeat most attended tokens (feat (B, K, D), attn (B, K), token_idx (B, K))
         forward_global: attention-weighted, L2-normalised sum (B, D)

The state-dict keys are frozen: ``prewhiten.m`` (1, C), ``prewhiten.p`` (C, C), ``projector.<i>.weight|bias``,
``postwhiten.m`` (1, D), ``postwhiten.p`` (D, D) (whiteners in float64), and ``backbone.*`` unless the backbone is
frozen (checkpoints of a frozen backbone store the head only).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from dust3r.utils.checkpoint import CheckpointError, load_checkpoint_file
from dust3r.utils.image import load_images

logger = logging.getLogger(__name__)

__all__ = ["pcawhitenlearn_shrinkage", "Dust3rInputFromImageList", "Whitener", "weighted_spoc", "how_select_local",
           "RetrievalModel", "identity", "extract_local_features", "default_device", "load_retrieval_checkpoint"]

#: the ``args`` a retrieval checkpoint must hold (``pretrained`` and ``residual`` are optional)
_ARG_KEYS = ("freeze_backbone", "prewhiten", "hdims", "postwhiten", "featweights", "nfeat", "imsize", "nclusters")


def default_device() -> torch.device:
    """``cuda`` when a CUDA device is visible, else ``cpu`` (asked when needed, not at import)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pcawhitenlearn_shrinkage(X: np.ndarray, s: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Learn PCA whitening with shrinkage ``s`` from descriptors X (M, C).

    Returns:
        ``(m (1, C), P (C, C))`` such that ``(x - m) @ P`` is whitened (eigenvalues raised to ``-s / 2``,
        components by decreasing variance).
    """
    X = np.asarray(X, dtype=np.float64)
    m = X.mean(axis=0, keepdims=True)
    centred = X - m
    cov = centred.T @ centred
    cov = (cov + cov.T) / (2 * X.shape[0])
    eigval, eigvec = np.linalg.eigh(cov)
    order = eigval.argsort()[::-1]
    eigval = np.clip(eigval[order], 1e-14, None)
    P = eigvec[:, order] * np.power(eigval, -0.5 * s)[None, :]
    return m, P


def load_retrieval_checkpoint(path: str) -> Dict[str, Any]:
    """A retrieval checkpoint read with ``weights_only=True``: ``{'state_dict', 'args' (dict)}``.

    Raises:
        CheckpointNotFoundError, UnsafeCheckpointError (code in the file; nothing executed), CheckpointError
        (not a retrieval checkpoint).
    """
    ckpt = load_checkpoint_file(path)
    args = ckpt["args"]
    missing = [k for k in _ARG_KEYS if args is None or k not in args]
    if missing:
        raise CheckpointError(f"'{path}' is not a retrieval checkpoint: its 'args' lack {', '.join(missing)}")
    return {"state_dict": ckpt["state_dict"], "args": args}


class Dust3rInputFromImageList(torch.utils.data.Dataset):
    """Image files -> one ``load_images`` view each (long side ``imsize``, the retrieval models use 512)."""

    def __init__(self, image_list: Sequence[str], imsize: int = 512):
        super().__init__()
        if int(imsize) != 512:
            raise ValueError(f"the retrieval models work at image size 512, got {imsize}")
        self.image_list = list(image_list)
        self.imsize = int(imsize)

    def __len__(self) -> int:
        return len(self.image_list)

    def __getitem__(self, index: int) -> dict:
        return load_images([self.image_list[index]], size=self.imsize, verbose=False)[0]


class Whitener(nn.Module):
    """``(x - m) @ p`` in float64 with autocast off; the output has the input's dtype and shape (..., dim).

    Args:
        dim: feature width.
        l2norm: if not None, L2-normalise the output along this dimension.
    """

    def __init__(self, dim: int, l2norm: Optional[int] = None):
        super().__init__()
        self.m = nn.Parameter(torch.zeros((1, dim), dtype=torch.float64))
        self.p = nn.Parameter(torch.eye(dim, dim, dtype=torch.float64))
        self.l2norm = l2norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.m.device.type, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(self.m.dtype)
            out = ((flat - self.m) @ self.p).reshape(x.shape)
            if self.l2norm is not None:
                out = nn.functional.normalize(out, dim=self.l2norm)
            return out.to(x.dtype)


def weighted_spoc(feat: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Global descriptor: L2-normalised attention-weighted sum. feat (B, N, C), attn (B, N) -> (B, C)."""
    return nn.functional.normalize((feat * attn[:, :, None]).sum(dim=1), dim=1)


def how_select_local(feat: torch.Tensor, attn: torch.Tensor, nfeat: Union[int, float]
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the ``nfeat`` most attended tokens (HOW-style local feature selection).

    Args:
        feat: (B, N, C) token features.
        attn: (B, N) attention (token weight).
        nfeat: number of tokens to keep (capped at N); a negative value in [-1, 0) keeps that fraction of N.

    Returns:
        ``(feat (B, K, C), attn (B, K), token_idx (B, K) int64)``, by decreasing attention.
    """
    if nfeat < 0:
        if nfeat < -1.0:
            raise ValueError(f"a negative nfeat is a fraction of the tokens in [-1, 0), got {nfeat}")
        nfeat = int(-nfeat * feat.size(1))
    else:
        nfeat = int(nfeat)
    top_attn, top_idx = torch.topk(attn, min(nfeat, attn.size(1)), dim=1)
    top_feat = torch.gather(feat, 1, top_idx.unsqueeze(-1).expand(-1, -1, feat.size(2)))
    return top_feat, top_attn, top_idx


class RetrievalModel(nn.Module):
    """Retrieval head on a MASt3R backbone (see the module docstring for the data flow).

    Args:
        backbone: an ``AsymmetricMASt3R`` (anything with ``_encode_image`` and ``enc_embed_dim``).
        freeze_backbone: keep the backbone's weights fixed and out of :meth:`state_dict`.
        prewhiten: None (no pre-whitening) or the re-learning period in epochs (0: once, -1: trainable).
        hdims: projector widths, e.g. ``[96, 80]`` (Linear, LayerNorm, GELU between layers); empty: no projector.
        residual: add the pre-whitened tokens to the projection (``hdims[-1]`` must equal the backbone width).
        postwhiten: as ``prewhiten``, after the projector.
        featweights: token weighting, ``'l2norm'`` (norm of the projected token).
        nfeat: local features kept per image by :meth:`forward_local` (negative: fraction of the tokens).
        pretrained_retrieval: a retrieval checkpoint whose head weights are loaded (``weights_only=True``).
    """

    def __init__(self, backbone: nn.Module, freeze_backbone: int = 1, prewhiten: Optional[int] = None,
                 hdims: Sequence[int] = (1024,), residual: bool = False, postwhiten: Optional[int] = None,
                 featweights: str = "l2norm", nfeat: Union[int, float] = 300,
                 pretrained_retrieval: Optional[str] = None):
        super().__init__()
        if featweights != "l2norm":
            raise ValueError(f"unknown featweights {featweights!r}; the retrieval models use 'l2norm'")
        hdims = [int(h) for h in (hdims or [])]
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.backbone_dim = int(backbone.enc_embed_dim)
        self.residual = bool(residual)
        if self.residual and hdims and hdims[-1] != self.backbone_dim:
            raise ValueError(f"a residual projector must end at the backbone width {self.backbone_dim}, "
                             f"got hdims {hdims}")
        self.prewhiten_freq = prewhiten
        self.prewhiten = nn.Identity() if prewhiten is None else Whitener(self.backbone_dim)
        if prewhiten is not None and prewhiten != -1:
            self.prewhiten.requires_grad_(False)
        self.projector = self.build_projector(hdims, self.residual)
        self.dim = hdims[-1] if hdims else self.backbone_dim
        self.postwhiten_freq = postwhiten
        self.postwhiten = nn.Identity() if postwhiten is None else Whitener(self.dim)
        if postwhiten is not None and postwhiten != -1:
            if not hdims:
                raise ValueError("post-whitening needs a projector (non-empty hdims)")
            self.postwhiten.requires_grad_(False)
        self.featweights = featweights
        self.nfeat = nfeat
        self.pretrained_retrieval = pretrained_retrieval
        if pretrained_retrieval is not None:
            state = load_retrieval_checkpoint(pretrained_retrieval)["state_dict"]
            result = self.load_state_dict(state, strict=False)
            bad_missing = [k for k in result.missing_keys if not k.startswith(("backbone", "postwhiten"))]
            if result.unexpected_keys or bad_missing:
                raise ValueError(f"retrieval checkpoint '{pretrained_retrieval}' does not fit the model: unexpected "
                                 f"{result.unexpected_keys[:5]}, missing {bad_missing[:5]}")

    def build_projector(self, hdims: Sequence[int], residual: bool) -> nn.Module:
        """Linear layers of widths ``hdims`` with LayerNorm + GELU between them (Identity when empty)."""
        if not hdims:
            return nn.Identity()
        layers: List[nn.Module] = []
        width = self.backbone_dim
        for hidden in hdims[:-1]:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, hdims[-1]))
        return nn.Sequential(*layers)

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """Token weights: the L2 norm of the projected features, (..., D) -> (...)."""
        return feat.norm(dim=-1)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self.freeze_backbone:
            state = type(state)((k, v) for k, v in state.items() if not k.startswith(prefix + "backbone"))
        return state

    def _encode(self, img: torch.Tensor, true_shape: Any) -> torch.Tensor:
        true_shape = torch.as_tensor(np.asarray(true_shape), device=img.device).reshape(-1, 2)
        return self.backbone._encode_image(img, true_shape=true_shape)[0]

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        prewhitened = self.prewhiten(tokens)
        projected = self.projector(prewhitened)
        return projected + prewhitened if self.residual else projected

    def extract_features_and_attention(self, x: dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """view -> (post-whitened features (B, N, D), attention (B, N))."""
        projected = self._project(self._encode(x["img"], x["true_shape"]))
        return self.postwhiten(projected), self.attention(projected)

    def forward_local(self, x: dict) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """view -> the ``nfeat`` most attended tokens: ``(feat (B, K, D), attn (B, K), token_idx (B, K))``."""
        feat, attn = self.extract_features_and_attention(x)
        return how_select_local(feat, attn, self.nfeat)

    def forward_global(self, x: dict) -> torch.Tensor:
        """view -> global descriptor (B, D)."""
        feat, attn = self.extract_features_and_attention(x)
        return weighted_spoc(feat, attn)

    def forward(self, x: dict) -> torch.Tensor:
        return self.forward_global(x)

    @torch.no_grad()
    def _whitening_features(self, loader, project: bool, max_nfeat_per_image: Optional[int],
                            device) -> np.ndarray:
        features = []
        for view in tqdm(loader, desc="whitening features", disable=not logger.isEnabledFor(logging.INFO)):
            tokens = self._encode(view["img"][0].to(device), view["true_shape"][0])
            feat = (self._project(tokens) if project else tokens).flatten(0, 1)
            if max_nfeat_per_image is not None and max_nfeat_per_image < feat.size(0):
                feat = feat[torch.argsort(-torch.linalg.vector_norm(feat, dim=1))[:max_nfeat_per_image]]
            features.append(feat.cpu())
        return torch.cat(features).double().numpy()

    def reinitialize_whitening(self, epoch: int, train_dataset, nimgs: int = 5000, log_writer=None,
                               max_nfeat_per_image: Optional[int] = None, seed: int = 0, device=None,
                               num_workers: int = 0) -> None:
        """Re-learn the pre-/post-whitening by PCA on ``nimgs`` images of ``train_dataset`` when due at ``epoch``.

        ``train_dataset.imlist_dataset_n_images(nimgs, seed)`` gives the images (views batched by 1).
        """
        device = device or default_device()
        do_pre = (self.prewhiten_freq is not None and self.pretrained_retrieval is None
                  and (epoch == 0 or (self.prewhiten_freq > 0 and epoch % self.prewhiten_freq == 0)))
        do_post = self.postwhiten_freq is not None and (
            (epoch == 0 and self.postwhiten_freq in (0, -1))
            or (self.postwhiten_freq > 0 and epoch % self.postwhiten_freq == 0 and epoch > 0))
        if not (do_pre or do_post):
            return
        self.eval()
        images = train_dataset.imlist_dataset_n_images(nimgs, seed)
        loader = torch.utils.data.DataLoader(images, batch_size=1, shuffle=False, num_workers=num_workers)
        for name, due, project in (("prewhiten", do_pre, False), ("postwhiten", do_post, True)):
            if not due:
                continue
            start = time.time()
            m, P = pcawhitenlearn_shrinkage(self._whitening_features(loader, project, max_nfeat_per_image, device))
            getattr(self, name).load_state_dict({"m": torch.from_numpy(m), "p": torch.from_numpy(P)})
            elapsed = time.time() - start
            logger.info("re-initialised %s in %.1f s", name, elapsed)
            if log_writer is not None:
                log_writer.add_scalar(f"time/{name}", elapsed, epoch)


def identity(x):
    """Collate function returning the batch list as is (picklable, for DataLoader workers)."""
    return x


@torch.no_grad()
def extract_local_features(model: RetrievalModel, images, imsize: int, seed: int = 0, tocpu: bool = False,
                           max_nfeat_per_image: Optional[int] = None, max_nfeat_per_image2: Optional[int] = None,
                           device=None, num_workers: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Local features of every image, stacked.

    Args:
        model: the retrieval model.
        images: list of image paths, or a dataset of views.
        imsize: long side of the network input (512).
        seed: seed of the random subsampling by ``max_nfeat_per_image``.
        tocpu: move each image's features to the CPU as they come.
        max_nfeat_per_image: keep at most this many features per image, drawn at random.
        max_nfeat_per_image2: then keep the first (most attended) ones only.
        device: where the model runs (default: cuda if available).
        num_workers: image-loading worker processes.

    Returns:
        ``(features (M, D), image ids (M,) int64)``.
    """
    device = device or default_device()
    model.eval()
    dataset = Dust3rInputFromImageList(images, imsize=imsize) if isinstance(images, (list, tuple)) else images
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers,
                                         collate_fn=identity)
    generator = torch.Generator().manual_seed(seed)
    features, imids = [], []
    for i, batch in enumerate(tqdm(loader, desc="retrieval features", disable=not logger.isEnabledFor(logging.INFO))):
        view = dict(batch[0])
        view["img"] = view["img"].to(device, non_blocking=True)
        feat = model.forward_local(view)[0].flatten(0, 1)
        if max_nfeat_per_image is not None and feat.size(0) > max_nfeat_per_image:
            feat = feat[torch.randperm(feat.size(0), generator=generator)[:max_nfeat_per_image].to(feat.device)]
        if max_nfeat_per_image2 is not None:
            feat = feat[:max_nfeat_per_image2]
        if tocpu:
            feat = feat.cpu()
        features.append(feat)
        imids.append(torch.full((feat.size(0),), i, dtype=torch.int64, device=feat.device))
    return torch.cat(features), torch.cat(imids)
