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
