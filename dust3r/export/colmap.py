"""COLMAP sparse model export (text and binary) and a dependency-free reader.

What is written (one camera per image, ``camera_id = image_id = i + 1``):

* ``cameras``: ``PINHOLE`` (fx, fy, cx, cy) or ``SIMPLE_PINHOLE`` (f, cx, cy; f = mean of fx, fy), in ORIGINAL
  image pixels when the scene carries the resize record (``views_meta``) and ``original_resolution=True``,
  else network pixels. COLMAP puts the centre of the top-left pixel at (0.5, 0.5) while this repository uses
  (0, 0): principal points and 2D observations are shifted by +0.5 on export
  (:func:`dust3r.utils.geometry.opencv_to_colmap_intrinsics`).
* ``images``: world-to-camera rotation as a unit quaternion ``(qw, qx, qy, qz)`` with ``qw >= 0`` and the
  translation ``t`` (``X_cam = R X_world + t``), the image name (original file basename) and its POINTS2D
  ``(x, y, point3D_id)``.
* ``points3D``: a random (seeded) subsample of the confident points, at most ``max_points``; each point keeps
  the colour of its pixel and a track with its single observation ``(image_id, point2D_idx)``, the pixel it was
  predicted at. Reprojection error is written as 0 (unknown).
"""
from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

import numpy as np

from ._common import atomic_file, check_out_dir, staged_dir
from .scene_data import SceneData, require_scene_data

logger = logging.getLogger(__name__)

#: COLMAP camera models: id -> (name, number of parameters)
CAMERA_MODELS: Dict[int, Tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
CAMERA_MODEL_IDS: Dict[str, int] = {name: mid for mid, (name, _) in CAMERA_MODELS.items()}
_EXPORT_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")
COLMAP_PIXEL_OFFSET = 0.5


# ----------------------------------------------------------------------------------------------
# rotations
# ----------------------------------------------------------------------------------------------
def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 4) unit quaternion (w, x, y, z), w >= 0 (robust for all angles)."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    # symmetric 4x4 matrix whose dominant eigenvector is the quaternion (Bar-Itzhack)
    K = np.empty((len(m), 4, 4))
    K[:, 0, 0] = m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]
    K[:, 1, 1] = m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2]
    K[:, 2, 2] = m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1]
    K[:, 3, 3] = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    K[:, 0, 1] = K[:, 1, 0] = m[:, 1, 0] + m[:, 0, 1]
    K[:, 0, 2] = K[:, 2, 0] = m[:, 2, 0] + m[:, 0, 2]
    K[:, 1, 2] = K[:, 2, 1] = m[:, 2, 1] + m[:, 1, 2]
    K[:, 0, 3] = K[:, 3, 0] = m[:, 2, 1] - m[:, 1, 2]
    K[:, 1, 3] = K[:, 3, 1] = m[:, 0, 2] - m[:, 2, 0]
    K[:, 2, 3] = K[:, 3, 2] = m[:, 1, 0] - m[:, 0, 1]
    _, vecs = np.linalg.eigh(K / 3.0)
    xyzw = vecs[:, :, -1]
    q = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(R.shape[:-2] + (4,))


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternion (w, x, y, z) -> (..., 3, 3) rotation (the quaternion is normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1)
    return R.reshape(q.shape[:-1] + (3, 3))


# ----------------------------------------------------------------------------------------------
# model containers (shared by the writer and the reader)
# ----------------------------------------------------------------------------------------------
@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # (P,) float64, COLMAP pixel convention (top-left pixel centre at 0.5, 0.5)

    def K(self) -> np.ndarray:
        """(3, 3) calibration matrix of a pinhole-family model, COLMAP pixel convention."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE",
                          "FOV"):
            f, cx, cy = p[0], p[1], p[2]
            fx = fy = f
        else:
            fx, fy, cx, cy = p[0], p[1], p[2], p[3]
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray        # (4,) w, x, y, z of world2cam rotation
    tvec: np.ndarray        # (3,) world2cam translation
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))           # (P, 2) COLMAP pixels
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (P,), -1 = none

    def rotation_matrix(self) -> np.ndarray:
        """(3, 3) world-to-camera rotation."""
        return qvec_to_rotmat(self.qvec)

    def world2cam(self) -> np.ndarray:
        """(4, 4) world-to-camera (OpenCV axes)."""
        T = np.eye(4)
        T[:3, :3] = qvec_to_rotmat(self.qvec)
        T[:3, 3] = self.tvec
        return T

    def cam2world(self) -> np.ndarray:
        return np.linalg.inv(self.world2cam())


@dataclass
class ColmapPoint3D:
    id: int
    xyz: np.ndarray          # (3,)
    rgb: np.ndarray          # (3,) uint8
    error: float
    image_ids: np.ndarray    # (L,) int
    point2D_idxs: np.ndarray  # (L,) int


# ----------------------------------------------------------------------------------------------
# building the model from a SceneData
# ----------------------------------------------------------------------------------------------
@dataclass
class _Model:
    cameras: List[ColmapCamera]
    images: List[ColmapImage]
    xyz: np.ndarray            # (M, 3) float64
    rgb: np.ndarray            # (M, 3) uint8
    point_image: np.ndarray    # (M,) image id of the single observation
    point_p2d: np.ndarray      # (M,) index of that observation in the image's POINTS2D


def _camera_params(K: np.ndarray, model: str) -> np.ndarray:
    if model == "PINHOLE":
        return np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    f = 0.5 * (K[0, 0] + K[1, 1])
    if abs(K[0, 0] - K[1, 1]) > 1e-3 * f:
        logger.warning("SIMPLE_PINHOLE: fx=%.4f and fy=%.4f differ, using their mean", K[0, 0], K[1, 1])
    return np.array([f, K[0, 2], K[1, 2]])


def _sample_pixels(data: SceneData, max_points: Optional[int], seed: int) -> List[np.ndarray]:
    """Flat pixel indices of the points kept per image: valid, in front of the camera, subsampled."""
    candidates = []
    for i in range(data.n):
        ok = data.masks[i] & (data.depths[i] > 0)
        candidates.append(np.flatnonzero(ok))
    total = sum(len(c) for c in candidates)
    if max_points is None or total <= max_points:
        return candidates
    rng = np.random.default_rng(seed)
    # per-image quotas proportional to the candidate counts (largest remainders), then uniform sampling
    raw = np.array([len(c) for c in candidates], dtype=np.float64) * max_points / total
    quota = np.floor(raw).astype(np.int64)
    rest = max_points - int(quota.sum())
    if rest > 0:
        quota[np.argsort(-(raw - quota), kind="stable")[:rest]] += 1
    return [np.sort(rng.choice(c, size=int(q), replace=False)) for c, q in zip(candidates, quota)]


def build_colmap_model(data: SceneData, camera_model: str = "PINHOLE", original_resolution: bool = True,
                       max_points: Optional[int] = 100_000, seed: int = 0,
                       image_names: Optional[List[str]] = None,
                       use_original: Optional[List[bool]] = None) -> _Model:
    """Assemble cameras, images and points (see the module docstring); nothing is written."""
    from dust3r.utils.geometry import opencv_to_colmap_intrinsics
    from dust3r.utils.image import pixels_to_original
    if camera_model not in _EXPORT_MODELS:
        raise ValueError(f"camera_model must be one of {_EXPORT_MODELS}, got {camera_model!r}")
    if max_points is not None and (not isinstance(max_points, (int, np.integer)) or max_points < 0):
        raise ValueError(f"max_points must be a non-negative int or None, got {max_points!r}")
    names = list(data.names) if image_names is None else list(image_names)
    if use_original is None:
        use_original = [original_resolution and data.has_original(i) for i in range(data.n)]

    w2c = data.world2cam
    qvecs = rotmat_to_qvec(w2c[:, :3, :3])
    keep = _sample_pixels(data, max_points, seed)
    cameras, images = [], []
    xyz, rgb, pimg, pidx = [], [], [], []
    next_id = 1
    for i in range(data.n):
        K, w, h = data.camera(i, use_original[i])
        cameras.append(ColmapCamera(id=i + 1, model=camera_model, width=int(w), height=int(h),
                                    params=_camera_params(opencv_to_colmap_intrinsics(K), camera_model)))
        H, W = data.images[i].shape[:2]
        flat = keep[i]
        xy_net = np.stack([flat % W, flat // W], axis=-1).astype(np.float64)
        xy = pixels_to_original(xy_net, data.views_meta[i]) if use_original[i] else xy_net
        xy = np.asarray(xy, dtype=np.float64) + COLMAP_PIXEL_OFFSET
        ids = np.arange(next_id, next_id + len(flat), dtype=np.int64)
        next_id += len(flat)
        images.append(ColmapImage(id=i + 1, qvec=qvecs[i], tvec=w2c[i, :3, 3].copy(), camera_id=i + 1,
                                  name=names[i], xys=xy, point3D_ids=ids))
        xyz.append(data.pts3d[i].reshape(-1, 3)[flat].astype(np.float64))
        rgb.append(data.image_u8(i).reshape(-1, 3)[flat])
        pimg.append(np.full(len(flat), i + 1, dtype=np.int64))
        pidx.append(np.arange(len(flat), dtype=np.int64))
    return _Model(cameras, images, np.concatenate(xyz).reshape(-1, 3), np.concatenate(rgb).reshape(-1, 3),
                  np.concatenate(pimg), np.concatenate(pidx))


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------
def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def _write_text(model: _Model, folder: str) -> None:
    with atomic_file(os.path.join(folder, "cameras.txt"), "w") as f:
        f.write("# Camera list with one line of data per camera:\n"
                "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                f"# Number of cameras: {len(model.cameras)}\n")
        for cam in model.cameras:
            f.write(f"{cam.id} {cam.model} {cam.width} {cam.height} {_fmt(cam.params)}\n")
    n_obs = sum(len(im.point3D_ids) for im in model.images)
    with atomic_file(os.path.join(folder, "images.txt"), "w") as f:
        f.write("# Image list with two lines of data per image:\n"
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                f"# Number of images: {len(model.images)}, mean observations per image: "
                f"{n_obs / max(1, len(model.images))}\n")
        for im in model.images:
            f.write(f"{im.id} {_fmt(im.qvec)} {_fmt(im.tvec)} {im.camera_id} {im.name}\n")
            f.write(" ".join(f"{x:.6f} {y:.6f} {int(pid)}"
                             for (x, y), pid in zip(im.xys.tolist(), im.point3D_ids.tolist())) + "\n")
    with atomic_file(os.path.join(folder, "points3D.txt"), "w") as f:
        f.write("# 3D point list with one line of data per point:\n"
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                f"# Number of points: {len(model.xyz)}, mean track length: 1\n")
        if len(model.xyz):
            ids = np.arange(1, len(model.xyz) + 1)
            table = np.column_stack([ids, model.xyz, model.rgb, np.zeros(len(ids)), model.point_image,
                                     model.point_p2d]).astype(object)
            np.savetxt(f, table, fmt="%d %.9g %.9g %.9g %d %d %d %g %d %d")


def _write_binary(model: _Model, folder: str) -> None:
    with atomic_file(os.path.join(folder, "cameras.bin")) as f:
        f.write(struct.pack("<Q", len(model.cameras)))
        for cam in model.cameras:
            f.write(struct.pack("<iiQQ", cam.id, CAMERA_MODEL_IDS[cam.model], cam.width, cam.height))
            f.write(np.asarray(cam.params, dtype="<f8").tobytes())
    p2d_dtype = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
    with atomic_file(os.path.join(folder, "images.bin")) as f:
        f.write(struct.pack("<Q", len(model.images)))
        for im in model.images:
            f.write(struct.pack("<i4d3di", im.id, *im.qvec, *im.tvec, im.camera_id))
            f.write(im.name.encode("utf-8") + b"\x00")
            f.write(struct.pack("<Q", len(im.xys)))
            rec = np.empty(len(im.xys), dtype=p2d_dtype)
            rec["xy"] = im.xys
            rec["id"] = im.point3D_ids
            f.write(rec.tobytes())
    pt_dtype = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("err", "<f8"),
                         ("track_len", "<u8"), ("image_id", "<i4"), ("p2d", "<i4")])
    with atomic_file(os.path.join(folder, "points3D.bin")) as f:
        f.write(struct.pack("<Q", len(model.xyz)))
        rec = np.zeros(len(model.xyz), dtype=pt_dtype)
        rec["id"] = np.arange(1, len(model.xyz) + 1)
        rec["xyz"] = model.xyz
        rec["rgb"] = model.rgb
        rec["track_len"] = 1
        rec["image_id"] = model.point_image
        rec["p2d"] = model.point_p2d
        f.write(rec.tobytes())


def export_colmap(data: SceneData, out_dir: Any, binary: bool = True, camera_model: str = "PINHOLE",
                  original_resolution: bool = True, max_points: Optional[int] = 100_000, seed: int = 0,
                  images_dir: Optional[Any] = None) -> str:
    """Write a COLMAP sparse model (``cameras``, ``images``, ``points3D``; ``.bin`` or ``.txt``) into ``out_dir``.

    Args:
        data: the scene snapshot.
        out_dir: the model folder (created); existing ``cameras``/``images``/``points3D`` files there (``.bin``
            and ``.txt``) are replaced / removed, nothing else is touched.
        binary: ``.bin`` files (True) or ``.txt`` files (False).
        camera_model: 'PINHOLE' (default) or 'SIMPLE_PINHOLE'.
        original_resolution: cameras and 2D observations in original image pixels when ``views_meta`` has
            the resize record (network pixels otherwise).
        max_points: at most this many 3D points (random, seeded subsample of the confident ones); None = all.
        seed: subsampling seed.
        images_dir: if given, also write the referenced images there (original files when used, else the
            network images); image names then follow the written files.

    Returns:
        ``out_dir`` (absolute).
    """
    from ._images import plan_images, write_image
    data = require_scene_data(data, "export_colmap")
    out_dir = check_out_dir(out_dir)
    write_images = images_dir is not None
    plans = plan_images(data, original_resolution, write_images)
    model = build_colmap_model(data, camera_model, original_resolution, max_points, seed,
                               image_names=[p.name for p in plans], use_original=[p.original for p in plans])
    if write_images:
        images_dir = check_out_dir(images_dir, "images_dir")
        with staged_dir(images_dir) as tmp:
            for i, plan in enumerate(plans):
                write_image(data, i, plan, tmp)
    with staged_dir(out_dir) as tmp:
        (_write_binary if binary else _write_text)(model, tmp)
    # a model of the other format left by an earlier export would shadow or contradict this one
    stale_ext = ".txt" if binary else ".bin"
    for stem in ("cameras", "images", "points3D"):
        stale = os.path.join(out_dir, stem + stale_ext)
        if os.path.isfile(stale):
            os.remove(stale)
    logger.info("COLMAP model (%s, %d images, %d points) written to %s", "bin" if binary else "txt",
                len(model.images), len(model.xyz), out_dir)
    return out_dir


# ----------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, f: BinaryIO, path: str):
        self.buf = f.read()
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> Tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError(f"{self.path}: truncated file")
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = dtype.itemsize * count
        if self.pos + size > len(self.buf):
            raise ValueError(f"{self.path}: truncated file")
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def cstring(self) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: truncated file (unterminated image name)")
        out = self.buf[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return out


def _read_cameras_bin(path: str) -> Dict[int, ColmapCamera]:
    with open(path, "rb") as f:
        r = _Reader(f, path)
    cams = {}
    for _ in range(r.take("<Q")[0]):
        cid, mid, w, h = r.take("<iiQQ")
        if mid not in CAMERA_MODELS:
            raise ValueError(f"{path}: unknown camera model id {mid}")
        name, n_params = CAMERA_MODELS[mid]
        cams[cid] = ColmapCamera(cid, name, int(w), int(h), np.array(r.array("<f8", n_params), dtype=np.float64))
    return cams


def _read_images_bin(path: str) -> Dict[int, ColmapImage]:
    with open(path, "rb") as f:
        r = _Reader(f, path)
    p2d_dtype = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
    images = {}
    for _ in range(r.take("<Q")[0]):
        vals = r.take("<i4d3di")
        name = r.cstring()
        n = r.take("<Q")[0]
        rec = r.array(p2d_dtype, n)
        images[vals[0]] = ColmapImage(vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8], name,
                                      np.array(rec["xy"], dtype=np.float64).reshape(-1, 2),
                                      np.array(rec["id"], dtype=np.int64))
    return images


def _read_points_bin(path: str) -> Dict[int, ColmapPoint3D]:
    with open(path, "rb") as f:
        r = _Reader(f, path)
    head = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("err", "<f8"),
                     ("track_len", "<u8")])
    pts = {}
    for _ in range(r.take("<Q")[0]):
        h = r.array(head, 1)[0]
        track = r.array(np.dtype("<i4"), 2 * int(h["track_len"])).reshape(-1, 2)
        pid = int(h["id"])
        pts[pid] = ColmapPoint3D(pid, np.array(h["xyz"], dtype=np.float64), np.array(h["rgb"], dtype=np.uint8),
                                 float(h["err"]), track[:, 0].astype(np.int64), track[:, 1].astype(np.int64))
    return pts


def _data_lines(path: str) -> List[str]:
    with open(path, "r", encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def read_cameras_txt(path: str) -> Dict[int, ColmapCamera]:
    """A COLMAP ``cameras.txt``: ``{camera id: ColmapCamera}``."""
    cams = {}
    for ln in _data_lines(path):
        tok = ln.split()
        if len(tok) < 4 or tok[1] not in CAMERA_MODEL_IDS:
            raise ValueError(f"{path}: bad camera line {ln!r}")
        cams[int(tok[0])] = ColmapCamera(int(tok[0]), tok[1], int(tok[2]), int(tok[3]),
                                         np.array([float(v) for v in tok[4:]]))
    return cams


def read_images_txt(path: str) -> Dict[int, ColmapImage]:
    """A COLMAP ``images.txt``: ``{image id: ColmapImage}`` (pose, camera id, name, 2D points)."""
    with open(path, "r", encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
    images = {}
    k = 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        tok = lines[k].split(maxsplit=9)
        if len(tok) < 10:
            raise ValueError(f"{path}: bad image line {lines[k]!r}")
        pts_line = lines[k + 1] if k + 1 < len(lines) else ""
        vals = np.array(pts_line.split(), dtype=np.float64) if pts_line.strip() else np.zeros(0)
        if len(vals) % 3:
            raise ValueError(f"{path}: POINTS2D line of image {tok[0]} has {len(vals)} values (not a multiple of 3)")
        vals = vals.reshape(-1, 3)
        iid = int(tok[0])
        images[iid] = ColmapImage(iid, np.array([float(v) for v in tok[1:5]]), np.array([float(v) for v in tok[5:8]]),
                                  int(tok[8]), tok[9], vals[:, :2].copy(), vals[:, 2].astype(np.int64))
        k += 2
    return images


def _read_points_txt(path: str) -> Dict[int, ColmapPoint3D]:
    pts = {}
    for ln in _data_lines(path):
        tok = ln.split()
        if len(tok) < 8 or (len(tok) - 8) % 2:
            raise ValueError(f"{path}: bad point line {ln!r}")
        track = np.array(tok[8:], dtype=np.int64).reshape(-1, 2)
        pid = int(tok[0])
        pts[pid] = ColmapPoint3D(pid, np.array([float(v) for v in tok[1:4]]),
                                 np.array([int(v) for v in tok[4:7]], dtype=np.uint8), float(tok[7]),
                                 track[:, 0], track[:, 1])
    return pts


def _model_folder(path: str) -> str:
    """``path`` itself, or its ``sparse/0`` / ``sparse`` subfolder when only that holds a model (the layout
    written by :func:`dust3r.export.export_all`)."""
    def has_model(folder: str) -> bool:
        return any(os.path.isfile(os.path.join(folder, "cameras" + e)) for e in (".bin", ".txt"))
    if has_model(path):
        return path
    for sub in (os.path.join("sparse", "0"), "sparse"):
        if has_model(os.path.join(path, sub)):
            return os.path.join(path, sub)
    return path


def read_colmap_model(path: Any, ext: Optional[str] = None
                      ) -> Tuple[Dict[int, ColmapCamera], Dict[int, ColmapImage], Dict[int, ColmapPoint3D]]:
    """Read a COLMAP sparse model (no pycolmap needed).

    Args:
        path: folder holding ``cameras``, ``images``, ``points3D`` with extension ``.bin`` or ``.txt`` (or a
            folder whose ``sparse/0`` or ``sparse`` subfolder does, as ``export_all``'s ``colmap`` folder).
        ext: '.bin' or '.txt'; None: binary when ``cameras.bin`` exists, else text.

    Returns:
        ``(cameras, images, points3D)``: dicts id -> :class:`ColmapCamera` / :class:`ColmapImage` /
        :class:`ColmapPoint3D` (values in the COLMAP pixel convention).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path={path!r} is not a folder")
    path = _model_folder(path)
    if ext is None:
        ext = ".bin" if os.path.isfile(os.path.join(path, "cameras.bin")) else ".txt"
    if ext not in (".bin", ".txt"):
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")
    files = {k: os.path.join(path, k + ext) for k in ("cameras", "images", "points3D")}
    missing = [f for f in files.values() if not os.path.isfile(f)]
    if missing:
        raise ValueError(f"COLMAP model in {path!r} is incomplete: missing {', '.join(missing)}")
    if ext == ".bin":
        return (_read_cameras_bin(files["cameras"]), _read_images_bin(files["images"]),
                _read_points_bin(files["points3D"]))
    return (read_cameras_txt(files["cameras"]), read_images_txt(files["images"]),
            _read_points_txt(files["points3D"]))
