"""parse_dataset / describe_dataset: the dataset strings of train_commands.md build what the original built
(tests/data/training/datasets/train_commands.json), and nothing outside the allow-list is ever executed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dust3r.datasets import READER_CLASSES, parse_dataset
from dust3r.datasets.base.easy_dataset import CatDataset, MulDataset, ResizedDataset
from dust3r.datasets.parse import (Concatenated, DatasetCall, Multiplied, Resized, TransformRef, describe_dataset,
                                   flat_calls)
from dust3r.datasets.utils.transforms import ColorJitter, ImgNorm
from mast3r.datasets.base.mast3r_base_stereo_view_dataset import MASt3RBaseStereoViewDataset

DATA = Path(__file__).resolve().parents[2] / "data"
RECORD = json.loads((DATA / "training" / "datasets" / "train_commands.json").read_text())
SPEC = (DATA / "spec" / "train_commands.md").read_text()

# keyword arguments of the original MASt3RBaseStereoViewDataset.__init__ (what the recording stand-ins pass on)
BASE_KEYS = ("split", "resolution", "transform", "aug_crop", "aug_swap", "aug_monocular", "aug_portrait_or_landscape",
             "aug_rot90", "n_corres", "nneg", "n_tentative_crops", "seed")


def _standins(lengths):
    """Recording stand-in classes (like the fixture generator's): base keywords to the real base class."""
    def make(name):
        def __init__(self, *args, **kwargs):
            self.positional_args = list(args)
            self.specific = {k: v for k, v in kwargs.items() if k not in BASE_KEYS}
            MASt3RBaseStereoViewDataset.__init__(self, **{k: v for k, v in kwargs.items() if k in BASE_KEYS})

        return type(name, (MASt3RBaseStereoViewDataset,), {"__init__": __init__, "__len__": lambda self: lengths[name]})
    return {name: make(name) for name in lengths}


def _spec_strings():
    """(command index, role, string) of every --train_dataset / --test_dataset of train_commands.md."""
    blocks = re.findall(r"```bash\n(.*?)```", SPEC, flags=re.S)
    out = []
    for c, block in enumerate(blocks):
        for role in ("train_dataset", "test_dataset"):
            out.append((c, role, re.search(rf'--{role} "([^"]*)"', block).group(1)))
    return out


STRINGS = _spec_strings()


def _expected_value(v):
    if "expr" in v:
        return TransformRef(v["expr"])
    return _tuplify(v["value"])


def _tuplify(x):
    # json turns tuples into lists; the dataset strings write resolutions as tuples inside lists
    if isinstance(x, list) and x and all(isinstance(e, list) for e in x):
        return [tuple(e) for e in x]
    if isinstance(x, list) and len(x) == 2 and all(isinstance(e, int) for e in x):
        return tuple(x)
    return x


def test_the_spec_has_the_recorded_strings():
    assert len(STRINGS) == 4
    for c, role, text in STRINGS:
        assert RECORD["commands"][c]["strings"][role]["string"] == text


@pytest.mark.parametrize("c,role,text", STRINGS, ids=[f"{c}-{r}" for c, r, _ in STRINGS])
def test_describe_matches_recorded_ast(c, role, text):
    recorded = RECORD["commands"][c]["strings"][role]["ast"]
    calls = flat_calls(describe_dataset(text))
    assert len(calls) == len(recorded)
    for (call, resized), rec in zip(calls, recorded):
        assert call.cls == rec["class"]
        assert resized == rec["resized_to"]
        assert call.args == [_expected_value(a) for a in rec["args"]]
        assert call.kwargs == {k: _expected_value(v) for k, v in rec["kwargs"].items()}


def _check_standin(ds, rec):
    assert len(ds) == rec["len"]
    if rec["type"] == "CatDataset":
        assert isinstance(ds, CatDataset)
        assert ds._cum_sizes.tolist() == rec["cum_sizes"]
        for sub, sub_rec in zip(ds.datasets, rec["datasets"]):
            _check_standin(sub, sub_rec)
        return
    assert rec["type"] == "ResizedDataset" and isinstance(ds, ResizedDataset)
    assert repr(ds).startswith(rec["repr_size_str"] + " @ ")
    inner, want = ds.dataset, rec["dataset"]
    assert type(inner).__name__ == want["class"]
    assert inner.positional_args == want["positional_args"]
    assert {k: repr(v) for k, v in inner.specific.items()} == want["dataset_specific_kwargs"]
    base = want["base"]
    assert inner._resolutions == [tuple(r) for r in base["resolutions_wh"]]
    assert inner.transform is (ColorJitter if base["transform"].startswith("ColorJitter") else ImgNorm)
    for key in ("split", "aug_crop", "aug_swap", "aug_monocular", "aug_portrait_or_landscape", "aug_rot90",
                "n_corres", "nneg", "n_tentative_crops", "seed", "num_views"):
        assert getattr(inner, key) == base[key], key


@pytest.mark.parametrize("c,role,text", STRINGS, ids=[f"{c}-{r}" for c, r, _ in STRINGS])
def test_standin_build_matches_record(c, role, text):
    rec = RECORD["commands"][c]["strings"][role]
    lengths = rec.get("standin_lengths") or {"Co3d": 1000, "Habitat512": 1004}
    ds = parse_dataset(text, namespace="mast3r", classes=_standins(lengths))
    _check_standin(ds, rec["standin_eval"])


def test_full_recipe_flat_components():
    rec = RECORD["commands"][1]["strings"]["train_dataset"]
    ds = parse_dataset(rec["string"], classes=_standins(rec["standin_lengths"]))
    comps = rec["standin_eval"]["flat_components"]
    assert len(comps) == 13 and len(ds) == 607_620
    start = 0
    for (call, size), comp in zip(flat_calls(describe_dataset(rec["string"])), comps):
        assert (call.cls, size) == (comp["class"], comp["len"])
        assert comp["global_index_range"] == [start, start + size]
        start += size


def test_operators_and_literals():
    node = describe_dataset("2 * (10 @ A(1_000, x=-inf, y=[(1, 2)], t=ImgNorm)) + B()", allowed_classes={"A", "B"})
    assert isinstance(node, Concatenated) and isinstance(node.left, Multiplied) and node.left.factor == 2
    inner = node.left.dataset
    assert isinstance(inner, Resized) and inner.size == 10
    assert inner.dataset == DatasetCall("A", [1000], {"x": float("-inf"), "y": [(1, 2)], "t": TransformRef("ImgNorm")})


def test_multiplied_dataset_is_built():
    cls = _standins({"Co3d": 7})["Co3d"]
    ds = parse_dataset("3 * Co3d(split='train', resolution=224)", classes={"Co3d": cls})
    assert isinstance(ds, MulDataset) and len(ds) == 21


@pytest.mark.parametrize("text,fragment", [
    ("__import__('os').system('touch {marker}')", "__import__('os').system"),
    ("Co3d(split=__import__('os').system('touch {marker}'))", "__import__"),
    ("Co3d(transform=lambda x: x)", "lambda"),
    ("Co3d(resolution=[(w, 224) for w in (512,)])", "for w in"),
    ("Co3d(ROOT=open('{marker}', 'w'))", "open("),
    ("dust3r.datasets.Co3d(split='train')", "dust3r.datasets.Co3d"),
    ("Co3d(split='train').__class__", "__class__"),
    ("10.5 @ Co3d(split='train')", "10.5"),
    ("Co3d(split='train') - Co3d(split='test')", "Sub"),
    ("Co3d(**{'split': 'train'})", "unpacking"),
    ("exec('import os')", "exec"),
])
def test_refuses_everything_else_and_executes_nothing(tmp_path, text, fragment):
    marker = tmp_path / "pwned"
    text = text.replace("{marker}", str(marker))
    with pytest.raises(ValueError) as info:
        parse_dataset(text, classes=_standins({"Co3d": 5}))
    assert fragment in str(info.value)
    assert not marker.exists()


def test_unknown_class_and_bad_syntax():
    with pytest.raises(ValueError, match="class 'Nope' is not allowed"):
        parse_dataset("Nope(split='train')")
    with pytest.raises(ValueError, match="not valid syntax"):
        parse_dataset("Co3d(split='train'")
    with pytest.raises(ValueError, match="unknown dataset namespace"):
        parse_dataset("Co3d()", namespace="nowhere")


def test_every_reader_name_is_allowed():
    for name in READER_CLASSES:
        assert flat_calls(describe_dataset(f"{name}(split='train')", READER_CLASSES))[0][0].cls == name
