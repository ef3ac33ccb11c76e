"""The ``retrieval-Na-k`` scene graph of dust3r.image_pairs.make_pairs, from a similarity matrix.

* against the original's graphs recorded in ``tests/data/retrieval/index.json`` (same score matrix, same first key
  image): identical key images, and edges that differ only where the original counted an image as its own
  neighbour;
* on a synthetic image set whose overlap is known from the geometry: every non-key image is linked to the key image
  it overlaps MOST (regression test for the original's argmax bug, mast3r #55) and to its k most overlapping others;
* determinism, no duplicate edges, no self edges, caps on Na and k.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dust3r.image_pairs import farthest_point_sampling, make_pairs, retrieval_edges

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"
INDEX = json.loads((DATA / "index.json").read_text())
SCORES = np.load(DATA / "retrieval.npz")["scores"]


def _views(n):
    return [{"idx": i, "instance": str(i)} for i in range(n)]


def _undirected(edges):
    return {(min(i, j), max(i, j)) for i, j in edges}


class TestAgainstOriginal:
    @pytest.mark.parametrize("graph", INDEX["graphs"], ids=lambda g: g["scene_graph"])
    def test_same_keys_and_only_the_self_neighbour_differs(self, graph):
        _, n_keys, k = graph["scene_graph"].split("-")
        n_keys, k = int(n_keys), int(k)
        start = graph["keyimgs"][0] if graph["keyimgs"] else None  # the original's RNG draw (seed 7)
        edges, keys = retrieval_edges(SCORES, n_keys, k, start=start)
        assert keys.tolist() == graph["keyimgs"]
        original = _undirected(graph["pairs"])
        ours = set(edges)
        assert original <= ours
        # what the original missed: its first k argsort entries include the image itself (distance 1 - s_ii is the
        # smallest of the row here), so it links only k - 1 others; we link the k nearest others
        dist = 1.0 - SCORES.astype(np.float64)
        assert all(np.argsort(dist[i])[0] == i for i in range(len(dist)))
        kth_nearest_other = {(min(i, j), max(i, j)) for i in range(len(dist))
                             for j in np.argsort(dist[i])[k:k + 1] if k > 0}
        assert ours - original <= kth_nearest_other
        assert ours == original | kth_nearest_other

    def test_original_repeats_edges_we_do_not(self):
        # the original keeps key-image pairs in sampling order ((4, 3)) and adds k-NN edges as (min, max):
        # with retrieval-2-2 it would emit (4, 3) and (3, 4). Ours: each undirected edge once, as (i < j).
        edges, _ = retrieval_edges(SCORES, 2, 2, start=4)
        assert len(edges) == len(set(edges)) == len(_undirected(edges))
        assert all(i < j for i, j in edges)


class TestSyntheticOverlap:
    @pytest.fixture(scope="class")
    def overlap(self):
        """Fraction of view i's pixels seen in view j, from the scene geometry (10 views along an arc)."""
        from dust3r.synthetic import make_scene

        scene = make_scene(n_views=10, height=24, width=32, seed=3, layout="orbit", baseline=1.2)
        n = scene.n_views
        ov = np.eye(n)
        for i in range(n):
            for j in range(n):
                if i != j:
                    ov[i, j] = scene.correspondences(i, j)[1].mean()
        return ov

    def test_overlap_decreases_along_the_track(self, overlap):
        # sanity of the set: neighbours in the sequence overlap most
        for i in range(1, 9):
            assert overlap[i, i - 1] > overlap[i, min(i + 3, 9)] or overlap[i, i + 1] > overlap[i, max(i - 3, 0)]

    def test_non_key_images_join_their_most_overlapping_key(self, overlap):
        edges, keys = retrieval_edges(overlap, 3, 0)
        assert len(keys) == 3 and len(set(keys.tolist())) == 3
        linked = _undirected(edges)
        checked_argmax_bug = 0
        for i in sorted(set(range(10)) - set(keys.tolist())):
            best = keys[np.argmax(overlap[i, keys])]
            worst = keys[np.argmin(overlap[i, keys])]
            assert (min(i, best), max(i, best)) in linked, f"image {i} not linked to its most similar key {best}"
            if worst != best:
                assert (min(i, worst), max(i, worst)) not in linked  # the argmax bug linked this one
                checked_argmax_bug += 1
        assert checked_argmax_bug > 0
        # nothing else than the key-image clique and one key per other image
        assert len(linked) == 3 + (10 - 3)

    def test_k_nearest_other_images(self, overlap):
        k = 2
        edges, _ = retrieval_edges(overlap, 0, k)
        linked = _undirected(edges)
        for i in range(10):
            others = [j for j in np.argsort(-overlap[i], kind="stable") if j != i][:k]
            assert all((min(i, j), max(i, j)) in linked for j in others)
            assert all(abs(i - j) <= 2 for j in others)  # the known overlap: sequence neighbours
        assert not any(i == j for i, j in edges)

    def test_make_pairs_retrieval(self, overlap):
        pairs = make_pairs(_views(10), "retrieval-3-2", sim_mat=overlap)
        ids = [(a["idx"], b["idx"]) for a, b in pairs]
        half = len(ids) // 2
        assert ids[half:] == [(j, i) for i, j in ids[:half]]  # symmetrized
        assert set(ids[:half]) == set(retrieval_edges(overlap, 3, 2)[0])
        assert make_pairs(_views(10), "retrieval-3-2", sim_mat=overlap) == pairs  # deterministic
        np.random.seed(123)  # no dependence on the global RNG
        assert [(a["idx"], b["idx"]) for a, b in make_pairs(_views(10), "retrieval-3-2", sim_mat=overlap)] == ids


class TestEdgeCases:
    def test_caps_and_empty(self):
        sim = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.0]])
        edges, keys = retrieval_edges(sim, 20, 10)  # Na, k capped: complete graph
        assert sorted(edges) == [(0, 1), (0, 2), (1, 2)] and sorted(keys.tolist()) == [0, 1, 2]
        assert retrieval_edges(sim, 0, 0)[0] == []
        assert make_pairs(_views(1), "retrieval-2-1", sim_mat=np.ones((1, 1))) == []

    def test_torch_similarity_accepted(self):
        import torch
        sim = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.3], [0.1, 0.3, 1.0]])
        assert sorted(retrieval_edges(sim, 0, 1)[0]) == [(0, 1), (1, 2)]

    def test_farthest_point_sampling(self):
        pts = np.array([0.0, 1.0, 2.0, 10.0, 11.0])
        dist = np.abs(pts[:, None] - pts[None, :])
        idx, gaps = farthest_point_sampling(dist, N=3)
        assert idx.tolist() == [2, 4, 0]  # starts at the medoid (2), then the farthest, ...
        assert gaps.tolist() == [0.0, 9.0, 2.0]
        idx, _ = farthest_point_sampling(dist, N=5, dist_thresh=1.5)
        assert idx.tolist() == [2, 4, 0]  # stops when the farthest point is closer than 1.5
        assert farthest_point_sampling(dist, N=9, start=0)[0].tolist() == [0, 4, 2, 1, 3]  # distinct; ties: lowest
        with pytest.raises(ValueError, match="square"):
            farthest_point_sampling(np.zeros((2, 3)), N=1)
