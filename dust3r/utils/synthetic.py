"""Former home of the synthetic scenes, the oracle model and the pose metrics (kept for existing imports).

They now live in :mod:`dust3r.synthetic` (scenes, renderer, oracle) and :mod:`dust3r.utils.pose_metrics`.
"""
from dust3r.synthetic import (OracleModel, SceneBox, SyntheticScene, align_poses, focal_rel_error, look_at,
                              make_scene, pose_errors, rotation_angle_deg, translation_direction_error_deg)

__all__ = [
    "SceneBox", "SyntheticScene", "make_scene", "look_at", "OracleModel", "rotation_angle_deg",
    "translation_direction_error_deg", "align_poses", "pose_errors", "focal_rel_error",
]
