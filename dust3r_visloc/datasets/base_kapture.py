"""Reading kapture folders (query and mapping records) with the ``kapture`` package, and camera models.

Kapture and COLMAP put the top-left pixel centre at (0.5, 0.5); :func:`camera_to_opencv` converts their
intrinsics to the OpenCV convention, and is the only place where a dataset does so.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dust3r.utils.geometry import colmap_to_opencv_intrinsics

from .utils import cam_to_world_from_kapture, require

__all__ = ["camera_to_opencv", "KaptureRecords"]

# model name -> (names of the parameters after width and height)
_CAMERA_MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}


def camera_to_opencv(model: str, params: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """OpenCV intrinsics of a COLMAP / kapture camera.

    Args:
        model: camera model name (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV).
        params: its parameters in COLMAP order, without width and height.

    Returns:
        ``(K, distortion)``: (3, 3) float64 in the OpenCV convention and (4,) ``k1, k2, p1, p2``.
    """
    names = _CAMERA_MODELS.get(str(model))
    if names is None:
        raise NotImplementedError(f"camera model {model!r} is not supported (supported: {sorted(_CAMERA_MODELS)})")
    params = [float(p) for p in params]
    if len(params) != len(names):
        raise ValueError(f"camera model {model} takes {len(names)} parameters {names}, got {len(params)}")
    p = dict(zip(names, params))
    fx, fy = p.get("fx", p.get("f")), p.get("fy", p.get("f"))
    K = np.array([[fx, 0.0, p["cx"]], [0.0, fy, p["cy"]], [0.0, 0.0, 1.0]])
    dist = np.array([p.get("k1", 0.0), p.get("k2", 0.0), p.get("p1", 0.0), p.get("p2", 0.0)])
    return colmap_to_opencv_intrinsics(K), dist


class KaptureRecords:
    """The camera records of one kapture folder, addressed by image name.

    Args:
        path: kapture folder (``sensors/sensors.txt``, ``sensors/records_camera.txt``, optional
            ``sensors/trajectories.txt`` and ``sensors/rigs.txt``).
        require_trajectories: raise when the folder has no trajectories (mapping records need them).
    """

    def __init__(self, path: str, require_trajectories: bool = False):
        kapture = require("kapture", "reading kapture folders (the localization datasets' queries and maps)")
        from kapture.io.csv import kapture_from_dir

        if not os.path.isdir(path):
            raise FileNotFoundError(f"kapture folder not found: {path}")
        self.path = path
        self.kdata = kapture_from_dir(path)
        if self.kdata.records_camera is None or self.kdata.sensors is None:
            raise ValueError(f"{path}: kapture folder without camera records or sensors")
        if require_trajectories and self.kdata.trajectories is None:
            raise ValueError(f"{path}: kapture folder without trajectories (the map needs poses)")
        if self.kdata.trajectories is not None and self.kdata.rigs:
            kapture.rigs_remove_inplace(self.kdata.trajectories, self.kdata.rigs)
        self.index: Dict[str, Tuple[int, str]] = {
            self.kdata.records_camera[ts, sensor]: (ts, sensor) for ts, sensor in self.kdata.records_camera.key_pairs()}

    def names(self) -> List[str]:
        """Image names in record order."""
        return list(self.kdata.records_camera.data_list())

    def _key(self, name: str) -> Tuple[int, str]:
        if name not in self.index:
            raise KeyError(f"image {name!r} is not in the kapture records of {self.path}")
        return self.index[name]

    def camera(self, name: str) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
        """``(K, distortion, (W, H))`` of an image, K in the OpenCV convention."""
        _, sensor_id = self._key(name)
        sensor = self.kdata.sensors[sensor_id]
        model = getattr(sensor.camera_type, "value", sensor.camera_type)
        params = list(sensor.camera_params)
        K, dist = camera_to_opencv(model, params[2:])
        return K, dist, (int(float(params[0])), int(float(params[1])))

    def cam_to_world(self, name: str) -> Optional[np.ndarray]:
        """(4, 4) cam2world of an image, None when the folder holds no pose for it."""
        ts, sensor_id = self._key(name)
        traj = self.kdata.trajectories
        if traj is None or (ts, sensor_id) not in traj:
            return None
        return cam_to_world_from_kapture(self.kdata, ts, sensor_id)

    def record_path(self, name: str) -> str:
        """Path of a record file in ``sensors/records_data``."""
        return os.path.join(self.path, "sensors", "records_data", name)


class BaseVislocKaptureDataset:
    """Mixin of the datasets with kapture ``query`` and ``mapping`` folders and dense 3D for each map image
    (7-Scenes: depth maps; InLoc: scan cutouts). Subclasses set ``query_records``, ``map_records``, ``pairs``,
    ``scenes``, ``topk`` and implement :meth:`map_pointmap`."""

    def map_pointmap(self, imgname: str, view: dict) -> np.ndarray:
        """(H, W, 3) world points of a map image at its original size, NaN where unknown."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.scenes)

    def _view(self, records: KaptureRecords, imgname: str, idx: int) -> dict:
        from .base_dataset import base_view, load_rgb

        K, dist, _ = records.camera(imgname)
        rgb = load_rgb(records.record_path(imgname))
        return base_view(rgb, imgname, idx, K, dist, records.cam_to_world(imgname), self.maxdim, self.patch_size)

    def __getitem__(self, idx: int) -> List[dict]:
        from .base_dataset import attach_points

        self._check_resolution()
        query_image = self.scenes[idx]
        if query_image not in self.pairs:
            raise KeyError(f"query {query_image!r} has no pairs in the pairs file")
        views = [self._view(self.query_records, query_image, 0)]
        for k, (map_image, _) in enumerate(self.pairs[query_image][:self.topk]):
            view = self._view(self.map_records, map_image, k + 1)
            pointmap = self.map_pointmap(map_image, view)
            valid = np.isfinite(pointmap).all(axis=-1)
            ys, xs = np.nonzero(valid)
            views.append(attach_points(view, np.stack([xs, ys], axis=-1), pointmap[ys, xs]))
        return views
