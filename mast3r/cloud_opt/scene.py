"""The scene object returned by the sparse global alignment (:class:`SparseGA`)."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from dust3r.utils.views import GEOMETRY_KEYS, VIEW_META_KEYS

from .canonical import CanonicalView, anchor_depth_offsets
from .geometry import backproject, clean_pointcloud
from .tsdf_optimizer import TSDFPostProcess

logger = logging.getLogger(__name__)

__all__ = ["SparseGA"]


def view_to_rgb(view: Dict[str, Any]) -> np.ndarray:
    """(1, 3, H, W) image in [-1, 1] -> (H, W, 3) float32 in [0, 1]."""
    img = view["img"]
    img = img.detach().cpu().float() if isinstance(img, torch.Tensor) else torch.as_tensor(img).float()
    return (img[0].permute(1, 2, 0).numpy() * 0.5 + 0.5).clip(0.0, 1.0).astype(np.float32)


def view_meta(view: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The load_images resize metadata of a view (every key of ``VIEW_META_KEYS``, None where absent), or None
    when the view has no resize record (``GEOMETRY_KEYS``)."""
    if not all(k in view for k in GEOMETRY_KEYS):
        return None
    return {k: view.get(k) for k in VIEW_META_KEYS}


class SparseGA:
    """Result of :func:`mast3r.cloud_opt.sparse_ga.sparse_global_alignment` (N images, network resolution).

    Attributes:
        imgs: N float32 (H, W, 3) images in [0, 1].
        names: N image names (``img_paths`` is an alias, as the original's).
        intrinsics: (N, 3, 3) network pixels; cam2w: (N, 4, 4) cam2world (OpenCV axes).
        depthmaps: N (H2 * W2,) z-depths of the anchors (one per ``subsample`` block).
        pts3d: N (P_i, 3) world points of the correspondences of each image; pts3d_colors: N (P_i, 3).
        views_meta: N dicts with the load_images resize metadata (or None).
        canonical_views: N fused canonical pointmaps (give the dense depth relief).
        losses: final loss of each stage.
    """

    def __init__(self, names: Sequence[str], imgs: List[np.ndarray], intrinsics: torch.Tensor, cam2w: torch.Tensor,
                 depthmaps: List[torch.Tensor], pts3d: List[torch.Tensor], anchor_xy: List[torch.Tensor],
                 canonical_views: List[CanonicalView], base_focals: torch.Tensor, subsample: int,
                 views_meta: Optional[List[Optional[dict]]] = None, losses: Optional[dict] = None,
                 cache_path: Optional[str] = None) -> None:
        self.names = list(names)
        self.img_paths = self.names
        self.imgs = imgs
        self.intrinsics = intrinsics
        self.cam2w = cam2w
        self.depthmaps = depthmaps
        self.pts3d = pts3d
        self.canonical_views = canonical_views
        self.base_focals = base_focals
        self.subsample = int(subsample)
        self.views_meta = views_meta if views_meta is not None else [None] * len(imgs)
        self.losses = losses or {}
        self.cache_path = cache_path
        self.working_device = cam2w.device
        self.pts3d_colors = []
        for im, xy in zip(self.imgs, anchor_xy):
            x, y = xy.long().cpu().numpy().T if len(xy) else (np.zeros(0, int), np.zeros(0, int))
            self.pts3d_colors.append(im[y, x])

    @property
    def n_imgs(self) -> int:
        return len(self.imgs)

    # ------------------------------------------------------------------ cameras
    def get_focals(self) -> torch.Tensor:
        """(N,) focal lengths (network pixels)."""
        return self.intrinsics[:, 0, 0].clone()

    def get_principal_points(self) -> torch.Tensor:
        """(N, 2) principal points (x, y), network pixels."""
        return self.intrinsics[:, :2, 2].clone()

    def get_intrinsics(self) -> torch.Tensor:
        """(N, 3, 3) intrinsics, network pixels."""
        return self.intrinsics.clone()

    def get_im_poses(self) -> torch.Tensor:
        """(N, 4, 4) cam2world."""
        return self.cam2w

    # ------------------------------------------------------------------ points
    def get_sparse_pts3d(self) -> List[torch.Tensor]:
        return self.pts3d

    def get_pts3d_colors(self) -> List[np.ndarray]:
        return self.pts3d_colors

    def get_depthmaps(self) -> List[torch.Tensor]:
        """N (H2 * W2,) anchor depths (as the original); see :meth:`get_dense_depthmaps` for full resolution."""
        return self.depthmaps

    def get_masks(self, min_conf_thr: Optional[float] = None):
        """Without a threshold: N ``slice(None)`` (every point, as the original); with one: N (H, W) bool masks of
        pixels whose canonical confidence exceeds it."""
        if min_conf_thr is None:
            return [slice(None, None) for _ in range(self.n_imgs)]
        return [cv.conf.to(self.working_device) > min_conf_thr for cv in self.canonical_views]

    def get_confs(self) -> List[torch.Tensor]:
        """N (H, W) confidences of the canonical pointmaps."""
        return [cv.conf.to(self.working_device) for cv in self.canonical_views]

    @torch.no_grad()
    def _dense_one(self, i: int):
        cv = self.canonical_views[i]
        H, W = cv.shape
        dev = self.working_device
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        xy = torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1)
        core, offset = anchor_depth_offsets(cv.canon2, xy, self.subsample)
        K = self.intrinsics[i]
        f = K[0, 0]
        offset = 1 + (offset.to(dev, K.dtype) - 1) * (self.base_focals[i] / f)
        depth = self.depthmaps[i].to(K.dtype)[core.to(dev)] * offset
        n = len(depth)
        pts_cam = backproject(xy.to(dev, K.dtype), depth, f.expand(n), K[:2, 2].expand(n, 2))
        pts = pts_cam @ self.cam2w[i, :3, :3].T + self.cam2w[i, :3, 3]
        return pts, depth

    @torch.no_grad()
    def get_dense_pts3d(self, clean_depth: bool = True, subsample: Optional[int] = None, tsdf_thresh: float = 0.0):
        """Dense world points from the optimised anchor depths and the canonical depth relief.

        Args:
            clean_depth: lower to 0 the confidence of points floating in front of other views' surfaces.
            subsample: must match the alignment's (a different value is ignored with a warning).
            tsdf_thresh: > 0: refine the depths by TSDF fusion over all views with this truncation distance
                (world units; :class:`mast3r.cloud_opt.tsdf_optimizer.TSDFPostProcess`, the MASt3R demo's option).

        Returns:
            ``(pts3d, depthmaps, confs)``: N (H*W, 3) world points, N (H*W,) z-depths, N (H, W) confidences.
        """
        if subsample is not None and int(subsample) != self.subsample:
            logger.warning("get_dense_pts3d(subsample=%s) ignored: the alignment used subsample=%d",
                           subsample, self.subsample)
        if tsdf_thresh is None or not np.isfinite(tsdf_thresh) or tsdf_thresh < 0:
            raise ValueError(f"tsdf_thresh must be a finite number >= 0, got {tsdf_thresh!r}")
        if tsdf_thresh > 0:
            return TSDFPostProcess(self, subsample=self.subsample, TSDF_thresh=tsdf_thresh).get_dense_pts3d(
                clean_depth=clean_depth)
        pts3d, depths = zip(*[self._dense_one(i) for i in range(self.n_imgs)])
        pts3d, depths = list(pts3d), list(depths)
        confs = self.get_confs()
        if clean_depth:
            confs = clean_pointcloud(confs, self.intrinsics, torch.linalg.inv(self.cam2w), depths, pts3d)
        return pts3d, depths, confs

    def get_dense_depthmaps(self) -> List[torch.Tensor]:
        """N (H, W) full-resolution z-depth maps (network resolution)."""
        return [self._dense_one(i)[1].reshape(self.canonical_views[i].shape) for i in range(self.n_imgs)]

    # ------------------------------------------------------------------ viewer
    def show(self, show_cams: bool = True, min_conf_thr: float = 1.0, **kw):
        """Open an interactive trimesh viewer of the dense point cloud (and cameras); needs trimesh."""
        try:
            import trimesh
        except ImportError as err:
            raise ImportError("SparseGA.show() needs trimesh: pip install trimesh") from err
        pts3d, _, confs = self.get_dense_pts3d()
        pts = np.concatenate([p.cpu().numpy()[c.cpu().numpy().reshape(-1) > min_conf_thr]
                              for p, c in zip(pts3d, confs)])
        cols = np.concatenate([im.reshape(-1, 3)[c.cpu().numpy().reshape(-1) > min_conf_thr]
                               for im, c in zip(self.imgs, confs)])
        scene = trimesh.Scene()
        scene.add_geometry(trimesh.PointCloud(pts, colors=(cols * 255).astype(np.uint8)))
        if show_cams:
            for c2w in self.cam2w.cpu().numpy():
                axis = trimesh.creation.axis(origin_size=0.01, axis_length=0.1)
                axis.apply_transform(c2w)
                scene.add_geometry(axis)
        return scene.show(**kw)
