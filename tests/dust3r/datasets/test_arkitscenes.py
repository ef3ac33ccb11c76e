"""dust3r.datasets.arkitscenes / scannetpp: the all_metadata.npz readers on the original processed layouts."""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import PIL.Image
import pytest

import dust3r.datasets
from dust3r.datasets.arkitscenes import ARKitScenes
from dust3r.synthetic import make_scene

W, H = 64, 48


def write_metadata_layout(split_dir: str, scenes, image_dir: str, depth_dir: str, intrinsics_shift: float = 0.0):
    """The original all_metadata.npz layout: per scene a make_scene of 3 views, ``<scene>/<image_dir>/<name>.jpg`` and
    ``<scene>/<depth_dir>/<name>.png`` (uint16 mm); returns {image name: (scene, k)}."""
    images, sceneids, Ks, poses, pairs, truth = [], [], [], [], [], {}
    for s, name in enumerate(scenes):
        scene = make_scene(n_views=3, height=H, width=W, seed=20 + s, baseline=0.3)
        for k in range(3):
            basename = f"{name}_{100 + k}"
            image_path, depth_path = (os.path.join(split_dir, name, sub, basename + ext)
                                      for sub, ext in ((image_dir, ".jpg"), (depth_dir, ".png")))
            for path in (image_path, depth_path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            PIL.Image.fromarray(scene.images[k]).save(image_path, quality=95)
            cv2.imwrite(depth_path, np.rint(scene.depth[k] * 1000).astype(np.uint16))
            K = scene.K[k].copy()
            K[:2, 2] += intrinsics_shift
            images.append(basename), sceneids.append(s), Ks.append(K), poses.append(scene.cam2world[k])
            truth[basename] = (scene, k)
        pairs += [[3 * s + i, 3 * s + j, 0.5] for i, j in ((0, 1), (1, 2), (0, 2))]
    np.savez(os.path.join(split_dir, "all_metadata.npz"), counts=[3 * s for s in range(len(scenes))],
             scenes=np.array(scenes), sceneids=np.array(sceneids), images=np.array(images),
             intrinsics=np.array(Ks), trajectories=np.array(poses), pairs=np.array(pairs))
    return truth


def check_exact_pair(views, truth):
    """Native resolution: depth, pose, points and the reprojection of view 1 into view 2 are the scene's."""
    (scene, i), (_, j) = (truth[v["label"].split("_", 1)[1]] for v in views)
    np.testing.assert_allclose(views[0]["depthmap"], scene.depth[i], atol=1e-3)
    np.testing.assert_allclose(views[1]["camera_pose"], scene.cam2world[j], atol=1e-6)
    w2c = np.linalg.inv(views[1]["camera_pose"].astype(np.float64))
    uv = (views[0]["pts3d"].astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]) @ views[1]["camera_intrinsics"].T
    xy_true, visible = scene.correspondences(i, j)
    np.testing.assert_allclose((uv[..., :2] / uv[..., 2:])[visible], xy_true[visible], atol=0.05)


@pytest.fixture(scope="module")
def arkit(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("arkit"))
    os.makedirs(os.path.join(root, "Training"))
    # the reader maps basename.png -> vga_wide/basename.jpg: store the names with their .png suffix
    truth = write_metadata_layout(os.path.join(root, "Training"), ["41000007", "41000009"], "vga_wide",
                                  "lowres_depth")
    meta = dict(np.load(os.path.join(root, "Training", "all_metadata.npz")))
    meta["images"] = np.array([name + ".png" for name in meta["images"]])
    np.savez(os.path.join(root, "Training", "all_metadata.npz"), **meta)
    return root, {k + ".png": v for k, v in truth.items()}


def test_arkitscenes_views(arkit):
    root, truth = arkit
    ds = ARKitScenes(split="train", ROOT=root, resolution=(W, H), seed=2)
    assert len(ds) == 6 and ds.split == "Training" and ARKitScenes.is_metric_scale
    for idx in range(6):
        views = ds[idx]
        assert views[0]["dataset"] == "arkitscenes" and views[0]["instance"] == f"{idx}_{ds.pairs[idx][0]}"
        check_exact_pair(views, truth)


def test_arkitscenes_errors_and_bad_samples(arkit, caplog):
    root, _ = arkit
    with pytest.raises(ValueError, match="split"):
        ARKitScenes(split="val", ROOT=root, resolution=(W, H))
    with pytest.raises(FileNotFoundError, match="preprocess_arkitscenes.py") as err:
        ARKitScenes(split="test", ROOT=root, resolution=(W, H))
    assert os.path.join("Test", "all_metadata.npz") in str(err.value)
    assert dust3r.datasets.ARKitScenes is ARKitScenes and ARKitScenes.DEFAULT_ROOT == "data/arkitscenes_processed"
    broken = os.path.join(root, "Training", "41000007", "lowres_depth", "41000007_101.png")
    os.rename(broken, broken + ".bak")
    try:
        ds = ARKitScenes(split="train", ROOT=root, resolution=(W, H), seed=2)
        with caplog.at_level(logging.WARNING):
            views = ds[0]  # pair (0, 1) of scene 41000007: frame 101 has no depth -> another pair
        assert len(views) == 2 and "41000007_101.png" in caplog.text
    finally:
        os.rename(broken + ".bak", broken)
