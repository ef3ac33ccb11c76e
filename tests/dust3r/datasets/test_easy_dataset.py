"""Dataset arithmetic (N @ D, A + B, k * A), the aspect-ratio batch sampler and get_data_loader, against what the
original built for the train_commands.md strings (tests/data/training/datasets/train_commands.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dust3r.datasets import get_data_loader
from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.base.batched_sampler import BatchedRandomSampler, round_by
from dust3r.datasets.base.easy_dataset import CatDataset, MulDataset, ResizedDataset

RECORD = json.loads((Path(__file__).resolve().parents[2] / "data" / "training" / "datasets"
                     / "train_commands.json").read_text())
FIVE_RES = [(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)]


class Toy(BaseStereoViewDataset):
    """n items; an item is (name, idx, ar_idx) so that the wrappers' index arithmetic is visible."""

    def __init__(self, n, name="toy", **kw):
        super().__init__(**{"resolution": FIVE_RES, **kw})
        self.n, self.name = n, name

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        i, ar = self._split_index(idx)
        if not 0 <= i < self.n:
            raise IndexError(i)
        return (self.name, i, ar)


def test_operators_build_the_wrappers():
    a, b = Toy(10, "a"), Toy(4, "b")
    assert isinstance(100 @ a, ResizedDataset) and len(100 @ a) == 100
    assert isinstance(3 * a, MulDataset) and len(3 * a) == 30
    cat = a + b + 2 * b
    assert isinstance(cat, CatDataset) and len(cat) == 22
    assert isinstance(cat.datasets[0], CatDataset) and cat.datasets[0]._cum_sizes.tolist() == [10, 14]
    assert cat[(9, 2)] == ("a", 9, 2) and cat[(10, 1)] == ("b", 0, 1) and cat[(21, 0)] == ("b", 3, 0)
    assert (3 * a)[(7, 4)] == ("a", 2, 4)
    with pytest.raises(IndexError):
        cat[22]
    assert repr(1_000_000 @ a).startswith("1_000_000 @ Toy(10 pairs")


def test_bad_sizes_and_mismatched_resolutions():
    with pytest.raises(ValueError, match="positive integer"):
        0 @ Toy(3)
    with pytest.raises(ValueError, match="positive integer"):
        MulDataset(1.5, Toy(3))
    with pytest.raises(TypeError, match="EasyDataset"):
        CatDataset([Toy(3), [1, 2]])
    with pytest.raises(ValueError, match="disagree on resolutions"):
        (Toy(3) + Toy(3, resolution=224))._resolutions


def test_resized_dataset_epoch_mapping_matches_original():
    for c, inner_len in ((0, 1000), (1, 1004)):
        loader = RECORD["commands"][c]["strings"]["train_dataset"]["loader"]
        first = loader["epoch1_resized_mapping_first"]
        ds = 57_000 @ Toy(inner_len)
        with pytest.raises(RuntimeError, match="set_epoch"):
            ds[0]
        ds.set_epoch(1)
        assert [ds[(i, 0)][1] for i in range(len(first))] == first
    small = 25 @ Toy(10)
    small.set_epoch(3)
    got = [small[(i, 0)][1] for i in range(25)]
    assert sorted(got[:10]) == list(range(10)) and got[10:20] == got[:10]  # rotary extension


@pytest.mark.parametrize("c", [0, 1])
def test_batched_sampler_matches_original(c):
    cmd = RECORD["commands"][c]
    loader = cmd["strings"]["train_dataset"]["loader"]
    world = cmd["nproc_per_node"]
    n = loader["world_size_1"]["total_size"]
    ds = n @ Toy(10)
    bs = cmd["batch_size"]
    single = ds.make_sampler(bs, shuffle=True, world_size=1, rank=0)
    assert isinstance(single, BatchedRandomSampler) and len(single) == loader["world_size_1"]["sampler_len_per_rank"]
    rec = loader[f"world_size_{world}"]
    per_rank = [ds.make_sampler(bs, world_size=world, rank=r, drop_last=True) for r in range(world)]
    assert per_rank[0].total_size == rec["total_size"] and len(per_rank[1]) == rec["sampler_len_per_rank"]
    assert per_rank[0].pool_size == rec["pool_size"] == 5
    for s in per_rank:
        s.set_epoch(1)
    first = [list(t) for t in list(iter(per_rank[1]))[:len(loader["epoch1_rank1_first_indices"])]]
    assert first == loader["epoch1_rank1_first_indices"]
    rows = np.concatenate([s.epoch_indices() for s in per_rank])
    assert len(rows) == rec["total_size"] and len(np.unique(rows[:, 0])) == rec["total_size"]  # a partition
    feats = rows[:, 1].reshape(-1, bs)
    assert (feats == feats[:, :1]).all()  # one aspect ratio per batch, on every rank
    assert len(rows) // bs // world == rec["batches_per_rank"]


def test_sampler_rules():
    assert round_by(1003, 16) == 992 and round_by(1003, 16, up=True) == 1008
    with pytest.raises(ValueError, match="drop_last"):
        BatchedRandomSampler(Toy(10), 2, 5, world_size=2, drop_last=False)
    with pytest.raises(RuntimeError, match="set_epoch"):
        list(BatchedRandomSampler(Toy(10), 2, 5, world_size=2, rank=1))
    s = BatchedRandomSampler(Toy(10), 4, 5, drop_last=False)
    assert len(s) == 10 and sorted(i for i, _ in s) == list(range(10))  # unseeded single process still works
    with pytest.raises(NotImplementedError):
        Toy(10).make_sampler(2, shuffle=False)


def test_get_data_loader_train_and_test(monkeypatch):
    train = 16 @ Toy(40)
    train.set_epoch(0)
    dl = get_data_loader(train, batch_size=4, num_workers=0, shuffle=True, drop_last=True, pin_mem=False)
    assert isinstance(dl.sampler, BatchedRandomSampler)
    dl.sampler.set_epoch(0)
    batches = list(dl)
    assert len(batches) == 4 and all(len(set(b[2].tolist())) == 1 for b in batches)
    test = 100 @ Toy(40, resolution=(512, 384))
    test.set_epoch(0)
    dl = get_data_loader(test, batch_size=4, num_workers=0, shuffle=False, drop_last=False, pin_mem=False)
    assert isinstance(dl.sampler, torch.utils.data.SequentialSampler)
    rec = RECORD["commands"][0]["strings"]["test_dataset"]["loader"]
    assert len(dl) == rec["batches_single_process"]
    # under DDP (4 ranks, as command 0) the test loader falls back to a DistributedSampler
    import croco.utils.misc as misc
    monkeypatch.setattr(misc, "get_world_size", lambda: 4)
    monkeypatch.setattr(misc, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    dl = get_data_loader(test, batch_size=4, num_workers=0, shuffle=False, drop_last=False, pin_mem=False)
    assert isinstance(dl.sampler, torch.utils.data.DistributedSampler)
    assert dl.sampler.num_replicas == 4 and dl.sampler.rank == 1 and len(dl) == rec["batches_per_rank"]


def test_set_epoch_reaches_nested_datasets():
    inner = 5 @ Toy(3)
    outer = 2 * inner + Toy(2)
    outer.set_epoch(4)
    assert hasattr(inner, "_idxs_mapping")
    assert inner._idxs_mapping.tolist() == [int(i) for i in np.tile(np.random.default_rng(781).permutation(3), 2)[:5]]
