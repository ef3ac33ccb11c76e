"""Pose errors, the thresholds table and the benchmarks' submission files.

Submission format (visuallocalization.net, also used for Cambridge / 7-Scenes): one line per localized query,
``name qw qx qy qz tx ty tz`` with the world-to-camera rotation (unit quaternion, qw >= 0) and translation. A
query that failed is NOT written as a pose (the original wrote the identity); it is listed in ``*_failed.txt``
and counts as not localized at every threshold.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dust3r.export.colmap import rotmat_to_qvec
from dust3r.utils.pose_metrics import rotation_angle_deg

__all__ = ["THRESHOLDS", "ORIGINAL_THRESHOLDS", "get_pose_error", "aggregate_stats", "accuracy_at_thresholds",
           "summary_table", "pose_to_submission_line", "export_results"]

#: (translation m, rotation degrees) thresholds of the Aachen / InLoc benchmarks
THRESHOLDS: Tuple[Tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))
#: the original's ``aggregate_stats`` line also reports (0.1 m, 1 deg)
ORIGINAL_THRESHOLDS: Tuple[Tuple[float, float], ...] = ((0.1, 1.0),) + THRESHOLDS


def get_pose_error(pr_camtoworld, gt_cam_to_world) -> Tuple[float, float]:
    """``(translation error m, rotation error deg)`` between two (4, 4) cam2world poses; ``(inf, inf)`` when the
    prediction is None."""
    if pr_camtoworld is None:
        return float("inf"), float("inf")
    pr, gt = np.asarray(pr_camtoworld, dtype=np.float64), np.asarray(gt_cam_to_world, dtype=np.float64)
    return float(np.linalg.norm(pr[:3, 3] - gt[:3, 3])), float(rotation_angle_deg(pr[:3, :3], gt[:3, :3]))


def accuracy_at_thresholds(pose_errors: Sequence[float], angular_errors: Sequence[float],
                           thresholds: Sequence[Tuple[float, float]] = THRESHOLDS) -> Dict[Tuple[float, float], float]:
    """``{(m, deg): percentage of queries within both}`` (failed queries carry inf errors)."""
    t, r = np.asarray(pose_errors, dtype=np.float64), np.asarray(angular_errors, dtype=np.float64)
    if t.size == 0:
        return {thr: 0.0 for thr in thresholds}
    return {(m, deg): float(100.0 * np.mean((t < m) & (r < deg))) for m, deg in thresholds}


def aggregate_stats(info_str: str, pose_errors: Sequence[float], angular_errors: Sequence[float],
                    thresholds: Sequence[Tuple[float, float]] = ORIGINAL_THRESHOLDS) -> str:
    """The original's one-line summary: medians and ``acc@Xm,Ydeg`` percentages."""
    median_pos_error = float(np.median(pose_errors)) if len(pose_errors) else float("nan")
    median_angular_error = float(np.median(angular_errors)) if len(angular_errors) else float("nan")
    out = f"{info_str}: {len(pose_errors)} images - {median_pos_error=}, {median_angular_error=}"
    for (m, deg), acc in accuracy_at_thresholds(pose_errors, angular_errors, thresholds).items():
        out += f"  - {f'acc@{m:g}m,{deg:g}deg':12s}={acc:.3f}"
    return out


def summary_table(pose_errors: Sequence[float], angular_errors: Sequence[float], n_failed: int = 0,
                  thresholds: Sequence[Tuple[float, float]] = THRESHOLDS, title: str = "") -> str:
    """A text table: one row per threshold with the percentage of localized queries, then the medians."""
    n = len(pose_errors)
    lines = [title] if title else []
    lines += [f"{'threshold':>22} | {'localized':>9}", "-" * 35]
    for (m, deg), acc in accuracy_at_thresholds(pose_errors, angular_errors, thresholds).items():
        lines.append(f"{f'({m:g} m, {deg:g} deg)':>22} | {acc:8.1f}%")
    lines.append("-" * 35)
    med_t = float(np.median(pose_errors)) if n else float("nan")
    med_r = float(np.median(angular_errors)) if n else float("nan")
    lines.append(f"{'median translation':>22} | {med_t:.4f} m")
    lines.append(f"{'median rotation':>22} | {med_r:.4f} deg")
    lines.append(f"{'queries':>22} | {n} ({n_failed} failed)")
    return "\n".join(lines)


def pose_to_submission_line(name: str, cam2world: np.ndarray) -> str:
    """``name qw qx qy qz tx ty tz`` of a cam2world pose (world-to-camera quaternion and translation)."""
    world2cam = np.linalg.inv(np.asarray(cam2world, dtype=np.float64))
    q = rotmat_to_qvec(world2cam[:3, :3])
    return " ".join([name, *(repr(float(v)) for v in q), *(repr(float(v)) for v in world2cam[:3, 3])])


def export_results(output_dir: Optional[str], xp_label: str, query_names: Sequence[str],
                   poses_pred: Sequence[Optional[np.ndarray]]) -> List[str]:
    """Write ``{xp_label}_results.txt`` (full query names), ``{xp_label}_ltvl.txt`` (base names, the online
    benchmark's format) and ``{xp_label}_failed.txt`` (queries without a pose) in ``output_dir``.

    Returns:
        the written paths (nothing when ``output_dir`` is None).
    """
    if output_dir is None:
        return []
    from croco.utils.misc import atomic_write

    os.makedirs(output_dir, exist_ok=True)
    full, ltvl, failed = [], [], []
    for name, pose in zip(query_names, poses_pred):
        if pose is None:
            failed.append(name)
            continue
        full.append(pose_to_submission_line(name, pose))
        ltvl.append(pose_to_submission_line(os.path.basename(name), pose))
    paths = []
    for suffix, lines in (("results", full), ("ltvl", ltvl), ("failed", failed)):
        path = os.path.join(output_dir, f"{xp_label}_{suffix}.txt")
        text = "".join(line + "\n" for line in lines)

        def write(tmp: str, text: str = text) -> None:
            with open(tmp, "w") as f:
                f.write(text)
        atomic_write(path, write)
        paths.append(path)
    return paths
