"""The MASt3R recipe's TartanAir / UnrealStereo4K / VirtualKitti / NianticMapFree / DL3DV terms, exactly as
train_commands.md writes them (plus a ROOT), build in train.py's namespace on data processed from the fake raw
datasets and serve MASt3R items with correspondences."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.fake_raw._checks import build_processed

SPEC = Path(__file__).resolve().parents[1] / "data" / "spec" / "train_commands.md"
DATASETS = {"TartanAir": "tartanair", "UnrealStereo4K": "unrealstereo4k", "VirtualKitti": "virtualkitti",
            "NianticMapFree": "mapfree", "DL3DV": "dl3dv"}


def recipe_terms() -> dict:
    """Class name -> its ``N @ Class(...)`` text in the full recipe's --train_dataset string."""
    text = SPEC.read_text()
    start = text.index('--train_dataset "57_000 @ Habitat512') + len('--train_dataset "')
    string = text[start:text.index('" \\', start)]
    terms = {}
    for node in ast.walk(ast.parse(string, mode="eval")):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and isinstance(node.right, ast.Call):
            terms[node.right.func.id] = ast.get_source_segment(string, node)
    return terms


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_recipe_term_builds_and_serves(name, tmp_path_factory):
    from mast3r.datasets import parse_dataset
    term = recipe_terms()[name]
    root, _ = build_processed(DATASETS[name], tmp_path_factory)
    dataset = parse_dataset(term[:-1] + f", ROOT={root!r})")
    size = int(term.split("@")[0].replace("_", ""))
    assert len(dataset) == size
    dataset.set_epoch(0)
    views = dataset[(0, 4)]  # aspect ratio 4: (512, 160)
    for view in views:
        assert view["img"].shape == (3, 160, 512) and view["corres"].shape == (8192, 2)
        assert view["valid_corres"].sum() == 4096  # nneg=0.5
        assert view["dataset"] == name and np.isfinite(view["pts3d"][view["valid_mask"]]).all()
