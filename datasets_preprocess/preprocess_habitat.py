#!/usr/bin/env python3
"""Habitat renderings -> the scene lists read by :class:`dust3r.datasets.Habitat` / ``Habitat512`` (the original's
``datasets_preprocess/habitat/find_scenes.py``).

Input: the output of the original's habitat-sim renderer (naver/dust3r ``datasets_preprocess/habitat``, run on
naver's ``habitat_5views_v1_512x512_metadata``; it needs habitat-sim and the scene meshes, so it is not part of this
repository)::

    <root>/<scene dataset>/<scene>/<key>_<1..5>.jpeg
    <root>/<scene dataset>/<scene>/<key>_<1..5>_depth.exr
    <root>/<scene dataset>/<scene>/<key>_<1..5>_camera_params.json

A sub-scene ``<scene dataset>/<scene>/<key>`` is kept when its five views have their three files and readable
camera files (``camera_intrinsics``, ``R_cam2world``, ``t_cam2world``); a broken one is reported and skipped. Writes,
in ``root`` (or ``--output_dir``)::

    Habitat_all_scenes.txt               every valid sub-scene
    Habitat_{n}_scenes_train.txt         for each n of --n_scenes: n sub-scenes of the training scenes
    Habitat_{n}_scenes_val.txt           and n sub-scenes (also n // 10, the original's val list) of the
    Habitat_{n // 10}_scenes_val.txt     validation scenes

Scenes (not sub-scenes) are split 90 / 10 after a seeded shuffle (at least one validation scene when there are
two or more). Every list is a prefix of one shuffled order, so lists of different sizes agree. Where fewer
sub-scenes exist than a list asks for, the list holds all of them (the original wrote no list then). Example::

    python3 datasets_preprocess/preprocess_habitat.py --root data/habitat_processed
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from datasets_preprocess._common import process_samples, report
from dust3r.datasets.habitat import N_VIEWS, read_camera_params, scene_list_name, view_files

logger = logging.getLogger(__name__)

__all__ = ["main", "find_subscenes", "check_subscene", "split_scenes", "get_parser"]

DEFAULT_N_SCENES = (1_000, 10_000, 100_000, 1_000_000)
SEED = 777


def find_subscenes(root: str) -> List[str]:
    """Every ``<relative folder>/<key>`` with a ``<key>_1_depth.exr`` below ``root``, sorted."""
    found = []
    for folder, _, files in os.walk(root):
        rel = osp.relpath(folder, root)
        found += [osp.normpath(osp.join(rel, f[:-len("_1_depth.exr")])).replace(os.sep, "/")
                  for f in files if f.endswith("_1_depth.exr")]
    return sorted(found)


def check_subscene(root: str, subscene: str) -> None:
    """FileNotFoundError / OSError when a view of ``subscene`` lacks a file or has an unreadable camera file."""
    data_path, key = osp.split(osp.join(root, subscene))
    for view in range(1, N_VIEWS + 1):
        for path in view_files(data_path, key, view):
            if not osp.isfile(path):
                raise FileNotFoundError(f"missing {path!r}")
        read_camera_params(view_files(data_path, key, view)[2])


def split_scenes(subscenes: Sequence[str], seed: int = SEED) -> Dict[str, List[str]]:
    """``{'train': [...], 'val': [...]}``: sub-scenes grouped by scene, scenes shuffled and split 90 / 10, the
    sub-scenes of each split shuffled."""
    by_scene = collections.defaultdict(list)
    for sub in subscenes:
        by_scene[osp.dirname(sub)].append(sub)
    rng = np.random.default_rng(seed)
    scenes = sorted(by_scene)
    scenes = [scenes[i] for i in rng.permutation(len(scenes))]
    n_val = len(scenes) // 10 if len(scenes) >= 10 else min(1, len(scenes) - 1)
    out = {}
    for split, chosen in (("val", scenes[:n_val]), ("train", scenes[n_val:])):
        subs = [sub for scene in chosen for sub in by_scene[scene]]
        out[split] = [subs[i] for i in rng.permutation(len(subs))]
    return out


def _write_list(path: str, subscenes: Sequence[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(subscenes))
    os.replace(tmp, path)


def main(root: str, n_scenes: Sequence[int] = DEFAULT_N_SCENES, output_dir: Optional[str] = None) -> int:
    """Index the renderings of ``root`` (lists written to ``output_dir``, default ``root``); returns the exit
    status (see :func:`datasets_preprocess._common.report`)."""
    if not osp.isdir(root):
        raise FileNotFoundError(f"Habitat renderings folder not found: {root!r}")
    output_dir = root if output_dir is None else output_dir
    candidates = find_subscenes(root)
    if not candidates:
        raise FileNotFoundError(f"no rendered sub-scene (<key>_1_depth.exr) below {root!r}")
    valid: List[str] = []
    n_done, failures = process_samples(candidates, lambda sub: (check_subscene(root, sub), valid.append(sub)),
                                       desc="Habitat sub-scenes")
    os.makedirs(output_dir, exist_ok=True)
    _write_list(osp.join(output_dir, "Habitat_all_scenes.txt"), valid)
    splits = split_scenes(valid)
    for n in n_scenes:
        for split, size in (("train", n), ("val", n), ("val", n // 10)):
            if size > 0:
                _write_list(osp.join(output_dir, scene_list_name(size, split)), splits[split][:size])
    logger.info("%d train and %d val sub-scenes listed in %s", len(splits["train"]), len(splits["val"]), output_dir)
    return report(n_done, failures)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="the renderer's output folder")
    parser.add_argument("--n_scenes", nargs="+", type=int, default=list(DEFAULT_N_SCENES))
    parser.add_argument("--output_dir", default=None, help="where the lists go (default: --root)")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.root, args.n_scenes, args.output_dir))
