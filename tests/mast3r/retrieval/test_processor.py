"""mast3r.retrieval.processor: the original's ASMK scores (fixture), safe loading, the MASt3R-SLAM usage, pairs."""
from __future__ import annotations

import argparse
import os
import pickle
import sys

import numpy as np
import pytest
import torch

from dust3r.utils.checkpoint import CheckpointError, UnsafeCheckpointError
from mast3r.retrieval.model import how_select_local
from mast3r.retrieval.processor import (Retriever, codebook_path, get_impaths, get_impaths_from_imdir,
                                        load_retrieval_checkpoint, pairs_from_retrieval)
from mast3r.retrieval.safe_pickle import load_codebook_state, safe_loads

from .conftest import CHECKPOINT, CODEBOOK, IMAGES, INDEX

pytest.importorskip("asmk")


class _RunsShell:
    """Pickles as a call to os.system (what a malicious file would carry)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TestScores:
    def test_matches_original(self, retriever, reference):
        scores = retriever(IMAGES)
        assert scores.shape == (6, 6) and scores.dtype.kind == "f"  # asmk's dtype (the fixture stores float32)
        np.testing.assert_allclose(scores, reference["scores"], rtol=1e-4, atol=1e-6)
        # as the original: each image scores itself highest, and the matrix is not symmetric
        assert (scores.argmax(axis=1) == np.arange(6)).all()
        assert not np.allclose(scores, scores.T, rtol=1e-3)

    def test_list_file_and_outfile(self, retriever, reference, tmp_path):
        listing = tmp_path / "images.txt"
        listing.write_text("# comment\n\n" + "\n".join(IMAGES[:3]) + "\n")
        assert get_impaths(str(listing)) == IMAGES[:3]
        out = tmp_path / "sub" / "scores.npy"
        scores = retriever(str(listing), outfile=str(out))
        np.testing.assert_array_equal(np.load(out), scores)
        # binary kernel without idf: a pair's score does not depend on the other images of the database
        np.testing.assert_allclose(scores, reference["scores"][:3, :3], rtol=1e-4, atol=1e-6)

    def test_image_folder(self):
        folder = os.path.dirname(IMAGES[0])
        assert get_impaths_from_imdir(folder) == sorted(IMAGES)
        with pytest.raises(FileNotFoundError, match="image folder not found"):
            get_impaths_from_imdir(os.path.join(folder, "nope"))

    def test_asmk_state(self, retriever):
        assert retriever.imsize == 512
        assert retriever.asmk.codebook.centroids.shape == (16, 80)
        assert retriever.asmk.params["build_ivf"]["quantize"]["multiple_assignment"] == 1
        assert retriever.asmk.params["query_ivf"]["quantize"]["multiple_assignment"] == 5
        assert retriever.asmk.params["query_ivf"]["similarity"] == {"similarity_threshold": 0.0, "alpha": 3.0}


class TestDownstreamSubclass:
    """MASt3R-SLAM subclasses Retriever, builds an IVF incrementally and re-creates forward_local from tokens."""

    def test_slam_style_use(self, backbone, retriever):
        class RetrievalDatabase(Retriever):
            def __init__(self, modelname, backbone=None, device="cpu"):
                super().__init__(modelname, backbone, device)
                self.ivf_builder = self.asmk.create_ivf_builder()
                self.centroids = torch.from_numpy(self.asmk.codebook.centroids)

            def prep_features(self, tokens):
                m = self.model
                pre = m.prewhiten(tokens)
                proj = m.projector(pre) + (0.0 if not m.residual else pre)
                return how_select_local(m.postwhiten(proj), m.attention(proj), m.nfeat)[0]

        db = RetrievalDatabase(str(CHECKPOINT), backbone=backbone)
        from dust3r.utils.image import load_images
        view = load_images([IMAGES[2]], size=512, verbose=False)[0]
        with torch.no_grad():
            tokens = backbone._encode_image(view["img"], torch.as_tensor(view["true_shape"]))[0]
            expected = retriever.model.forward_local(view)[0]
            got = db.prep_features(tokens)
        torch.testing.assert_close(got, expected)
        assert db.ivf_builder.ivf.n_images == 0 and db.centroids.shape == (16, 80)


class TestSafeLoading:
    def test_codebook_state(self):
        state = load_codebook_state(CODEBOOK)
        assert state["params"] == {"size": 16}
        assert state["state"]["centroids"].shape == (16, 80)
        with open(CODEBOOK, "rb") as f:
            original = pickle.load(f)  # the fixture itself is trusted
        np.testing.assert_array_equal(state["state"]["centroids"], original["state"]["centroids"])

    def test_code_carrying_codebook_is_refused_and_not_run(self, retrieval_files, tmp_path):
        ckpt, codebook = retrieval_files
        marker = tmp_path / "pwned"
        state = load_codebook_state(codebook)
        state["state"]["extra"] = _RunsShell(marker)
        codebook.write_bytes(pickle.dumps(state))
        with pytest.raises(UnsafeCheckpointError, match=r"references posix\.system|references os\.system"):
            load_codebook_state(codebook)
        with pytest.raises(UnsafeCheckpointError, match="nothing from the file was executed"):
            Retriever(str(ckpt), backbone=torch.nn.Module(), device="cpu")  # refused before the backbone is used
        assert not marker.exists()

    @pytest.mark.parametrize("payload, match", [
        (pickle.dumps(eval), "builtins.eval"),
        (pickle.dumps({"a": np.array([1, "x"], dtype=object)}), "array of Python objects"),
        (pickle.dumps(argparse.Namespace(a=1)), "argparse.Namespace"),
    ])
    def test_other_refusals(self, payload, match):
        with pytest.raises(UnsafeCheckpointError, match=match):
            safe_loads(payload)

    def test_plain_values_and_old_protocols_load(self):
        value = {"a": [1, 2.5, "s", None, (True, b"x")], "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
                 "i": np.int64(3)}
        for protocol in (2, 4, 5):
            loaded = safe_loads(pickle.dumps(value, protocol=protocol))
            np.testing.assert_array_equal(loaded["arr"], value["arr"])
            assert loaded["a"] == value["a"] and loaded["i"] == 3

    def test_corrupt_or_wrong_codebook(self, tmp_path):
        bad = tmp_path / "x_codebook.pkl"
        bad.write_bytes(pickle.dumps({"a": 1})[:-3])
        with pytest.raises(CheckpointError, match="corrupt"):
            load_codebook_state(bad)
        bad.write_bytes(pickle.dumps({"type": "Codebook", "params": {"size": 3}, "state": {"centroids": np.eye(2)}}))
        with pytest.raises(CheckpointError, match="codebook size 3 but 2 centroids"):
            load_codebook_state(bad)
        with pytest.raises(CheckpointError, match="codebook .*missing.pkl' not found"):
            load_codebook_state(tmp_path / "missing.pkl")

    def test_codebook_of_another_size_is_refused_before_the_backbone_loads(self, retrieval_files, monkeypatch):
        ckpt, codebook = retrieval_files
        state = load_codebook_state(codebook)
        k = state["state"]["centroids"].shape[0] // 2
        codebook.write_bytes(pickle.dumps({"type": "Codebook", "params": {"size": k},
                                           "state": {"centroids": state["state"]["centroids"][:k]}}))

        def no_backbone(*args, **kwargs):
            raise AssertionError("the backbone was loaded before the codebook was checked")

        from mast3r.model import AsymmetricMASt3R
        monkeypatch.setattr(AsymmetricMASt3R, "from_pretrained", no_backbone)
        with pytest.raises(CheckpointError, match=f"has {k} clusters, the checkpoint expects {2 * k}"):
            Retriever(str(ckpt), device="cpu")

    def test_code_carrying_checkpoint_is_refused_and_not_run(self, retrieval_files, tmp_path):
        ckpt, _ = retrieval_files
        marker = tmp_path / "pwned"
        good = load_retrieval_checkpoint(str(ckpt))
        torch.save({"model": good["state_dict"], "args": _RunsShell(marker)}, ckpt)
        with pytest.raises(UnsafeCheckpointError, match="nothing was executed"):
            load_retrieval_checkpoint(str(ckpt))
        with pytest.raises(UnsafeCheckpointError):
            Retriever(str(ckpt), backbone=torch.nn.Module(), device="cpu")
        assert not marker.exists()

    def test_checkpoint_loads_weights_only(self):
        ckpt = load_retrieval_checkpoint(str(CHECKPOINT))
        assert {k: list(v.shape) for k, v in ckpt["state_dict"].items()} == INDEX["head_keys"]
        assert {k: ckpt["args"][k] for k in INDEX["checkpoint_args"]} == INDEX["checkpoint_args"]

    def test_not_a_retrieval_checkpoint(self, tmp_path):
        path = tmp_path / "m_x.pth"
        torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(model="Foo()")}, path)
        with pytest.raises(CheckpointError, match="not a retrieval checkpoint"):
            load_retrieval_checkpoint(str(path))

    def test_codebook_name(self):
        assert codebook_path("/a/b/MASt3R_ViTLarge_retrieval_trainingfree.pth") == \
            os.path.join("/a/b", "MASt3R_ViTLarge_retrieval_codebook.pkl")
        assert codebook_path(str(CHECKPOINT)) == str(CODEBOOK)


def test_missing_asmk_is_actionable(monkeypatch):
    monkeypatch.setitem(sys.modules, "asmk", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu.*asmk"):
        Retriever(str(CHECKPOINT), backbone=torch.nn.Module(), device="cpu")


def test_pairs_from_retrieval(backbone, reference):
    edges, sim = pairs_from_retrieval(IMAGES, str(CHECKPOINT), backbone=backbone, scene_graph="retrieval-2-1",
                                      device="cpu")
    np.testing.assert_allclose(sim, reference["scores"], rtol=1e-4, atol=1e-6)
    from dust3r.image_pairs import retrieval_edges
    assert edges == retrieval_edges(sim, 2, 1)[0]
    assert len(edges) == len(set(edges)) and all(i < j for i, j in edges)
    with pytest.raises(ValueError, match="retrieval-Na-k"):
        pairs_from_retrieval(IMAGES, str(CHECKPOINT), backbone=backbone, scene_graph="complete")


def test_command_line_loads_the_backbone_from_the_checkpoint_args(retrieval_files, tiny_pth, reference, tmp_path,
                                                                   monkeypatch):
    import shutil

    from mast3r.retrieval.processor import main

    ckpt, _ = retrieval_files
    monkeypatch.chdir(tmp_path)  # args.pretrained is the relative name 'mast3r_tiny_a.pth'
    shutil.copyfile(tiny_pth("mast3r_tiny_a"), tmp_path / INDEX["checkpoint_args"]["pretrained"])
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(IMAGES[3:]))
    out = tmp_path / "scores.npy"
    assert main(["--model", str(ckpt), "--input", str(listing), "--outfile", str(out), "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(out), reference["scores"][3:, 3:], rtol=1e-4, atol=1e-6)
