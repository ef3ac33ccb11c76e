"""A tiny fake CO3Dv2 download in the real raw layout, rendered from the fake scene with exact ground truth.

Per category: ``frame_annotations.jgz`` / ``sequence_annotations.jgz`` (gzipped JSON), ``set_lists/`` (
``set_lists_fewview_train.json``: sequences 0 and 1 in "train", sequence 2 in "test"; ``set_lists_manyview_dev_0.json``:
sequence 0, its last frame in "test"), and per sequence ``images/frameXXXXXX.jpg``, ``depths/frameXXXXXX.jpg.geometric
.png`` (float16 bit patterns in a 16-bit PNG), ``masks/`` and ``depth_masks/`` PNGs. Cameras are stored as CO3Dv2
does: PyTorch3D ``R``, ``T`` (``X_cam = X_world @ R + T``, camera x left, y up) and NDC-isotropic focal length and
principal point (off the image centre). A low-quality sequence (score 0.2) is listed but must be filtered out.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from dust3r.synthetic.render import cast_rays
from tests.helpers.fake_raw._scene import OBJECTS, TruthFrame, camera_path, corrupt, truth, write_png

FLIP = np.diag([-1.0, -1.0, 1.0])


def co3d_viewpoint(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> dict:
    """CO3Dv2 ``viewpoint`` of an OpenCV camera (inverse of the preprocessing's conversion)."""
    world2cam = np.linalg.inv(cam2world)
    R = (FLIP @ world2cam[:3, :3]).T
    T = FLIP @ world2cam[:3, 3]
    scale = min(width, height) / 2.0
    focal = [K[0, 0] / scale, K[1, 1] / scale]
    principal = [(width / 2.0 - K[0, 2]) / scale, (height / 2.0 - K[1, 2]) / scale]
    return {"R": R.tolist(), "T": T.tolist(), "focal_length": focal, "principal_point": principal,
            "intrinsics_format": "ndc_isotropic"}


def sequence_names(n: int) -> List[str]:
    return [f"{100 + k}_{11000 + 7 * k}_{22000 + 13 * k}" for k in range(n)]


def write_fake_co3d(root: str, categories: Sequence[str] = ("apple", "teddybear"), n_frames: int = 5,
                    width: int = 64, height: int = 48) -> Dict[Tuple[str, str], Dict[int, TruthFrame]]:
    """Write the fake download under ``root``.

    Returns:
        ``{(category, sequence): {frame number: TruthFrame}}`` for the 3 good sequences of each category (the
        truth's ``scene`` is ``category/sequence``, ``name`` ``frameXXXXXX``).
    """
    K = np.array([[0.8 * width, 0, width / 2 + 3.3], [0, 0.82 * width, height / 2 - 1.4], [0, 0, 1]])
    truths: Dict[Tuple[str, str], Dict[int, TruthFrame]] = {}
    for c, category in enumerate(categories):
        cat_dir = os.path.join(root, category)
        os.makedirs(os.path.join(cat_dir, "set_lists"), exist_ok=True)
        names = sequence_names(4)  # the 4th is the low-quality one
        frame_annotations, sequence_annotations, set_lists = [], [], {}
        for s, seq in enumerate(names):
            poses = camera_path(n_frames, start=(-2.6 + 0.2 * c, -0.5 + 0.3 * s, 1.2 + 0.05 * s))
            for sub in ("images", "depths", "masks", "depth_masks"):
                os.makedirs(os.path.join(cat_dir, seq, sub), exist_ok=True)
            for i, cam2world in enumerate(poses):
                number = i + 1
                rel = f"{category}/{seq}/%s/frame{number:06d}"
                rgb, frame = truth(f"{category}/{seq}", f"frame{number:06d}", K, cam2world, width, height)
                surface = cast_rays(K, cam2world, width, height, OBJECTS)[2]
                write_png(os.path.join(root, rel % "images" + ".jpg"), rgb)
                depth16 = frame.depth.astype(np.float16).view(np.uint16)
                cv2.imwrite(os.path.join(root, rel % "depths" + ".jpg.geometric.png"), depth16)
                cv2.imwrite(os.path.join(root, rel % "masks" + ".png"), np.where(surface > 0, 255, 0).astype(np.uint8))
                cv2.imwrite(os.path.join(root, rel % "depth_masks" + ".png"), np.full((height, width), 255, np.uint8))
                frame_annotations.append({
                    "sequence_name": seq, "frame_number": i, "frame_timestamp": 0.1 * i,
                    "image": {"path": rel % "images" + ".jpg", "size": [height, width]},
                    "depth": {"path": rel % "depths" + ".jpg.geometric.png", "scale_adjustment": 1.0,
                              "mask_path": rel % "depth_masks" + ".png"},
                    "mask": {"path": rel % "masks" + ".png", "mass": float((surface > 0).sum())},
                    "viewpoint": co3d_viewpoint(K, cam2world, width, height),
                    "meta": {"frame_type": "train_known"},
                })
                if s < 3:
                    truths.setdefault((category, seq), {})[number] = frame
            sequence_annotations.append({"sequence_name": seq, "category": category,
                                         "viewpoint_quality_score": 0.2 if s == 3 else 0.9})
        entries = {seq: [[seq, i, f"{category}/{seq}/images/frame{i + 1:06d}.jpg"] for i in range(n_frames)]
                   for seq in names}
        set_lists["set_lists_fewview_train.json"] = {"train": entries[names[0]] + entries[names[1]]
                                                     + entries[names[3]], "val": [], "test": entries[names[2]]}
        set_lists["set_lists_manyview_dev_0.json"] = {"train": entries[names[0]][:-1], "val": [],
                                                      "test": entries[names[0]][-1:]}
        for name, content in set_lists.items():
            with open(os.path.join(cat_dir, "set_lists", name), "w") as f:
                json.dump(content, f)
        with gzip.open(os.path.join(cat_dir, "frame_annotations.jgz"), "wt") as f:
            json.dump(frame_annotations, f)
        with gzip.open(os.path.join(cat_dir, "sequence_annotations.jgz"), "wt") as f:
            json.dump(sequence_annotations, f)
    return truths


def break_frame(root: str, category: str, sequence: str, number: int, how: str = "missing") -> str:
    """Make one raw frame unreadable ('missing' image or 'corrupt' depth); returns the path broken."""
    if how == "missing":
        path = os.path.join(root, category, sequence, "images", f"frame{number:06d}.jpg")
        os.remove(path)
    else:
        path = os.path.join(root, category, sequence, "depths", f"frame{number:06d}.jpg.geometric.png")
        corrupt(path)
    return path
