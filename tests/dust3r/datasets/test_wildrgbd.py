"""dust3r.datasets.wildrgbd: the WildRgbd reader on the original processed layout (written here by hand)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import PIL.Image
import pytest

import dust3r.datasets
from dust3r.datasets.wildrgbd import WildRGBD, WildRgbd
from dust3r.synthetic import make_scene

W, H = 64, 48
FRAMES = [0, 7, 14]
SEQ = "scenes/scene_003"


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The original preprocess_wildrgbd.py output: rgb/00007.jpg, depth/00007.png (mm), masks, metadata/*.npz."""
    root = str(tmp_path_factory.mktemp("wildrgbd"))
    scene = make_scene(n_views=len(FRAMES), height=H, width=W, seed=5, baseline=0.3)
    base = os.path.join(root, "mug", SEQ)
    for sub in ("rgb", "depth", "masks", "metadata"):
        os.makedirs(os.path.join(base, sub))
    for k, frame in enumerate(FRAMES):
        PIL.Image.fromarray(scene.images[k]).save(os.path.join(base, "rgb", f"{frame:05d}.jpg"), quality=95)
        cv2.imwrite(os.path.join(base, "depth", f"{frame:05d}.png"), (scene.depth[k] * 1000).astype(np.uint16))
        cv2.imwrite(os.path.join(base, "masks", f"{frame:05d}.png"),
                    np.where(scene.surface_id[k] > 0, 255, 0).astype(np.uint8))
        np.savez(os.path.join(base, "metadata", f"{frame:05d}.npz"), camera_intrinsics=scene.K[k],
                 camera_pose=scene.cam2world[k])  # float64, as the original writes them
    for split in ("train", "test"):
        with open(os.path.join(root, f"selected_seqs_{split}.json"), "w") as f:
            json.dump({"mug": {SEQ: FRAMES}}, f)
    return root, scene


def test_views_are_metric_and_exact(layout):
    root, scene = layout
    ds = WildRgbd(split="train", ROOT=root, mask_bg=False, resolution=(W, H), seed=1)
    assert len(ds) == 495 and WildRgbd.is_metric_scale
    for idx in (0, 250, 494):
        for view in ds[idx]:
            k = FRAMES.index(int(view["instance"][:5]))
            assert view["label"] == f"mug/{SEQ}" and view["dataset"] == "WildRGBD"
            np.testing.assert_allclose(view["depthmap"], scene.depth[k], atol=1.001e-3)  # mm truncation
            np.testing.assert_allclose(view["camera_pose"], scene.cam2world[k], atol=1e-6)
            np.testing.assert_allclose(view["pts3d"], scene.pts3d[k], atol=1e-2)
            assert view["is_metric_scale"] is True


def test_mask_bg_keeps_the_object(layout):
    root, scene = layout
    view = WildRgbd(split="test", ROOT=root, mask_bg=True, resolution=(W, H), seed=1)[3][0]
    np.testing.assert_array_equal(view["valid_mask"], scene.surface_id[FRAMES.index(int(view["instance"][:5]))] > 0)


def test_names_and_defaults(layout, tmp_path):
    assert WildRGBD is WildRgbd and dust3r.datasets.WildRGBD is WildRgbd and dust3r.datasets.WildRgbd is WildRgbd
    assert WildRgbd.DEFAULT_ROOT == "data/wildrgbd_processed"
    with pytest.raises(FileNotFoundError, match="preprocess_wildrgbd.py"):
        WildRgbd(split="train", ROOT=str(tmp_path), resolution=(W, H))
    root, _ = layout
    ds = WildRGBD("rand", split="train", ROOT=root, resolution=(W, H))  # mask_bg positional, as the original
    assert ds.mask_bg == "rand"
