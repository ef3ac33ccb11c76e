"""Assertions shared by the tests of the processed-frames datasets: processed files against the fake scene's truth,
and loaded view pairs for geometric consistency."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from dust3r.utils.exr import read_exr
from dust3r.utils.image import imread_cv2
from tests.helpers.fake_raw._scene import TruthFrame
from tests.helpers.view_geometry import project


@dataclass
class Built:
    """A fake raw dataset and its processed version: ``root`` (processed), ``truths`` by (scene, frame), the
    preprocessing ``result``, the ``raw`` folder (and the DL3DV ``depth`` source folder)."""
    root: str
    truths: Dict[Tuple[str, str], TruthFrame]
    result: object
    raw: str
    depth: str = ""


_BUILT: Dict[Tuple[int, str], Built] = {}


def built(dataset: str, tmp_path_factory) -> Built:
    """Write the fake raw ``dataset`` ('tartanair', 'unrealstereo4k', 'virtualkitti', 'mapfree', 'dl3dv') and run
    its preprocessing with small pair gaps. Built once per test session (``tmp_path_factory`` is session-wide):
    tests must leave the files as they found them."""
    key = (id(tmp_path_factory), dataset)
    if key not in _BUILT:
        _BUILT[key] = _build(dataset, tmp_path_factory)
    return _BUILT[key]


def build_processed(dataset: str, tmp_path_factory) -> Tuple[str, Dict[Tuple[str, str], TruthFrame]]:
    """``(processed root, truth by (scene, frame))`` of :func:`built`."""
    b = built(dataset, tmp_path_factory)
    return b.root, b.truths


def _build(dataset: str, tmp_path_factory) -> Built:
    import importlib
    fake = importlib.import_module(f"tests.helpers.fake_raw.{dataset}")
    pre = importlib.import_module(f"datasets_preprocess.preprocess_{dataset}")
    raw = str(tmp_path_factory.mktemp(f"{dataset}_raw"))
    out = str(tmp_path_factory.mktemp(dataset) / "processed")
    if dataset == "dl3dv":
        depth = str(tmp_path_factory.mktemp("dl3dv_depth"))
        truths = fake.write_fake_dl3dv(raw, depth)
        return Built(out, truths, pre.main(raw, depth, out, gaps=(1, 2)), raw, depth)
    truths = getattr(fake, f"write_fake_{dataset}")(raw)
    extra = {"mapfree": {}, "tartanair": {"gaps": (1, 2)}, "unrealstereo4k": {"gaps": (1,), "max_side": None},
             "virtualkitti": {"gaps": (1,)}}[dataset]
    return Built(out, truths, pre.main(raw, out, **extra), raw)


def pair_truths(ds, idx: int, truths: Dict[Tuple[str, str], TruthFrame]) -> list:
    """The truth of the two frames of pair ``idx`` of a processed-frames dataset."""
    return [truths[str(ds.scenes[ds.frame_scenes[f]]), str(ds.frames[f])] for f in ds.pairs[idx]]


def load_index(root: str) -> Dict[str, np.ndarray]:
    with np.load(os.path.join(root, "index.npz")) as index:
        return {key: index[key] for key in index.files}


def named_pairs(index: Dict[str, np.ndarray]) -> list:
    """Sorted ``(scene, frame a, frame b)`` of every pair of an index."""
    scenes, frames, frame_scenes = index["scenes"], index["frames"], index["frame_scenes"]
    return sorted((str(scenes[frame_scenes[a]]), str(frames[a]), str(frames[b])) for a, b in index["pairs"])


def processed_frames(root: str) -> Dict[Tuple[str, str], str]:
    """(scene, frame) -> path stem of every frame of the index."""
    index = load_index(root)
    return {(str(index["scenes"][s]), str(f)): os.path.join(root, *str(index["scenes"][s]).split("/"), str(f))
            for f, s in zip(index["frames"], index["frame_scenes"])}


def check_processed_frame(stem: str, frame: TruthFrame, depth_atol: float, sky_marked: bool,
                          image_tol: float = 12.0) -> None:
    """The processed files of one frame equal the truth: depth (-1 on sky when the raw data marks it), K, pose,
    image (mean absolute difference below ``image_tol``: JPEG)."""
    depth = read_exr(stem + ".exr")
    cam = np.load(stem + ".npz")
    np.testing.assert_allclose(cam["intrinsics"], frame.K, atol=1e-4)
    np.testing.assert_allclose(cam["cam2world"], frame.cam2world, atol=1e-5)
    assert cam["intrinsics"].dtype == np.float32 and cam["cam2world"].dtype == np.float32
    expected = frame.depth.astype(np.float32)
    if sky_marked:
        assert (depth[frame.sky] == -1).all()
        np.testing.assert_allclose(depth[~frame.sky], expected[~frame.sky], atol=depth_atol)
    else:
        np.testing.assert_allclose(depth, expected, atol=depth_atol)
    image = imread_cv2(stem + ".jpg")
    assert image.shape == frame.rgb.shape
    assert np.abs(image.astype(float) - frame.rgb).mean() < image_tol


def relative_pose(cam2world_a: np.ndarray, cam2world_b: np.ndarray) -> np.ndarray:
    """(4, 4) pose of camera a in the frame of camera b."""
    return np.linalg.inv(np.asarray(cam2world_b, np.float64)) @ np.asarray(cam2world_a, np.float64)


def check_loaded_pair(views: Sequence[dict], truths: Sequence[TruthFrame], min_consistent: float = 0.85) -> None:
    """Loaded views (``dataset[(idx, ar)]`` outputs) agree with the fake scene and with each other:

    * their relative pose is the truth's (OpenCV axes);
    * each served pixel's depth is the truth depth at the raw pixel its ray goes through (``K_raw K_served^-1``),
      so served intrinsics, depth and crop agree with the raw camera;
    * a 3D point of view 1 projects into view 2 where view 2 sees the same depth (except occlusions).
    """
    v1, v2 = views
    t1, t2 = truths
    np.testing.assert_allclose(relative_pose(v1["camera_pose"], v2["camera_pose"]),
                               relative_pose(t1.cam2world, t2.cam2world), atol=1e-4)
    for view, t in zip(views, truths):
        depth, K = view["depthmap"], np.float64(view["camera_intrinsics"])
        H, W = depth.shape
        ys, xs = np.mgrid[4:H - 4:3, 4:W - 4:3]
        rays = np.linalg.inv(K) @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        raw = t.K @ rays
        u, v = np.round(raw[:2] / raw[2]).astype(int)
        inside = (u >= 0) & (u < t.depth.shape[1]) & (v >= 0) & (v < t.depth.shape[0])
        served = depth[ys.ravel(), xs.ravel()][inside]
        expected = t.depth[v[inside], u[inside]]
        ok = served > 0
        assert ok.mean() > 0.5
        rel = np.abs(served[ok] - expected[ok]) / expected[ok]
        assert np.median(rel) < 0.01, np.median(rel)
    pts = v1["pts3d"][v1["valid_mask"]].astype(np.float64)
    xy, z = project(np.float64(v2["camera_intrinsics"]), np.linalg.inv(np.float64(v2["camera_pose"])), pts)
    u, v = np.round(xy).astype(int).T
    H2, W2 = v2["depthmap"].shape
    inside = (z > 0) & (u >= 0) & (u < W2) & (v >= 0) & (v < H2)
    assert inside.mean() > 0.3, inside.mean()
    seen = v2["depthmap"][v[inside], u[inside]]
    rel = (np.abs(seen - z[inside]) / z[inside])[seen > 0]
    # nearest-pixel rounding on slanted surfaces and occlusions aside, view 2 sees the point where it projects
    assert np.median(rel) < 0.01, np.median(rel)
    assert (rel < 0.05).mean() > min_consistent, (rel < 0.05).mean()
