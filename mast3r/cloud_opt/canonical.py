"""Canonical pointmap of each image, fused over all the pairs the image is the first view of.

Each image i is seen by several pairs (i, j) whose ``X11`` pointmaps (camera-i frame) differ slightly. They are
fused into a *canonical* view, accumulated pair by pair (streaming: O(H W) memory per image, whatever the number
of pairs), with weights ``c = C11 - 0.999``:

* ``canon``  (H, W, 3): confidence-weighted mean pointmap;
* ``canon2`` (H, W): relative depth of each pixel w.r.t. its *anchor*, the centre pixel of its
  ``subsample x subsample`` block (``1`` at the anchors). Mode ``'avg-angle'`` averages, per pair, the angle
  ``atan((z - z_anchor) / r)`` (``r``: distance to the anchor in the xy-plane) and converts back with the mean
  ``r``; mode ``'avg-reldepth'`` averages ``z / z_anchor`` directly;
* ``conf``   (H, W): ``sum c^2 / sum c``;
* ``focal``: focal length fitted to ``canon`` (Weiszfeld), principal point at the image centre.

The image centre is ``((W - 1) / 2, (H - 1) / 2)``: integer pixel coordinates are pixel centres (house
convention). The original uses ``(W / 2, H / 2)``, half a pixel off in that convention; on 512-pixel images this
is negligible, on the tiny test images (64 px) it tilts every camera by ~0.5 degree.

The sparse optimisation then has one free depth per anchor (``core_depth``); every other pixel's depth is its
anchor's depth times the fixed offset ``canon2[pixel] / canon2[anchor]`` (see :func:`anchor_depth_offsets`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from dust3r.post_process import estimate_focal_knowing_depth

logger = logging.getLogger(__name__)

__all__ = ["CanonicalAccumulator", "CanonicalView", "anchor_grid", "anchor_depth_offsets", "image_centre"]

_MODES = ("avg-angle", "avg-reldepth")


def anchor_grid(H: int, W: int, subsample: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Anchor pixels: ``(ys, xs)`` 1-D int64 tensors of the block centres ``S//2, S//2 + S, ...``."""
    return torch.arange(subsample // 2, H, subsample), torch.arange(subsample // 2, W, subsample)


def image_centre(H: int, W: int) -> torch.Tensor:
    """(2,) float32 ``(x, y)`` centre of an H x W image, integer coordinates at pixel centres."""
    return torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float32)


def _block_expand(grid: torch.Tensor, subsample: int, H: int, W: int) -> torch.Tensor:
    """(H2, W2, ...) per-block values -> (H, W, ...) full-resolution map (each block filled with its value)."""
    return grid.repeat_interleave(subsample, 0)[:H].repeat_interleave(subsample, 1)[:, :W]


class CanonicalAccumulator:
    """Running sums for one image's canonical view (see the module docstring)."""

    def __init__(self, H: int, W: int, subsample: int, mode: str = "avg-angle") -> None:
        if mode not in _MODES:
            raise ValueError(f"bad canonical mode {mode!r}; expected one of {_MODES}")
        self.H, self.W, self.S, self.mode = H, W, subsample, mode
        self.sum_cX = torch.zeros(H, W, 3, dtype=torch.float64)
        self.sum_c = torch.zeros(H, W, dtype=torch.float64)
        self.sum_c2 = torch.zeros(H, W, dtype=torch.float64)
        self.sum_c_rel = torch.zeros(H, W, dtype=torch.float64)   # angle or relative depth
        self.sum_radius = torch.zeros(H, W, dtype=torch.float64)
        self.n = 0

    def add(self, X: torch.Tensor, C: torch.Tensor) -> None:
        """Add one pair's pointmap ``X`` (H, W, 3) (camera frame) with confidence ``C`` (H, W)."""
        X, C = X.detach().cpu().double(), C.detach().cpu().double()
        if X.shape != (self.H, self.W, 3) or C.shape != (self.H, self.W):
            raise ValueError(f"pointmap {tuple(X.shape)} / conf {tuple(C.shape)} do not match the image size "
                             f"{self.H}x{self.W}")
        S = self.S
        c = (C - 0.999).clip(min=1e-6)
        self.sum_cX += c[..., None] * X
        self.sum_c += c
        self.sum_c2 += c * c
        z = X[..., 2]
        z_anchor = z[S // 2::S, S // 2::S].clip(min=torch.finfo(torch.float32).eps)
        z_anchor_full = _block_expand(z_anchor, S, self.H, self.W)
        if self.mode == "avg-reldepth":
            self.sum_c_rel += c * (z / z_anchor_full)
        else:
            xy_anchor_full = _block_expand(X[S // 2::S, S // 2::S, :2], S, self.H, self.W)
            radius = (X[..., :2] - xy_anchor_full).norm(dim=-1).clip(min=1e-8)
            self.sum_c_rel += c * torch.atan((z - z_anchor_full) / radius)
            self.sum_radius += radius
        self.n += 1

    def finalize(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> ``(canon (H, W, 3), canon2 (H, W), conf (H, W))`` float32."""
        if self.n == 0:
            raise ValueError("no pointmap was accumulated for this image")
        S = self.S
        canon = self.sum_cX / self.sum_c[..., None]
        avg = self.sum_c_rel / self.sum_c
        if self.mode == "avg-reldepth":
            canon2 = avg
        else:
            rel_depth = (self.sum_radius / self.n) * torch.tan(avg)
            z_anchor = _block_expand(canon[S // 2::S, S // 2::S, 2], S, self.H, self.W)
            canon2 = 1 + rel_depth / z_anchor
        conf = self.sum_c2 / self.sum_c
        return canon.float(), canon2.float(), conf.float()


@dataclass
class CanonicalView:
    """Fused view of one image (see module docstring); tensors on CPU."""
    canon: torch.Tensor     # (H, W, 3) camera frame
    canon2: torch.Tensor    # (H, W) relative depth w.r.t. the block anchor
    conf: torch.Tensor      # (H, W)
    focal: float            # pixels
    subsample: int

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.conf.shape[0]), int(self.conf.shape[1])

    @property
    def pp(self) -> torch.Tensor:
        """(2,) default principal point: the image centre (see the module docstring)."""
        H, W = self.shape
        return image_centre(H, W)

    def core_depth(self, name: str = "image") -> torch.Tensor:
        """(H2 * W2,) depth of the anchors, non-positive / non-finite values replaced by the median of the valid
        ones (a warning is logged); raises ValueError when no anchor has a positive depth."""
        S = self.subsample
        z = self.canon[S // 2::S, S // 2::S, 2].reshape(-1).clone()
        good = torch.isfinite(z) & (z > 0)
        if not good.any():
            raise ValueError(f"degenerate depth for {name}: no pixel of its predicted pointmap lies in front of "
                             "the camera (all depths <= 0 or non-finite)")
        if not good.all():
            logger.warning("%s: %d/%d anchor depths are <= 0 or non-finite; replaced by the median depth",
                           name, int((~good).sum()), z.numel())
            z[~good] = z[good].median()
        return z

    def to_state(self) -> dict:
        return dict(canon=self.canon, canon2=self.canon2, conf=self.conf,
                    focal=torch.tensor(float(self.focal)), subsample=torch.tensor(self.subsample))

    @classmethod
    def from_state(cls, state: dict) -> "CanonicalView":
        return cls(state["canon"].float(), state["canon2"].float(), state["conf"].float(), float(state["focal"]),
                   int(state["subsample"]))


def build_canonical_view(acc: CanonicalAccumulator, focal_override: Optional[float] = None) -> CanonicalView:
    """Finalize an accumulator and fit the focal length (Weiszfeld, principal point at (W/2, H/2))."""
    canon, canon2, conf = acc.finalize()
    if focal_override is not None:
        focal = float(focal_override)
    else:
        pts = torch.nan_to_num(canon, nan=0.0, posinf=0.0, neginf=0.0)
        pp = image_centre(acc.H, acc.W)
        focal = float(estimate_focal_knowing_depth(pts[None], pp, focal_mode="weiszfeld",
                                                   min_focal=0.5, max_focal=3.5)[0])
        if not focal == focal:  # NaN: fall back to a 60 degree field of view
            focal = max(acc.H, acc.W) / 1.1547005383792515
    return CanonicalView(canon, canon2, conf, focal, acc.S)


def anchor_depth_offsets(canon2: torch.Tensor, xy: torch.Tensor, subsample: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Anchor of each pixel (block quantisation) and its relative depth offset.

    Args:
        canon2: (H, W) relative depth map of the image (``CanonicalView.canon2``).
        xy: (P, 2) integer pixels (x, y).
        subsample: block size S.
    Returns:
        ``(core_idx (P,) int64 into the (H2 * W2) anchors, offset (P,) float = canon2[pixel] / canon2[anchor])``;
        non-finite or non-positive offsets are replaced by 1.
    """
    H, W = canon2.shape
    ys, xs = anchor_grid(H, W, subsample)
    H2, W2 = len(ys), len(xs)
    px, py = xy[:, 0].long().clamp(0, W - 1), xy[:, 1].long().clamp(0, H - 1)
    by, bx = (py // subsample).clamp(max=H2 - 1), (px // subsample).clamp(max=W2 - 1)
    core_idx = by * W2 + bx
    offset = canon2[py, px] / canon2[ys[by], xs[bx]]
    offset = torch.where(torch.isfinite(offset) & (offset > 0), offset, torch.ones_like(offset))
    return core_idx, offset
