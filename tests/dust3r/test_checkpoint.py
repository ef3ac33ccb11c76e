"""Tests for dust3r.utils.checkpoint: constructor parsing, safe .pth loading, HF directories, hub resolution."""
import argparse
import json
import math
import os
import re
import socket
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dust3r.utils.checkpoint import (
    KNOWN_MODEL_CLASSES,
    CheckpointError,
    CheckpointNotFoundError,
    UnsafeCheckpointError,
    config_with_signature_defaults,
    constructor_to_config,
    convert_pth_to_hf,
    default_model_card,
    find_aliases,
    format_constructor,
    load_checkpoint_file,
    load_hf_directory,
    main,
    parse_constructor,
    resolve_pretrained,
    save_checkpoint_file,
    save_hf_directory,
)

inf = float("inf")
DATA = Path(__file__).resolve().parents[1] / "data" / "models"
TINY_PTH = DATA / "dust3r_tiny_linear.pth"
TINY_HF = DATA / "dust3r_tiny_linear_hf"
TINY_CONSTRUCTOR = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', output_mode='pts3d', "
    "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=32, enc_depth=2, enc_num_heads=2, "
    "dec_embed_dim=32, dec_depth=2, dec_num_heads=2)")
ALLOWED = ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")

# The official constructor strings (shared/spec/checkpoints/*.json: "constructor" and "load_model_constructor").
OFFICIAL_CONSTRUCTORS = [
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "two_confs=True)",
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='PatchEmbedDust3R', img_size=(512, 512), "
    "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "two_confs=True, landscape_only=False)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='PatchEmbedDust3R', img_size=(512, 512), "
    "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "landscape_only=False)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='PatchEmbedDust3R', img_size=(512, 512), "
    "head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "landscape_only=False)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', output_mode='pts3d', "
    "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
    "dec_embed_dim=768, dec_depth=12, dec_num_heads=12)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', output_mode='pts3d', "
    "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
    "dec_embed_dim=768, dec_depth=12, dec_num_heads=12, landscape_only=False)",
    # mast3r/README.md second-stage training string
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "two_confs=True, desc_conf_mode=('exp', 0, inf))",
]


def _fixture_constructors():
    out = []
    for f in sorted(DATA.glob("*.json")):
        entry = json.loads(f.read_text())
        if isinstance(entry, dict) and "constructor" in entry:
            out += [pytest.param(entry["constructor"], id=f"{f.stem}-constructor"),
                    pytest.param(entry["load_model_constructor"], id=f"{f.stem}-load_model")]
    return out


# ------------------------------------------------------------------------------------------------------------
# parse_constructor / format_constructor
# ------------------------------------------------------------------------------------------------------------
class TestParseConstructor:
    @pytest.mark.parametrize("text", OFFICIAL_CONSTRUCTORS + _fixture_constructors())
    def test_roundtrip(self, text):
        cls_name, kwargs = parse_constructor(text, ALLOWED)
        assert cls_name in ALLOWED
        assert kwargs["depth_mode"] == ("exp", -inf, inf)
        assert isinstance(kwargs["img_size"], tuple)
        assert format_constructor(cls_name, kwargs) == text
        assert parse_constructor(format_constructor(cls_name, kwargs), ALLOWED) == (cls_name, kwargs)

    def test_fixture_strings_found(self):
        assert len(_fixture_constructors()) == 10  # 5 tiny models x 2 strings

    def test_values(self):
        cls_name, kwargs = parse_constructor(OFFICIAL_CONSTRUCTORS[-1], ["AsymmetricMASt3R"])
        assert cls_name == "AsymmetricMASt3R"
        assert list(kwargs) == ["pos_embed", "patch_embed_cls", "img_size", "head_type", "output_mode", "depth_mode",
                                "conf_mode", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
                                "dec_depth", "dec_num_heads", "two_confs", "desc_conf_mode"]
        assert kwargs["img_size"] == (512, 512)
        assert kwargs["conf_mode"] == ("exp", 1, inf)
        assert kwargs["desc_conf_mode"] == ("exp", 0, inf)
        assert kwargs["two_confs"] is True
        assert isinstance(kwargs["enc_depth"], int) and kwargs["enc_depth"] == 24

    def test_literal_kinds(self):
        _, kw = parse_constructor(
            "M(a=None, b=-1.5, c=+2, d=[1, (2,), {'k': -inf}], e=nan, f='x' 'y', g=(), h={1: 'one'}, i=False)", ["M"])
        assert kw["a"] is None and kw["b"] == -1.5 and kw["c"] == 2
        assert kw["d"] == [1, (2,), {"k": -inf}] and isinstance(kw["d"][1], tuple)
        assert math.isnan(kw["e"]) and kw["f"] == "xy" and kw["g"] == () and kw["h"] == {1: "one"}
        assert kw["i"] is False
        assert format_constructor("M", {"t": (1,), "n": None, "x": -inf}) == "M(t=(1,), n=None, x=-inf)"

    @pytest.mark.parametrize("text, message", [
        ("__import__('os').system('x')", "__import__('os').system"),
        ("AsymmetricMASt3R(x=open('f'))", "open('f')"),
        ("AsymmetricMASt3R(x=__import__('os'))", "__import__('os')"),
        ("AsymmetricMASt3R(x=os.path)", "attribute access os.path"),
        ("AsymmetricMASt3R.__init__(x=1)", "AsymmetricMASt3R.__init__"),
        ("Evil(x=1)", "class 'Evil' is not allowed"),
        ("eval(x='1')", "class 'eval' is not allowed"),
        ("AsymmetricMASt3R('RoPE100', x=1)", "positional arguments are not allowed"),
        ("AsymmetricMASt3R(*args)", "positional arguments are not allowed"),
        ("AsymmetricMASt3R(**kw)", "keyword unpacking **kw"),
        ("AsymmetricMASt3R(x=lambda: 0)", "lambda lambda: 0"),
        ("AsymmetricMASt3R(x=f'{y}')", "f-string"),
        ("AsymmetricMASt3R(x=[1][0])", "subscript [1][0]"),
        ("AsymmetricMASt3R(x=(*a,))", "starred"),
        ("AsymmetricMASt3R(x=1 + 2)", "operator 1 + 2"),
        ("AsymmetricMASt3R(x=y)", "unsupported name 'y'"),
        ("AsymmetricMASt3R(x=-'a')", "unary"),
        ("AsymmetricMASt3R(x=b'a')", "unsupported constant b'a'"),
        ("AsymmetricMASt3R(x={1, 2})", "set {1, 2}"),
        ("AsymmetricMASt3R(x=1, x=2)", "x"),  # repeated keyword (SyntaxError or explicit check)
        ("AsymmetricMASt3R(x=1", "not valid Python syntax"),
        ("AsymmetricMASt3R", "must be a call"),
        ("", "empty"),
    ])
    def test_rejected(self, text, message):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_constructor(text, ALLOWED)

    def test_format_rejects_non_literals(self):
        with pytest.raises(ValueError, match="object"):
            format_constructor("M", {"x": object()})
        with pytest.raises(ValueError, match="invalid class name"):
            format_constructor("os.system", {})


# ------------------------------------------------------------------------------------------------------------
# load_checkpoint_file
# ------------------------------------------------------------------------------------------------------------
def _write_marker(path):  # called only if an unpickler wrongly executes the malicious payload
    Path(path).write_text("pwned")


class _EvilFunction:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_write_marker, (self.marker,))


class _EvilSystem:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TestLoadCheckpointFile:
    def test_real_tiny_pth(self):
        ck = load_checkpoint_file(TINY_PTH)
        assert ck["constructor"] == TINY_CONSTRUCTOR
        assert ck["path"] == str(TINY_PTH)
        sd = ck["state_dict"]
        expected = [e["key"] for e in json.loads((DATA / "dust3r_tiny_linear.json").read_text())["state_dict"]]
        assert list(sd) == expected and len(sd) == 133
        assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in sd.values())
        assert sd["mask_token"].shape == (1, 1, 32)
        assert ck["args"] == {"model": TINY_CONSTRUCTOR}
        assert ck["extra_keys"] == []

    def test_does_not_change_torch_safe_globals(self):
        # torch keeps its safe globals in an unordered store: compare contents, not list order
        before = set(torch.serialization.get_safe_globals())
        load_checkpoint_file(TINY_PTH)
        assert set(torch.serialization.get_safe_globals()) == before
        assert argparse.Namespace not in torch.serialization.get_safe_globals()

    def test_other_layouts(self, tmp_path):
        sd = {"w": torch.ones(2), "b": torch.zeros(1)}
        cases = {
            "model_only.pth": ({"model": sd}, None),
            "dict_args.pth": ({"model": sd, "args": {"model": "M(a=1)"}, "epoch": 3}, "M(a=1)"),
            "state_dict.pth": ({"state_dict": sd}, None),
            "bare.pth": (sd, None),
        }
        for name, (obj, constructor) in cases.items():
            torch.save(obj, tmp_path / name)
            ck = load_checkpoint_file(tmp_path / name)
            assert ck["constructor"] == constructor, name
            assert set(ck["state_dict"]) == {"w", "b"}, name
        assert load_checkpoint_file(tmp_path / "dict_args.pth")["extra_keys"] == ["epoch"]
        torch.save({"model": sd, "args": argparse.Namespace(model="M(a=1)")}, tmp_path / "legacy.pth",
                   _use_new_zipfile_serialization=False)
        assert load_checkpoint_file(tmp_path / "legacy.pth")["constructor"] == "M(a=1)"

    def test_save_checkpoint_file_roundtrip(self, tmp_path):
        t = torch.randn(3, 2)
        sd = OrderedDict([("layer1_rn.weight", t), ("x", torch.randn(4)), ("layer_rn.0.weight", t)])
        save_checkpoint_file(sd, "M(a=(1, -inf))", tmp_path / "c.pth")
        ck = load_checkpoint_file(tmp_path / "c.pth")
        assert ck["constructor"] == "M(a=(1, -inf))" and list(ck["state_dict"]) == list(sd)
        assert ck["state_dict"]["layer_rn.0.weight"].data_ptr() == ck["state_dict"]["layer1_rn.weight"].data_ptr()

    @pytest.mark.parametrize("evil_cls", [_EvilFunction, _EvilSystem])
    def test_malicious_pickle_refused_and_not_executed(self, tmp_path, evil_cls):
        marker = tmp_path / "pwned"
        path = tmp_path / "evil.pth"
        torch.save({"model": {"w": torch.ones(1)}, "args": evil_cls(marker)}, path)
        assert not marker.exists()
        with pytest.raises(UnsafeCheckpointError, match=re.escape(str(path))) as info:
            load_checkpoint_file(path)
        assert "unsafe" in str(info.value) and "nothing was executed" in str(info.value)
        assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
        assert not marker.exists()

    def test_truncated(self, tmp_path):
        data = TINY_PTH.read_bytes()
        path = tmp_path / "half.pth"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*truncated or corrupt"):
            load_checkpoint_file(path)

    @pytest.mark.filterwarnings("ignore:Detected pickle protocol")
    @pytest.mark.parametrize("name, content", [
        ("random.pth", bytes(range(7, 256)) * 20),
        ("notes.pth", b"this is a text file, not a checkpoint\n" * 5),
        ("empty.pth", b""),
        ("pickle_like.pth", b"\x80\x04\x95garbage garbage"),
    ])
    def test_not_a_checkpoint(self, tmp_path, name, content):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_checkpoint_file(path)

    def test_pickle_of_non_dict(self, tmp_path):
        path = tmp_path / "list.pth"
        torch.save([torch.ones(1), 2], path)
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*holds a list"):
            load_checkpoint_file(path)

    def test_dict_without_weights(self, tmp_path):
        path = tmp_path / "noweights.pth"
        torch.save({"epoch": 3, "args": argparse.Namespace(model="M()")}, path)
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*no model weights"):
            load_checkpoint_file(path)
        path2 = tmp_path / "badmodel.pth"
        torch.save({"model": {"w": 3}}, path2)
        with pytest.raises(CheckpointError, match=re.escape(str(path2)) + ".*'w' is a int, not a tensor"):
            load_checkpoint_file(path2)

    def test_missing_file(self, tmp_path):
        path = tmp_path / "missing.pth"
        with pytest.raises(CheckpointNotFoundError, match=re.escape(str(path))) as info:
            load_checkpoint_file(path)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CheckpointError)

    def test_directory(self, tmp_path):
        with pytest.raises(CheckpointError, match=re.escape(str(tmp_path)) + ".*is a directory"):
            load_checkpoint_file(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# Hugging Face directories
# ------------------------------------------------------------------------------------------------------------
def _upstream_dust3r_init(self, output_mode="pts3d", head_type="linear", depth_mode=("exp", -inf, inf),
                          conf_mode=("exp", 1, inf), freeze="none", landscape_only=True,
                          patch_embed_cls="PatchEmbedDust3R", **croco_kwargs):
    """Signature of the original AsymmetricCroCo3DStereo.__init__ (the hub mixin records its defaults)."""


def _upstream_mast3r_init(self, desc_mode=("norm"), two_confs=False, desc_conf_mode=None, **kwargs):
    """Signature of the original AsymmetricMASt3R.__init__."""


def _tiny_config(constructor):
    return config_with_signature_defaults(_upstream_dust3r_init, parse_constructor(constructor, ALLOWED)[1])


class TestHFDirectory:
    def test_load_shipped_dir_matches_pth(self):
        config, sd = load_hf_directory(TINY_HF)
        assert config == json.loads((DATA / "dust3r_tiny_linear_hf_config.json").read_text())
        assert config["depth_mode"] == ["exp", -inf, inf]
        ref = load_checkpoint_file(TINY_PTH)["state_dict"]
        assert set(sd) == set(ref)
        for k, v in ref.items():
            assert torch.equal(sd[k], v), k

    def test_save_reproduces_shipped_dir(self, tmp_path):
        sd = load_checkpoint_file(TINY_PTH)["state_dict"]
        shipped_config = json.loads((TINY_HF / "config.json").read_text())
        out = save_hf_directory(sd, shipped_config, tmp_path / "out", model_card=default_model_card())
        assert out == str(tmp_path / "out")
        written = load_file(tmp_path / "out" / "model.safetensors")
        shipped = load_file(TINY_HF / "model.safetensors")
        assert list(written) == list(shipped)
        for k in shipped:
            assert torch.equal(written[k], shipped[k]), k
        assert json.loads((tmp_path / "out" / "config.json").read_text()) == shipped_config
        for name in ("config.json", "model.safetensors", "README.md"):  # byte-identical to upstream's files
            assert (tmp_path / "out" / name).read_bytes() == (TINY_HF / name).read_bytes(), name

    def test_config_with_signature_defaults_matches_upstream(self):
        assert _tiny_config(TINY_CONSTRUCTOR) == json.loads((TINY_HF / "config.json").read_text())
        mast3r_a = json.loads((DATA / "mast3r_tiny_a.json").read_text())
        kwargs = parse_constructor(mast3r_a["constructor"], ALLOWED)[1]
        assert config_with_signature_defaults(_upstream_mast3r_init, kwargs) == \
            json.loads((DATA / "mast3r_tiny_a_hf_config.json").read_text())

    def test_aliases_written_to_metadata_and_restored(self, tmp_path):
        shared = torch.randn(8, 4, 3, 3)
        sd = OrderedDict([
            ("dpt.scratch.layer1_rn.weight", shared),
            ("dpt.other.bias", torch.randn(5)),
            ("dpt.scratch.layer_rn.0.weight", shared),
            ("a_transposed", torch.randn(3, 4).t()),  # non-contiguous, saved contiguous
        ])
        assert find_aliases(sd) == {"dpt.scratch.layer_rn.0.weight": "dpt.scratch.layer1_rn.weight"}
        save_hf_directory(sd, {"x": (1, inf)}, tmp_path)
        with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
            assert f.metadata() == {"dpt.scratch.layer_rn.0.weight": "dpt.scratch.layer1_rn.weight"}
            assert sorted(f.keys()) == ["a_transposed", "dpt.other.bias", "dpt.scratch.layer1_rn.weight"]
        assert (tmp_path / "config.json").read_text() == '{\n  "x": [\n    1,\n    Infinity\n  ]\n}'
        assert not (tmp_path / "README.md").exists()
        config, loaded = load_hf_directory(tmp_path)
        assert config == {"x": [1, inf]}
        assert set(loaded) == set(sd)
        assert loaded["dpt.scratch.layer_rn.0.weight"] is loaded["dpt.scratch.layer1_rn.weight"]
        for k, v in sd.items():
            assert torch.equal(loaded[k], v), k

    def test_alias_rule_is_alphabetical_like_safetensors(self):
        t = torch.randn(3)
        assert find_aliases({"z": t, "a": t, "m": torch.randn(3)}) == {"z": "a"}
        assert find_aliases({"w": t, "w_view": t.view(3)}) == {"w_view": "w"}  # same view, other tensor object

    def test_refuses_partial_views(self, tmp_path):
        t = torch.randn(4, 3)
        with pytest.raises(CheckpointError, match="w_row0"):
            save_hf_directory({"w": t, "w_row0": t[0]}, {}, tmp_path)

    def test_pytorch_model_bin_fallback(self, tmp_path):
        (tmp_path / "config.json").write_text('{"a": -Infinity}')
        sd = {"w": torch.randn(2, 2)}
        torch.save(sd, tmp_path / "pytorch_model.bin")
        config, loaded = load_hf_directory(tmp_path)
        assert config == {"a": -inf} and torch.equal(loaded["w"], sd["w"])

    def test_malicious_pytorch_model_bin(self, tmp_path):
        marker = tmp_path / "pwned"
        (tmp_path / "config.json").write_text("{}")
        torch.save({"w": _EvilFunction(marker)}, tmp_path / "pytorch_model.bin")
        with pytest.raises(UnsafeCheckpointError, match=re.escape(str(tmp_path / "pytorch_model.bin"))):
            load_hf_directory(tmp_path)
        assert not marker.exists()

    def test_errors(self, tmp_path):
        d = tmp_path / "hf"
        with pytest.raises(CheckpointNotFoundError, match=re.escape(str(d)) + ".*does not exist"):
            load_hf_directory(d)
        d.mkdir()
        with pytest.raises(CheckpointNotFoundError, match="config.json not found in .*" + re.escape(str(d))):
            load_hf_directory(d)
        (d / "config.json").write_text('{"a": 1,}')
        with pytest.raises(CheckpointError, match=re.escape(str(d / "config.json")) + ".*is not valid JSON"):
            load_hf_directory(d)
        (d / "config.json").write_text('[1, 2]')
        with pytest.raises(CheckpointError, match="must hold a JSON object"):
            load_hf_directory(d)
        (d / "config.json").write_text('{"a": 1}')
        with pytest.raises(CheckpointNotFoundError, match="no weights in .*" + re.escape(str(d))):
            load_hf_directory(d)
        (d / "model.safetensors").write_bytes(b"not safetensors at all")
        with pytest.raises(CheckpointError, match=re.escape(str(d / "model.safetensors"))):
            load_hf_directory(d)
        with pytest.raises(CheckpointError, match=re.escape(str(TINY_PTH)) + ".*is not a directory"):
            load_hf_directory(TINY_PTH)


# ------------------------------------------------------------------------------------------------------------
# Conversion and CLI
# ------------------------------------------------------------------------------------------------------------
class TestConvert:
    def test_convert_default_config_is_constructor_kwargs(self, tmp_path):
        out = convert_pth_to_hf(TINY_PTH, tmp_path / "hf")
        config, sd = load_hf_directory(out)
        assert config == constructor_to_config(TINY_CONSTRUCTOR)
        assert config["img_size"] == [224, 224] and "class" not in config and "AsymmetricCroCo3DStereo" not in config
        ref = load_checkpoint_file(TINY_PTH)["state_dict"]
        assert set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)

    def test_convert_with_upstream_config_is_byte_identical(self, tmp_path):
        convert_pth_to_hf(TINY_PTH, tmp_path, config_from_constructor=_tiny_config, model_card=default_model_card())
        for name in ("config.json", "model.safetensors", "README.md"):
            assert (tmp_path / name).read_bytes() == (TINY_HF / name).read_bytes(), name

    def test_cli(self, tmp_path, capsys):
        assert main(["convert", str(TINY_PTH), str(tmp_path / "hf")]) == 0
        config, _ = load_hf_directory(tmp_path / "hf")
        assert config["depth_mode"] == ["exp", -inf, inf]
        assert main(["info", str(TINY_PTH)]) == 0
        assert TINY_CONSTRUCTOR in capsys.readouterr().out
        assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x")]) == 1
        assert "missing.pth" in capsys.readouterr().err
        assert main(["convert", str(TINY_PTH), str(tmp_path / "y"), "--allowed-class", "AsymmetricMASt3R"]) == 1
        assert "not allowed" in capsys.readouterr().err
        assert "AsymmetricCroCo3DStereo" in KNOWN_MODEL_CLASSES


# ------------------------------------------------------------------------------------------------------------
# resolve_pretrained (hub ids through a local cache, no network)
# ------------------------------------------------------------------------------------------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _fake_cache(cache_dir, repo_id, files):
    """Lay out a huggingface_hub cache: models--owner--name/{refs/main, snapshots/<commit>/<files>}."""
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for name in files:
        (snapshot / name).write_bytes((TINY_HF / name).read_bytes() if (TINY_HF / name).exists() else b"")
    return snapshot


class TestResolvePretrained:
    def test_local_paths(self):
        assert resolve_pretrained(TINY_PTH) == ("pth", str(TINY_PTH))
        assert resolve_pretrained(str(TINY_HF)) == ("hf_dir", str(TINY_HF))

    def test_missing_local_path(self, tmp_path, no_network):
        for name in [str(tmp_path / "nope.pth"), "checkpoints/MASt3R.pth", "nope.pth", "a/b/c"]:
            with pytest.raises(CheckpointNotFoundError, match=re.escape(name)) as info:
                resolve_pretrained(name)
            assert "does not exist" in str(info.value)

    def test_hub_id_from_cache_offline(self, tmp_path, no_network):
        snapshot = _fake_cache(tmp_path, "naver/tiny", ["config.json", "model.safetensors"])
        kind, path = resolve_pretrained("naver/tiny", cache_dir=tmp_path)
        assert kind == "hf_dir" and Path(path) == snapshot
        config, sd = load_hf_directory(path)
        assert config["img_size"] == [224, 224] and len(sd) == 133

    def test_hub_id_explicit_local_files_only(self, tmp_path, no_network, monkeypatch):
        monkeypatch.delenv("HF_HUB_OFFLINE")
        snapshot = _fake_cache(tmp_path, "naver/tiny", ["config.json", "model.safetensors"])
        assert resolve_pretrained("naver/tiny", cache_dir=tmp_path, local_files_only=True) == ("hf_dir", str(snapshot))
        assert resolve_pretrained("naver/tiny", cache_dir=tmp_path, revision=COMMIT,
                                  local_files_only=True) == ("hf_dir", str(snapshot))

    def test_hub_id_bin_fallback(self, tmp_path, no_network):
        snapshot = _fake_cache(tmp_path, "naver/tinybin", ["config.json"])
        torch.save({"w": torch.ones(1)}, snapshot / "pytorch_model.bin")
        assert resolve_pretrained("naver/tinybin", cache_dir=tmp_path) == ("hf_dir", str(snapshot))

    def test_uncached_hub_id_offline(self, tmp_path, no_network):
        with pytest.raises(CheckpointNotFoundError, match=re.escape("owner/not-cached") + ".*offline") as info:
            resolve_pretrained("owner/not-cached", cache_dir=tmp_path)
        assert ".pth" in str(info.value)

    def test_cached_config_without_weights(self, tmp_path, no_network):
        _fake_cache(tmp_path, "naver/noweights", ["config.json"])
        with pytest.raises(CheckpointNotFoundError, match=re.escape("naver/noweights") + ".*weights"):
            resolve_pretrained("naver/noweights", cache_dir=tmp_path)
