"""Synthetic scenes with exact ground truth and an oracle model, to test pipelines without network weights.

* :mod:`.scene`: :func:`make_scene` renders a textured room with boxes into ``n_views`` pinhole cameras with
  known intrinsics and poses (:class:`SyntheticScene`: images, depth, world points, normals, correspondences,
  ``load_images``-style view dicts, PNG files);
* :mod:`.render`: the ray caster and the view-independent procedural textures behind it;
* :mod:`.oracle`: :class:`OracleModel`, the forward interface of ``AsymmetricMASt3R`` answering with the
  ground-truth pointmaps, confidences and point-identifying descriptors of the scene's views;
* pose metrics to score the result live in :mod:`dust3r.utils.pose_metrics` (re-exported here).

Example::

    from dust3r.synthetic import OracleModel, make_scene, pose_errors
    scene = make_scene(n_views=3, height=96, width=128, seed=0)
    model = OracleModel(scene)         # wherever an AsymmetricMASt3R goes
    ...                                # your pipeline on scene.views() (or the files of scene.save_images)
    print(pose_errors(estimated_cam2world, scene.cam2world))

See :mod:`dust3r.synthetic.oracle` for a complete example with the sparse global alignment.
"""
from dust3r.utils.pose_metrics import (align_poses, focal_rel_error, pose_errors, rotation_angle_deg,
                                       translation_direction_error_deg)

from .oracle import OracleModel
from .render import SceneBox
from .scene import SyntheticScene, look_at, make_scene

__all__ = [
    "SceneBox", "SyntheticScene", "make_scene", "look_at", "OracleModel", "rotation_angle_deg",
    "translation_direction_error_deg", "align_poses", "pose_errors", "focal_rel_error",
]
