"""dust3r.inference.inference against the original's outputs, for every tiny parity model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.inference import check_if_same_size, inference, make_batch_symmetric
from tests.parity import INDEX, MODELS, fixture_pairs, rel_err, tolerance


def _get(out, part, key, k):
    value = out[part][key]
    return value[k]


@pytest.mark.parametrize("name", MODELS)
def test_inference_matches_reference(name, tiny_model):
    model = tiny_model(name)
    pairs, ref = fixture_pairs(name)
    out = inference(pairs, model, "cpu", batch_size=1, verbose=False)
    containers = INDEX["inference"][name]["containers"]
    for part in ("pred1", "pred2"):
        expected_keys = {k.split(".")[2] for k in ref.files if k.startswith(f"pair0.{part}.")}
        assert set(out[part]) == expected_keys
        for key in expected_keys:
            kind = containers[f"{part}.{key}"]
            assert isinstance(out[part][key], list if kind == "list" else torch.Tensor), (part, key)
            for k in range(2):
                err = rel_err(_get(out, part, key, k), ref[f"pair{k}.{part}.{key}"])
                assert err <= tolerance(key), f"{name} pair{k} {part}.{key}: rel err {err:.2e}"
    for k in range(2):
        for v in ("view1", "view2"):
            np.testing.assert_array_equal(out[v]["img"][k].numpy(), ref[f"pair{k}.{v}.img"])
            assert out[v]["idx"][k] == INDEX["inference"][name]["pairs"][k][v]["idx"]
            assert out[v]["instance"][k] == INDEX["inference"][name]["pairs"][k][v]["instance"]
    assert out["loss"] is None


@pytest.mark.parametrize("name", ["mast3r_tiny_b", "dust3r_tiny_linear"])
def test_batching_does_not_change_results(name, tiny_model):
    """Same-shape pairs: batch_size 1 vs 8 (shared encoder pass) agree to rounding."""
    model = tiny_model(name)
    pairs, _ = fixture_pairs(name)
    a = inference(pairs, model, "cpu", batch_size=1, verbose=False)
    b = inference(pairs, model, "cpu", batch_size=8, verbose=False)
    for part in ("pred1", "pred2"):
        for key in a[part]:
            assert rel_err(a[part][key], b[part][key].numpy()) <= tolerance(key)


def test_cached_encoder_equals_plain_forward(tiny_model):
    """inference() encodes each image once; the result equals calling the model on each pair."""
    model = tiny_model("mast3r_tiny_a")
    pairs, _ = fixture_pairs("mast3r_tiny_a")
    out = inference(pairs, model, "cpu", batch_size=4, verbose=False)
    with torch.no_grad():
        for k, (v1, v2) in enumerate(pairs):
            r1, r2 = model(dict(v1, true_shape=torch.from_numpy(v1["true_shape"])),
                           dict(v2, true_shape=torch.from_numpy(v2["true_shape"])))
            assert rel_err(out["pred1"]["pts3d"][k], r1["pts3d"][0].numpy()) <= tolerance("pts3d")
            assert rel_err(out["pred2"]["desc"][k], r2["desc"][0].numpy()) <= tolerance("desc")


def test_mixed_sizes_grouped_in_batches(tiny_model):
    """Pairs of two different size combinations: lists in pair order, equal to one-by-one inference."""
    model = tiny_model("mast3r_tiny_a")
    pairs, _ = fixture_pairs("mast3r_tiny_a")
    (p, l), (l2, p2) = pairs[0], pairs[1]
    many = [(p, l), (l, p), (l, l), (p, l), (p, p)]
    out = inference(many, model, "cpu", batch_size=8, verbose=False)
    assert isinstance(out["pred1"]["pts3d"], list) and len(out["pred1"]["pts3d"]) == 5
    for k, pair in enumerate(many):
        single = inference([pair], model, "cpu", batch_size=1, verbose=False)
        assert out["pred1"]["pts3d"][k].shape == pair[0]["img"].shape[-2:] + (3,)
        err = rel_err(out["pred2"]["pts3d_in_other_view"][k], single["pred2"]["pts3d_in_other_view"][0].numpy())
        assert err <= tolerance("pts3d")


def test_check_if_same_size_and_symmetric_batch():
    a = {"img": torch.zeros(2, 3, 32, 48), "instance": ["0", "1"]}
    b = {"img": torch.ones(2, 3, 32, 48), "instance": ["2", "3"]}
    assert check_if_same_size([(a, b)])
    assert not check_if_same_size([(a, b), ({"img": torch.zeros(1, 3, 48, 32)}, b)])
    v1, v2 = make_batch_symmetric((a, b))
    assert v1["instance"] == ["0", "2", "1", "3"] and v2["instance"] == ["2", "0", "3", "1"]
    assert torch.equal(v1["img"][1], b["img"][0]) and torch.equal(v2["img"][1], a["img"][0])


def test_bad_inputs(tiny_model):
    model = tiny_model("dust3r_tiny_linear")
    with pytest.raises(ValueError, match="no image pairs"):
        inference([], model, "cpu", verbose=False)
    with pytest.raises(ValueError, match=r"pairs\[0\]"):
        inference([("a", "b")], model, "cpu", verbose=False)
    pairs, _ = fixture_pairs("dust3r_tiny_linear")
    with pytest.raises(ValueError, match="batch_size"):
        inference(pairs, model, "cpu", batch_size=0, verbose=False)


def test_bfloat16_autocast_runs_and_stays_close(tiny_model):
    model = tiny_model("dust3r_tiny_linear")
    pairs, ref = fixture_pairs("dust3r_tiny_linear")
    out = inference(pairs, model, "cpu", batch_size=2, verbose=False, amp=torch.bfloat16)
    assert out["pred1"]["pts3d"].dtype == torch.float32  # heads always run in fp32
    assert rel_err(out["pred1"]["conf"][0], ref["pair0.pred1.conf"]) < 0.1
