"""A tiny fake Habitat rendering: the output of the original's habitat-sim renderer stage
(``datasets_preprocess/habitat/preprocess_habitat.py`` of naver/dust3r run on naver's
``habitat_5views_v1_512x512_metadata``), which cannot run here (it needs habitat-sim and the scene meshes)::

    <root>/<scene dataset>/<scene>/<batch>_<view 1..5>.jpeg
    <root>/<scene dataset>/<scene>/<batch>_<view 1..5>_depth.exr           z-depth, half floats
    <root>/<scene dataset>/<scene>/<batch>_<view 1..5>_camera_params.json   camera_intrinsics (OpenCV), size,
                                                                          R_cam2world, t_cam2world

Five views per batch (a sub-scene), view 1 overlapping the others; 96x96 instead of 512x512. ``broken``: a
sub-scene whose view-3 camera file is missing; ``nan_pose``: a sub-scene whose view 2 has a NaN pose (the reader
then serves view 3).
"""
from __future__ import annotations

import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict

import PIL.Image

from dust3r.synthetic import SyntheticScene, make_scene
from dust3r.utils.exr import write_exr

SCENES = ("hm3d/00001-fakeA", "gibson/Fakeville", "scannet/scene0000_00")
BATCHES = ("000000", "000001")
N_VIEWS = 5


@dataclass
class FakeHabitat:
    root: str
    scenes: Dict[str, SyntheticScene]  # sub-scene "<scene>/<batch>" -> its 5 rendered views
    broken: str
    nan_pose: str


def make_fake_habitat(root: str, size: int = 96) -> FakeHabitat:
    scenes = {}
    for s, scene_dir in enumerate(SCENES):
        os.makedirs(osp.join(root, scene_dir), exist_ok=True)
        for b, batch in enumerate(BATCHES):
            scene = make_scene(n_views=N_VIEWS, height=size, width=size, seed=40 + 2 * s + b, baseline=0.4)
            scenes[f"{scene_dir}/{batch}"] = scene
            for k in range(N_VIEWS):
                stem = osp.join(root, scene_dir, f"{batch}_{k + 1}")
                PIL.Image.fromarray(scene.images[k]).save(stem + ".jpeg")
                write_exr(stem + "_depth.exr", scene.depth[k], half=True)
                params = dict(camera_intrinsics=scene.K[k].tolist(), size=[size, size],
                              R_cam2world=scene.cam2world[k][:3, :3].tolist(),
                              t_cam2world=scene.cam2world[k][:3, 3].tolist())
                with open(stem + "_camera_params.json", "w") as f:
                    json.dump(params, f)
    broken = f"{SCENES[1]}/{BATCHES[1]}"
    os.remove(osp.join(root, SCENES[1], f"{BATCHES[1]}_3_camera_params.json"))
    nan_pose = f"{SCENES[0]}/{BATCHES[0]}"
    path = osp.join(root, SCENES[0], f"{BATCHES[0]}_2_camera_params.json")
    with open(path) as f:
        params = json.load(f)
    params["t_cam2world"][0] = float("nan")
    with open(path, "w") as f:
        json.dump(params, f)
    return FakeHabitat(root=root, scenes=scenes, broken=broken, nan_pose=nan_pose)
