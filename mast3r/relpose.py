"""Relative pose of two images from MASt3R: dense matches + the predicted pointmap + PnP RANSAC.

Pipeline of :func:`relative_pose` (the recipe of the original MASt3R localisation code):

1. both images go through :func:`dust3r.utils.image.load_images` (resize + crop to ``size``);
2. the model runs on the symmetric pair ``[(1, 2), (2, 1)]``;
3. descriptors of pair (1, 2) are matched with
   :func:`mast3r.fast_nn.fast_reciprocal_NNs` (reciprocal nearest neighbours, ``dist='dot'``),
   matches within ``border`` pixels of an image edge are dropped;
4. each match gives a 2D-3D correspondence: the pixel in image 2 and the 3D point that the model
   predicts for the matched pixel of image 1, **in camera 1's frame** (``pred1['pts3d']`` of pair
   (1, 2));
5. PnP + RANSAC (poselib if installed, else OpenCV's ``solvePnPRansac`` + Levenberg-Marquardt
   refinement on the inliers) gives the pose of camera 2 relative to camera 1.

Frames and units
----------------
* Camera frames use OpenCV axes (x right, y down, z forward).
* ``cam2_to_cam1`` maps camera-2 coordinates to camera-1 coordinates: ``X_cam1 = cam2_to_cam1 @ X_cam2``;
  its translation is the centre of camera 2 expressed in camera 1's frame.
* Translations are in the units of the model's pointmaps: metres (approximately) for metric MASt3R
  checkpoints; for scale-ambiguous models (DUSt3R-style outputs) only the direction is meaningful.
* Pixels: ``(x, y)``, integer values at pixel centres. ``K1``, ``K2`` and the matches are reported in
  **original image** pixels (before :func:`load_images`' resize and crop); the PnP itself runs in
  network-input pixels, where ``ransac_thresh`` is measured.
* When a ``K`` is not given, it is estimated from the pointmap of that image in its own camera frame
  (``pred1['pts3d']`` of the pair where the image comes first): principal point at the centre of the
  network input, ``((W - 1) / 2, (H - 1) / 2)`` [the original uses ``(W / 2, H / 2)``], and a single
  focal fitted by iteratively re-weighted least squares (Weiszfeld) of ``pixel - pp ~ f * (x, y) / z``,
  as the original ``estimate_focal_knowing_depth(focal_mode='weiszfeld')``.
"""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np
import torch

from dust3r.utils.geometry import weiszfeld_focal, xy_grid
from dust3r.utils.views import model_patch_size

logger = logging.getLogger(__name__)

__all__ = [
    "RelativePose",
    "RelativePoseError",
    "relative_pose",
    "estimate_focal_weiszfeld",
    "solve_pnp_ransac",
]

_BACKENDS = ("auto", "poselib", "cv2")


class RelativePoseError(ValueError):
    """Relative pose estimation failed (too few matches, or RANSAC found no pose)."""


@dataclass
class RelativePose:
    """Pose of camera 2 relative to camera 1, with the data it was computed from.

    Attributes:
        cam2_to_cam1: (4, 4) float64, ``X_cam1 = cam2_to_cam1 @ X_cam2`` (pose of camera 2 in camera
            1's frame; translation in the model's units, ~metres for metric MASt3R).
        R: (3, 3) rotation block of ``cam2_to_cam1`` (camera 2's axes expressed in camera 1's frame).
        t: (3,) translation of ``cam2_to_cam1`` = centre of camera 2 in camera 1's frame.
        K1, K2: (3, 3) intrinsics in original-image pixels (as given, or estimated).
        matches: (N, 4) float64 ``[x1, y1, x2, y2]`` of every match used, in original-image pixels.
        inliers: (N,) bool, the PnP RANSAC inliers among ``matches``.
        num_inliers: ``inliers.sum()``.
        pts3d_cam1: (N, 3) float64 3D points of the matched pixels of image 1, in camera 1's frame.
        K_estimated: ``(K1 was estimated, K2 was estimated)``.
        backend: ``'poselib'`` or ``'cv2'``.
    """

    cam2_to_cam1: np.ndarray
    R: np.ndarray
    t: np.ndarray
    K1: np.ndarray
    K2: np.ndarray
    matches: np.ndarray
    inliers: np.ndarray
    num_inliers: int
    pts3d_cam1: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 3)))
    K_estimated: Tuple[bool, bool] = (False, False)
    backend: str = ""

    @property
    def cam1_to_cam2(self) -> np.ndarray:
        """(4, 4) inverse of :attr:`cam2_to_cam1`: ``X_cam2 = cam1_to_cam2 @ X_cam1``."""
        return np.linalg.inv(self.cam2_to_cam1)

    @property
    def xy1(self) -> np.ndarray:
        """(N, 2) matched pixels of image 1 (original pixels)."""
        return self.matches[:, :2]

    @property
    def xy2(self) -> np.ndarray:
        """(N, 2) matched pixels of image 2 (original pixels)."""
        return self.matches[:, 2:]

    @property
    def num_matches(self) -> int:
        return int(self.matches.shape[0])


# ============================================================================================
# focal estimation
# ============================================================================================
def estimate_focal_weiszfeld(pts3d_cam: Any, pp: Optional[Tuple[float, float]] = None,
                             mask: Optional[Any] = None, n_iter: int = 10) -> float:
    """Focal length (pixels) of a camera from its pointmap in its own frame.

    Finds ``f = argmin sum_pixels | (u, v) - pp - f * (x, y) / z |`` (L1 of 2-D residuals) by
    iteratively re-weighted least squares started from the least-squares solution
    (:func:`dust3r.utils.geometry.weiszfeld_focal`, in float64).

    Args:
        pts3d_cam: (H, W, 3) points of each pixel in the camera frame (numpy or torch).
        pp: principal point ``(cx, cy)`` in pixels; default ``((W - 1) / 2, (H - 1) / 2)``.
        mask: optional (H, W) bool of pixels to use.
        n_iter: re-weighting iterations.

    Returns:
        the focal in pixels of the pointmap's resolution.
    """
    pts = torch.as_tensor(pts3d_cam.detach().cpu() if isinstance(pts3d_cam, torch.Tensor) else
                          np.asarray(pts3d_cam, dtype=np.float64), dtype=torch.float64)
    if pts.ndim != 3 or pts.shape[-1] != 3:
        raise ValueError(f"pts3d_cam must be an (H, W, 3) pointmap, got shape {tuple(pts.shape)}")
    H, W = pts.shape[:2]
    cx, cy = ((W - 1) / 2.0, (H - 1) / 2.0) if pp is None else (float(pp[0]), float(pp[1]))
    pixels = xy_grid(W, H, device="cpu", dtype=torch.float64).reshape(1, -1, 2) - torch.tensor([[[cx, cy]]],
                                                                                                 dtype=torch.float64)
    pts = pts.reshape(-1, 3)
    keep = torch.isfinite(pts).all(dim=1) & (pts[:, 2] > 0)
    if mask is not None:
        mask = torch.as_tensor(mask.detach().cpu() if isinstance(mask, torch.Tensor) else np.asarray(mask, bool))
        if tuple(mask.shape) != (H, W):
            raise ValueError(f"mask must have shape {(H, W)}, got {tuple(mask.shape)}")
        keep &= mask.reshape(-1).bool()
    if not keep.any():
        raise ValueError("estimate_focal_weiszfeld: no pixel with a finite point in front of the camera")
    rays = pts[None, :, :2] / pts[None, :, 2:3]
    focal = float(weiszfeld_focal(pixels, rays, valid=keep[None], n_iter=int(n_iter))[0])
    if not np.isfinite(focal) or focal <= 0:
        raise RelativePoseError(f"focal estimation from the pointmap failed (got {focal}); "
                                "give the intrinsics explicitly")
    return float(focal)


# ============================================================================================
# PnP
# ============================================================================================
def _pick_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    import importlib.util
    has_poselib = importlib.util.find_spec("poselib") is not None
    has_cv2 = importlib.util.find_spec("cv2") is not None
    if backend == "auto":
        if has_poselib:
            return "poselib"
        if has_cv2:
            return "cv2"
        raise ImportError("relative_pose needs a PnP solver: install poselib (pip install poselib) or "
                          "OpenCV (pip install opencv-python-headless)")
    if backend == "poselib" and not has_poselib:
        raise ImportError("backend='poselib' but poselib is not installed (pip install poselib)")
    if backend == "cv2" and not has_cv2:
        raise ImportError("backend='cv2' but OpenCV is not installed (pip install opencv-python-headless)")
    return backend


def solve_pnp_ransac(pts2d: np.ndarray, pts3d: np.ndarray, K: np.ndarray, image_size: Tuple[int, int],
                     thresh: float = 5.0, max_iterations: int = 10_000, backend: str = "auto",
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray, str]:
    """Camera pose from 2D-3D correspondences with RANSAC.

    Args:
        pts2d: (N, 2) pixels (x, y) of the camera, integer values at pixel centres.
        pts3d: (N, 3) points in a reference frame ("world").
        K: (3, 3) intrinsics of the camera in the same pixels (no skew).
        image_size: ``(W, H)`` of the image (poselib's camera model wants it).
        thresh: RANSAC inlier threshold on the reprojection error, pixels.
        max_iterations: RANSAC iterations.
        backend: ``'auto'`` (poselib, else OpenCV), ``'poselib'`` or ``'cv2'``.
        seed: RANSAC seed (poselib; OpenCV uses its global RNG, reset to this seed).

    Returns:
        ``(world2cam, inliers, backend)``: (4, 4) float64 with ``X_cam = world2cam @ X_world``,
        (N,) bool inlier mask, and the backend used.
    """
    backend = _pick_backend(backend)
    pts2d = np.ascontiguousarray(pts2d, dtype=np.float64)
    pts3d = np.ascontiguousarray(pts3d, dtype=np.float64)
    if pts2d.ndim != 2 or pts2d.shape[1] != 2 or pts3d.shape != (pts2d.shape[0], 3):
        raise ValueError(f"pts2d must be (N, 2) and pts3d (N, 3), got {pts2d.shape} and {pts3d.shape}")
    if not (np.isfinite(pts2d).all() and np.isfinite(pts3d).all()):
        raise ValueError("pts2d and pts3d must be finite")
    if pts2d.shape[0] < 4:
        raise RelativePoseError(f"PnP needs at least 4 correspondences, got {pts2d.shape[0]}")
    K = _check_K(K, "K")
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a (W, H) pair of integers, got {image_size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    if not (isinstance(thresh, numbers.Real) and thresh > 0):
        raise ValueError(f"thresh must be a positive number of pixels, got {thresh!r}")
    max_iterations = _check_pos_int(max_iterations, "max_iterations")
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    world2cam = np.eye(4)
    if backend == "poselib":
        import poselib
        camera = {"model": "PINHOLE", "width": width, "height": height,
                  "params": [fx, fy, cx, cy]}
        ransac_opt = {"max_reproj_error": float(thresh), "max_iterations": int(max_iterations),
                      "success_prob": 0.9999, "seed": int(seed)}
        pose, info = poselib.estimate_absolute_pose(pts2d, pts3d, camera, ransac_opt, {})
        world2cam[:3, :4] = np.asarray(pose.Rt, dtype=np.float64)
        inliers = np.asarray(info.get("inliers", np.ones(len(pts2d), bool)), dtype=bool)
        if inliers.sum() < 4 or not np.isfinite(world2cam).all():
            raise RelativePoseError(f"poselib PnP RANSAC found no pose ({int(inliers.sum())} inliers of "
                                    f"{len(pts2d)} correspondences)")
    else:
        import cv2
        cv2.setRNGSeed(int(seed))
        K_cv = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        ok, rvec, tvec, idx = cv2.solvePnPRansac(pts3d, pts2d, K_cv, None, iterationsCount=int(max_iterations),
                                                 reprojectionError=float(thresh), confidence=0.9999,
                                                 flags=cv2.SOLVEPNP_SQPNP)
        if not ok or idx is None or len(idx) < 4:
            raise RelativePoseError(f"OpenCV PnP RANSAC found no pose from {len(pts2d)} correspondences")
        inliers = np.zeros(len(pts2d), dtype=bool)
        inliers[np.asarray(idx).reshape(-1)] = True
        rvec, tvec = cv2.solvePnPRefineLM(pts3d[inliers], pts2d[inliers], K_cv, None, rvec, tvec)
        world2cam[:3, :3] = cv2.Rodrigues(rvec)[0]
        world2cam[:3, 3] = np.asarray(tvec, dtype=np.float64).reshape(3)
        # final inlier set w.r.t. the refined pose
        proj = pts3d @ world2cam[:3, :3].T + world2cam[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = proj[:, :2] / proj[:, 2:3] * np.array([fx, fy]) + np.array([cx, cy])
        err = np.linalg.norm(uv - pts2d, axis=1)
        inliers = (proj[:, 2] > 0) & (err < thresh)
    return world2cam, inliers, backend


# ============================================================================================
# helpers
# ============================================================================================
def _check_K(K: Any, name: str) -> np.ndarray:
    if isinstance(K, torch.Tensor):
        K = K.detach().cpu().numpy()
    try:
        arr = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 3x3 intrinsics matrix, got {type(K).__name__}") from None
    if arr.shape != (3, 3) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite 3x3 intrinsics matrix, got shape {arr.shape}")
    if arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise ValueError(f"{name} must have positive focal lengths, got fx={arr[0, 0]}, fy={arr[1, 1]}")
    if not np.allclose(arr[2], [0.0, 0.0, 1.0]) or abs(arr[1, 0]) > 0:
        raise ValueError(f"{name} must be an upper-triangular pinhole matrix with last row [0, 0, 1]")
    if abs(arr[0, 1]) > 1e-9 * arr[0, 0]:
        raise ValueError(f"{name} has a skew of {arr[0, 1]}; skewed intrinsics are not supported")
    return arr


def _check_pos_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _get(out: dict, part: str, key: str, k: int) -> torch.Tensor:
    """Pair ``k``'s entry (without batch dimension) of an inference output, stacked or listed."""
    value = out[part].get(key)
    if value is None:
        raise ValueError(f"the model output has no {part}[{key!r}]; relative_pose needs a MASt3R model "
                         "(pointmaps + local descriptors)")
    row = value[k]
    return row[0] if row.ndim == 4 and row.shape[0] == 1 else row


# ============================================================================================
# main entry point
# ============================================================================================
def relative_pose(img1: Any, img2: Any, model: torch.nn.Module, K1: Optional[Any] = None,
                  K2: Optional[Any] = None, *, size: int = 512, device: Any = "cpu", subsample: int = 8,
                  min_matches: int = 12, ransac_thresh: float = 5.0, border: int = 3,
                  max_iterations: int = 10_000, backend: str = "auto", seed: int = 0,
                  verbose: bool = False) -> RelativePose:
    """Pose of camera 2 relative to camera 1 from two images and a MASt3R model.

    Args:
        img1, img2: image paths, ``PIL.Image.Image`` or numpy arrays (anything
            :func:`dust3r.utils.image.load_images` accepts).
        model: a MASt3R model (outputs ``pts3d`` and ``desc``), already on ``device``.
        K1, K2: optional (3, 3) intrinsics of the *original* images, pixels with integer values at
            pixel centres (OpenCV). Missing ones are estimated from the predicted pointmaps. ``K2`` drives
            the PnP; ``K1`` is only reported (the 3D points are the model's pointmap of image 1 in camera
            1's frame, which does not depend on it).
        size: network input size passed to :func:`load_images` (512 for the released MASt3R).
        device: device for inference and matching.
        subsample: grid step (network pixels) of the seeds of the reciprocal NN matching.
        min_matches: fewer matches than this (after the border filter) raise :class:`RelativePoseError`.
        ransac_thresh: PnP RANSAC inlier threshold, in network-input pixels (the original uses 5 at 512).
        border: drop matches closer than this many network pixels to an image edge (original: 3).
        max_iterations: RANSAC iterations.
        backend: ``'auto'`` (poselib if installed, else OpenCV), ``'poselib'`` or ``'cv2'``.
        seed: RANSAC seed.
        verbose: progress output of loading and inference.

    Returns:
        a :class:`RelativePose` (see the module docstring for frames and units).

    Raises:
        RelativePoseError: (a ``ValueError``) too few matches, or no pose found.
        ValueError: bad arguments, or a model without descriptors.
        ImportError: neither poselib nor OpenCV is installed.
    """
    from dust3r.inference import inference
    from dust3r.utils.image import (intrinsics_from_original, intrinsics_to_original, load_images,
                                    pixels_to_original)
    from mast3r.fast_nn import fast_reciprocal_NNs

    backend = _pick_backend(backend)  # fail early, before the expensive inference
    subsample = _check_pos_int(subsample, "subsample")
    min_matches = _check_pos_int(min_matches, "min_matches", minimum=4)
    border = _check_pos_int(border, "border", minimum=0)
    if not (isinstance(ransac_thresh, numbers.Real) and ransac_thresh > 0):
        raise ValueError(f"ransac_thresh must be a positive number of pixels, got {ransac_thresh!r}")
    K1_orig = None if K1 is None else _check_K(K1, "K1")
    K2_orig = None if K2 is None else _check_K(K2, "K2")

    view1, view2 = load_images([img1, img2], size=size, verbose=verbose, patch_size=model_patch_size(model))
    out = inference([(view1, view2), (view2, view1)], model, device, batch_size=2, verbose=verbose)

    # pair 0 = (1, 2): desc of both images, pointmap of image 1 in camera 1
    desc1 = _get(out, "pred1", "desc", 0)
    desc2 = _get(out, "pred2", "desc", 0)
    pts3d_1_cam1 = _get(out, "pred1", "pts3d", 0).double()          # (H1, W1, 3)
    pts3d_2_cam2 = _get(out, "pred1", "pts3d", 1).double()          # pair (2, 1): image 2 in camera 2
    H1, W1 = pts3d_1_cam1.shape[:2]
    H2, W2 = pts3d_2_cam2.shape[:2]

    xy1, xy2 = fast_reciprocal_NNs(desc1, desc2, subsample_or_initxy1=subsample, device=device,
                                   dist="dot", block_size=2 ** 13)
    xy1, xy2 = np.asarray(xy1, dtype=np.int64), np.asarray(xy2, dtype=np.int64)
    n_raw = len(xy1)
    keep = ((xy1[:, 0] >= border) & (xy1[:, 0] < W1 - border) & (xy1[:, 1] >= border) & (xy1[:, 1] < H1 - border)
            & (xy2[:, 0] >= border) & (xy2[:, 0] < W2 - border) & (xy2[:, 1] >= border) & (xy2[:, 1] < H2 - border))
    xy1, xy2 = xy1[keep], xy2[keep]
    pts3d_cam1 = pts3d_1_cam1.cpu().numpy()[xy1[:, 1], xy1[:, 0]]   # (N, 3) in camera 1's frame
    finite = np.isfinite(pts3d_cam1).all(axis=1)
    xy1, xy2, pts3d_cam1 = xy1[finite], xy2[finite], pts3d_cam1[finite]
    if verbose:
        logger.info("relative_pose: %d reciprocal matches, %d kept after the %d px border filter",
                    n_raw, len(xy1), border)
    if len(xy1) < min_matches:
        raise RelativePoseError(f"too few matches between the two images: found {len(xy1)} "
                                f"({n_raw} before the {border} px border filter), need at least {min_matches}")

    # intrinsics at network resolution
    est1, est2 = K1_orig is None, K2_orig is None
    if est1:
        f1 = estimate_focal_weiszfeld(pts3d_1_cam1)
        K1_net = np.array([[f1, 0.0, (W1 - 1) / 2.0], [0.0, f1, (H1 - 1) / 2.0], [0.0, 0.0, 1.0]])
        K1_orig = np.asarray(intrinsics_to_original(K1_net, view1), dtype=np.float64)
    if est2:
        f2 = estimate_focal_weiszfeld(pts3d_2_cam2)
        K2_net = np.array([[f2, 0.0, (W2 - 1) / 2.0], [0.0, f2, (H2 - 1) / 2.0], [0.0, 0.0, 1.0]])
        K2_orig = np.asarray(intrinsics_to_original(K2_net, view2), dtype=np.float64)
    else:
        K2_net = np.asarray(intrinsics_from_original(K2_orig, view2), dtype=np.float64)

    cam1_to_cam2, inliers, used = solve_pnp_ransac(xy2.astype(np.float64), pts3d_cam1, K2_net, (W2, H2),
                                                   thresh=float(ransac_thresh), max_iterations=max_iterations,
                                                   backend=backend, seed=seed)
    cam2_to_cam1 = np.linalg.inv(cam1_to_cam2)
    matches = np.concatenate([pixels_to_original(xy1.astype(np.float64), view1),
                              pixels_to_original(xy2.astype(np.float64), view2)], axis=1)
    if verbose:
        logger.info("relative_pose: %s PnP, %d / %d inliers, |t| = %.4g", used, int(inliers.sum()),
                    len(inliers), float(np.linalg.norm(cam2_to_cam1[:3, 3])))
    return RelativePose(cam2_to_cam1=cam2_to_cam1, R=cam2_to_cam1[:3, :3].copy(), t=cam2_to_cam1[:3, 3].copy(),
                        K1=K1_orig, K2=K2_orig, matches=matches, inliers=inliers,
                        num_inliers=int(inliers.sum()), pts3d_cam1=pts3d_cam1, K_estimated=(est1, est2),
                        backend=used)
