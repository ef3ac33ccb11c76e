"""mast3r.reconstruction: the sparse pipeline the CLI and the demo share, its options and its inputs."""
import json
import os

import numpy as np
import PIL.Image
import pytest

from dust3r.export import ALL_FORMATS
from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS
from mast3r.reconstruction import (ReconstructError, SparseOptions, collect_images, export_scene, parse_formats,
                                   read_known_intrinsics, run_sparse_pipeline)

W, H = 64, 48


def _png(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return str(path)


class TestSparseOptions:
    def test_one_set_of_defaults(self):
        """The options, the CLI flags and the demo sliders all start from ALIGNMENT_DEFAULTS."""
        from mast3r.reconstruct import get_args_parser

        opts = SparseOptions()
        fields = ("lr1", "niter1", "lr2", "niter2", "optim_level", "matching_conf_thr", "shared_intrinsics")
        assert {f: getattr(opts, f) for f in fields} == {f: ALIGNMENT_DEFAULTS[f] for f in fields}
        args = get_args_parser().parse_args(["x.png", "--out", "o"])
        assert {f: getattr(args, f) for f in fields} == {f: ALIGNMENT_DEFAULTS[f] for f in fields}
        assert args.min_conf_thr == ALIGNMENT_DEFAULTS["min_conf_thr"]

    def test_aligner_kwargs(self):
        kw = SparseOptions(optim_level="coarse", niter2=99).aligner_kwargs()
        assert kw["niter2"] == 0 and kw["opt_depth"] is False
        kw = SparseOptions(optim_level="refine+depth", niter2=99).aligner_kwargs()
        assert kw["niter2"] == 99 and kw["opt_depth"] is True

    @pytest.mark.parametrize("kw, message", [({"optim_level": "fast"}, "optim level"), ({"lr1": 0.0}, "lr1"),
                                             ({"lr2": float("nan")}, "lr2"), ({"niter2": -1}, "niter2"),
                                             ({"matching_conf_thr": float("inf")}, "matching_conf_thr")])
    def test_refused(self, kw, message):
        with pytest.raises(ReconstructError, match=message):
            SparseOptions(**kw)


def test_formats_are_the_export_registry():
    assert parse_formats("all") == tuple(ALL_FORMATS)
    assert parse_formats(" PLY,glb,ply ") == ("ply", "glb")
    with pytest.raises(ReconstructError, match="obj"):
        parse_formats("glb,obj")


class TestInputs:
    def test_collect_images(self, tmp_path):
        b, a = _png(tmp_path / "in" / "b.png"), _png(tmp_path / "in" / "a.png", 1)
        (tmp_path / "in" / "notes.txt").write_text("x")
        assert collect_images([str(tmp_path / "in")]) == [a, b]
        with pytest.raises(ReconstructError, match="no such image file or folder"):
            collect_images([str(tmp_path / "missing")])

    def test_known_intrinsics_names_matched_by_path_then_unique_name(self, tmp_path):
        paths = [_png(tmp_path / "dupA" / "same.png"), _png(tmp_path / "dupB" / "same.png", 1),
                 _png(tmp_path / "other.png", 2)]
        K = {"fx": 50.0, "fy": 50.0, "cx": 31.5, "cy": 23.5}
        f = tmp_path / "K.json"
        f.write_text(json.dumps({"same.png": K}))
        with pytest.raises(ReconstructError, match="ambiguous") as info:
            read_known_intrinsics(str(f), paths)
        assert "dupA" in str(info.value) and "dupB" in str(info.value)
        f.write_text(json.dumps({paths[1]: K, "other.png": dict(K, fx=60.0, fy=60.0)}))
        known = read_known_intrinsics(str(f), paths)
        assert sorted(known) == [1, 2] and known[2][0, 0] == 60.0
        f.write_text(json.dumps({"other.png": dict(K, cx=-99999.0, cy=1e12)}))
        with pytest.raises(ReconstructError, match="principal point"):
            read_known_intrinsics(str(f), paths)
        f.write_text(json.dumps({"K": [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 0]]}))
        with pytest.raises(ReconstructError, match=r"last row"):
            read_known_intrinsics(str(f), paths)


@pytest.fixture(scope="module")
def oracle_scene(tmp_path_factory):
    from dust3r.utils.synthetic import make_scene

    scene = make_scene(n_views=3, height=H, width=W, seed=7)
    return scene, scene.save_images(tmp_path_factory.mktemp("recon_imgs"))


def test_pipeline_keeps_known_intrinsics_and_exports(oracle_scene, tmp_path):
    from dust3r.export import read_colmap_model
    from dust3r.utils.synthetic import OracleModel, pose_errors

    gt, paths = oracle_scene
    reports = []
    scene, names = run_sparse_pipeline(OracleModel(gt), paths, "cpu", W, "complete",
                                       SparseOptions(niter1=100, niter2=40), known_K={i: gt.K[i] for i in range(3)},
                                       verbose=False, progress=lambda f, desc="": reports.append(f))
    assert names == ["img_000.png", "img_001.png", "img_002.png"]
    assert reports == sorted(reports) and reports[-1] == 0.9
    np.testing.assert_allclose(scene.get_intrinsics().detach().numpy()[:, [0, 1], [0, 1]],
                               gt.K[:, [0, 1], [0, 1]], rtol=1e-3)
    assert pose_errors(scene.get_im_poses().detach().numpy(), gt.cam2world)["rot_deg"] < 1.0
    assert [m["filepath"] for m in scene.views_meta] == paths
    files = export_scene(scene, str(tmp_path), ("colmap", "cameras"), names)
    assert set(files) == {"colmap", "colmap_zip", "cameras"}
    _, images, _ = read_colmap_model(files["colmap"])
    assert sorted(im.name for im in images.values()) == names


def test_pipeline_refuses_a_graph_without_pairs_before_inference(oracle_scene):
    from dust3r.utils.synthetic import OracleModel

    gt, paths = oracle_scene

    class NoForward(OracleModel):
        def __call__(self, *a, **k):
            raise AssertionError("inference ran")

    with pytest.raises(ReconstructError, match="unknown scene graph"):
        run_sparse_pipeline(NoForward(gt), paths, "cpu", W, "star", verbose=False)
