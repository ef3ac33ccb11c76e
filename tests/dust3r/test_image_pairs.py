"""Tests for dust3r.image_pairs: exact pair order of every scene graph, prefilters, errors.

The expected lists below are written out literally. They are what the original
``dust3r.image_pairs.make_pairs`` returns (derived from its code and checked by running the same
logic): ``complete`` loops ``for i: for j < i``; ``swin`` / ``logwin`` collect the undirected edges
``(min, max)`` in a Python ``set`` and emit them in the set's iteration order (hence the unsorted
look); ``oneref`` emits ``(ref, j)`` for increasing j; ``symmetrize`` appends the reversed pairs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dust3r.image_pairs import SceneGraph, filter_edges_seq, filter_pairs_seq, make_pairs, parse_scene_graph, sel

DATA = Path(__file__).resolve().parents[1] / "data"


def _views(n):
    return [{"idx": i, "instance": str(i)} for i in range(n)]


def _ids(pairs):
    return [(a["idx"], b["idx"]) for a, b in pairs]


# all 10 undirected edges of 5 images, in the set-iteration order the original produces
SET_ORDER_5 = [(0, 1), (2, 4), (1, 2), (0, 4), (3, 4), (0, 3), (1, 4), (2, 3), (0, 2), (1, 3)]

EXPECTED_5 = {
    # for i in range(5): for j in range(i): (i, j)
    "complete": [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (4, 3)],
    # cyclic window 2 on 5 images reaches every other image: all 10 edges
    "swin-2": SET_ORDER_5,
    "swin": SET_ORDER_5,  # default window 3
    # no wrap-around: (0, 4), (0, 3), (1, 4) disappear
    "swin-2-noncyclic": [(0, 1), (2, 4), (1, 2), (3, 4), (2, 3), (0, 2), (1, 3)],
    # offsets +-1, +-2
    "logwin-2": SET_ORDER_5,
    "logwin-2-noncyclic": [(0, 1), (2, 4), (1, 2), (3, 4), (2, 3), (0, 2), (1, 3)],
    "logwin": SET_ORDER_5,  # default 3: offsets +-1, +-2, +-4
    "swin-1-noncyclic": [(0, 1), (1, 2), (2, 3), (3, 4)],
    "swin-1": [(0, 1), (1, 2), (0, 4), (3, 4), (2, 3)],
    "logwin-1-noncyclic": [(0, 1), (1, 2), (2, 3), (3, 4)],
    "oneref": [(0, 1), (0, 2), (0, 3), (0, 4)],
    "oneref-2": [(2, 0), (2, 1), (2, 3), (2, 4)],
    # window >= n: the original also emits self-pairs (0,0) ... (4,4) here; they are dropped
    "swin-5": SET_ORDER_5,
}

# 8 images: the set order is far from sorted
EXPECTED_8 = {
    "swin-3": [(3, 4), (4, 6), (5, 7), (0, 2), (0, 5), (1, 6), (2, 5), (1, 3), (4, 5), (5, 6), (3, 6),
               (0, 1), (0, 7), (2, 4), (1, 2), (2, 7), (6, 7), (4, 7), (3, 5), (0, 3), (1, 4), (0, 6),
               (2, 3), (1, 7)],
    "logwin-3": [(3, 4), (3, 7), (4, 6), (5, 7), (0, 2), (1, 3), (4, 5), (5, 6), (0, 1), (0, 7),
                 (2, 4), (1, 2), (0, 4), (1, 5), (6, 7), (3, 5), (0, 6), (2, 3), (1, 7), (2, 6)],
}


@pytest.mark.parametrize("graph", sorted(EXPECTED_5))
def test_exact_order_5_images(graph):
    expected = EXPECTED_5[graph]
    assert _ids(make_pairs(_views(5), graph, symmetrize=False)) == expected
    sym = _ids(make_pairs(_views(5), graph, symmetrize=True))
    assert sym == expected + [(j, i) for i, j in expected]  # reversed pairs appended
    assert len(sym) == 2 * len(expected) and len(set(sym)) == len(sym)
    assert all(i != j for i, j in sym)


@pytest.mark.parametrize("graph", sorted(EXPECTED_8))
def test_exact_order_8_images(graph):
    assert _ids(make_pairs(_views(8), graph, symmetrize=False)) == EXPECTED_8[graph]


def test_two_images_matches_inference_fixture():
    pairs = make_pairs(_views(2), "complete", prefilter=None, symmetrize=True)
    assert _ids(pairs) == [(1, 0), (0, 1)]
    index = json.loads((DATA / "index.json").read_text())
    for name, entry in index["inference"].items():
        if isinstance(entry, dict) and "pairs" in entry:
            ref = [(p["view1"]["idx"], p["view2"]["idx"]) for p in entry["pairs"]]
            assert ref == _ids(pairs), name


def test_counts_and_identity():
    views = _views(7)
    assert len(make_pairs(views, "complete")) == 7 * 6
    assert len(make_pairs(views, "complete", symmetrize=False)) == 21
    assert len(make_pairs(views, "swin-2", symmetrize=False)) == 14  # cyclic: 7 * 2
    assert len(make_pairs(views, "swin-2-noncyclic", symmetrize=False)) == 6 + 5
    assert len(make_pairs(views, "oneref-6", symmetrize=False)) == 6
    pair = make_pairs(views, "complete")[0]
    assert pair[0] is views[1] and pair[1] is views[0]  # the dicts themselves, not copies
    assert make_pairs(_views(1), "complete") == [] and make_pairs(_views(1), "swin") == []
    assert make_pairs([], "logwin") == []


def test_swin_small_sets_no_self_pairs():
    # original on 3 images with swin-3: [(0,1), (1,2), (0,0), (1,1), (0,2), (2,2)] -> self-pairs dropped
    assert _ids(make_pairs(_views(3), "swin-3", symmetrize=False)) == [(0, 1), (1, 2), (0, 2)]


def test_prefilters():
    views = _views(5)
    assert _ids(make_pairs(views, "complete", prefilter="seq1")) == [
        (1, 0), (2, 1), (3, 2), (4, 3), (0, 1), (1, 2), (2, 3), (3, 4)]
    # cyclic distance on max(idx) + 1 = 5 images: 4 and 0 are neighbours
    assert _ids(make_pairs(views, "complete", prefilter="cyc1")) == [
        (1, 0), (2, 1), (3, 2), (4, 0), (4, 3), (0, 1), (1, 2), (2, 3), (0, 4), (3, 4)]
    assert make_pairs(views, "complete", prefilter="seq0") == []
    full = make_pairs(views, "complete")
    assert filter_pairs_seq(full, 10) == full
    assert filter_pairs_seq([], 1) == []


def test_filter_edges_seq_and_sel():
    view1 = {"idx": [0, 1, 4, 2], "img": torch.arange(4), "instance": ["0", "1", "4", "2"]}
    view2 = {"idx": torch.tensor([1, 3, 0, 2]), "true_shape": np.arange(8).reshape(4, 2)}
    pred1 = {"pts3d": torch.arange(4.0)[:, None].repeat(1, 3)}
    pred2 = {"conf": np.arange(4.0)}
    v1, v2, p1, p2 = filter_edges_seq(view1, view2, pred1, pred2, 1)
    assert v1["idx"] == [0, 2] and v1["instance"] == ["0", "2"] and v1["img"].tolist() == [0, 3]
    assert v2["idx"].tolist() == [1, 2] and v2["true_shape"].tolist() == [[0, 1], [6, 7]]
    assert p1["pts3d"][:, 0].tolist() == [0.0, 3.0] and p2["conf"].tolist() == [0.0, 3.0]
    v1, _, _, _ = filter_edges_seq(view1, view2, pred1, pred2, 1, cyclic=True)  # (4, 0) now kept
    assert v1["idx"] == [0, 4, 2]
    assert sel((1, 2, 3), [2, 0]) == (3, 1)
    assert sel({"a": [5, 6]}, [1]) == {"a": [6]}


@pytest.mark.parametrize("graph", ["foo", "swin-x", "swin-3-cyclicnon", "oneref-a", "swin-0",
                                   "completely", "", "logwin-2-3"])
def test_bad_scene_graph(graph):
    with pytest.raises(ValueError, match="scene graph") as info:
        make_pairs(_views(4), graph)
    assert repr(graph) in str(info.value)
    if graph != "swin-0":
        assert "accepted forms" in str(info.value)


def test_bad_scene_graph_type_and_oneref_range():
    with pytest.raises(ValueError, match="expected a string"):
        make_pairs(_views(3), None)
    with pytest.raises(ValueError, match="out of range"):
        make_pairs(_views(3), "oneref-3")


def test_bad_prefilter():
    with pytest.raises(ValueError, match="prefilter 'seq'"):
        make_pairs(_views(3), "complete", prefilter="seq")
    with pytest.raises(ValueError, match="prefilter"):
        make_pairs(_views(3), "complete", prefilter="window3")


def test_retrieval_needs_a_similarity_matrix():
    with pytest.raises(ValueError, match="needs sim_mat"):
        make_pairs(_views(4), "retrieval-20-10")
    with pytest.raises(ValueError, match=r"must be \(4, 4\)"):
        make_pairs(_views(4), "retrieval-2-1", sim_mat=np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        make_pairs(_views(2), "retrieval-2-1", sim_mat=np.array([[1.0, np.nan], [0.0, 1.0]]))


class TestParseSceneGraph:
    @pytest.mark.parametrize("text, expected", [
        ("complete", SceneGraph("complete")),
        ("swin", SceneGraph("swin", window=3, cyclic=True)),
        ("swin-2-noncyclic", SceneGraph("swin", window=2, cyclic=False)),
        ("logwin-4-cyclic", SceneGraph("logwin", window=4, cyclic=True)),
        ("oneref", SceneGraph("oneref", ref=0)),
        ("oneref-2", SceneGraph("oneref", ref=2)),
        ("retrieval", SceneGraph("retrieval", key_images=20, neighbours=10)),
        ("retrieval-5", SceneGraph("retrieval", key_images=5, neighbours=10)),
        ("retrieval-3-0", SceneGraph("retrieval", key_images=3, neighbours=0)),
    ])
    def test_forms(self, text, expected):
        assert parse_scene_graph(text) == expected
        assert parse_scene_graph(text, n_images=3) == expected

    def test_same_errors_as_make_pairs_without_images(self):
        for graph in ("foo", "swin-0", "logwin-2-3"):
            with pytest.raises(ValueError, match="scene graph") as parsed:
                parse_scene_graph(graph)
            with pytest.raises(ValueError) as built:
                make_pairs(_views(4), graph)
            assert str(parsed.value) == str(built.value)
        with pytest.raises(ValueError, match="expected a string"):
            parse_scene_graph(3)
        assert parse_scene_graph("oneref-7").ref == 7  # no image count: no range check
        with pytest.raises(ValueError, match="reference image 7 is out of range for 5 image"):
            parse_scene_graph("oneref-7", n_images=5)
        for graph in ("retrieval-x", "retrieval-2-3-4", "retrieval--1"):
            with pytest.raises(ValueError, match="retrieval-Na-k"):
                parse_scene_graph(graph)
