"""TSDF post-processing of the dense depth maps of a sparse alignment (``TSDFPostProcess``).

Every view votes a truncated signed distance for any 3D point: the difference between its own depth at the
point's projection and the point's depth in that camera, truncated below at ``-thresh`` (points far behind a
surface are "unseen" and do not vote), weighted by ``exp(conf)``. Each pixel's depth is then moved to the sample
along its ray whose fused TSDF is closest to zero (samples ``depth + (n - 1) * thresh`` with ``n ~ N(0, 1)``, as the
original).

Usually reached through the scene: ``SparseGA.get_dense_pts3d(tsdf_thresh=...)`` (and so
``dust3r.export.SceneData.from_scene(scene, tsdf_thresh=...)``, which only calls the scene's own interface).
"""
from __future__ import annotations

import logging
from typing import List

import torch

from .geometry import clean_pointcloud

logger = logging.getLogger(__name__)

__all__ = ["TSDFPostProcess"]


class TSDFPostProcess:
    """Wraps a scene with ``get_dense_pts3d``, ``get_im_poses``, ``get_focals``, ``get_principal_points``, ``imgs``.

    Args:
        optimizer: the scene (e.g. a SparseGA).
        subsample: forwarded to ``get_dense_pts3d``.
        TSDF_thresh: truncation distance (world units); 0 disables the refinement.
        TSDF_batchsize: 3D points evaluated at once (bounds memory).
        nsamples: depth hypotheses per pixel; seed: of the random hypotheses (reproducible).
    """

    def __init__(self, optimizer, subsample: int = 8, TSDF_thresh: float = 0.0, TSDF_batchsize: int = int(1e7),
                 nsamples: int = 1000, seed: int = 0) -> None:
        if TSDF_thresh is None or TSDF_thresh < 0:
            raise ValueError(f"TSDF_thresh must be >= 0, got {TSDF_thresh!r}")
        self.optimizer, self.TSDF_thresh, self.TSDF_batchsize = optimizer, float(TSDF_thresh), int(TSDF_batchsize)
        self.nsamples, self.seed = int(nsamples), seed
        pts3d, depthmaps, confs = optimizer.get_dense_pts3d(clean_depth=False, subsample=subsample)
        self.imshapes = [im.shape[:2] for im in optimizer.imgs]
        self.im_depthmaps = [d.reshape(s) for d, s in zip(depthmaps, self.imshapes)]
        self.im_conf = [c.reshape(s) for c, s in zip(confs, self.imshapes)]
        self.confs = confs
        if self.TSDF_thresh > 0:
            depths = self._refine_depths(self.TSDF_thresh)
            pts3d = [self._backproject(i, d).reshape(-1, 3) for i, d in enumerate(depths)]
            depthmaps = [d.reshape(-1) for d in depths]
        self.pts3d, self.depthmaps = pts3d, depthmaps

    # ------------------------------------------------------------------ geometry
    def _K(self) -> torch.Tensor:
        f, pp = self.optimizer.get_focals(), self.optimizer.get_principal_points()
        K = torch.zeros(len(f), 3, 3, dtype=f.dtype, device=f.device)
        K[:, 0, 0] = K[:, 1, 1] = f.reshape(-1)
        K[:, :2, 2] = pp
        K[:, 2, 2] = 1
        return K

    def _backproject(self, i: int, depth: torch.Tensor) -> torch.Tensor:
        """(H, W, ...) depths of view i -> (H, W, ..., 3) world points."""
        K, c2w = self._K()[i], self.optimizer.get_im_poses()[i]
        H, W = depth.shape[:2]
        ys, xs = torch.meshgrid(torch.arange(H, dtype=depth.dtype), torch.arange(W, dtype=depth.dtype), indexing="ij")
        extra = depth.ndim - 2
        xs, ys = xs.reshape(H, W, *[1] * extra), ys.reshape(H, W, *[1] * extra)
        pts = torch.stack(((xs - K[0, 2]) / K[0, 0] * depth, (ys - K[1, 2]) / K[1, 1] * depth, depth), dim=-1)
        return pts @ c2w[:3, :3].T.to(pts) + c2w[:3, 3].to(pts)

    def _rays_points(self, i: int, xs: torch.Tensor, ys: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixels (P,) of view i with (P, S) depth hypotheses -> (P, S, 3) world points."""
        K, c2w = self._K()[i].to(depth), self.optimizer.get_im_poses()[i].to(depth)
        ray = torch.stack(((xs.to(depth) - K[0, 2]) / K[0, 0], (ys.to(depth) - K[1, 2]) / K[1, 1],
                           torch.ones(len(xs), dtype=depth.dtype)), dim=-1)
        pts = depth[..., None] * ray[:, None, :]
        return pts @ c2w[:3, :3].T + c2w[:3, 3]

    @torch.no_grad()
    def _tsdf_query(self, pts: torch.Tensor, thresh: float):
        """(P, 3) world points -> (fused TSDF (P,), valid (P,))."""
        K, w2c = self._K(), torch.linalg.inv(self.optimizer.get_im_poses())
        wsum = torch.zeros(len(pts), dtype=pts.dtype)
        vsum = torch.zeros(len(pts), dtype=pts.dtype)
        for i, (depth, conf) in enumerate(zip(self.im_depthmaps, self.im_conf)):
            H, W = depth.shape
            cam = pts @ w2c[i, :3, :3].T.to(pts) + w2c[i, :3, 3].to(pts)
            z = cam[:, 2]
            u = (cam[:, 0] / z * K[i, 0, 0] + K[i, 0, 2]).round()
            v = (cam[:, 1] / z * K[i, 1, 1] + K[i, 1, 2]).round()
            inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & torch.isfinite(u) & torch.isfinite(v)
            ui, vi = u.where(inside, torch.zeros_like(u)).long(), v.where(inside, torch.zeros_like(v)).long()
            sdf = depth[vi, ui].to(pts) - z
            seen = inside & (sdf >= -thresh)
            weight = seen.to(pts) * conf[vi, ui].to(pts).clamp(max=80).exp()
            wsum += weight * sdf.clamp(min=-thresh)
            vsum += weight
        valid = vsum != 0
        return torch.where(valid, wsum / vsum.where(valid, torch.ones_like(vsum)), wsum), valid

    @torch.no_grad()
    def _refine_depths(self, thresh: float) -> List[torch.Tensor]:
        logger.info("post-processing depths with TSDF fusion (thresh=%g)", thresh)
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        for i, dm in enumerate(self.im_depthmaps):
            dm = dm.clone()
            H, W = dm.shape
            flat = dm.reshape(-1)
            rows = max(1, self.TSDF_batchsize // max(self.nsamples, 1))
            for start in range(0, H * W, rows):
                d0 = flat[start:start + rows]
                cand = d0[:, None] + (torch.randn(len(d0), self.nsamples, generator=gen).to(d0) - 1.0) * thresh
                pix = torch.arange(start, start + len(d0))
                pts = self._rays_points(i, pix % W, pix // W, cand).reshape(-1, 3)
                tsdf, valid = self._tsdf_query(pts, thresh)
                tsdf = tsdf.reshape(len(d0), -1).abs().where(valid.reshape(len(d0), -1), torch.full_like(
                    tsdf.reshape(len(d0), -1), float("inf")))
                best = tsdf.argmin(dim=1)
                all_flat = (tsdf == thresh).all(dim=1) | ~torch.isfinite(tsdf.min(dim=1).values)
                new = cand.gather(1, best[:, None])[:, 0]
                flat[start:start + rows] = torch.where(all_flat, d0, new)
            out.append(dm)
        return out

    def get_dense_pts3d(self, clean_depth: bool = True):
        """``(pts3d, depthmaps, confs)`` like the scene's, with TSDF-refined depths."""
        confs = self.confs
        if clean_depth:
            confs = clean_pointcloud(self.confs, self._K(), torch.linalg.inv(self.optimizer.get_im_poses()),
                                     self.depthmaps, self.pts3d)
        return self.pts3d, self.depthmaps, confs
