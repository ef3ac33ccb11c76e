"""mast3r.fast_nn refuses non-finite inputs (issue 11) on every path, naming the argument, before any work.

Before the fix, ``fast_reciprocal_NNs(a, b, dist='dot')`` with one NaN in ``a`` returned 1 bogus match instead of the
16 of the clean pair, without an error, and the KD-tree path raised scipy's message without naming the argument.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mast3r.fast_nn as fast_nn
from mast3r.fast_nn import bruteforce_reciprocal_nns, cdistMatcher, extract_correspondences_nonsym, fast_reciprocal_NNs

BAD_VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
# every way fast_reciprocal_NNs searches: upstream's torch brute force (untiled, tiled), its KD-tree (through the
# brute-force screening for D > 8, through the tree itself for D <= 8)
PATHS = {
    "torch-dot": dict(dist="dot"),
    "torch-l2": dict(dist="l2"),
    "torch-dot-tiled": dict(dist="dot", block_size=16),
    "kdtree": dict(),
    "kdtree-direct": dict(dim=4),
}
BAD_PIXEL = (5, 3)  # (x, y)


def _pair(dim: int = 8, device: str = "cpu"):
    """Two 16x16 unit descriptor maps; the second is a slightly noisy copy of the first (16 matches on a grid of 4)."""
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(16, 16, dim, generator=g), dim=-1)
    b = torch.nn.functional.normalize(a + 0.01 * torch.randn(16, 16, dim, generator=g), dim=-1)
    return a.to(device), b.to(device)


def _spoil(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t[BAD_PIXEL[1], BAD_PIXEL[0], 0] = value
    return t


def _expect_named(name: str):
    return pytest.raises(ValueError, match=rf"^{name} holds 1 non-finite value\(s\) \(NaN or inf\)")


class TestFastReciprocalNNs:
    @pytest.mark.parametrize("path", sorted(PATHS))
    def test_clean_pair_matches_every_seed(self, path):
        kw = dict(PATHS[path])
        a, b = _pair(kw.pop("dim", 8))
        xy1, xy2 = fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, **kw)
        assert len(xy1) == 16
        np.testing.assert_array_equal(xy1, xy2)

    @pytest.mark.parametrize("value", sorted(BAD_VALUES))
    @pytest.mark.parametrize("bad", ["pts1", "pts2"])
    @pytest.mark.parametrize("path", sorted(PATHS))
    def test_non_finite_is_refused_naming_the_argument(self, path, bad, value):
        kw = dict(PATHS[path])
        a, b = _pair(kw.pop("dim", 8))
        if bad == "pts1":
            a = _spoil(a, BAD_VALUES[value])
        else:
            b = _spoil(b, BAD_VALUES[value])
        with _expect_named(bad) as err:
            fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, **kw)
        assert f"pixel (x={BAD_PIXEL[0]}, y={BAD_PIXEL[1]})" in str(err.value)

    def test_numpy_input_is_checked_too(self):
        a, b = _pair()
        with _expect_named("pts2"):
            fast_reciprocal_NNs(a.numpy(), _spoil(b, float("nan")).numpy(), subsample_or_initxy1=4, dist="dot")

    def test_refused_before_any_search(self, monkeypatch):
        def no_search(*args, **kwargs):
            raise AssertionError("the search started before the inputs were checked")

        monkeypatch.setattr(fast_nn, "NNSide", no_search)
        a, b = _pair()
        with _expect_named("pts1"):
            fast_reciprocal_NNs(_spoil(a, float("nan")), b, subsample_or_initxy1=4, dist="dot")

    def test_counts_every_bad_value(self):
        a, b = _pair()
        a[0, 0, :3] = float("nan")
        a[2, 1, 5] = float("inf")
        with pytest.raises(ValueError, match=r"pts1 holds 4 non-finite value\(s\) .* first at pixel \(x=0, y=0\)"):
            fast_reciprocal_NNs(a, b, dist="dot")


class TestOtherEntryPoints:
    @pytest.mark.parametrize("dist", ["dot", "l2"])
    @pytest.mark.parametrize("bad", ["A", "B"])
    def test_bruteforce(self, dist, bad):
        a, b = (t.reshape(-1, 8) for t in _pair())
        args = {"A": a, "B": b}
        args[bad] = args[bad].clone()
        args[bad][7, 2] = float("nan")
        with pytest.raises(ValueError, match=rf"^{bad} holds 1 non-finite value\(s\).*index \(7, 2\)"):
            bruteforce_reciprocal_nns(args["A"], args["B"], dist=dist, block_size=32)

    def test_cdist_matcher(self):
        a, b = (t.reshape(-1, 8) for t in _pair())
        with pytest.raises(ValueError, match=r"^db_pts holds 8 non-finite value\(s\) .* first at index \(3, 0\)"):
            cdistMatcher(torch.where(torch.arange(a.shape[0])[:, None] == 3, float("inf"), a))
        matcher = cdistMatcher(a)
        bad = b.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"^queries holds 1 non-finite"):
            matcher.query(bad, dist="dot")
        np.testing.assert_array_equal(matcher.query(b, dist="dot")[1], (b @ a.T).argmax(1).numpy())

    @pytest.mark.parametrize("bad", ["A", "B", "confA", "confB"])
    def test_extract_correspondences_nonsym(self, bad):
        a, b = _pair()
        args = {"A": a, "B": b, "confA": torch.ones(16, 16), "confB": torch.ones(16, 16)}
        xy1, xy2, conf = extract_correspondences_nonsym(args["A"], args["B"], args["confA"], args["confB"],
                                                        subsample=4)
        assert len(xy1) == 16 and torch.equal(conf, torch.ones(16))
        args[bad] = args[bad].clone()
        args[bad][3, 5] = float("nan")
        with pytest.raises(ValueError, match=rf"^{bad} holds \d+ non-finite value\(s\)"):
            extract_correspondences_nonsym(args["A"], args["B"], args["confA"], args["confB"], subsample=4)

    def test_extract_correspondences_conf_shape(self):
        a, b = _pair()
        with pytest.raises(ValueError, match=r"confB must hold one confidence per pixel of B"):
            extract_correspondences_nonsym(a, b, torch.ones(16, 16), torch.ones(8, 8), subsample=4)


@pytest.mark.cuda
class TestCuda:
    @pytest.mark.parametrize("value", sorted(BAD_VALUES))
    @pytest.mark.parametrize("bad", ["pts1", "pts2"])
    def test_non_finite_is_refused_on_cuda(self, bad, value):
        a, b = _pair(device="cuda")
        assert len(fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, device="cuda")[0]) == 16
        if bad == "pts1":
            a = _spoil(a, BAD_VALUES[value])
        else:
            b = _spoil(b, BAD_VALUES[value])
        with _expect_named(bad):
            fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, device="cuda")
