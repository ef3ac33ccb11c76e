"""Initialisation of the dense global alignment (no PnP / OpenCV needed).

``init_minimum_spanning_tree``:
  1. score every edge by ``mean(conf_i) * mean(conf_j)`` and keep a maximum-score spanning tree of the images;
  2. chain the pairwise pointmaps along the tree, starting from its strongest edge (world = camera frame of the
     first image of that edge): each new pair is registered onto the already placed pointmap of the image it
     shares (weighted similarity / Procrustes), which places the other image;
  3. each camera: pose by Procrustes between a pointmap of the image in its own camera frame (an edge where the
     image comes first) and its world pointmap; focal from that camera-frame pointmap (Weiszfeld); images that
     are never first get a linear camera estimate (DLT) from their world pointmap;
  4. known poses (preset): the whole scene is moved onto them (similarity on >= 2 poses, rigid on 1);
  5. pairwise similarities by Procrustes of every pair onto the world pointmaps; depth maps from the poses.

``init_from_known_poses`` (every pose preset): each pair's similarity from the two known cameras and the
relative camera estimated from the pair (linear, with the known or estimated focal).

The original's helpers that downstream code imports from here keep their names and signatures:
:func:`rigid_points_registration`, :func:`sRT_to_4x4` and :func:`fast_pnp` (OpenCV RANSAC-PnP, imported lazily).
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..post_process import estimate_focal_knowing_depth
from ..utils.geometry import project_to_so3, sim3_to_4x4, weighted_procrustes, xy_grid
from .commons import DisjointSets
from .pair_inputs import ravel_pad

logger = logging.getLogger(__name__)

__all__ = ["init_minimum_spanning_tree", "init_from_known_poses", "init_from_pts3d", "minimum_spanning_tree",
           "spanning_tree_order", "camera_from_pointmap", "estimate_focal", "align_multiple_poses",
           "rigid_points_registration", "sRT_to_4x4", "fast_pnp"]

_MAX_DLT_POINTS = 20000
_CHUNK_PIXELS = 4_000_000  # points per batched Procrustes call (bounded float64 temporaries)


# ================================================================================================ small helpers
def _pair_map(opt, stacked: torch.Tensor, e: int, img: int) -> torch.Tensor:
    """Row ``e`` of a stacked (E, A, ...) pairwise tensor, reshaped to image ``img``'s (H, W, ...)."""
    h, w = opt.imshapes[img]
    return stacked[e, :h * w].reshape(h, w, *stacked.shape[2:])


def estimate_focal(pts3d_cam: torch.Tensor, pp: Optional[torch.Tensor] = None) -> float:
    """Focal of the camera whose (H, W, 3) camera-frame pointmap is given (Weiszfeld, clipped to a sane range)."""
    H, W = pts3d_cam.shape[:2]
    if pp is None:
        pp = torch.tensor(((W - 1) / 2, (H - 1) / 2), device=pts3d_cam.device)
    focal = estimate_focal_knowing_depth(pts3d_cam[None].float(), pp.reshape(1, 2).float(), focal_mode="weiszfeld",
                                         min_focal=0.5, max_focal=3.5)
    return float(focal.reshape(-1)[0])


def _transform(T: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply a (4, 4) similarity to (..., 3) points."""
    return pts @ T[:3, :3].T.to(pts.dtype) + T[:3, 3].to(pts.dtype)


def spanning_tree_order(n_imgs: int, edges: Sequence[Tuple[int, int]], scores: Sequence[float]) -> List[int]:
    """Edge indices of a maximum-score spanning tree, in the order they can be chained from the best edge.

    Of two opposite edges (i, j), (j, i) only the better one can enter the tree. Each next edge is the best
    remaining tree edge touching the images already placed.
    """
    order = sorted(range(len(edges)), key=lambda e: -scores[e])
    sets = DisjointSets(n_imgs)
    # Kruskal on the undirected graph, best edges first
    tree = [e for e in order if sets.union(*edges[e])]
    if len(tree) != n_imgs - 1:
        raise ValueError("the pair graph is not connected; cannot build a spanning tree")

    placed = set(edges[tree[0]])
    chain, todo = [tree[0]], tree[1:]
    while todo:
        nxt = next(e for e in todo if (edges[e][0] in placed) != (edges[e][1] in placed))
        todo.remove(nxt)
        chain.append(nxt)
        placed.update(edges[nxt])
    return chain


def camera_from_pointmap(pts3d: torch.Tensor, weights: torch.Tensor, pp: torch.Tensor,
                         focal: Optional[float] = None) -> Optional[Tuple[torch.Tensor, float]]:
    """Camera that sees the (H, W, 3) pointmap ``pts3d`` (in some frame F) at its pixel grid: linear DLT.

    Args:
        pts3d: (H, W, 3) points in frame F seen at each pixel; weights: (H, W) >= 0; pp: (2,) principal point;
        focal: known focal (pixels) or None to estimate it.
    Returns:
        (cam2F (4, 4) float64, focal) or None when there are too few usable points.
    """
    H, W = pts3d.shape[:2]
    X = pts3d.reshape(-1, 3).double()
    w = weights.reshape(-1).double().clip(min=0)
    grid = xy_grid(W, H, device=X.device).reshape(-1, 2).double()
    keep = torch.isfinite(X).all(-1) & (w > 0)
    if int(keep.sum()) < 6:
        keep = torch.isfinite(X).all(-1)
        w = torch.ones_like(w)
    if int(keep.sum()) < 6:
        return None
    idx = keep.nonzero()[:, 0]
    if len(idx) > _MAX_DLT_POINTS:
        idx = idx[torch.linspace(0, len(idx) - 1, _MAX_DLT_POINTS, device=idx.device).long()]
    X, w, grid = X[idx], w[idx], grid[idx]
    w = w / w.sum()
    scale_px = float(max(H, W)) if focal is None else float(focal)
    uv = (grid - pp.to(grid).reshape(1, 2)) / scale_px

    centre = (w[:, None] * X).sum(0)
    sigma = float(((w * (X - centre).square().sum(-1)).sum()).sqrt().clip(min=1e-12))
    Xh = torch.cat(((X - centre) / sigma, torch.ones_like(X[:, :1])), dim=-1)  # (n, 4)
    zero = torch.zeros_like(Xh)
    rows_u = torch.cat((Xh, zero, -uv[:, :1] * Xh), dim=-1)  # (n, 12)
    rows_v = torch.cat((zero, Xh, -uv[:, 1:] * Xh), dim=-1)
    normal = (rows_u * w[:, None]).T @ rows_u + (rows_v * w[:, None]).T @ rows_v
    _, vecs = torch.linalg.eigh(normal)
    P = vecs[:, 0].reshape(3, 4)
    M = P[:, :3] / sigma  # back to un-normalised points
    p4 = P[:, 3] - M @ centre
    norm3 = M[2].norm().clip(min=1e-30)
    M, p4 = M / norm3, p4 / norm3
    if float((w * torch.sign(X @ M[2] + p4[2])).sum()) < 0:  # points must be in front of the camera
        M, p4 = -M, -p4
    g = float((M[0].norm() + M[1].norm()) / 2)
    R_approx = torch.stack((M[0] / g, M[1] / g, M[2]))
    t = torch.stack((p4[0] / g, p4[1] / g, p4[2]))
    R = project_to_so3(R_approx)
    world2cam = torch.eye(4, dtype=torch.float64, device=X.device)
    world2cam[:3, :3], world2cam[:3, 3] = R, t
    return torch.linalg.inv(world2cam), (g * scale_px if focal is None else float(focal))


def align_multiple_poses(src_poses: torch.Tensor, target_poses: torch.Tensor):
    """Similarity ``(s, R, T)`` mapping cam2world ``src_poses`` (K, 4, 4) onto ``target_poses``.

    Registers the camera centres and points a little ahead of them on the optical axes.
    """
    def centres_and_axes(poses: torch.Tensor) -> torch.Tensor:
        centres = poses[:, :3, 3]
        dists = torch.cdist(centres, centres)
        off_diag = dists[~torch.eye(len(centres), dtype=torch.bool, device=centres.device)]
        eps = float(off_diag.median()) / 100 if off_diag.numel() else 0.01
        eps = eps if eps > 0 else 0.01
        return torch.cat((centres, centres + eps * poses[:, :3, 2]))

    s, R, T = weighted_procrustes(centres_and_axes(src_poses.double()), centres_and_axes(target_poses.double()))
    return s, R, T


# ================================================================================================ spanning tree
@torch.no_grad()
def chain_pointmaps(opt, chain: Sequence[int]) -> List[torch.Tensor]:
    """World (H, W, 3) pointmap of every image by chaining the pairs of ``chain`` (see the module docstring)."""
    edges = opt.edges
    pts3d: List[Optional[torch.Tensor]] = [None] * opt.n_imgs
    first = chain[0]
    i, j = edges[first]
    pts3d[i] = _pair_map(opt, opt._stacked_pred_i, first, i).double()
    pts3d[j] = _pair_map(opt, opt._stacked_pred_j, first, j).double()
    logger.debug(" init edge (%d*, %d*)", i, j)
    for e in chain[1:]:
        i, j = edges[e]
        pred_i = _pair_map(opt, opt._stacked_pred_i, e, i).double()
        pred_j = _pair_map(opt, opt._stacked_pred_j, e, j).double()
        if pts3d[i] is not None:  # register pred_i onto the placed image i, then place j
            s, R, T = weighted_procrustes(pred_i.reshape(-1, 3), pts3d[i].reshape(-1, 3),
                                          _pair_map(opt, opt._stacked_conf_i, e, i).reshape(-1))
            pts3d[j] = _transform(sim3_to_4x4(s, R, T), pred_j)
        else:
            s, R, T = weighted_procrustes(pred_j.reshape(-1, 3), pts3d[j].reshape(-1, 3),
                                          _pair_map(opt, opt._stacked_conf_j, e, j).reshape(-1))
            pts3d[i] = _transform(sim3_to_4x4(s, R, T), pred_i)
        logger.debug(" init edge (%d, %d)", i, j)
    return pts3d


def _known_focal(opt, n: int) -> Optional[float]:
    if bool(opt._known_focal_msk[n]):
        return float(opt._known_focals[n].double().mean())
    return None


@torch.no_grad()
def estimate_cameras(opt, pts3d: List[torch.Tensor], scores: torch.Tensor):
    """cam2world (N, 4, 4) float64 and focals (list of N floats) of every image from its world pointmap."""
    N, A = opt.n_imgs, opt.max_area
    pp = opt.get_principal_points().double()
    best_first = {}
    for e in sorted(range(opt.n_edges), key=lambda e: -float(scores[e])):
        best_first.setdefault(opt.edges[e][0], e)

    poses = torch.eye(4, dtype=torch.float64, device=opt.device).repeat(N, 1, 1)
    focals: List[Optional[float]] = [_known_focal(opt, n) for n in range(N)]
    firsts = sorted(best_first)
    chunk = max(1, _CHUNK_PIXELS // A)
    for start in range(0, len(firsts), chunk):  # batched Procrustes: camera-frame pointmap -> world pointmap
        imgs = firsts[start:start + chunk]
        e_sel = [best_first[n] for n in imgs]
        src = opt._stacked_pred_i[e_sel].double()
        dst = torch.stack([ravel_pad(pts3d[n], A) for n in imgs])
        _, R, T = weighted_procrustes(src, dst, opt._stacked_conf_i[e_sel].double())
        for k, n in enumerate(imgs):
            poses[n, :3, :3], poses[n, :3, 3] = R[k], T[k]
            if focals[n] is None:
                focals[n] = estimate_focal(_pair_map(opt, opt._stacked_pred_i, e_sel[k], n), pp[n])
    confs = opt.get_conf()
    for n in range(N):
        if n in best_first:
            continue
        weights = confs[n].clip(min=0)
        res = camera_from_pointmap(pts3d[n], weights, pp[n], focals[n])
        if res is None:
            logger.warning("could not initialise the camera of image %d; using the identity", n)
            focals[n] = focals[n] or float(max(opt.imshapes[n]))
            continue
        poses[n], focal = res
        focals[n] = focal if focals[n] is None else focals[n]
    return poses, focals


@torch.no_grad()
def minimum_spanning_tree(opt):
    """World pointmaps, tree edges, focals and cam2world poses of the spanning-tree initialisation."""
    scores = opt.edge_scores().double()
    chain = spanning_tree_order(opt.n_imgs, opt.edges, scores.tolist())
    pts3d = chain_pointmaps(opt, chain)
    poses, focals = estimate_cameras(opt, pts3d, scores)
    return pts3d, [opt.edges[e] for e in chain], focals, poses


@torch.no_grad()
def init_minimum_spanning_tree(opt, niter_PnP: int = 10, **_):
    """Initialise every parameter of ``opt`` from a spanning tree of the pairs (``niter_PnP`` is unused)."""
    pts3d, _, focals, poses = minimum_spanning_tree(opt)
    return init_from_pts3d(opt, pts3d, focals, poses)


def _world_procrustes(opt, pts3d: List[torch.Tensor]):
    """Similarity of every pair onto the world pointmap of its first image: (E,), (E, 3, 3), (E, 3).

    Batched over edges, in chunks so that the float64 copies stay small (~_CHUNK_PIXELS points at a time).
    """
    world = torch.stack([ravel_pad(p, opt.max_area) for p in pts3d])  # (N, A, 3)
    chunk = max(1, _CHUNK_PIXELS // opt.max_area)
    results = []
    for start in range(0, opt.n_edges, chunk):
        sel = slice(start, start + chunk)
        results.append(weighted_procrustes(opt._stacked_pred_i[sel].double(), world[opt._ei[sel]],
                                           opt._stacked_conf_i[sel].double()))
    return tuple(torch.cat(parts) for parts in zip(*results))


@torch.no_grad()
def init_from_pts3d(opt, pts3d: List[torch.Tensor], im_focals: List[Optional[float]], im_poses: torch.Tensor):
    """Write poses, focals, depth maps and pairwise similarities from world pointmaps and cameras."""
    pts3d = [p.double().clone() for p in pts3d]
    im_poses = im_poses.double().clone()
    known_msk = opt._known_pose_msk
    known = opt._known_poses.double()
    n_known = int(known_msk.sum())

    def move(trf: torch.Tensor, scale: float = 1.0):
        for n in range(len(pts3d)):
            pts3d[n] = _transform(trf, pts3d[n])
        im_poses[:] = trf @ im_poses
        im_poses[:, :3, :3] /= scale

    if n_known >= 2:  # similarity onto the known cameras
        s, R, T = align_multiple_poses(im_poses[known_msk], known[known_msk])
        move(sim3_to_4x4(s, R, T), float(s))
    if opt.norm_pw_scale:  # world scale such that the pairwise scales have geometric mean base_scale
        s_pairs, _, _ = _world_procrustes(opt, pts3d)
        factor = opt.base_scale / float(s_pairs.clip(min=1e-30).log().mean().exp())
        move(sim3_to_4x4(factor, torch.eye(3, dtype=torch.float64, device=im_poses.device),
                         torch.zeros(3, dtype=torch.float64, device=im_poses.device)), factor)
    if n_known == 1:  # rigid motion onto the single known camera
        k = int(known_msk.nonzero()[0, 0])
        move(known[k] @ torch.linalg.inv(im_poses[k]))

    s, R, T = _world_procrustes(opt, pts3d)
    opt.set_pw_poses(s, R, T)

    final_poses = torch.where(known_msk[:, None, None], known, im_poses)
    for n in range(opt.n_imgs):
        world2cam = torch.linalg.inv(final_poses[n])
        depth = _transform(world2cam, pts3d[n])[..., 2]
        positive = depth[depth > 0]
        floor = float(positive.median()) * 1e-3 if positive.numel() else 1e-3
        opt._set_depthmap(n, depth.clip(min=floor))
        if not bool(known_msk[n]):
            opt._write_pose(n, im_poses[n].to(opt.device))
        if im_focals[n] is not None and not bool(opt._known_focal_msk[n]):
            opt._write_focal(n, torch.tensor(float(im_focals[n])))
    if opt.verbose:
        logger.info(" init loss = %g", float(opt()))


# ================================================================================================ known poses
@torch.no_grad()
def init_from_known_poses(opt, niter_PnP: int = 10, min_conf_thr: float = 3, verbose: bool = False):
    """Initialise from fully preset poses (``preset_pose`` on every image)."""
    unknown = [n for n in range(opt.n_imgs) if not bool(opt._known_pose_msk[n])]
    if unknown:
        raise ValueError(f"init='known_poses' needs every pose preset (preset_pose); images {unknown} have none "
                         "(use init='mst' with partially known poses)")
    known = opt._known_poses.double()
    pp = opt.get_principal_points().double()
    focals = [_known_focal(opt, n) for n in range(opt.n_imgs)]
    scores = opt.edge_scores()
    # focals not preset: from the most confident camera-frame pointmap of the image
    for e in sorted(range(opt.n_edges), key=lambda e: -float(scores[e])):
        i = opt.edges[e][0]
        if focals[i] is None:
            focals[i] = estimate_focal(_pair_map(opt, opt._stacked_pred_i, e, i), pp[i])

    eye = torch.eye(4, dtype=torch.float64, device=opt.device)
    s_all = torch.ones(opt.n_edges, dtype=torch.float64, device=opt.device)
    R_all = eye[:3, :3].repeat(opt.n_edges, 1, 1)
    T_all = torch.zeros(opt.n_edges, 3, dtype=torch.float64, device=opt.device)
    for e, (i, j) in enumerate(opt.edges):
        conf_j = _pair_map(opt, opt._stacked_conf_j, e, j)
        weights = torch.where(conf_j > min_conf_thr, conf_j, torch.zeros_like(conf_j))
        res = camera_from_pointmap(_pair_map(opt, opt._stacked_pred_j, e, j), weights, pp[j], focals[j])
        if res is None:  # keep the pair in camera i's frame at unit scale
            R_all[e], T_all[e] = known[i, :3, :3], known[i, :3, 3]
            continue
        cam_j, focal_j = res
        if focals[j] is None:
            focals[j] = focal_j
        s, R, T = align_multiple_poses(torch.stack((eye, cam_j)), known[[i, j]])
        s_all[e], R_all[e], T_all[e] = s, R, T
    opt.set_pw_poses(s_all, R_all, T_all)

    best = {}
    for e in sorted(range(opt.n_edges), key=lambda e: -float(opt._stacked_conf_i[e].mean())):
        best.setdefault(opt.edges[e][0], e)
    for n in range(opt.n_imgs):
        if n in best:
            e = best[n]
            depth = _pair_map(opt, opt._stacked_pred_i, e, n)[..., 2].double() * s_all[e]
        else:  # image only ever second: its points through the pair similarity, into its known camera
            e = next(e for e, (_, j) in enumerate(opt.edges) if j == n)
            world = _transform(sim3_to_4x4(s_all[e], R_all[e], T_all[e]), _pair_map(opt, opt._stacked_pred_j, e, n))
            depth = _transform(torch.linalg.inv(known[n]), world)[..., 2]
        positive = depth[depth > 0]
        floor = float(positive.median()) * 1e-3 if positive.numel() else 1e-3
        opt._set_depthmap(n, depth.clip(min=floor))
        if focals[n] is not None and not bool(opt._known_focal_msk[n]):
            opt._write_focal(n, torch.tensor(float(focals[n])))
    if opt.verbose or verbose:
        logger.info(" init loss = %g", float(opt()))


# ================================================================================================ original helpers
def rigid_points_registration(pts1: torch.Tensor, pts2: torch.Tensor, conf: torch.Tensor):
    """Weighted similarity ``(s, R, T)`` with ``pts2 ~ s * R @ pts1 + T`` (the original's helper).

    Args:
        pts1, pts2: (..., 3) corresponding points (any matching leading shape, e.g. (H, W, 3) pointmaps).
        conf: (...) non-negative weights, one per point.
    Returns:
        ``s`` (), ``R`` (3, 3), ``T`` (3,) in the dtype of ``pts1`` (R and T are not scaled: apply ``s * R``).
    """
    s, R, T = weighted_procrustes(pts1.reshape(-1, 3), pts2.reshape(-1, 3), conf.reshape(-1))
    return s.to(pts1.dtype), R.to(pts1.dtype), T.to(pts1.dtype)


def sRT_to_4x4(scale, R: torch.Tensor, T: torch.Tensor, device) -> torch.Tensor:
    """(4, 4) float32 matrix on ``device`` of ``x -> scale * R @ x + T`` (the original's helper)."""
    return sim3_to_4x4(torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(R).float(),
                       torch.as_tensor(T).float().reshape(3)).to(device)


def fast_pnp(pts3d: Union[torch.Tensor, np.ndarray], focal: Optional[float], msk, device,
             pp: Optional[Sequence[float]] = None, niter_PnP: int = 10):
    """Camera (and focal) that sees the world pointmap ``pts3d`` at its own pixel grid, by RANSAC-PnP.

    Every pixel ``(x, y)`` of the mask gives a 2D-3D correspondence with its point. With ``focal=None`` the
    focal is searched among 21 candidates spaced geometrically from ``max(H, W) / 2`` to ``3 max(H, W)`` and
    the one with most RANSAC inliers wins (OpenCV ``solvePnPRansac``, SQPnP, 5 pixel threshold).

    Args:
        pts3d: (H, W, 3) points in the world frame seen at each pixel.
        focal: known focal (pixels) or None.
        msk: (H, W) bool of the pixels to use.
        device: device of the returned pose.
        pp: principal point (x, y); default ``(W / 2, H / 2)`` (as the original).
        niter_PnP: RANSAC iterations per candidate focal.
    Returns:
        ``(focal, cam2world)`` with cam2world a (4, 4) float32 tensor on ``device``, or None when fewer than 4
        pixels are usable or no candidate gives a pose.
    """
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - OpenCV is a dependency of the demo stack
        raise ImportError("fast_pnp needs OpenCV: pip install opencv-python-headless") from err
    to_np = (lambda x: x.detach().cpu().numpy()) if isinstance(pts3d, torch.Tensor) else np.asarray
    pts = to_np(pts3d)
    mask = msk.detach().cpu().numpy() if isinstance(msk, torch.Tensor) else np.asarray(msk)
    if pts.ndim != 3 or pts.shape[-1] != 3 or mask.shape != pts.shape[:2]:
        raise ValueError(f"fast_pnp needs an (H, W, 3) pointmap and an (H, W) mask, got {pts.shape} and "
                         f"{mask.shape}")
    mask = mask.astype(bool) & np.isfinite(pts).all(-1)
    if mask.sum() < 4:
        return None
    H, W = mask.shape
    pixels = xy_grid(W, H).astype(np.float32)[mask]
    points = pts[mask].astype(np.float32)
    cx, cy = (W / 2, H / 2) if pp is None else (float(pp[0]), float(pp[1]))
    size = max(H, W)
    candidates = np.geomspace(size / 2, size * 3, 21) if focal is None else [float(focal)]

    best = None
    for f in candidates:
        K = np.float32([(f, 0, cx), (0, f, cy), (0, 0, 1)])
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(points, pixels, K, None, iterationsCount=int(niter_PnP),
                                                     reprojectionError=5, flags=cv2.SOLVEPNP_SQPNP)
        if ok and inliers is not None and (best is None or len(inliers) > best[0]):
            best = (len(inliers), rvec, tvec, f)
    if best is None:
        return None
    _, rvec, tvec, f = best
    world2cam = torch.eye(4, dtype=torch.float64)
    world2cam[:3, :3] = torch.from_numpy(cv2.Rodrigues(rvec)[0])
    world2cam[:3, 3] = torch.from_numpy(np.asarray(tvec, dtype=np.float64).reshape(3))
    return float(f), torch.linalg.inv(world2cam).float().to(device)
