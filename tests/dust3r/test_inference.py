"""dust3r.inference.inference against the original's outputs, for every tiny parity model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.inference import (NonFiniteOutputError, check_if_same_size, get_pred_pts3d, inference, load_model,
                              make_batch_symmetric)
from dust3r.model import AsymmetricCroCo3DStereo
from dust3r.utils.geometry import depthmap_to_pts3d
from tests.parity import DATA, INDEX, MODELS, fixture_pairs, rel_err, tolerance


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


class OriginalInterface(torch.nn.Module):
    """A third-party model written against the original's private interface only (as the original's
    ``sparse_ga.symmetric_inference`` uses it) and a plain forward; none of our helpers."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def _encode_image(self, image, true_shape):
        return self.inner._encode_image(image, true_shape)

    def _decoder(self, f1, pos1, f2, pos2):
        return self.inner._decoder(f1, pos1, f2, pos2)

    def _downstream_head(self, head_num, decout, img_shape):
        return self.inner._downstream_head(head_num, decout, img_shape)

    def forward(self, view1, view2):
        shape1, shape2 = (torch.as_tensor(v["true_shape"]) for v in (view1, view2))
        f1, pos1, _ = self._encode_image(view1["img"], shape1)
        f2, pos2, _ = self._encode_image(view2["img"], shape2)
        dec1, dec2 = self._decoder(f1, pos1, f2, pos2)
        res1 = self._downstream_head(1, [t.float() for t in dec1], shape1)
        res2 = self._downstream_head(2, [t.float() for t in dec2], shape2)
        res2["pts3d_in_other_view"] = res2.pop("pts3d")
        return res1, res2


@pytest.mark.parametrize("name", ["mast3r_tiny_a", "dust3r_tiny_linear"])
def test_model_with_the_original_interface(name, tiny_model):
    """No '_true_shape' / '_encode_symmetrized': inference() calls its forward and gives the normal results."""
    model = tiny_model(name)
    pairs, ref = fixture_pairs(name)
    wrapped = OriginalInterface(model).eval()
    assert not hasattr(wrapped, "_true_shape") and not isinstance(wrapped, AsymmetricCroCo3DStereo)
    ours = inference(pairs, model, "cpu", batch_size=1, verbose=False)
    theirs = inference(pairs, wrapped, "cpu", batch_size=1, verbose=False)
    for part in ("pred1", "pred2"):
        assert set(theirs[part]) == set(ours[part])
        for key in ours[part]:
            for k in range(len(pairs)):
                assert rel_err(theirs[part][key][k], ours[part][key][k].numpy()) <= tolerance(key), (part, key)
                assert rel_err(theirs[part][key][k], ref[f"pair{k}.{part}.{key}"]) <= tolerance(key), (part, key)


def test_subclass_with_its_own_forward_is_called(tiny_model):
    """A subclass overriding forward gets its forward called, not our cached pieces."""
    model = tiny_model("dust3r_tiny_linear")

    class Shifted(AsymmetricCroCo3DStereo):
        def forward(self, view1, view2):
            res1, res2 = super().forward(view1, view2)
            res1["pts3d"] = res1["pts3d"] + 1.0
            return res1, res2

    shifted = Shifted.from_pretrained(str(DATA / "models" / "dust3r_tiny_linear.pth"))
    assert type(shifted) is Shifted
    pairs, _ = fixture_pairs("dust3r_tiny_linear")
    a = inference(pairs, model, "cpu", batch_size=2, verbose=False)
    b = inference(pairs, shifted, "cpu", batch_size=2, verbose=False)
    assert torch.allclose(b["pred1"]["pts3d"], a["pred1"]["pts3d"] + 1.0, atol=1e-5)
    assert torch.allclose(b["pred2"]["pts3d_in_other_view"], a["pred2"]["pts3d_in_other_view"], atol=1e-5)


def test_non_finite_prediction_names_the_pair(tiny_model):
    model = tiny_model("dust3r_tiny_linear")
    pairs, _ = fixture_pairs("dust3r_tiny_linear")
    a, b = pairs[0]
    broken = dict(b, img=b["img"].clone(), instance="7", filepath="photos/broken.png")
    broken["img"][0, :, :4, :4] = float("nan")
    expected = rf"pairs\[2\] \(instance '{a['instance']}' / instance '7', filepath 'photos/broken.png'\): pred1.pts3d"
    with pytest.raises(NonFiniteOutputError, match=expected) as info:
        inference([(a, b), (b, a), (a, broken)], model, "cpu", batch_size=2, verbose=False)
    assert "pairs[0]" not in str(info.value) and "pairs[1]" not in str(info.value)
    assert "\n" not in str(info.value)


def test_load_model_old_name(tiny_pth):
    model = load_model(str(tiny_pth("mast3r_tiny_b")), "cpu", verbose=False)
    assert type(model).__name__ == "AsymmetricMASt3R" and not model.training
    assert next(model.parameters()).device == torch.device("cpu")
    assert type(load_model(DATA / "models" / "dust3r_tiny_linear.pth", "cpu")) is AsymmetricCroCo3DStereo


class TestGetPredPts3d:
    def test_pts3d_and_pose(self):
        pts = torch.randn(2, 4, 5, 3)
        assert get_pred_pts3d({}, {"pts3d": pts}) is pts
        angle = torch.tensor(0.3)
        R = torch.tensor([[angle.cos(), -angle.sin(), 0], [angle.sin(), angle.cos(), 0], [0, 0, 1]])
        pose = torch.eye(4).repeat(2, 1, 1)
        pose[:, :3, :3] = R
        pose[:, :3, 3] = torch.tensor([1.0, -2.0, 0.5])
        moved = get_pred_pts3d({}, {"pts3d": pts, "camera_pose": pose}, use_pose=True)
        torch.testing.assert_close(moved, pts @ R.T + pose[0, :3, 3])

    def test_depth_with_pseudo_focal_uses_gt_principal_point(self):
        depth = torch.rand(1, 4, 6) + 1
        focal = torch.full((1, 4, 6), 2.0)
        K = torch.tensor([[[2.0, 0, 1.0], [0, 2.0, 3.0], [0, 0, 1]]])
        pts = get_pred_pts3d({"camera_intrinsics": K}, {"depth": depth, "pseudo_focal": focal})
        v, u = 2, 5
        expected = torch.stack([(u - 1.0) * depth[0, v, u] / 2, (v - 3.0) * depth[0, v, u] / 2, depth[0, v, u]])
        torch.testing.assert_close(pts[0, v, u], expected)
        centred = get_pred_pts3d({}, {"depth": depth, "pseudo_focal": focal})
        torch.testing.assert_close(centred, depthmap_to_pts3d(depth, focal))

    def test_points_in_other_view(self):
        other = torch.randn(1, 2, 2, 3)
        assert get_pred_pts3d({}, {"pts3d_in_other_view": other}, use_pose=True) is other
        with pytest.raises(ValueError, match="use_pose=True"):
            get_pred_pts3d({}, {"pts3d_in_other_view": other})
        with pytest.raises(KeyError, match="camera_pose"):
            get_pred_pts3d({}, {"pts3d": other}, use_pose=True)
        with pytest.raises(KeyError, match="conf"):
            get_pred_pts3d({}, {"conf": other})
