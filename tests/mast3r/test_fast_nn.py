"""mast3r.fast_nn: parity with the original's matches, agreement with a plain reference, options and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r.fast_nn import (bruteforce_reciprocal_nns, extract_correspondences_nonsym, fast_reciprocal_NNs,
                            merge_corres)
from tests.conftest import DATA

# arguments of every call recorded in tests/data/matching (see tests/data/README.md, "Matching")
FIXTURE_CALLS = {
    "s8": dict(subsample_or_initxy1=8, device="cpu", dist="dot", block_size=2 ** 13),
    "s4": dict(subsample_or_initxy1=4, device="cpu", dist="dot", block_size=2 ** 13),
    "s4_block64": dict(subsample_or_initxy1=4, device="cpu", dist="dot", block_size=64),
    "s8_default_kdtree": dict(subsample_or_initxy1=8, device="cpu"),
}
MODELS = ["mast3r_tiny_a", "mast3r_tiny_b"]


def _fixture_descs(name):
    arrays = np.load(DATA / "inference" / f"{name}.npz")
    return torch.from_numpy(arrays["pair0.pred1.desc"]), torch.from_numpy(arrays["pair0.pred2.desc"])


def _reference_matches(d1: np.ndarray, d2: np.ndarray, seeds: np.ndarray, dist: str, max_iter: int = 10):
    """Plain re-statement of the algorithm with full NN tables (float64, no ties on random data)."""
    A = d1.reshape(-1, d1.shape[-1]).astype(np.float64)
    B = d2.reshape(-1, d2.shape[-1]).astype(np.float64)
    if dist == "dot":
        score = A @ B.T
        nn12, nn21 = score.argmax(1), score.argmax(0)
    else:
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
        nn12, nn21 = sq.argmin(1), sq.argmin(0)
    p1 = np.unique(seeds)
    p2 = np.full_like(p1, -1)
    todo = np.ones(p1.size, bool)
    for _ in range(max_iter):
        old1, old2 = p1.copy(), p2.copy()
        p2 = np.where(todo, nn12[p1], p2)
        todo &= p2 != old2
        p1 = np.where(todo, nn21[p2], p1)
        todo &= p1 != old1
        if not todo.any():
            break
    pairs = sorted(set(zip(p1[~todo].tolist(), p2[~todo].tolist())))
    return pairs


def _as_flat(xy, W):
    return xy[:, 1] * W + xy[:, 0]


def _random_maps(seed, H1=24, W1=32, H2=28, W2=20, D=8, smooth=True):
    gen = torch.Generator().manual_seed(seed)
    d1 = torch.randn(H1, W1, D, generator=gen)
    d2 = torch.randn(H2, W2, D, generator=gen)
    if smooth:  # spatially correlated maps give long NN chains, i.e. several round trips
        d1 = torch.nn.functional.avg_pool2d(d1.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
        d2 = torch.nn.functional.avg_pool2d(d2.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
    return (torch.nn.functional.normalize(d1, dim=-1).contiguous(),
            torch.nn.functional.normalize(d2, dim=-1).contiguous())


class TestFixtureParity:
    @pytest.mark.parametrize("name", MODELS)
    @pytest.mark.parametrize("tag", sorted(FIXTURE_CALLS))
    def test_identical_matches(self, name, tag):
        d1, d2 = _fixture_descs(name)
        expected = np.load(DATA / "matching" / f"{name}.npz")
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, **FIXTURE_CALLS[tag])
        assert xy1.dtype == np.int64 and xy1.shape[1] == 2
        np.testing.assert_array_equal(xy1, expected[f"{tag}.xy1"])
        np.testing.assert_array_equal(xy2, expected[f"{tag}.xy2"])

    def test_numpy_input_gives_same_matches(self):
        d1, d2 = _fixture_descs("mast3r_tiny_a")
        expected = np.load(DATA / "matching" / "mast3r_tiny_a.npz")
        xy1, xy2 = fast_reciprocal_NNs(d1.numpy(), d2.numpy(), **FIXTURE_CALLS["s4"])
        np.testing.assert_array_equal(xy1, expected["s4.xy1"])
        np.testing.assert_array_equal(xy2, expected["s4.xy2"])


class TestAgainstReference:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize("dist", ["dot", "l2"])
    @pytest.mark.parametrize("subsample", [1, 3, 8])
    def test_grid_seeds(self, seed, dist, subsample):
        d1, d2 = _random_maps(seed)
        H1, W1 = d1.shape[:2]
        ys, xs = np.mgrid[subsample // 2:H1:subsample, subsample // 2:W1:subsample]
        seeds = (ys * W1 + xs).ravel()
        expected = _reference_matches(d1.numpy(), d2.numpy(), seeds, dist)
        assert len(expected) > 0
        for block_size in (None, 7, 2 ** 13):
            kw = dict(dist=dist) if block_size is None else dict(dist=dist, block_size=block_size)
            xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=subsample, device="cpu", **kw)
            got = list(zip(_as_flat(xy1, W1).tolist(), _as_flat(xy2, d2.shape[1]).tolist()))
            assert got == expected, (dist, block_size)

    def test_kdtree_path_is_euclidean_nn(self):
        d1, d2 = _random_maps(5, smooth=False)
        H1, W1 = d1.shape[:2]
        seeds = np.arange(H1 * W1)
        expected = _reference_matches(d1.numpy(), d2.numpy(), seeds, "l2")
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=1)
        got = list(zip(_as_flat(xy1, W1).tolist(), _as_flat(xy2, d2.shape[1]).tolist()))
        assert got == expected

    def test_matches_are_mutual_nearest_neighbours(self):
        d1, d2 = _random_maps(7)
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot")
        A, B = d1.reshape(-1, d1.shape[-1]), d2.reshape(-1, d2.shape[-1])
        i1, i2 = _as_flat(xy1, d1.shape[1]), _as_flat(xy2, d2.shape[1])
        score = A @ B.T
        np.testing.assert_array_equal(score[i1].argmax(1).numpy(), i2)
        np.testing.assert_array_equal(score[:, i2].argmax(0).numpy(), i1)

    def test_identical_maps_match_every_seed_to_itself(self):
        d1, _ = _random_maps(3, smooth=False)
        xy1, xy2 = fast_reciprocal_NNs(d1, d1.clone(), subsample_or_initxy1=4, dist="dot")
        np.testing.assert_array_equal(xy1, xy2)
        H, W = d1.shape[:2]
        assert len(xy1) == len(range(2, H, 4)) * len(range(2, W, 4))


class TestOptions:
    def test_explicit_seeds_single_round_trip(self):
        d1, d2 = _random_maps(11)
        W1 = d1.shape[1]
        x = np.array([0, 5, 9, 31]); y = np.array([0, 3, 20, 23])
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=(x, y), dist="dot")
        expected = _reference_matches(d1.numpy(), d2.numpy(), y * W1 + x, "dot", max_iter=1)
        got = list(zip(_as_flat(xy1, W1).tolist(), _as_flat(xy2, d2.shape[1]).tolist()))
        assert got == expected

    def test_ret_xy_false_and_y_x(self):
        d1, d2 = _random_maps(12)
        xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot")
        f1, f2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", ret_xy=False)
        assert f1.dtype == np.int32
        np.testing.assert_array_equal(f1, _as_flat(xy1, d1.shape[1]))
        np.testing.assert_array_equal(f2, _as_flat(xy2, d2.shape[1]))
        (y1, x1), (y2, x2) = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", ret_xy="y_x")
        np.testing.assert_array_equal(np.stack([x1, y1], 1), xy1)

    def test_basin_maps_visited_pixels_to_their_landing(self):
        d1, d2 = _random_maps(13)
        A, B = d1.reshape(-1, d1.shape[-1]), d2.reshape(-1, d2.shape[-1])
        nn12, nn21 = (A @ B.T).argmax(1), (B @ A.T).argmax(1)
        xy1, xy2, basin = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=4, dist="dot", ret_basin=True)
        assert basin.shape == (A.shape[0] + 1,) and basin.dtype == np.int32
        visited = np.flatnonzero(basin >= 0)
        assert visited.size > 0
        np.testing.assert_array_equal(basin[visited], nn21[nn12[visited]].numpy())

    def test_pixel_tol_keeps_nearby_landings(self):
        d1, d2 = _random_maps(14)
        strict = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", max_iter=1)
        loose = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot", pixel_tol=3)
        assert len(loose[0]) >= len(strict[0])
        A, B = d1.reshape(-1, d1.shape[-1]), d2.reshape(-1, d2.shape[-1])
        nn21 = (B @ A.T).argmax(1).numpy()
        back = nn21[_as_flat(loose[1], d2.shape[1])]
        W1 = d1.shape[1]
        np.testing.assert_array_equal(back, _as_flat(loose[0], W1))   # grid: landing pixel reported

    def test_max_iter(self):
        d1, d2 = _random_maps(15)
        H1, W1 = d1.shape[:2]
        seeds = np.arange(H1 * W1)
        for it in (1, 2, 4):
            xy1, xy2 = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=1, dist="l2", max_iter=it)
            expected = _reference_matches(d1.numpy(), d2.numpy(), seeds, "l2", max_iter=it)
            assert list(zip(_as_flat(xy1, W1).tolist(), _as_flat(xy2, d2.shape[1]).tolist())) == expected

    def test_float64_and_mixed_dtypes(self):
        d1, d2 = _random_maps(16)
        ref = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=2, dist="dot")
        got = fast_reciprocal_NNs(d1.double(), d2, subsample_or_initxy1=2, dist="dot")
        assert len(got[0]) > 0
        # float64 scoring can only differ from float32 on near-ties; random maps have none
        np.testing.assert_array_equal(got[0], ref[0])


class TestHelpers:
    def test_merge_corres_dedups_and_sorts(self):
        i1 = np.array([7, 3, 7, 3, 0], dtype=np.int32)
        i2 = np.array([1, 2, 1, 5, 4], dtype=np.int32)
        a, b, first = merge_corres(i1, i2, (4, 4), (4, 4), ret_xy=False, ret_index=True)
        np.testing.assert_array_equal(a, [0, 3, 3, 7])
        np.testing.assert_array_equal(b, [4, 2, 5, 1])
        np.testing.assert_array_equal(first, [4, 1, 3, 0])
        xy1, xy2 = merge_corres(i1, i2, (4, 4), (4, 4))
        np.testing.assert_array_equal(xy1, [[0, 0], [3, 0], [3, 0], [3, 1]])

    def test_bruteforce_tiled_equals_untiled(self):
        gen = torch.Generator().manual_seed(0)
        A, B = torch.randn(50, 6, generator=gen), torch.randn(37, 6, generator=gen)
        for dist in ("dot", "l2"):
            full = bruteforce_reciprocal_nns(A, B, dist=dist)
            tiled = bruteforce_reciprocal_nns(A, B, dist=dist, block_size=8)
            np.testing.assert_array_equal(full[0], tiled[0])
            np.testing.assert_array_equal(full[1], tiled[1])
            score = A @ B.T if dist == "dot" else -torch.cdist(A, B)
            np.testing.assert_array_equal(full[0], score.argmax(1).numpy())
            np.testing.assert_array_equal(full[1], score.argmax(0).numpy())

    def test_extract_correspondences_nonsym(self):
        d1, d2 = _random_maps(21)
        c1 = torch.rand(d1.shape[:2], generator=torch.Generator().manual_seed(1)) + 1
        c2 = torch.rand(d2.shape[:2], generator=torch.Generator().manual_seed(2)) + 1
        xy1, xy2, conf = extract_correspondences_nonsym(d1, d2, c1, c2, subsample=4)
        ab = fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=4, dist="dot", block_size=2 ** 13)
        ba = fast_reciprocal_NNs(d2, d1, subsample_or_initxy1=4, dist="dot", block_size=2 ** 13)
        expected = set(map(tuple, np.concatenate([ab[0], ab[1]], 1).tolist()))
        expected |= set(map(tuple, np.concatenate([ba[1], ba[0]], 1).tolist()))
        got = np.concatenate([xy1.numpy(), xy2.numpy()], 1)
        assert set(map(tuple, got.tolist())) == expected and len(got) == len(expected)
        torch.testing.assert_close(conf, torch.minimum(c1[xy1[:, 1], xy1[:, 0]], c2[xy2[:, 1], xy2[:, 0]]))


class TestErrors:
    def test_bad_inputs_are_named(self):
        d1, d2 = _random_maps(0)
        with pytest.raises(ValueError, match="pts1 must be a \\(H, W, D\\) descriptor map"):
            fast_reciprocal_NNs(d1.reshape(-1, 8), d2)
        with pytest.raises(ValueError, match="different descriptor dimensions"):
            fast_reciprocal_NNs(d1, d2[..., :4])
        with pytest.raises(ValueError, match="dist"):
            fast_reciprocal_NNs(d1, d2, dist="cosine")
        with pytest.raises(ValueError, match="subsample_or_initxy1 must be >= 1"):
            fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=0)
        with pytest.raises(ValueError, match="unknown matcher keyword"):
            fast_reciprocal_NNs(d1, d2, blocksize=8)
        with pytest.raises(ValueError, match="seed x coordinates must lie in"):
            fast_reciprocal_NNs(d1, d2, subsample_or_initxy1=(np.array([100]), np.array([0])))
        with pytest.raises(ValueError, match="pixel_tol"):
            fast_reciprocal_NNs(d1, d2, pixel_tol=-1)
        with pytest.raises(ValueError, match="same length"):
            merge_corres(np.array([1, 2]), np.array([1]), ret_xy=False)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    d1, d2 = _fixture_descs("mast3r_tiny_a")
    expected = np.load(DATA / "matching" / "mast3r_tiny_a.npz")
    xy1, xy2 = fast_reciprocal_NNs(d1.cuda(), d2.cuda(), subsample_or_initxy1=4, device="cuda", dist="dot",
                                   block_size=2 ** 13)
    np.testing.assert_array_equal(xy1, expected["s4.xy1"])
    np.testing.assert_array_equal(xy2, expected["s4.xy2"])
