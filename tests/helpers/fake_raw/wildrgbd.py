"""A tiny fake WildRGB-D download in the real raw layout, rendered from the fake scene with exact ground truth.

Per category: ``camera_eval_list.json`` and ``nvs_list.json`` (sequences 0 and 1 in "train" of both, sequence 2 in
"val" of one: the test split; a listed sequence without a folder), and per ``scenes/scene_XXX``: ``rgb/00000.png``,
``depth/00000.png`` (uint16 millimetres, with an invalid hole), ``masks/00000.png`` (uint8 object mask),
``metadata`` (JSON: ``K`` as 9 column-major values, ``w``, ``h``) and ``cam_poses.txt`` (index + row-major 4x4
cam2world per line, OpenCV axes).
"""
from __future__ import annotations

import json
import os
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from dust3r.synthetic.render import cast_rays
from tests.helpers.fake_raw._scene import OBJECTS, TruthFrame, camera_path, truth, write_png

SEQUENCES = ("scenes/scene_000", "scenes/scene_001", "scenes/scene_002")


def write_fake_wildrgbd(root: str, categories: Sequence[str] = ("box", "cup"), n_frames: int = 6, width: int = 64,
                        height: int = 48) -> Dict[Tuple[str, str], Dict[int, TruthFrame]]:
    """Write the fake download; returns ``{(category, sequence): {frame id: TruthFrame}}`` (depth in metres)."""
    K = np.array([[0.8 * width, 0, width / 2 - 1.6], [0, 0.8 * width, height / 2 + 1.2], [0, 0, 1]])
    truths: Dict[Tuple[str, str], Dict[int, TruthFrame]] = {}
    for c, category in enumerate(categories):
        cat_dir = os.path.join(root, category)
        for s, seq in enumerate(SEQUENCES):
            seq_dir = os.path.join(cat_dir, seq)
            for sub in ("rgb", "depth", "masks"):
                os.makedirs(os.path.join(seq_dir, sub), exist_ok=True)
            poses = camera_path(n_frames, start=(-2.5 + 0.1 * c, -0.6 + 0.25 * s, 1.25))
            lines = []
            for i, cam2world in enumerate(poses):
                rgb, frame = truth(f"{category}/{seq}", f"{i:05d}", K, cam2world, width, height)
                surface = cast_rays(K, cam2world, width, height, OBJECTS)[2]
                depth_mm = np.rint(frame.depth * 1000).astype(np.uint16)
                depth_mm[:4, :6] = 0  # a sensor hole
                frame.depth[:4, :6] = 0.0
                write_png(os.path.join(seq_dir, "rgb", f"{i:05d}.png"), rgb)
                cv2.imwrite(os.path.join(seq_dir, "depth", f"{i:05d}.png"), depth_mm)
                cv2.imwrite(os.path.join(seq_dir, "masks", f"{i:05d}.png"),
                            np.where(surface > 0, 255, 0).astype(np.uint8))
                lines.append(" ".join([str(i)] + [f"{v:.10f}" for v in cam2world.ravel()]))
                truths.setdefault((category, seq), {})[i] = frame
            with open(os.path.join(seq_dir, "cam_poses.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
            with open(os.path.join(seq_dir, "metadata"), "w") as f:
                json.dump({"K": K.T.ravel().tolist(), "w": width, "h": height}, f)
        lists = {"camera_eval_list.json": {"train": list(SEQUENCES[:2]), "val": [SEQUENCES[2]]},
                 "nvs_list.json": {"train": list(SEQUENCES[:2]) + ["scenes/scene_999"], "val": []}}
        for name, content in lists.items():
            with open(os.path.join(cat_dir, name), "w") as f:
                json.dump(content, f)
    return truths
