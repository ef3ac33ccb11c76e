"""mast3r.cloud_opt.sparse_ga: the original's helpers kept for downstream code (symmetric_inference,
forward_mast3r), the one set of alignment defaults, and no process-wide side effect."""
from __future__ import annotations

import hashlib
import inspect
import os

import numpy as np
import pytest
import torch

from dust3r.image_pairs import make_pairs
from dust3r.inference import inference
from dust3r.synthetic import OracleModel, make_scene
from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS, SPARSE_GA_DEFAULTS
from mast3r.cloud_opt.optimizer import OptimOptions
from mast3r.cloud_opt.sparse_ga import forward_mast3r, sparse_global_alignment, symmetric_inference

KEYS = ("pts3d", "conf", "desc", "desc_conf")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class TestSymmetricInference:
    def test_matches_inference_on_tiny_model(self, tiny_model):
        model = tiny_model("mast3r_tiny_a")
        v0, v1 = make_scene(2, 48, 64, seed=0).views()
        res11, res21, res22, res12 = symmetric_inference(model, v0, v1, device="cpu")
        out = inference([(v0, v1), (v1, v0)], model, "cpu", batch_size=2, verbose=False)
        p1, p2 = out["pred1"], dict(out["pred2"])
        p2["pts3d"] = p2.pop("pts3d_in_other_view")
        for key in KEYS:
            assert res11[key].shape[0] == 1
            torch.testing.assert_close(res11[key][0], p1[key][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(res21[key][0], p2[key][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(res22[key][0], p1[key][1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(res12[key][0], p2[key][1], atol=1e-5, rtol=1e-5)
        assert res11["pts3d"].shape == (1, 48, 64, 3) and res11["desc"].shape[:3] == (1, 48, 64)

    def test_model_without_split_forward(self):
        """Any model with the two-view forward works; ``res21['pts3d']`` is view 2 in camera 1's frame."""
        scene = make_scene(2, 48, 64, seed=0)
        v0, v1 = scene.views()
        res11, res21, res22, res12 = symmetric_inference(OracleModel(scene), v0, v1, device="cpu")
        torch.testing.assert_close(res11["pts3d"][0].double(), torch.from_numpy(scene.pts3d_cam(0)),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(res21["pts3d"][0].double(), torch.from_numpy(scene.pts3d_cam(1, frame=0)),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(res22["pts3d"][0].double(), torch.from_numpy(scene.pts3d_cam(1)),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(res12["pts3d"][0].double(), torch.from_numpy(scene.pts3d_cam(0, frame=1)),
                                   atol=1e-4, rtol=0)


class TestForwardMast3r:
    def test_original_cache_layout_and_matches(self, tmp_path):
        scene = make_scene(2, 48, 64, seed=0)
        v0, v1 = scene.views()
        res_paths, cache = forward_mast3r([(v0, v1)], OracleModel(scene), str(tmp_path), device="cpu", subsample=8)
        assert cache == str(tmp_path)
        (path1, path2), path_corres = res_paths["0", "1"]
        h0, h1 = _md5("0"), _md5("1")
        assert path1 == os.path.join(str(tmp_path), "forward", h0, f"{h1}.pth")
        assert path2 == os.path.join(str(tmp_path), "forward", h1, f"{h0}.pth")
        assert path_corres == os.path.join(str(tmp_path), "corres_conf=desc_conf_subsample=8", f"{h0}-{h1}.pth")

        X11, C11, X21, C21 = torch.load(path1, weights_only=True)
        X22, C22, X12, C12 = torch.load(path2, weights_only=True)
        torch.testing.assert_close(X11.double(), torch.from_numpy(scene.pts3d_cam(0)), atol=1e-4, rtol=0)
        torch.testing.assert_close(X12.double(), torch.from_numpy(scene.pts3d_cam(0, frame=1)), atol=1e-4, rtol=0)
        assert C11.shape == C22.shape == (48, 64)

        (conf_score, conf_sum, n_matches), (xy1, xy2, confs) = torch.load(path_corres, weights_only=True)
        assert n_matches == len(xy1) == len(xy2) == len(confs) > 50
        assert conf_sum == pytest.approx(float(confs.double().sum()), rel=1e-6)
        expected_score = float(torch.stack([C11.mean(), C12.mean(), C21.mean(), C22.mean()]).prod() ** 0.25)
        assert conf_score == pytest.approx(expected_score, rel=1e-5)
        # the oracle's descriptors identify 3D points: matched pixels see the same world point
        w0 = scene.pts3d[0][xy1[:, 1].numpy(), xy1[:, 0].numpy()]
        w1 = scene.pts3d[1][xy2[:, 1].numpy(), xy2[:, 0].numpy()]
        spacing = np.linalg.norm(scene.pts3d[0][1:] - scene.pts3d[0][:-1], axis=-1).mean()
        assert np.median(np.linalg.norm(w0 - w1, axis=-1)) < spacing

    def test_cache_reuse_swap_and_missing_pairs(self, tmp_path):
        scene = make_scene(3, 48, 64, seed=0)
        v0, v1, v2 = scene.views()
        first, _ = forward_mast3r([(v0, v1)], OracleModel(scene), str(tmp_path), device="cpu")
        # no model: only cached pairs come back; the swapped pair reuses (and swaps) the cached matches
        res, _ = forward_mast3r([(v0, v1), (v1, v0), (v0, v2)], None, str(tmp_path), device="cpu")
        assert set(res) == {("0", "1"), ("1", "0")}
        assert res["0", "1"] == first["0", "1"]
        _, (xy1, xy2, conf) = torch.load(res["0", "1"][1], weights_only=True)
        _, (xy1_s, xy2_s, conf_s) = torch.load(res["1", "0"][1], weights_only=True)
        assert torch.equal(xy1, xy2_s) and torch.equal(xy2, xy1_s) and torch.equal(conf, conf_s)

    def test_needs_a_cache_path(self):
        scene = make_scene(2, 48, 64, seed=0)
        with pytest.raises(ValueError, match="give a cache_path"):
            forward_mast3r([tuple(scene.views())], OracleModel(scene), None, device="cpu")

    def test_original_signatures(self):
        params = inspect.signature(forward_mast3r).parameters
        assert list(params)[:6] == ["pairs", "model", "cache_path", "desc_conf", "device", "subsample"]
        assert params["desc_conf"].default == "desc_conf" and params["device"].default == "cuda"
        assert params["subsample"].default == 8
        assert list(inspect.signature(symmetric_inference).parameters) == ["model", "img1", "img2", "device"]


class TestDefaults:
    def test_function_defaults_are_the_originals(self):
        assert dict(lr1=0.2, niter1=500, lr2=0.02, niter2=500).items() <= dict(SPARSE_GA_DEFAULTS).items()
        opts = OptimOptions()
        for key, value in SPARSE_GA_DEFAULTS.items():
            if hasattr(opts, key):
                assert getattr(opts, key) == value, key
        params = inspect.signature(sparse_global_alignment).parameters
        assert params["subsample"].default == SPARSE_GA_DEFAULTS["subsample"]
        assert params["shared_intrinsics"].default == SPARSE_GA_DEFAULTS["shared_intrinsics"]

    def test_demo_defaults(self):
        assert (ALIGNMENT_DEFAULTS["lr1"], ALIGNMENT_DEFAULTS["niter1"]) == (0.07, 500)
        assert (ALIGNMENT_DEFAULTS["lr2"], ALIGNMENT_DEFAULTS["niter2"]) == (0.014, 200)
        assert ALIGNMENT_DEFAULTS["optim_level"] == "refine+depth"
        for shared in ("matching_conf_thr", "shared_intrinsics", "subsample"):
            assert ALIGNMENT_DEFAULTS[shared] == SPARSE_GA_DEFAULTS[shared]
        with pytest.raises(TypeError):
            ALIGNMENT_DEFAULTS["lr1"] = 1.0  # read-only


def test_alignment_leaves_the_thread_count_alone(monkeypatch):
    """torch.set_num_threads is process-wide (gradio runs events in worker threads): never called here."""
    def forbidden(n):
        raise AssertionError(f"sparse_global_alignment called torch.set_num_threads({n})")

    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", forbidden)
    scene = make_scene(2, 48, 64, seed=0)
    views = scene.views()
    pairs = make_pairs(views, scene_graph="complete", symmetrize=True)
    res = sparse_global_alignment([v["instance"] for v in views], pairs, None, OracleModel(scene), niter1=20,
                                  niter2=10, verbose=False)
    assert torch.isfinite(res.get_im_poses()).all()
    assert torch.get_num_threads() == before
