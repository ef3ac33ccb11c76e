"""Geometry checks of loaded training views against the synthetic scene a fake raw dataset was rendered from."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from dust3r.synthetic import SyntheticScene


def project(K: np.ndarray, world2cam: np.ndarray, pts: np.ndarray):
    """``(xy (N, 2) pixels, z (N,) depth)`` of world points ``pts`` (N, 3) in the camera ``K`` (3, 3), ``world2cam``
    (4, 4)."""
    cam = pts @ world2cam[:3, :3].T + world2cam[:3, 3]
    uvw = cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def check_pair_against_scene(view1: Dict[str, Any], view2: Dict[str, Any], scene: SyntheticScene, i: int, j: int,
                             n_samples: int = 400, seed: int = 0, depth_scale: float = 1.0) -> Dict[str, float]:
    """Compare where the points of ``view1`` land in ``view2`` using the LOADED geometry (pts3d, intrinsics,
    cam2world) with where the scene says they land (scene views ``i`` -> ``j``).

    A loaded pixel ``p1`` maps to the raw pixel ``K_raw K_loaded^-1 p1`` (same camera, rescaled and cropped); the
    scene's world point there projects into raw view ``j`` and back to loaded pixels of view 2. Also compares the
    loaded depth with the scene's depth (times ``depth_scale``) and the relative pose.

    Returns ``{'n': #pixels checked, 'px_err_median', 'px_err_p90', 'depth_rel_err_median', 'rot_err'
    (Frobenius norm of the rotation difference), 'trans_err'}`` (pixel errors in loaded view-2 pixels, over
    pixels visible in scene view ``j``).
    """
    rng = np.random.default_rng(seed)
    valid = np.argwhere(view1["valid_mask"])
    pick = valid[rng.choice(len(valid), size=min(n_samples, len(valid)), replace=False)]
    rows, cols = pick[:, 0], pick[:, 1]
    K1, K2 = (np.asarray(v["camera_intrinsics"], np.float64) for v in (view1, view2))
    pose1, pose2 = (np.asarray(v["camera_pose"], np.float64) for v in (view1, view2))

    # loaded geometry: world point of view 1 -> pixel of view 2
    pts = np.asarray(view1["pts3d"], np.float64)[rows, cols]
    loaded_xy, _ = project(K2, np.linalg.inv(pose2), pts)

    # scene truth through the raw pixels
    pix1 = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float64)
    raw1 = pix1 @ (scene.K[i] @ np.linalg.inv(K1)).T
    c = np.clip(np.rint(raw1[:, 0]), 0, scene.width - 1).astype(int)
    r = np.clip(np.rint(raw1[:, 1]), 0, scene.height - 1).astype(int)
    xy_j, visible = scene.correspondences(i, j)
    raw2 = np.concatenate([xy_j[r, c], np.ones((len(r), 1))], -1)
    truth_xy = (raw2 @ (K2 @ np.linalg.inv(scene.K[j])).T)[:, :2]
    vis = visible[r, c]
    err = np.linalg.norm(loaded_xy - truth_xy, axis=-1)[vis]

    depth_loaded = np.asarray(view1["depthmap"], np.float64)[rows, cols]
    depth_rel = np.abs(depth_loaded - depth_scale * scene.depth[i][r, c]) / (depth_scale * scene.depth[i][r, c])

    rel_loaded = np.linalg.inv(pose1) @ pose2
    rel_truth = scene.relative_pose(i, j)
    return dict(n=int(vis.sum()), px_err_median=float(np.median(err)) if len(err) else np.inf,
                px_err_p90=float(np.percentile(err, 90)) if len(err) else np.inf,
                depth_rel_err_median=float(np.median(depth_rel)),
                rot_err=float(np.linalg.norm(rel_loaded[:3, :3] - rel_truth[:3, :3])),
                trans_err=float(np.linalg.norm(rel_loaded[:3, 3] - depth_scale * rel_truth[:3, 3])))


def assert_consistent(stats: Dict[str, float], min_n: int = 30, px_p90: float = 1.5, trans: float = 1e-4) -> None:
    """The checks every reader test makes on :func:`check_pair_against_scene` statistics."""
    assert stats["n"] > min_n, stats
    assert stats["px_err_median"] < 0.7 and stats["px_err_p90"] < px_p90, stats
    assert stats["depth_rel_err_median"] < 0.01 and stats["rot_err"] < 1e-5 and stats["trans_err"] < trans, stats


def recipe_dataset(tmp_path, monkeypatch, default_root: str, root: str, text: str):
    """``mast3r.datasets.parse_dataset(text)`` run where ``default_root`` (e.g. 'data/megadepth_processed', the
    reader's DEFAULT_ROOT: the recipe strings give no ROOT) points at ``root``; epoch 0 set."""
    from mast3r.datasets import parse_dataset

    link = tmp_path / default_root
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(root)
    monkeypatch.chdir(tmp_path)
    ds = parse_dataset(text)
    ds.set_epoch(0)
    return ds
