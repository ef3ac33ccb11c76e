"""mast3r.colmap.match_cache: content-addressed, atomic, resumable match cache and streamed matching."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dust3r.synthetic import OracleModel, make_scene
from mast3r.cloud_opt.forward_cache import image_fingerprint, model_fingerprint
from mast3r.colmap.match_cache import MatchCache, PairMatches, compute_matches, unique_pairs


@pytest.fixture(scope="module")
def scene():
    return make_scene(6, 48, 64, seed=3, baseline=0.4)


def _record(k: int = 5, seed: int = 0) -> PairMatches:
    rng = np.random.default_rng(seed)
    return PairMatches(rng.integers(0, 60, (k, 2)).astype(np.int32), rng.integers(0, 40, (k, 2)).astype(np.int32),
                       rng.uniform(1, 5, k).astype(np.float32), 51.5, float("nan"))


class _Counting(torch.nn.Module):
    """Forwards to the oracle, counting pairs; raises after ``fail_after`` forward calls (a 'kill')."""

    def __init__(self, oracle: OracleModel, fail_after: int = -1):
        super().__init__()
        self.oracle, self.fail_after, self.calls, self.pairs = oracle, fail_after, 0, 0

    def forward(self, view1, view2):
        if self.calls == self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.pairs += view1["img"].shape[0]
        return self.oracle(view1, view2)


def _files(folder: str):
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


class TestMatchCache:
    def test_round_trip_and_symmetry(self, tmp_path):
        cache = MatchCache(tmp_path, "abc123")
        rec = _record()
        cache.save("ffff", "aaaa", rec)   # stored as (aaaa, ffff)
        assert ("ffff", "aaaa") in cache and ("aaaa", "ffff") in cache
        back = cache.load("ffff", "aaaa")
        np.testing.assert_array_equal(back.xy_i, rec.xy_i)
        np.testing.assert_array_equal(back.xy_j, rec.xy_j)
        np.testing.assert_array_equal(back.conf, rec.conf)
        assert back.focal_i == pytest.approx(51.5) and np.isnan(back.focal_j)
        swapped = cache.load("aaaa", "ffff")
        np.testing.assert_array_equal(swapped.xy_i, rec.xy_j)
        assert np.isnan(swapped.focal_i) and swapped.focal_j == pytest.approx(51.5)
        assert len(_files(cache.folder)) == 1  # one file per unordered pair, no temporary left

    def test_keyed_by_model_and_options(self, tmp_path):
        MatchCache(tmp_path, "model1").save("aa", "bb", _record())
        assert ("aa", "bb") in MatchCache(tmp_path, "model1")
        assert ("aa", "bb") not in MatchCache(tmp_path, "model2")
        assert ("aa", "bb") not in MatchCache(tmp_path, "model1", subsample=4)
        assert ("aa", "bb") not in MatchCache(tmp_path, "model1", pixel_tol=2)

    def test_model_and_image_fingerprints_differ(self, scene):
        other = make_scene(6, 48, 64, seed=4, baseline=0.4)
        assert model_fingerprint(OracleModel(scene)) != model_fingerprint(OracleModel(other))
        views = scene.views()
        assert len({image_fingerprint(v) for v in views}) == len(views)

    def test_unreadable_file_is_recomputed(self, tmp_path, caplog):
        cache = MatchCache(tmp_path, "m")
        path = cache.save("aa", "bb", _record())
        with open(path, "wb") as fh:
            fh.write(b"truncated")
        assert cache.load("aa", "bb") is None
        assert "unreadable match cache file" in caplog.text

    def test_file_with_pickled_object_is_refused(self, tmp_path):
        cache = MatchCache(tmp_path, "m")
        path = cache.save("aa", "bb", _record())
        with open(path, "wb") as fh:  # an object array needs pickle: refused by allow_pickle=False
            np.savez(fh, xy_a=np.array([object()], dtype=object), xy_b=np.zeros((0, 2)), conf=np.zeros(0),
                     focal_a=np.float32(1), focal_b=np.float32(1))
        assert cache.load("aa", "bb") is None

    @pytest.mark.parametrize("kwargs, message", [
        (dict(model_fp="../x"), "alphanumeric"), (dict(subsample=0), "subsample"),
        (dict(pixel_tol=-1.0), "pixel_tol")])
    def test_bad_arguments(self, tmp_path, kwargs, message):
        args = dict(model_fp="m")
        args.update(kwargs)
        with pytest.raises(ValueError, match=message):
            MatchCache(tmp_path, **args)

    def test_root_is_a_file(self, tmp_path):
        (tmp_path / "f").write_text("x")
        with pytest.raises(ValueError, match="not a directory"):
            MatchCache(tmp_path / "f", "m")


class TestUniquePairs:
    def test_dedup_and_order(self, scene):
        views = scene.views()
        pairs = [(views[2], views[0]), (0, 2), (1, 1), (3, 4), (4, 3)]
        assert unique_pairs(pairs, 6) == [(0, 2), (3, 4)]

    @pytest.mark.parametrize("pair", [(0, 9), ("a", 1), (1,)])
    def test_bad_pairs(self, pair):
        with pytest.raises(ValueError):
            unique_pairs([pair], 6)


class TestComputeMatches:
    def test_matches_are_true_correspondences(self, scene, tmp_path):
        views = scene.views()
        cache = MatchCache.for_model(tmp_path, OracleModel(scene), subsample=4)
        stats = compute_matches(OracleModel(scene), views, [(0, 1)], cache, verbose=False)
        assert stats == {"pairs": 1, "cached": 0, "computed": 1}
        m = cache.load(image_fingerprint(views[0]), image_fingerprint(views[1])).confident(1.5)
        assert len(m) > 20
        xy_true, visible = scene.correspondences(0, 1)
        assert visible[m.xy_i[:, 1], m.xy_i[:, 0]].all()
        err = np.linalg.norm(xy_true[m.xy_i[:, 1], m.xy_i[:, 0]] - m.xy_j, axis=1)
        assert np.median(err) < 0.75 and err.max() < 2.0
        assert m.focal_i == pytest.approx(scene.K[0, 0, 0], rel=1e-3)  # from image 0's own pointmap

    def test_kill_and_resume(self, scene, tmp_path):
        views = scene.views()
        pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)][:8]
        fp = model_fingerprint(OracleModel(scene))
        killed = _Counting(OracleModel(scene), fail_after=2)
        with pytest.raises(KeyboardInterrupt):
            compute_matches(killed, views, pairs, MatchCache(tmp_path, fp), batch_size=2, verbose=False)
        done = _files(MatchCache(tmp_path, fp).folder)
        assert len(done) == 4 and all(f.endswith(".npz") for f in done)  # 2 batches of 2, nothing half-written

        resumed = _Counting(OracleModel(scene))
        stats = compute_matches(resumed, views, pairs, MatchCache(tmp_path, fp), batch_size=2, verbose=False)
        assert stats == {"pairs": 8, "cached": 4, "computed": 4}
        assert resumed.pairs == 4  # only the missing pairs went through the model

        fresh_root = tmp_path / "fresh"
        compute_matches(OracleModel(scene), views, pairs, MatchCache(fresh_root, fp), batch_size=8, verbose=False)
        fps = [image_fingerprint(v) for v in views]
        for i, j in pairs:  # resumed results equal a run from scratch
            a = MatchCache(tmp_path, fp).load(fps[i], fps[j])
            b = MatchCache(fresh_root, fp).load(fps[i], fps[j])
            np.testing.assert_array_equal(a.xy_i, b.xy_i)
            np.testing.assert_array_equal(a.xy_j, b.xy_j)

        again = _Counting(OracleModel(scene))
        assert compute_matches(again, views, pairs, MatchCache(tmp_path, fp), verbose=False)["computed"] == 0
        assert again.pairs == 0

    def test_model_without_descriptors(self, scene, tmp_path):
        class NoDesc(torch.nn.Module):
            def forward(self, v1, v2):
                p1, p2 = OracleModel(scene)(v1, v2)
                return {k: v for k, v in p1.items() if k != "desc"}, p2

        with pytest.raises(ValueError, match="needs a MASt3R model"):
            compute_matches(NoDesc(), scene.views(), [(0, 1)], MatchCache(tmp_path, "m"), verbose=False)

    def test_bad_batch_size(self, scene, tmp_path):
        with pytest.raises(ValueError, match="batch_size"):
            compute_matches(OracleModel(scene), scene.views(), [(0, 1)], MatchCache(tmp_path, "m"), batch_size=0)
