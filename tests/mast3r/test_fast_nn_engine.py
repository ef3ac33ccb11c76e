"""mast3r._fast_nn_engine: the same matches as upstream's own computation, near-ties and exact ties included.

The reference below re-states the original's round trips and asks upstream's brute force
(:class:`mast3r.fast_nn.cdistMatcher`, i.e. the original's tiles and reductions) or scipy's KD-tree for every
nearest neighbour, on the same batches in the same order. Maps with duplicated and ulp-perturbed descriptors
force the engine's exact replay; smooth synthetic-scene descriptors exercise the long round trips.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mast3r._fast_nn_engine as engine
from mast3r.fast_nn import bruteforce_reciprocal_nns, cdistMatcher, fast_reciprocal_NNs


def _upstream_loop(d1: torch.Tensor, d2: torch.Tensor, subsample: int, max_iter: int = 10, **kw):
    """Converged ``(pixel of map 1, pixel of map 2)`` pairs of the original algorithm, sorted."""
    H1, W1, D = d1.shape
    A, B = d1.reshape(-1, D), d2.reshape(-1, D)
    if kw:
        to2, to1 = cdistMatcher(B), cdistMatcher(A)
        nn2 = lambda rows: to2.query(A[rows], **kw)[1]  # noqa: E731
        nn1 = lambda rows: to1.query(B[rows], **kw)[1]  # noqa: E731
    else:
        from scipy.spatial import KDTree
        tree2, tree1 = KDTree(B.numpy()), KDTree(A.numpy())
        nn2 = lambda rows: tree2.query(A[rows].numpy())[1]  # noqa: E731
        nn1 = lambda rows: tree1.query(B[rows].numpy())[1]  # noqa: E731
    ys, xs = np.mgrid[subsample // 2:H1:subsample, subsample // 2:W1:subsample]
    p1 = np.unique(ys * W1 + xs)
    p2 = np.full_like(p1, -1)
    open_ = np.ones(p1.size, dtype=bool)
    for _ in range(max_iter):
        old1, old2 = p1.copy(), p2.copy()
        idx = np.flatnonzero(open_)
        p2[idx] = nn2(torch.as_tensor(p1[idx]))
        open_ &= p2 != old2
        idx = np.flatnonzero(open_)
        p1[idx] = nn1(torch.as_tensor(p2[idx]))
        open_ &= p1 != old1
        if not open_.any():
            break
    return sorted(set(zip(p1[~open_].tolist(), p2[~open_].tolist())))


def _as_pairs(xy1, xy2, W1, W2):
    return list(zip((xy1[:, 1] * W1 + xy1[:, 0]).tolist(), (xy2[:, 1] * W2 + xy2[:, 0]).tolist()))


def _smooth(seed, H, W, D):
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(H, W, D, generator=gen)
    d = torch.nn.functional.avg_pool2d(d.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
    return torch.nn.functional.normalize(d, dim=-1).contiguous()


def _tied_maps(seed, H=20, W=24, D=8):
    """Smooth unit maps where map 2 holds exact copies of map-1 descriptors, a constant 9x9 block (81 equal keys,
    more than the candidate limit) and copies shifted by one ulp: many exact ties and near-ties."""
    d1, d2 = _smooth(seed, H, W, D), _smooth(seed + 100, H, W, D)
    gen = np.random.default_rng(seed)
    d2[2:11, 3:12] = d1[H // 2, W // 2]
    for _ in range(40):
        y1, x1, y2, x2 = gen.integers(0, [H, W, H, W])
        d2[y2, x2] = d1[y1, x1]
        if x2 + 1 < W:
            d2[y2, x2 + 1] = torch.nextafter(d1[y1, x1], torch.full_like(d1[y1, x1], 2.0))
    return d1, d2


class TestAgainstUpstreamComputation:
    @pytest.mark.parametrize("seed", [0, 1])
    @pytest.mark.parametrize("kw", [dict(dist="dot"), dict(dist="dot", block_size=64), dict(dist="dot", block_size=50),
                                    dict(dist="l2"), dict(dist="l2", block_size=64)], ids=str)
    @pytest.mark.parametrize("subsample", [1, 3])
    def test_ties_and_near_ties(self, monkeypatch, seed, kw, subsample):
        replays = []
        real = engine.replay_upstream_rows
        monkeypatch.setattr(engine, "replay_upstream_rows", lambda *a, **k: replays.append(1) or real(*a, **k))
        d1, d2 = _tied_maps(seed)
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=subsample, device="cpu", **kw)
        expected = _upstream_loop(d1, d2, subsample, **kw)
        assert len(expected) > 10
        assert _as_pairs(xy1, xy2, d1.shape[1], d2.shape[1]) == expected
        assert replays, "the maps were meant to need exact replays"

    def test_kdtree_path_with_ties(self):
        d1, d2 = _tied_maps(3, D=12)   # D > 8: screened, near-ties answered by the tree
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2)
        assert _as_pairs(xy1, xy2, d1.shape[1], d2.shape[1]) == _upstream_loop(d1, d2, 2)

    @pytest.mark.parametrize("kw", [dict(dist="dot", block_size=2 ** 13), dict(dist="dot", block_size=512),
                                    dict(dist="l2", block_size=2 ** 13), dict()], ids=str)
    def test_synthetic_scene_descriptors(self, kw):
        """Smooth, distinctive ground-truth descriptors (like a trained model's): long round trips."""
        from dust3r.utils.synthetic import OracleModel, make_scene
        scene = make_scene(2, 48, 64, seed=1)
        views = scene.views()
        pred1, pred2 = OracleModel(scene)(views[0], views[1])
        d1, d2 = pred1["desc"][0], pred2["desc"][0]
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=4, device="cpu", **kw)
        expected = _upstream_loop(d1, d2, 4, **kw)
        assert len(expected) > 100
        assert _as_pairs(xy1, xy2, 64, 64) == expected

    @pytest.mark.parametrize("chunk, tile", [(64, 64 * 16), (100, 100), (4096, 1 << 20)])
    def test_screening_tiles_do_not_change_matches(self, monkeypatch, chunk, tile):
        for suffix in ("", "_THREADS"):   # single- and multi-thread tile shapes
            monkeypatch.setattr(engine, f"_KEY_CHUNK_CPU{suffix}", chunk)
            monkeypatch.setattr(engine, f"_TILE_ELEMS_CPU{suffix}", tile)
        d1, d2 = _tied_maps(6)
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", block_size=64)
        assert _as_pairs(xy1, xy2, d1.shape[1], d2.shape[1]) == _upstream_loop(d1, d2, 2, dist="dot", block_size=64)

    def test_same_matches_without_onednn(self, monkeypatch):
        d1, d2 = _tied_maps(4)
        ref = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", block_size=64)
        monkeypatch.setattr(engine, "_onednn_linear", lambda: None)
        got = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", block_size=64)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


class TestReplay:
    @pytest.mark.parametrize("dist", ["dot", "l2"])
    @pytest.mark.parametrize("block_size", [None, 16])
    def test_rows_equal_upstream_brute_force(self, dist, block_size):
        d1, d2 = _tied_maps(5)
        A, B = d1.reshape(-1, 8)[::3].contiguous(), d2.reshape(-1, 8)
        rows = np.array([0, 5, 17, 40, 41, A.shape[0] - 1])
        expected = bruteforce_reciprocal_nns(A, B, block_size=block_size, dist=dist)[0][rows]
        workspace = engine.Workspace()
        got = engine.replay_upstream_rows(A, B, rows, dist, block_size, None, workspace)
        np.testing.assert_array_equal(got, expected)
        if block_size is not None:   # skipping tiles certified not to hold the winner changes nothing
            n_tiles = -(-B.shape[0] // block_size)
            needed = np.zeros((rows.size, n_tiles), dtype=bool)
            needed[np.arange(rows.size), expected // block_size] = True
            np.testing.assert_array_equal(engine.replay_upstream_rows(A, B, rows, dist, block_size, needed),
                                          expected)

    def test_workspace_reuses_its_buffer(self):
        ws = engine.Workspace()
        like = torch.zeros(1)
        big = ws.view(30, 40, like)
        small = ws.view(7, 9, like)
        assert small.is_contiguous() and small.shape == (7, 9)
        assert small.data_ptr() == big.data_ptr()
        assert ws.view(2, 3, like.double()).dtype == torch.float64
        assert ws.view(50, 50, like).numel() == 2500


class TestCertification:
    def test_certify_decides_clear_winners_only(self):
        cand_q = np.array([0, 0, 1, 1, 1, 2, 2])
        cand_k = np.array([10, 11, 20, 21, 22, 30, 31])
        exact = np.array([0.9, 0.5, 0.7, 0.71, 0.2, 0.8, 0.8 - 1e-7])
        np.testing.assert_array_equal(engine.certify(cand_q, cand_k, exact, np.full(3, 0.05), 4), [10, -1, -1, -1])
        np.testing.assert_array_equal(engine.certify(cand_q, cand_k, exact, np.full(3, 1e-6), 4), [10, 21, -1, -1])
        np.testing.assert_array_equal(engine.certify(cand_q, cand_k, exact, np.full(3, 1e-8), 4), [10, 21, 30, -1])

    def test_dot_margin_is_the_rounding_bound_of_two_scores(self):
        keys = torch.nn.functional.normalize(torch.randn(50, 24), dim=-1)
        side = engine.NNSide(keys, keys, "dot", None)
        certify_margin, screen_margin = side._margins(np.array([1.0]))
        gamma32, gamma64 = engine._gamma(26, 2.0 ** -24), engine._gamma(26, 2.0 ** -53)
        assert certify_margin[0] == pytest.approx(2 * (gamma32 + gamma64), rel=1e-5)
        assert screen_margin[0] == pytest.approx(5 * gamma32 + 2 * gamma64, rel=1e-5)

    def test_onednn_scores_within_the_float32_bound(self):
        linear = engine._onednn_linear()
        if linear is None:
            pytest.skip("oneDNN linear not available in this torch build")
        gen = torch.Generator().manual_seed(0)
        q, k = torch.randn(300, 24, generator=gen), torch.randn(5000, 24, generator=gen)
        exact = q.double() @ k.double().T
        err = (linear(q, k).double() - exact).abs()
        assert bool((err <= engine._gamma(24, 2.0 ** -24) * (q.abs().double() @ k.abs().double().T)).all())
