"""Absolute pose from 2D-3D matches with PnP-RANSAC: poselib, OpenCV or pycolmap.

``run_pnp(pts2D, pts3D, K, distortion, mode, reprojectionError, img_size)`` keeps the original's signature and
returns ``(success, cam2world)``; a failure (too few points, RANSAC failure, a library error) is ``(False, None)``
with the reason logged, never an exception. Pixels follow the OpenCV convention (integer coordinates at pixel
centres) and ``K`` is an OpenCV matrix; the COLMAP-convention libraries (poselib, pycolmap) get both shifted by
+0.5 here. pycolmap 4.x: ``absolute_pose_estimation`` is gone, :func:`pycolmap.estimate_and_refine_absolute_pose`
replaces it.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Optional, Sequence, Tuple

import numpy as np

from dust3r.utils.geometry import opencv_to_colmap_intrinsics

logger = logging.getLogger(__name__)

__all__ = ["PNP_MODES", "HAS_POSELIB", "HAS_PYCOLMAP", "default_pnp_mode", "run_pnp", "MIN_PNP_POINTS"]

PNP_MODES = ("cv2", "poselib", "pycolmap")
MIN_PNP_POINTS = 5  # the original requires more than 4 correspondences
HAS_POSELIB = importlib.util.find_spec("poselib") is not None
HAS_PYCOLMAP = importlib.util.find_spec("pycolmap") is not None

_CONFIDENCE = 0.9999
_ITERATIONS = 10_000


def default_pnp_mode() -> str:
    """``'poselib'`` when installed (the README's setting), else ``'cv2'``."""
    return "poselib" if HAS_POSELIB else "cv2"


def _distortion(distortion: Optional[Sequence[float]]) -> Optional[np.ndarray]:
    """(4,) OpenCV ``k1, k2, p1, p2`` or None when absent or all zero."""
    if distortion is None:
        return None
    d = np.asarray(distortion, dtype=np.float64).reshape(-1)
    if d.size != 4:
        raise ValueError(f"distortion must hold 4 OpenCV coefficients (k1, k2, p1, p2), got {d.size}")
    return None if not d.any() else d


def _camera_dict(K: np.ndarray, distortion: Optional[np.ndarray], img_size) -> dict:
    Kc = opencv_to_colmap_intrinsics(np.asarray(K, dtype=np.float64))
    fx, fy, cx, cy = Kc[0, 0], Kc[1, 1], Kc[0, 2], Kc[1, 2]
    width, height = (img_size[0], img_size[1]) if img_size is not None else (int(cx * 2), int(cy * 2))
    if distortion is None:
        return {"model": "PINHOLE", "width": int(width), "height": int(height), "params": [fx, fy, cx, cy]}
    return {"model": "OPENCV", "width": int(width), "height": int(height),
            "params": [fx, fy, cx, cy, *distortion.tolist()]}


def _pose_from_world2cam(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    world2cam = np.eye(4)
    world2cam[:3, :3], world2cam[:3, 3] = R, np.asarray(t).reshape(3)
    return np.linalg.inv(world2cam)


def _pnp_cv2(pts2D, pts3D, K, distortion, reprojectionError) -> Optional[np.ndarray]:
    import cv2

    if distortion is not None:
        pts2D = cv2.undistortPoints(pts2D.reshape(-1, 1, 2), K, distortion, R=None, P=K).reshape(-1, 2)
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(pts3D, pts2D, K, None, flags=cv2.SOLVEPNP_SQPNP,
                                                 iterationsCount=_ITERATIONS, reprojectionError=reprojectionError,
                                                 confidence=_CONFIDENCE)
    if not ok or inliers is None or len(inliers) == 0:
        return None
    return _pose_from_world2cam(cv2.Rodrigues(rvec)[0], tvec)


def _pnp_poselib(pts2D, pts3D, K, distortion, reprojectionError, img_size) -> Optional[np.ndarray]:
    import poselib

    camera = _camera_dict(K, distortion, img_size)
    pose, info = poselib.estimate_absolute_pose(pts2D + 0.5, pts3D, camera,
                                                {"max_reproj_error": float(reprojectionError),
                                                 "max_iterations": _ITERATIONS, "success_prob": _CONFIDENCE}, {})
    if pose is None or int(info.get("num_inliers", 0)) == 0:
        return None
    Rt = np.asarray(pose.Rt)
    return _pose_from_world2cam(Rt[:3, :3], Rt[:3, 3])


def _pnp_pycolmap(pts2D, pts3D, K, distortion, reprojectionError, img_size) -> Optional[np.ndarray]:
    import pycolmap

    cam = _camera_dict(K, distortion, img_size)
    camera = pycolmap.Camera(model=cam["model"], width=cam["width"], height=cam["height"], params=cam["params"])
    estimation = pycolmap.AbsolutePoseEstimationOptions()
    estimation.ransac.max_error = float(reprojectionError)
    estimation.ransac.min_inlier_ratio = 0.01
    estimation.ransac.min_num_trials = 1000
    estimation.ransac.max_num_trials = 100_000
    estimation.ransac.confidence = _CONFIDENCE
    refinement = pycolmap.AbsolutePoseRefinementOptions()
    refinement.refine_focal_length = False
    refinement.refine_extra_params = False
    ret = pycolmap.estimate_and_refine_absolute_pose(pts2D + 0.5, pts3D, camera, estimation, refinement)
    if ret is None or int(ret.get("num_inliers", 0)) == 0:
        return None
    world2cam = np.asarray(ret["cam_from_world"].matrix())
    return _pose_from_world2cam(world2cam[:3, :3], world2cam[:3, 3])


def run_pnp(pts2D, pts3D, K, distortion=None, mode: str = "cv2", reprojectionError: float = 5,
            img_size=None) -> Tuple[bool, Optional[np.ndarray]]:
    """Camera pose of a query from its 2D-3D matches.

    Args:
        pts2D: (N, 2) query pixels (OpenCV convention); pts3D: (N, 3) world points.
        K: (3, 3) OpenCV intrinsics; distortion: 4 OpenCV coefficients (k1, k2, p1, p2) or None.
        mode: 'cv2' (SQPnP in RANSAC), 'poselib' or 'pycolmap' (LO-RANSAC + refinement).
        reprojectionError: RANSAC inlier threshold in pixels.
        img_size: (W, H) of the query (poselib / pycolmap camera).

    Returns:
        ``(True, cam2world (4, 4))`` or ``(False, None)``.
    """
    if mode not in PNP_MODES:
        raise ValueError(f"pnp mode must be one of {PNP_MODES}, got {mode!r}")
    pts2D = np.ascontiguousarray(pts2D, dtype=np.float64).reshape(-1, 2)
    pts3D = np.ascontiguousarray(pts3D, dtype=np.float64).reshape(-1, 3)
    if len(pts2D) != len(pts3D):
        raise ValueError(f"pts2D and pts3D differ in length: {len(pts2D)} != {len(pts3D)}")
    if len(pts2D) < MIN_PNP_POINTS:
        logger.info("pnp: %d correspondences, at least %d needed", len(pts2D), MIN_PNP_POINTS)
        return False, None
    K = np.asarray(K, dtype=np.float64)
    dist = _distortion(distortion)
    try:
        if mode == "cv2":
            pose = _pnp_cv2(pts2D, pts3D, K, dist, reprojectionError)
        elif mode == "poselib":
            if not HAS_POSELIB:
                raise ImportError("--pnp_mode poselib needs the poselib package: pip install poselib")
            pose = _pnp_poselib(pts2D, pts3D, K, dist, reprojectionError, img_size)
        else:
            if not HAS_PYCOLMAP:
                raise ImportError("--pnp_mode pycolmap needs the pycolmap package: pip install pycolmap")
            pose = _pnp_pycolmap(pts2D, pts3D, K, dist, reprojectionError, img_size)
    except ImportError:
        raise
    except Exception as exc:  # a library error on degenerate input fails this query only
        logger.warning("pnp (%s) failed: %s", mode, exc)
        return False, None
    if pose is None or not np.isfinite(pose).all():
        logger.info("pnp (%s): RANSAC found no pose", mode)
        return False, None
    return True, pose
