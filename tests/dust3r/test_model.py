"""Model stages against the original's intermediates, float64 check, and official architectures' schemas."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dust3r.model import AsymmetricCroCo3DStereo
from dust3r.model_loading import build_model, model_classes, normalise_model_kwargs
from dust3r.utils.checkpoint import parse_constructor
from mast3r.model import AsymmetricMASt3R
from tests.parity import DATA, INDEX, MODELS, fixture_pairs, record_module_outputs, rel_err, tolerance

SPEC = DATA / "spec"
OFFICIAL = ["MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric", "DUSt3R_ViTLarge_BaseDecoder_512_dpt",
            "DUSt3R_ViTLarge_BaseDecoder_512_linear", "DUSt3R_ViTLarge_BaseDecoder_224_linear"]


def _torch_view(view):
    return dict(view, true_shape=torch.from_numpy(view["true_shape"]), instance=[view["instance"]])


@pytest.mark.parametrize("name", MODELS)
def test_intermediates_match_reference(name, tiny_model):
    model = tiny_model(name)
    pairs, _ = fixture_pairs(name)
    inter = np.load(DATA / "inference" / f"{name}_intermediates.npz")
    got, calls, handles = record_module_outputs(model)
    try:
        with torch.no_grad():
            model(_torch_view(pairs[0][0]), _torch_view(pairs[0][1]))
    finally:
        for h in handles:
            h.remove()
    expected_calls = INDEX["inference"][name]["intermediates"]["module_calls"]
    assert expected_calls
    for module, count in expected_calls.items():
        assert calls.get(module, 0) == count, f"{module}: {calls.get(module, 0)} calls, reference {count}"
    checked = 0
    for key in inter.files:
        if key.startswith("encode_image."):
            continue
        base, _, field = key.rpartition(".")
        if field in ("x", "pos"):
            out = got[base][0 if field == "x" else 1]
        else:
            out = got[key]
        out = out[0] if isinstance(out, tuple) else out
        if field == "pos":
            np.testing.assert_array_equal(out.numpy(), inter[key])
        else:
            err = rel_err(out, inter[key])
            assert err <= tolerance(key), f"{name} {key}: rel err {err:.2e}"
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name", MODELS)
def test_encode_image_alone(name, tiny_model):
    model = tiny_model(name)
    pairs, _ = fixture_pairs(name)
    inter = np.load(DATA / "inference" / f"{name}_intermediates.npz")
    with torch.no_grad():
        for v, view in enumerate(pairs[0], start=1):
            tokens, pos, _ = model._encode_image(view["img"], torch.from_numpy(view["true_shape"]))
            assert rel_err(tokens, inter[f"encode_image.view{v}.tokens"]) <= tolerance("tokens")
            np.testing.assert_array_equal(pos.numpy(), inter[f"encode_image.view{v}.pos"])


@pytest.mark.parametrize("name", ["mast3r_tiny_a", "dust3r_tiny_dpt"])
def test_reference_is_float32_rounding_of_our_function(name, tiny_model):
    """Run our model in float64 (near-exact): the reference arrays must be within float32 rounding of it,
    i.e. no farther than a few times the distance of our own float32 forward."""
    model = tiny_model(name)
    pairs, ref = fixture_pairs(name)
    model64 = build_model(type(model), {k: v for k, v in model._hub_mixin_config.items()})
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()}, assign=True)
    model64.eval()
    with torch.no_grad():
        for k, (v1, v2) in enumerate(pairs):
            v1d, v2d = (dict(_torch_view(v), img=v["img"].double()) for v in (v1, v2))
            out64 = model64(v1d, v2d)
            out32 = model(_torch_view(v1), _torch_view(v2))
            for part, o64, o32 in zip(("pred1", "pred2"), out64, out32):
                for key, exact in o64.items():
                    r = ref[f"pair{k}.{part}.{key}"]
                    ref_gap = rel_err(exact[0], r)
                    own_gap = rel_err(exact[0], o32[key][0].numpy())
                    assert ref_gap <= tolerance(key), f"{key}: reference {ref_gap:.2e} from float64"
                    assert ref_gap <= 4 * own_gap + 1e-7, f"{key}: reference {ref_gap:.2e} vs ours {own_gap:.2e}"


@pytest.mark.parametrize("arch", OFFICIAL)
def test_official_architecture_schema(arch):
    """Build each full-size official architecture on the meta device from its constructor string:
    the state_dict keys, order, shapes and aliases equal the schema exactly."""
    spec = json.loads((SPEC / f"{arch}.json").read_text())
    for ctor in (spec["constructor"], spec["load_model_constructor"]):
        cls_name, kwargs = parse_constructor(ctor, ["AsymmetricMASt3R", "AsymmetricCroCo3DStereo"])
        with torch.device("meta"):
            model = model_classes()[cls_name](**kwargs)
        sd = model.state_dict(keep_vars=True)
        assert [(k, list(v.shape)) for k, v in sd.items()] == [(e["key"], e["shape"]) for e in spec["state_dict"]]
        assert len(sd) == spec["num_keys"]
        unique = {id(v): v.numel() for v in sd.values()}
        assert sum(unique.values()) == spec["num_params_unique"]
        for e in spec["state_dict"]:
            if e.get("alias_of"):
                assert sd[e["key"]] is sd[e["alias_of"]]
        assert not list(model.buffers())


def test_hf_config_of_official_mast3r_matches_spec():
    """The config our class records (for save_pretrained) is the one the original writes."""
    spec = json.loads((SPEC / "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.json").read_text())
    _, kwargs = parse_constructor(spec["constructor"], ["AsymmetricMASt3R"])
    with torch.device("meta"):
        model = AsymmetricMASt3R(**kwargs)
    expected = json.loads((SPEC / "mast3r_hf_config.json").read_text())
    got = json.loads(json.dumps(model._hub_mixin_config))
    assert got == expected
    with torch.device("meta"):
        loaded_form = build_model(AsymmetricMASt3R, normalise_model_kwargs(kwargs))
    assert json.loads(json.dumps(loaded_form._hub_mixin_config)) == \
        json.loads((SPEC / "mast3r_hf_config_via_load_model.json").read_text())


def test_landscape_portrait_layouts_agree(tiny_model):
    """ManyAR_PatchEmbed + landscape-only heads on a transposed portrait image give the transposed outputs of
    PatchEmbedDust3R on the true image (what every loading path builds)."""
    model = tiny_model("mast3r_tiny_a")
    cfg = dict(model._hub_mixin_config, patch_embed_cls="ManyAR_PatchEmbed", landscape_only=True)
    manyar = build_model(AsymmetricMASt3R, cfg)
    manyar.load_state_dict(model.state_dict(), assign=True)
    manyar.eval()
    pairs, _ = fixture_pairs("mast3r_tiny_a")
    portrait, landscape = pairs[0]
    with torch.no_grad():
        ref1, ref2 = model(_torch_view(portrait), _torch_view(landscape))
        transposed = dict(_torch_view(portrait), img=portrait["img"].transpose(-1, -2))
        out1, out2 = manyar(transposed, _torch_view(landscape))
    assert rel_err(out1["pts3d"].transpose(1, 2), ref1["pts3d"].numpy()) < 1e-6
    assert rel_err(out2["desc"], ref2["desc"].numpy()) < 1e-6
    with pytest.raises(ValueError, match="landscape-layout"):
        with torch.no_grad():
            manyar(_torch_view(portrait), _torch_view(landscape))


def test_symmetrized_batch_encodes_each_image_once(tiny_model):
    model = tiny_model("dust3r_tiny_linear")
    pairs, _ = fixture_pairs("dust3r_tiny_linear")
    a, b = pairs[1]
    view1 = {"img": torch.cat([a["img"], b["img"]]), "instance": [a["instance"], b["instance"]]}
    view2 = {"img": torch.cat([b["img"], a["img"]]), "instance": [b["instance"], a["instance"]]}
    got, calls, handles = record_module_outputs(model)
    with torch.no_grad():
        r1, r2 = model(view1, view2)
    for h in handles:
        h.remove()
    assert calls["patch_embed"] == 1 and got["fwd.patch_embed.call0"][0].shape[0] == 2  # 2 images, not 4
    with torch.no_grad():
        s1, s2 = model({"img": a["img"], "instance": ["x"]}, {"img": b["img"], "instance": ["y"]})
    assert rel_err(r1["pts3d"][0], s1["pts3d"][0].numpy()) < 1e-5


def test_constructor_errors():
    with pytest.raises(ValueError, match="patch_embed_cls"):
        AsymmetricCroCo3DStereo(patch_embed_cls="Nope", img_size=(32, 32), enc_embed_dim=16, enc_depth=1,
                                enc_num_heads=1, dec_embed_dim=16, dec_depth=1, dec_num_heads=1, pos_embed="RoPE100")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        AsymmetricCroCo3DStereo(img_size=(40, 32), enc_embed_dim=16, enc_depth=1, enc_num_heads=1,
                                dec_embed_dim=16, dec_depth=1, dec_num_heads=1, pos_embed="RoPE100")
    with pytest.raises(ValueError, match="dec_depth >= 10"):
        AsymmetricCroCo3DStereo(head_type="dpt", img_size=(32, 32), enc_embed_dim=16, enc_depth=1, enc_num_heads=1,
                                dec_embed_dim=16, dec_depth=2, dec_num_heads=1, pos_embed="RoPE100")
    with pytest.raises(ValueError, match="pos_embed"):
        AsymmetricCroCo3DStereo(img_size=(32, 32), enc_embed_dim=16, enc_depth=1, enc_num_heads=1,
                                dec_embed_dim=16, dec_depth=1, dec_num_heads=1, pos_embed="RoPEabc")
    with pytest.raises(ValueError, match="output_mode"):
        AsymmetricMASt3R(head_type="catmlp+dpt", output_mode="pts3d", img_size=(32, 32), enc_embed_dim=16,
                         enc_depth=1, enc_num_heads=1, dec_embed_dim=16, dec_depth=10, dec_num_heads=1,
                         pos_embed="RoPE100")


def test_image_size_errors(tiny_model):
    model = tiny_model("dust3r_tiny_linear")
    bad = {"img": torch.zeros(1, 3, 50, 64), "instance": ["0"]}
    with pytest.raises(ValueError, match="multiple of the patch size"):
        with torch.no_grad():
            model(bad, bad)


def test_gradient_checkpointing_same_outputs_and_gradients(tiny_model):
    """Recomputing block activations in backward changes neither the outputs nor any parameter gradient."""
    model = tiny_model("mast3r_tiny_a")
    model.train()
    pairs, _ = fixture_pairs("mast3r_tiny_a")
    view1, view2 = (_torch_view(v) for v in pairs[1])

    def run():
        model.zero_grad(set_to_none=True)
        out1, out2 = model(view1, view2)
        loss = out1["pts3d"].square().mean() + out2["desc"].mul(out2["conf"][..., None]).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref_loss, ref_grads = run()
    model.set_gradient_checkpointing(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        loss, grads = run()
    model.set_gradient_checkpointing(False)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and any("enc_blocks" in n for n in grads)
    for name in grads:
        assert torch.allclose(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7), name
    saved_ref = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_ref.append(t.numel()) or t, lambda t: t):
        run()
    assert sum(saved) < sum(saved_ref)  # fewer activations kept for backward
