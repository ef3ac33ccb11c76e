"""One loading path for .pth files, Hugging Face directories and hub ids; safety and error messages."""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from dust3r.inference import inference
from dust3r.model import AsymmetricCroCo3DStereo
from dust3r.model import load_model as dust3r_load_model
from dust3r.utils.checkpoint import CheckpointError, UnsafeCheckpointError, convert_pth_to_hf
from mast3r.model import AsymmetricMASt3R
from mast3r.model import load_model as mast3r_load_model
from tests.parity import DATA, fixture_pairs, rel_err, tolerance


def _run(model, pairs):
    return inference(pairs, model, "cpu", batch_size=1, verbose=False)


def _assert_same_outputs(a, b):
    for part in ("pred1", "pred2"):
        assert set(a[part]) == set(b[part])
        for key in a[part]:
            for x, y in zip(a[part][key], b[part][key]):
                assert torch.equal(x, y), (part, key)


def _fake_hub_cache(cache: Path, repo_id: str, files_from: Path) -> Path:
    """A huggingface_hub cache holding a snapshot of ``repo_id`` (no network involved)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        shutil.copy(f, snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


class TestThreeForms:
    def test_pth_hf_dir_and_hub_id_agree_on_landscape_and_portrait(self, tiny_pth, tiny_hf, tmp_path, monkeypatch):
        """mast3r_tiny_a's fixture pair is portrait + landscape: the original's HF path fails on it; ours gives
        the .pth results from all three forms."""
        pairs, ref = fixture_pairs("mast3r_tiny_a")
        from_pth = AsymmetricMASt3R.from_pretrained(str(tiny_pth("mast3r_tiny_a")))
        from_dir = AsymmetricMASt3R.from_pretrained(str(tiny_hf("mast3r_tiny_a")))
        _fake_hub_cache(tmp_path / "hub", "naver/MASt3R_tiny_test", tiny_hf("mast3r_tiny_a"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        from_hub = AsymmetricMASt3R.from_pretrained("naver/MASt3R_tiny_test", cache_dir=str(tmp_path / "hub"))
        out = [_run(m, pairs) for m in (from_pth, from_dir, from_hub)]
        _assert_same_outputs(out[0], out[1])
        _assert_same_outputs(out[0], out[2])
        assert rel_err(out[1]["pred1"]["pts3d"][0], ref["pair0.pred1.pts3d"]) <= tolerance("pts3d")
        landscape = [(pairs[1][0], pairs[1][0])]
        _assert_same_outputs(_run(from_pth, landscape), _run(from_dir, landscape))

    def test_dust3r_pth_and_shipped_hf_dir(self):
        """The real files written by the original code (.pth and save_pretrained directory)."""
        pairs, ref = fixture_pairs("dust3r_tiny_linear")
        a = AsymmetricCroCo3DStereo.from_pretrained(DATA / "models" / "dust3r_tiny_linear.pth")
        b = AsymmetricCroCo3DStereo.from_pretrained(str(DATA / "models" / "dust3r_tiny_linear_hf"))
        assert type(a) is AsymmetricCroCo3DStereo and type(b) is AsymmetricCroCo3DStereo
        oa, ob = _run(a, pairs), _run(b, pairs)
        _assert_same_outputs(oa, ob)
        assert rel_err(oa["pred2"]["pts3d_in_other_view"][1], ref["pair1.pred2.pts3d_in_other_view"]) <= 3e-5

    def test_load_model_functions_and_class_from_checkpoint(self, tiny_pth):
        m1 = mast3r_load_model(str(tiny_pth("mast3r_tiny_b")), "cpu", verbose=False)
        m2 = dust3r_load_model(str(tiny_pth("mast3r_tiny_b")), "cpu")
        m3 = AsymmetricCroCo3DStereo.from_pretrained(str(tiny_pth("mast3r_tiny_b")))
        for m in (m1, m2, m3):  # the .pth names its class, as with the original load_model
            assert type(m) is AsymmetricMASt3R
            assert m.patch_embed.__class__.__name__ == "PatchEmbedDust3R" and m.landscape_only is False
            assert not m.training
        assert all(torch.equal(m1.state_dict()[k], m3.state_dict()[k]) for k in m1.state_dict())

    def test_convert_pth_to_hf_then_load(self, tiny_pth, tmp_path):
        out = convert_pth_to_hf(tiny_pth("dust3r_tiny_dpt"), tmp_path / "conv")
        a = AsymmetricCroCo3DStereo.from_pretrained(str(tiny_pth("dust3r_tiny_dpt")))
        b = AsymmetricCroCo3DStereo.from_pretrained(str(out))
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
        kept = b.state_dict(keep_vars=True)
        assert kept["downstream_head1.dpt.scratch.layer_rn.0.weight"] is kept["downstream_head1.dpt.scratch.layer1_rn.weight"]

    def test_save_pretrained_round_trip(self, tiny_model, tmp_path):
        model = tiny_model("mast3r_tiny_c")
        model.save_pretrained(tmp_path / "saved")
        again = AsymmetricMASt3R.from_pretrained(str(tmp_path / "saved"))
        assert again.desc_conf_mode == ("exp", 0, float("inf"))
        sa, sb = model.state_dict(), again.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


class TestSafety:
    def test_code_in_pickle_is_refused_and_not_run(self, tmp_path):
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))
        path = tmp_path / "evil.pth"
        with open(path, "wb") as f:
            pickle.dump({"model": {}, "args": Evil()}, f)
        torch.save({"model": {"w": torch.zeros(1)}, "args": Evil()}, tmp_path / "evil2.pth")
        for p in (path, tmp_path / "evil2.pth"):
            with pytest.raises(CheckpointError, match="evil"):
                AsymmetricMASt3R.from_pretrained(str(p))
        with pytest.raises(UnsafeCheckpointError, match="nothing was executed"):
            AsymmetricMASt3R.from_pretrained(str(tmp_path / "evil2.pth"))
        assert not marker.exists()

    def test_constructor_string_is_not_evaluated(self, tmp_path):
        marker = tmp_path / "ran"
        ctor = f"AsymmetricMASt3R(img_size=__import__('os').system('touch {marker}'))"
        weights = {"w": torch.zeros(1)}
        torch.save({"model": weights, "args": argparse.Namespace(model=ctor)}, tmp_path / "c.pth")
        with pytest.raises(ValueError, match="__import__"):
            AsymmetricMASt3R.from_pretrained(str(tmp_path / "c.pth"))
        torch.save({"model": weights, "args": argparse.Namespace(model="os.system('x')")}, tmp_path / "d.pth")
        with pytest.raises(ValueError, match="os.system"):
            AsymmetricMASt3R.from_pretrained(str(tmp_path / "d.pth"))
        assert not marker.exists()


class TestErrors:
    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointError, match="nope.pth"):
            AsymmetricMASt3R.from_pretrained(str(tmp_path / "nope.pth"))

    def test_truncated_file(self, tiny_pth, tmp_path):
        data = Path(tiny_pth("dust3r_tiny_dpt")).read_bytes()
        bad = tmp_path / "truncated.pth"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated.pth"):
            AsymmetricCroCo3DStereo.from_pretrained(str(bad))

    def test_not_a_checkpoint(self, tmp_path):
        bad = tmp_path / "notes.pth"
        bad.write_text("hello, I am not a checkpoint")
        with pytest.raises(CheckpointError, match="notes.pth"):
            AsymmetricCroCo3DStereo.from_pretrained(str(bad))

    def test_weights_do_not_match_architecture(self, tmp_path):
        ckpt = torch.load(DATA / "models" / "dust3r_tiny_linear.pth", weights_only=False)
        ckpt["args"].model = ckpt["args"].model.replace("enc_embed_dim=32", "enc_embed_dim=64")
        torch.save(ckpt, tmp_path / "mismatch.pth")
        with pytest.raises(CheckpointError, match=r"mismatch.pth.*shape mismatches: patch_embed.proj.weight"):
            AsymmetricCroCo3DStereo.from_pretrained(str(tmp_path / "mismatch.pth"))
        ckpt = torch.load(DATA / "models" / "dust3r_tiny_linear.pth", weights_only=False)
        del ckpt["model"]["enc_norm.weight"]
        ckpt["model"]["extra.weight"] = torch.zeros(1)
        torch.save(ckpt, tmp_path / "keys.pth")
        with pytest.raises(CheckpointError, match=r"missing keys: enc_norm.weight.*unexpected keys: extra.weight"):
            AsymmetricCroCo3DStereo.from_pretrained(str(tmp_path / "keys.pth"))

    def test_unknown_argument_in_constructor(self, tmp_path):
        ckpt = torch.load(DATA / "models" / "dust3r_tiny_linear.pth", weights_only=False)
        ckpt["args"].model = ckpt["args"].model[:-1] + ", bogus=3)"
        torch.save(ckpt, tmp_path / "bogus.pth")
        with pytest.raises(CheckpointError, match=r"bogus.pth.*bogus"):
            AsymmetricCroCo3DStereo.from_pretrained(str(tmp_path / "bogus.pth"))

    def test_hf_directory_without_weights(self, tmp_path):
        d = tmp_path / "emptyhf"
        d.mkdir()
        shutil.copy(DATA / "models" / "dust3r_tiny_linear_hf" / "config.json", d / "config.json")
        with pytest.raises(CheckpointError, match="emptyhf"):
            AsymmetricCroCo3DStereo.from_pretrained(str(d))

    def test_uncached_hub_id_offline(self, tmp_path, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(CheckpointError, match="naver/not_cached_model"):
            AsymmetricMASt3R.from_pretrained("naver/not_cached_model", cache_dir=str(tmp_path / "empty"))


def test_save_pretrained_layout_matches_original(tiny_model, tmp_path):
    """Keys kept, alias metadata and config of save_pretrained equal what the original writes."""
    import json

    from safetensors import safe_open

    from tests.helpers.tiny_weights import manifest
    entry = manifest("mast3r_tiny_a")
    model = tiny_model("mast3r_tiny_a")
    model.save_pretrained(tmp_path / "a")
    with safe_open(str(tmp_path / "a" / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(entry["hf"]["safetensors_keys"])
        assert f.metadata() == entry["hf"]["safetensors_metadata"]
        assert all(f.get_tensor(k).is_contiguous() for k in f.keys())
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    expected = json.loads((DATA / "models" / entry["hf"]["config_json"]).read_text())
    expected.update(patch_embed_cls="PatchEmbedDust3R", landscape_only=False)  # what every loading path builds
    assert config == expected


# ---------------------------------------------------------------------------------------------------------------
# keywords of from_pretrained, architecture check, device and hub failures (issues 10 and 11)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def mast3r_forms(tiny_pth, tiny_hf, tmp_path, monkeypatch):
    """form -> (path or hub id, hub options) of mast3r_tiny_a, the hub form served from a local cache, offline."""
    _fake_hub_cache(tmp_path / "hub", "naver/MASt3R_tiny_kw", tiny_hf("mast3r_tiny_a"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"pth": (str(tiny_pth("mast3r_tiny_a")), {}), "hf_dir": (str(tiny_hf("mast3r_tiny_a")), {}),
            "hub": ("naver/MASt3R_tiny_kw", {"cache_dir": str(tmp_path / "hub")})}


@pytest.fixture
def dust3r_forms(tmp_path, monkeypatch):
    _fake_hub_cache(tmp_path / "hub", "naver/DUSt3R_tiny_kw", DATA / "models" / "dust3r_tiny_linear_hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"pth": (str(DATA / "models" / "dust3r_tiny_linear.pth"), {}),
            "hf_dir": (str(DATA / "models" / "dust3r_tiny_linear_hf"), {}),
            "hub": ("naver/DUSt3R_tiny_kw", {"cache_dir": str(tmp_path / "hub")})}


FORMS = ["pth", "hf_dir", "hub"]


class TestFromPretrainedKeywords:
    """Model keywords given to from_pretrained override the stored constructor arguments, as the original's hub
    mixin passes them to the constructor (Spann3R: landscape_only=True; LSM: freeze='encoder')."""

    @pytest.mark.parametrize("form", FORMS)
    def test_landscape_only_spann3r(self, form, mast3r_forms, tiny_model):
        path, hub = mast3r_forms[form]
        model = AsymmetricMASt3R.from_pretrained(path, landscape_only=True, **hub)
        assert type(model) is AsymmetricMASt3R and model.landscape_only is True
        default = tiny_model("mast3r_tiny_a")
        assert default.landscape_only is False
        sa, sb = model.state_dict(), default.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
        pairs, _ = fixture_pairs("mast3r_tiny_a")
        landscape = [(pairs[1][0], pairs[1][0])]  # landscape-only heads agree with the default on landscape images
        _assert_same_outputs(_run(model, landscape), _run(default, landscape))

    @pytest.mark.parametrize("form", FORMS)
    def test_freeze_encoder_lsm(self, form, mast3r_forms):
        path, hub = mast3r_forms[form]
        model = AsymmetricMASt3R.from_pretrained(pretrained_model_name_or_path=path, freeze="encoder", **hub)
        assert model.freeze == "encoder"
        trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
        frozen = {name.split(".")[0] for name, p in model.named_parameters() if not p.requires_grad}
        assert frozen == {"patch_embed", "enc_blocks"} | ({"mask_token"} if model.mask_token is not None else set())
        assert {"dec_blocks", "dec_blocks2", "decoder_embed", "downstream_head1", "downstream_head2"} <= trainable

    def test_unknown_keyword_is_a_type_error(self, mast3r_forms):
        with pytest.raises(TypeError, match=r"\['landscape_onyl'\].*AsymmetricMASt3R"):
            AsymmetricMASt3R.from_pretrained(mast3r_forms["pth"][0], landscape_onyl=True)


class TestArchitectureCheck:
    """from_pretrained of a class gets that class or a subclass, whatever the checkpoint's form."""

    @pytest.mark.parametrize("form", FORMS)
    def test_mast3r_class_refuses_dust3r_checkpoint(self, form, dust3r_forms):
        path, hub = dust3r_forms[form]
        with pytest.raises(CheckpointError, match="holds a checkpoint of AsymmetricCroCo3DStereo, not of "
                                                  "AsymmetricMASt3R") as info:
            AsymmetricMASt3R.from_pretrained(path, **hub)
        assert "\n" not in str(info.value)
        assert type(AsymmetricCroCo3DStereo.from_pretrained(path, **hub)) is AsymmetricCroCo3DStereo

    @pytest.mark.parametrize("form", FORMS)
    def test_dust3r_class_gets_the_mast3r_subclass(self, form, mast3r_forms):
        path, hub = mast3r_forms[form]
        assert type(AsymmetricCroCo3DStereo.from_pretrained(path, **hub)) is AsymmetricMASt3R

    def test_unregistered_user_subclass_is_built_as_itself(self, tiny_pth, tiny_model):
        class MyMASt3R(AsymmetricMASt3R):
            pass
        model = MyMASt3R.from_pretrained(str(tiny_pth("mast3r_tiny_a")))
        assert type(model) is MyMASt3R
        ref = tiny_model("mast3r_tiny_a").state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


class TestDeviceChecked:
    @pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
    def test_cuda_without_cuda_refused_before_reading(self, tmp_path):
        from dust3r.model_loading import load_pretrained
        from dust3r.utils.device import DeviceError
        missing = tmp_path / "not_there.pth"  # a read would fail with 'not found': the device check comes first
        with pytest.raises(DeviceError, match="'cuda' requested but CUDA is not available"):
            load_pretrained(missing, device="cuda")
        with pytest.raises(DeviceError, match="'cuda' requested"):
            AsymmetricMASt3R.from_pretrained(str(missing), device="cuda")

    def test_bad_device_string(self, tiny_pth):
        from dust3r.utils.device import DeviceError
        with pytest.raises(DeviceError, match="invalid device 'gpu0'"):
            dust3r_load_model(str(tiny_pth("mast3r_tiny_b")), "gpu0")


class TestHubFailsFast:
    def test_unknown_hub_id_offline_env_one_line_in_seconds(self, tmp_path):
        """A fresh interpreter with HF_HUB_OFFLINE=1: one clear line, nothing else on stderr, well under a second
        for the call itself (the original path took ~25 s and ten retry warnings without network)."""
        import json
        import subprocess
        import sys
        script = ("import json, time\nfrom mast3r.model import AsymmetricMASt3R\nt = time.perf_counter()\n"
                  "try:\n    AsymmetricMASt3R.from_pretrained('naver/no_such_model_h1', cache_dir=%r)\n"
                  "    msg = None\nexcept Exception as e:\n    msg = f'{type(e).__name__}: {e}'\n"
                  "print(json.dumps([msg, time.perf_counter() - t]))\n") % str(tmp_path / "cache")
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        msg, seconds = json.loads(proc.stdout.strip().splitlines()[-1])
        assert msg.startswith("CheckpointNotFoundError") and "naver/no_such_model_h1" in msg and "offline" in msg
        assert "\n" not in msg and proc.stderr.strip() == ""
        assert seconds < 3

    def test_unreachable_hub_without_offline_env(self, tmp_path, monkeypatch):
        """No offline flag, but the hub cannot be reached: one probe, then the cache only (no retries)."""
        import socket
        import time
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        probes = []

        def unreachable(address, *args, **kwargs):
            probes.append(address)
            raise OSError(101, "Network is unreachable")

        def no_connect(*args, **kwargs):
            raise AssertionError("network access attempted")
        monkeypatch.setattr(socket, "create_connection", unreachable)
        monkeypatch.setattr(socket.socket, "connect", no_connect)
        t = time.perf_counter()
        with pytest.raises(CheckpointError, match=r"naver/no_such_model_h1.*cannot be reached.*Network is "
                                                  r"unreachable") as info:
            AsymmetricMASt3R.from_pretrained("naver/no_such_model_h1", cache_dir=str(tmp_path / "cache"))
        assert time.perf_counter() - t < 3 and len(probes) == 1 and "\n" not in str(info.value)
        _fake_hub_cache(tmp_path / "hub", "naver/DUSt3R_cached", DATA / "models" / "dust3r_tiny_linear_hf")
        model = AsymmetricCroCo3DStereo.from_pretrained("naver/DUSt3R_cached", cache_dir=str(tmp_path / "hub"))
        assert type(model) is AsymmetricCroCo3DStereo  # a cached model still loads
