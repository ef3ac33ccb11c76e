"""Synthetic localization datasets with known poses, written in the benchmarks' prepared layouts.

A :class:`dust3r.synthetic.SyntheticScene` is split into map views (even indices) and queries (odd indices);
the writers lay them out as the original's preparation instructions produce them, so that the dataset classes
read them unchanged and :class:`dust3r.synthetic.OracleModel` localizes them end to end:

* ``'cambridge'`` -> ``VislocCambridgeLandmarks`` (COLMAP text model + kapture queries);
* ``'aachen'`` -> ``VislocAachenDayNight`` (COLMAP text model + kapture queries named query/day|night/...);
* ``'sevenscenes'`` -> ``VislocSevenScenes`` (kapture mapping with ``depth.reg`` depth maps);
* ``'inloc'`` -> ``VislocInLoc`` (kapture mapping of cutouts with ``XYZcut`` .mat files and scan alignments).

Example::

    from dust3r.synthetic import OracleModel, make_scene
    from dust3r_visloc.datasets.synthetic import write_synthetic_dataset
    scene = make_scene(n_views=6, height=96, width=128, seed=0)
    data = write_synthetic_dataset("/tmp/visloc_cambridge", scene, "cambridge", topk=2)
    # python3 visloc.py --dataset "<data.dataset_string>" ...   (model: OracleModel(scene))

Queries carry their true pose (kapture trajectories) so that the thresholds table can be printed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import PIL.Image

from dust3r.export.colmap import rotmat_to_qvec

__all__ = ["LAYOUTS", "SyntheticVislocData", "write_synthetic_dataset", "split_views", "write_colmap_text_model"]

LAYOUTS = ("cambridge", "aachen", "sevenscenes", "inloc")

_DEFAULT_PAIRSFILE = {"cambridge": "APGeM-LM18_top50", "aachen": "fire_top50", "sevenscenes": "APGeM-LM18_top20",
                      "inloc": "pairs-query-netvlad40-temporal"}
_DEFAULT_SUBSCENE = {"cambridge": "ShopFacade", "aachen": "all", "sevenscenes": "chess", "inloc": None}


@dataclass
class SyntheticVislocData:
    """What :func:`write_synthetic_dataset` wrote."""
    root: str
    layout: str
    dataset_string: str                       # a --dataset string reading it
    query_names: List[str]
    map_names: List[str]
    query_indices: List[int]                  # scene view of each query
    map_indices: List[int]
    gt_cam2world: Dict[str, np.ndarray] = field(repr=False)   # query name -> (4, 4) true cam2world


def split_views(n_views: int, n_queries: Optional[int] = None) -> tuple:
    """``(query_indices, map_indices)``: odd views are queries (at most ``n_queries``), the rest the map."""
    odd = list(range(1, n_views, 2))
    queries = odd if n_queries is None else odd[:n_queries]
    return queries, [i for i in range(n_views) if i not in queries]


def _num(values) -> List[str]:
    """Numbers written with full precision (repr of Python floats)."""
    return [repr(float(v)) for v in values]


def _save_png(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(image).save(path)


def _map_observations(scene, i: int, stride: int) -> tuple:
    """(N, 2) pixel centres (OpenCV) on a grid of ``stride`` and their (N, 3) world points for view ``i``."""
    ys, xs = np.mgrid[stride // 2:scene.height:stride, stride // 2:scene.width:stride]
    xs, ys = xs.ravel(), ys.ravel()
    return np.stack([xs, ys], -1).astype(np.float64), scene.pts3d[i][ys, xs].astype(np.float64)


def write_colmap_text_model(folder: str, scene, indices: Sequence[int], names: Sequence[str], stride: int = 2) -> None:
    """COLMAP text model (``cameras.txt``, ``images.txt``, ``points3D.txt``) of views ``indices`` of ``scene``
    named ``names``: PINHOLE cameras (COLMAP convention, principal point + 0.5), true poses, and a 3D point for
    every ``stride``-th pixel of each image (observed by that image)."""
    os.makedirs(folder, exist_ok=True)
    # the headers COLMAP writes (readers such as the original's skip exactly these lines)
    cams = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
            f"# Number of cameras: {len(indices)}"]
    imgs = ["# Image list with two lines of data per image:",
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
            f"# Number of images: {len(indices)}, mean observations per image: 0"]
    pts = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)", "# Number of points: 0"]
    point_id = 1
    for image_id, (i, name) in enumerate(zip(indices, names), start=1):
        K = scene.K[i]
        cams.append(" ".join([str(image_id), "PINHOLE", str(scene.width), str(scene.height),
                              *_num([K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5])]))
        w2c = np.linalg.inv(scene.cam2world[i])
        q, t = rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3]
        imgs.append(" ".join([str(image_id), *_num(q), *_num(t), str(image_id), name]))
        pts2d, pts3d = _map_observations(scene, i, stride)
        obs = []
        for k, (xy, X) in enumerate(zip(pts2d + 0.5, pts3d)):
            obs.append(" ".join([*_num(xy), str(point_id)]))
            pts.append(" ".join([str(point_id), *_num(X), f"128 128 128 0.0 {image_id} {k}"]))
            point_id += 1
        imgs.append(" ".join(obs))
    for fname, lines in (("cameras.txt", cams), ("images.txt", imgs), ("points3D.txt", pts)):
        with open(os.path.join(folder, fname), "w") as f:
            f.write("\n".join(lines) + "\n")


def _write_kapture(folder: str, scene, indices: Sequence[int], names: Sequence[str], with_poses: bool = True,
                   image_root: Optional[str] = None) -> None:
    """kapture folder with one SIMPLE_PINHOLE sensor per image (COLMAP convention) and, optionally, the true
    poses; images go to ``sensors/records_data`` unless ``image_root`` is given."""
    import kapture
    from kapture.io.csv import kapture_to_dir

    sensors, records, traj = kapture.Sensors(), kapture.RecordsCamera(), kapture.Trajectories()
    for ts, (i, name) in enumerate(zip(indices, names)):
        K = scene.K[i]
        sensor_id = f"cam{ts:04d}"
        sensors[sensor_id] = kapture.Camera(kapture.CameraType.SIMPLE_PINHOLE,
                                            [scene.width, scene.height, K[0, 0], K[0, 2] + 0.5, K[1, 2] + 0.5])
        records[ts, sensor_id] = name
        if with_poses:
            w2c = np.linalg.inv(scene.cam2world[i])
            traj[ts, sensor_id] = kapture.PoseTransform(r=rotmat_to_qvec(w2c[:3, :3]).tolist(), t=w2c[:3, 3].tolist())
        root = image_root if image_root is not None else os.path.join(folder, "sensors", "records_data")
        _save_png(os.path.join(root, name), scene.images[i])
    kapture_to_dir(folder, kapture.Kapture(sensors=sensors, records_camera=records,
                                           trajectories=traj if with_poses else None))


def _write_pairs(path: str, scene, query_indices, query_names, map_indices, map_names) -> None:
    """Retrieval pairs ranked by camera distance (score 1 / (1 + distance)), kapture format."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = ["# query_image, map_image, score"]
    centres = scene.cam2world[:, :3, 3]
    for qi, qname in zip(query_indices, query_names):
        dist = [float(np.linalg.norm(centres[qi] - centres[mi])) for mi in map_indices]
        for k in np.argsort(dist, kind="stable"):
            lines.append(f"{qname}, {map_names[k]}, {1.0 / (1.0 + dist[k]):.6f}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _names(layout: str, query_indices, map_indices) -> tuple:
    if layout == "cambridge":
        return ([f"seq2/frame{k:05d}.png" for k in query_indices], [f"seq1/frame{k:05d}.png" for k in map_indices])
    if layout == "aachen":
        return ([f"query/{'day' if n % 2 == 0 else 'night'}/nexus5x/q{k:04d}.png" for n, k in enumerate(query_indices)],
                [f"db/{k}.png" for k in map_indices])
    if layout == "sevenscenes":
        return ([f"seq-03/frame-{k:06d}.color.png" for k in query_indices],
                [f"seq-01/frame-{k:06d}.color.png" for k in map_indices])
    return ([f"iphone7/IMG_{k:04d}.png" for k in query_indices],
            [f"DUC{1 + n % 2}/{24 + n:03d}/DUC_cutout_{24 + n:03d}_0_0.png" for n, k in enumerate(map_indices)])


def _alignment(seed: int) -> np.ndarray:
    """A random rigid scan-to-building transform."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng([seed, 77])
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.3, size=3)).as_matrix()
    T[:3, 3] = rng.normal(scale=2.0, size=3)
    return T


def _write_inloc_map(root: str, scene, map_indices, map_names) -> None:
    import scipy.io

    from dust3r.utils.geometry import geotrf

    blocks: Dict[str, List[str]] = {"DUC1": [], "DUC2": []}
    for n, (i, name) in enumerate(zip(map_indices, map_names)):
        building, scan = name.split("/")[:2]
        T = _alignment(1000 * scene.seed + n)
        xyz_scan = geotrf(np.linalg.inv(T), scene.pts3d[i].astype(np.float64))
        path = os.path.join(root, "mapping", "sensors", "records_data", name + ".mat")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        scipy.io.savemat(path, {"XYZcut": xyz_scan})
        rows = "\n".join(" ".join(_num(row)) for row in T)
        blocks[building].append(f"{scan}\n\nBefore icp:\n{rows}\n\nAfter general icp:\n{rows}\n")
    for building, items in blocks.items():
        folder = os.path.join(root, "mapping", f"{building}_alignment")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "all_transformations.txt"), "w") as f:
            f.write("\n".join(items))


def write_synthetic_dataset(root: str, scene, layout: str = "cambridge", *, topk: int = 1,
                            n_queries: Optional[int] = None, subscene: Optional[str] = None,
                            pairsfile: Optional[str] = None, stride: int = 2) -> SyntheticVislocData:
    """Write ``scene`` as a localization dataset in a benchmark's prepared layout.

    Args:
        root: dataset root (created).
        scene: a :class:`dust3r.synthetic.SyntheticScene`; its odd views are the queries.
        layout: one of :data:`LAYOUTS`.
        topk: ``topk`` of the returned dataset string.
        n_queries: keep only the first queries.
        subscene, pairsfile: names used in the layout (defaults: the README's, e.g. 'ShopFacade', 'APGeM-LM18_top50').
        stride: COLMAP-model layouts: one 3D point per ``stride`` pixels of each map image.

    Returns:
        a :class:`SyntheticVislocData` with the dataset string and the true query poses.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    subscene = subscene if subscene is not None else _DEFAULT_SUBSCENE[layout]
    pairsfile = pairsfile or _DEFAULT_PAIRSFILE[layout]
    query_idx, map_idx = split_views(scene.n_views, n_queries)
    if not query_idx or not map_idx:
        raise ValueError(f"a scene of {scene.n_views} views has no query or no map view (need >= 2 views)")
    qnames, mnames = _names(layout, query_idx, map_idx)
    args = dict(query_indices=query_idx, query_names=qnames, map_indices=map_idx, map_names=mnames)
    if layout == "cambridge":
        for i, name in zip(map_idx, mnames):
            _save_png(os.path.join(root, subscene, name), scene.images[i])
        write_colmap_text_model(os.path.join(root, "mapping", subscene, "colmap", "reconstruction"), scene,
                                map_idx, mnames, stride)
        _write_kapture(os.path.join(root, "kapture", subscene, "query"), scene, query_idx, qnames,
                       image_root=os.path.join(root, subscene))
        _write_pairs(os.path.join(root, subscene, "pairsfile", "query", pairsfile + ".txt"), scene, **args)
        text = f"VislocCambridgeLandmarks({root!r}, subscene={subscene!r}, pairsfile={pairsfile!r}, topk={topk})"
    elif layout == "aachen":
        for i, name in zip(map_idx, mnames):
            _save_png(os.path.join(root, "images", name), scene.images[i])
        write_colmap_text_model(os.path.join(root, "mapping", "colmap", "reconstruction"), scene, map_idx, mnames,
                                stride)
        _write_kapture(os.path.join(root, "kapture", "query"), scene, query_idx, qnames,
                       image_root=os.path.join(root, "images"))
        _write_pairs(os.path.join(root, "pairsfile", "query", pairsfile + ".txt"), scene, **args)
        text = f"VislocAachenDayNight({root!r}, subscene={subscene!r}, pairsfile={pairsfile!r}, topk={topk})"
    elif layout == "sevenscenes":
        from kapture.io.records import depth_map_to_file

        base = os.path.join(root, subscene)
        _write_kapture(os.path.join(base, "mapping"), scene, map_idx, mnames)
        for i, name in zip(map_idx, mnames):
            depth_map_to_file(os.path.join(base, "mapping", "sensors", "records_data",
                                           name.replace("color.png", "depth.reg")), scene.depth[i].astype(np.float32))
        _write_kapture(os.path.join(base, "query"), scene, query_idx, qnames)
        _write_pairs(os.path.join(base, "pairfiles", "query", pairsfile + ".txt"), scene, **args)
        text = f"VislocSevenScenes({root!r}, subscene={subscene!r}, pairsfile={pairsfile!r}, topk={topk})"
    else:
        _write_kapture(os.path.join(root, "mapping"), scene, map_idx, mnames)
        _write_inloc_map(root, scene, map_idx, mnames)
        _write_kapture(os.path.join(root, "query"), scene, query_idx, qnames)
        _write_pairs(os.path.join(root, "pairfiles", "query", pairsfile + ".txt"), scene, **args)
        text = f"VislocInLoc({root!r}, pairsfile={pairsfile!r}, topk={topk})"
    gt = {name: scene.cam2world[i].copy() for i, name in zip(query_idx, qnames)}
    return SyntheticVislocData(root=root, layout=layout, dataset_string=text, gt_cam2world=gt, **args)
