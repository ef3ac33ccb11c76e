"""dust3r.datasets.TartanAir on data written by preprocess_tartanair from a fake raw TartanAir."""
from __future__ import annotations

import logging
import os

import pytest

from dust3r.datasets.tartanair import TartanAir
from tests.helpers.fake_raw._checks import build_processed, check_loaded_pair, pair_truths


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_processed("tartanair", tmp_path_factory)



class TestTartanAir:
    def test_recipe_arguments(self, root):
        out, _ = root
        ds = TartanAir(pairs_subset="", ROOT=out, resolution=[(512, 384), (512, 336)], aug_crop="auto", seed=7)
        assert len(ds) == 3 and ds.split is None and ds.is_metric_scale
        assert "3 pairs from 1 scenes" in repr(ds)

    @pytest.mark.parametrize("resolution", [(512, 384), (320, 180)])
    def test_views_geometrically_consistent(self, root, resolution):
        out, truths = root
        ds = TartanAir(ROOT=out, resolution=[resolution], seed=3)
        for idx in range(len(ds)):
            views = ds[(idx, 0)]
            assert views[0]["dataset"] == "TartanAir" and views[0]["label"] == "abandonedfactory/Easy/P000"
            assert views[0]["true_shape"].tolist() == [resolution[1], resolution[0]]
            assert views[0]["is_metric_scale"]
            check_loaded_pair(views, pair_truths(ds, idx, truths))

    def test_pairs_subset(self, root):
        out, _ = root
        assert len(TartanAir(pairs_subset="Easy", ROOT=out, resolution=224)) == 3
        assert len(TartanAir(pairs_subset="P000, Hard", ROOT=out, resolution=224)) == 3
        with pytest.raises(ValueError, match="matches no pair"):
            TartanAir(pairs_subset="Hard", ROOT=out, resolution=224)  # its only pair touched the broken frame

    def test_split(self, root):
        out, _ = root
        assert len(TartanAir(split="train", ROOT=out, resolution=224)) == 3
        with pytest.raises(ValueError, match="split 'val'"):
            TartanAir(split="val", ROOT=out, resolution=224)

    def test_missing_root_names_the_script(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        with pytest.raises(FileNotFoundError, match="preprocess_tartanair.py") as err:
            TartanAir(resolution=224)
        assert os.path.join("data", "tartanair_processed") in str(err.value)

    def test_unreadable_sample_skipped_with_one_warning(self, root, caplog):
        out, _ = root
        ds = TartanAir(ROOT=out, resolution=224, seed=1)
        idx = next(i for i, pair in enumerate(ds.pairs) if ds.frames[pair[1]] == "000002")
        victim = os.path.join(out, "abandonedfactory", "Easy", "P000", "000002.exr")
        saved = victim + ".bak"
        os.rename(victim, saved)
        try:
            with caplog.at_level(logging.WARNING):
                views = ds[idx]  # frame 000002 is unreadable: the only pair without it is served
                views_again = ds[idx]
            assert {views_again[0]["instance"], views_again[1]["instance"]} == {"000000", "000001"}
            assert {views[0]["instance"], views[1]["instance"]} == {"000000", "000001"}
            assert sum("000002.exr" in rec.getMessage() for rec in caplog.records) == 1
        finally:
            os.rename(saved, victim)
