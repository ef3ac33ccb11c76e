"""Plain JSON description of the cameras (network and original resolution)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np

from ._common import atomic_file, check_out_path
from .scene_data import SceneData, require_scene_data

CAMERAS_CONVENTION = (
    "cam2world / world2cam: 4x4 rigid transforms, OpenCV camera axes (x right, y down, z forward), "
    "X_world = cam2world @ X_cam; K: 3x3 pinhole intrinsics with integer pixel coordinates at pixel centres "
    "(top-left pixel centre at (0, 0)); K, width, height refer to the original image file (after EXIF "
    "orientation) when original_known is true, else to the network input; K_network, network_width, "
    "network_height refer to the network input; resize: the load_images record (orig_shape and resized_shape as "
    "[H, W], crop_offset as [x0, y0] in resized pixels)")


def _pair_list(value: Any) -> list:
    return [int(v) for v in np.asarray(value).reshape(-1)[:2]]


def cameras_dict(data: SceneData) -> Dict[str, Any]:
    """The structure written by :func:`export_cameras_json`."""
    w2c = data.world2cam
    entries = []
    for i in range(data.n):
        meta = data.views_meta[i] or {}
        w0, h0 = data.original_size(i)
        wn, hn = data.network_size(i)
        filepath = meta.get("filepath")
        resize = None
        if data.has_original(i):
            resize = {"orig_shape": _pair_list(meta["orig_shape"]),
                      "resized_shape": _pair_list(meta["resized_shape"]),
                      "crop_offset": _pair_list(meta["crop_offset"])}
        entries.append({
            "index": i,
            "name": data.names[i],
            "file": os.fspath(filepath) if filepath else None,
            "original_known": data.has_original(i),
            "width": int(w0), "height": int(h0),
            "K": data.original_K(i).tolist(),
            "network_width": int(wn), "network_height": int(hn),
            "K_network": data.K[i].tolist(),
            "cam2world": data.cam2world[i].tolist(),
            "world2cam": w2c[i].tolist(),
            "resize": resize,
        })
    return {"convention": CAMERAS_CONVENTION, "num_images": data.n, "images": entries}


def export_cameras_json(data: SceneData, path: Any) -> str:
    """Write ``cameras_dict(data)`` as JSON to ``path`` (atomic). Returns the absolute path.

    Per image: ``name``, ``file`` (original path or null), ``original_known``, ``width``/``height`` and ``K`` in
    original pixels, ``network_width``/``network_height``/``K_network``, ``cam2world``, ``world2cam`` (OpenCV),
    ``resize``; top level: ``convention`` (text), ``num_images``, ``images``.
    """
    data = require_scene_data(data, "export_cameras_json")
    path = check_out_path(path)
    with atomic_file(path, "w") as f:
        json.dump(cameras_dict(data), f, indent=2)
    return path
