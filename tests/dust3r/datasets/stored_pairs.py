"""A dataset serving the raw views stored in the training fixtures (``item<j>.raw.view<v>.*``), like the fixture
generator's ``SyntheticPairs``: each view goes through ``_crop_resize_if_necessary`` in ``_get_views``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "data" / "training"
DATASETS = DATA / "datasets"
INDEX = json.loads((DATASETS / "index.json").read_text())


def parse_call(call: str) -> Tuple[int, int]:
    """'ds[(4, 1)]' -> (4, 1)."""
    idx, ar = call[len("ds[("):-len(")]")].split(",")
    return int(idx), int(ar)


def stored_items(name: str) -> Dict[int, int]:
    """dataset index -> stored item number of fixture ``getitem_<name>``."""
    return {parse_call(it["call"])[0]: j for j, it in enumerate(INDEX["getitem"][name]["items"])}


def make_stored_pairs(base):
    """A subclass of ``base`` (a stereo-view dataset class) reading the fixture's raw views."""

    class StoredPairs(base):
        def __init__(self, arrays, items: Dict[int, int], kind: str = "nonmetric", n_pairs: int = 10,
                     bad=(), **kwargs):
            super().__init__(**kwargs)
            self.arrays, self.items, self.kind, self.n_pairs = arrays, items, kind, n_pairs
            self.bad = set(bad)  # indices whose sample file is "unreadable"
            self.is_metric_scale = kind == "metric"

        def __len__(self):
            return self.n_pairs

        def _get_views(self, idx, resolution, rng):
            if idx in self.bad:
                raise FileNotFoundError(2, "No such file or directory", f"/data/pairs/{idx}/rgb.jpg")
            j = self.items.get(idx, next(iter(self.items.values())))
            views = []
            for v in range(2):
                p = f"item{j}.raw.view{v}."
                img, depth, K = self._crop_resize_if_necessary(
                    self.arrays[p + "img"], self.arrays[p + "depthmap"].copy(),
                    self.arrays[p + "camera_intrinsics"].copy(), resolution, rng=rng, info=f"{idx}/{v}")
                views.append(dict(img=img, depthmap=depth, camera_intrinsics=K,
                                  camera_pose=self.arrays[p + "camera_pose"].copy(), dataset="Synthetic",
                                  label=f"scene{j}", instance=f"{self.kind}_{idx}_{v}"))
            return views

    return StoredPairs


def load_fixture(name: str):
    return np.load(DATASETS / f"getitem_{name}.npz")
