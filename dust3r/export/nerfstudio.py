"""nerfstudio / instant-ngp style ``transforms.json``.

Convention (as nerfstudio's own COLMAP conversion, ``colmap_to_json``):

* ``transform_matrix`` is the 4x4 camera-to-world in the OpenGL / nerfstudio camera convention: x right,
  y UP, z BACKWARD (the camera looks along -z). It is ``cam2world_opencv @ diag(1, -1, -1, 1)``: the world frame
  is the reconstruction's, unchanged; only the camera's y and z axes are flipped. A point in front of the
  camera (positive z in OpenCV) therefore has negative z in the nerfstudio camera frame.
* intrinsics ``fl_x, fl_y, cx, cy, w, h`` are in pixels of the referenced image file, with the top-left pixel
  CENTRE at (0.5, 0.5) (nerfstudio casts rays through ``pixel_index + 0.5``), i.e. ``cx = cx_opencv + 0.5``.
  They are written per frame (images may differ in size) and also at the top level when all frames share them.
* ``camera_model`` is "OPENCV" with zero distortion.
* images are written to ``out_dir/images/`` (the original files when the resize record and the files are
  available and ``original_resolution=True``, otherwise the network images) and referenced as
  ``images/<name>``; optional depth maps go to ``out_dir/depths/`` as 16-bit PNG in millimetres (nerfstudio's
  default ``depth_unit_scale_factor=1e-3``; 0 = unknown) or float32 ``.npy``, at the resolution of the image.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ._checks import unique_stems
from ._common import atomic_file, check_out_dir, staged_dir
from .scene_data import SceneData, require_scene_data
from ._images import plan_images, write_image
from .depth import depth_map, depth_to_png16, write_npy, write_png16

logger = logging.getLogger(__name__)

#: OpenCV camera axes -> OpenGL / nerfstudio camera axes (flip y and z)
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def export_nerfstudio(data: SceneData, out_dir: Any, original_resolution: bool = True,
                      depth_format: Optional[str] = None, write_images: bool = True,
                      depth_interpolation: str = "nearest") -> str:
    """Write ``out_dir/transforms.json`` (+ ``images/``, optional ``depths/``); see the module docstring.

    Args:
        data: the scene snapshot.
        out_dir: output folder (created).
        original_resolution: reference the original image files and their intrinsics when possible.
        depth_format: None (no depth), 'png' (uint16 millimetres) or 'npy' (float32, NaN unknown).
        write_images: write the images into ``out_dir/images`` (False: only reference them).
        depth_interpolation: 'nearest' or 'bilinear' when depths are brought to the original size.

    Returns:
        path of ``transforms.json``.
    """
    data = require_scene_data(data, "export_nerfstudio")
    if depth_format not in (None, "png", "npy"):
        raise ValueError(f"depth_format must be None, 'png' or 'npy', got {depth_format!r}")
    out_dir = check_out_dir(out_dir)
    plans = plan_images(data, original_resolution, write_images=True)
    stems = unique_stems([p.name for p in plans])
    frames: List[Dict[str, Any]] = []
    with staged_dir(out_dir) as tmp:
        os.makedirs(os.path.join(tmp, "images"), exist_ok=True)
        if depth_format:
            os.makedirs(os.path.join(tmp, "depths"), exist_ok=True)
        for i, plan in enumerate(plans):
            if write_images:
                write_image(data, i, plan, os.path.join(tmp, "images"))
            K = plan.K
            frame: Dict[str, Any] = {
                "file_path": f"images/{plan.name}",
                "transform_matrix": (data.cam2world[i] @ OPENCV_TO_OPENGL).tolist(),
                "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]),
                "cx": float(K[0, 2] + 0.5), "cy": float(K[1, 2] + 0.5),
                "w": int(plan.width), "h": int(plan.height),
            }
            if depth_format:
                depth = depth_map(data, i, plan.original, apply_mask=True, interpolation=depth_interpolation)
                rel = f"depths/{stems[i]}.{depth_format}"
                if depth_format == "png":
                    write_png16(os.path.join(tmp, rel), depth_to_png16(depth, 1000.0))
                else:
                    write_npy(os.path.join(tmp, rel), depth)
                frame["depth_file_path"] = rel
            frames.append(frame)
        meta: Dict[str, Any] = {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
        shared = all(all(f[k] == frames[0][k] for k in _INTRINSIC_KEYS) for f in frames)
        if shared:
            meta.update({k: frames[0][k] for k in _INTRINSIC_KEYS})
        meta["convention"] = ("transform_matrix: camera-to-world, OpenGL camera axes (x right, y up, z back) = "
                              "cam2world_opencv @ diag(1,-1,-1,1); intrinsics in pixels of file_path with the "
                              "top-left pixel centre at (0.5, 0.5)")
        if depth_format == "png":
            meta["depth_unit_scale_factor"] = 1e-3
        meta["frames"] = frames
        with atomic_file(os.path.join(tmp, "transforms.json"), "w") as f:
            json.dump(meta, f, indent=2)
    return os.path.join(out_dir, "transforms.json")
