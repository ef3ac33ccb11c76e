"""Checks every front end runs on its inputs before any heavy work (model loading, inference, alignment).

Each check is fast and pure (it reads file headers, never a model's weights or a whole image) and raises
:class:`InputError` (a ``ValueError``) with one line that names the bad input. Front ends call them in one
validation step at the top, print ``error: <message>`` and exit with code 2; nothing is written before.

========================================  =================================================================
:func:`check_image_files`                 paths/folders -> image files that exist and decode, usable size
:func:`read_image_size`                   (width, height) after EXIF orientation, from the header
:func:`check_writable_dir`                a folder that exists or can be created, and can be written
:func:`check_output_dir`                  output folder creatable, writable, not mixed with other files
:func:`check_scene_graph`                 ``make_pairs`` scene-graph grammar and ranges
:func:`check_image_size`                  network image size (rounded to the patch size, with a note)
:func:`check_checkpoint_kind`             a checkpoint's model class, read without loading its weights
:func:`check_intrinsics_matrix`           a pinhole K against its image
:func:`check_cam2world`                   a rigid 4x4 pose
:func:`match_names`                       calibration keys -> input images (full path, then unique name)
:func:`read_known_intrinsics`             JSON intrinsics file -> {image index: K}
:func:`read_known_poses`                  JSON poses file -> {image index: cam2world}
========================================  =================================================================

Importing this package is cheap: Pillow, torch and the checkpoint helpers are imported by the checks that need
them.
"""
from .base import InputError
from .cameras import check_cam2world, check_intrinsics_matrix, match_names, read_known_intrinsics, read_known_poses
from .images import check_image_files, read_image_size
from .options import (check_checkpoint_kind, check_image_size, check_output_dir, check_scene_graph,
                      check_writable_dir)

__all__ = ["InputError", "check_image_files", "read_image_size", "check_writable_dir", "check_output_dir",
           "check_scene_graph", "check_image_size", "check_checkpoint_kind", "check_intrinsics_matrix",
           "check_cam2world", "match_names", "read_known_intrinsics", "read_known_poses"]
