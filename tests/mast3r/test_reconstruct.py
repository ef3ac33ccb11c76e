"""The reconstruction CLI (``python -m mast3r.reconstruct``): synthetic images in, every export out, clear errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mast3r.reconstruct import (ReconstructError, SparseOptions, _parse_formats, collect_images, main,
                                read_known_intrinsics)

W, H = 64, 48
FAST = ["--image-size", str(W), "--niter1", "150", "--niter2", "60", "--quiet"]


@pytest.fixture(scope="module")
def scene_and_images(tmp_path_factory):
    from dust3r.utils.synthetic import make_scene

    scene = make_scene(n_views=3, height=H, width=W, seed=3)
    folder = tmp_path_factory.mktemp("cli_images")
    return scene, scene.save_images(folder), folder


@pytest.fixture(scope="module")
def oracle_run(scene_and_images, tmp_path_factory):
    """One CLI run with the oracle model, every format, the true intrinsics of image 0 given (original pixels)."""
    from dust3r.utils.synthetic import OracleModel

    scene, paths, folder = scene_and_images
    K0 = scene.K[0]
    kfile = tmp_path_factory.mktemp("k") / "K.json"
    kfile.write_text(json.dumps({"img_000.png": {"fx": K0[0, 0], "fy": K0[1, 1], "cx": K0[0, 2], "cy": K0[1, 2]}}))
    out = tmp_path_factory.mktemp("cli_out")
    code = main([str(folder), "--out", str(out), "--formats", "all", "--known-intrinsics", str(kfile)] + FAST,
                model=OracleModel(scene))
    return scene, out, code


class TestOracleRun:
    def test_exit_code_and_every_export_loads(self, oracle_run):
        import trimesh

        from dust3r.export import read_colmap_model

        scene, out, code = oracle_run
        assert code == 0
        glb = trimesh.load(str(out / "scene.glb"))
        clouds = [g for g in glb.geometry.values() if isinstance(g, trimesh.PointCloud)]
        assert clouds and sum(len(c.vertices) for c in clouds) > 1000
        ply = trimesh.load(str(out / "scene.ply"))
        assert len(ply.vertices) > 1000 and np.isfinite(ply.vertices).all()
        cams = json.loads((out / "cameras.json").read_text())
        assert len(json.dumps(cams)) > 100
        cameras, images, points = read_colmap_model(str(out / "colmap"))
        assert len(images) == 3 and len(cameras) >= 1 and len(points) > 0
        assert (out / "colmap.zip").stat().st_size > 0
        transforms = json.loads((out / "nerfstudio" / "transforms.json").read_text())
        assert len(transforms["frames"]) == 3
        depths = sorted((out / "depth").glob("*_depth.npy"))
        assert [d.name for d in depths] == ["img_000_depth.npy", "img_001_depth.npy", "img_002_depth.npy"]
        d0 = np.load(depths[0])
        assert d0.shape == (H, W)
        # metric oracle + known focal: depths agree with the ground truth
        valid = np.isfinite(d0)
        assert valid.mean() > 0.5
        rel = np.abs(d0[valid] - scene.depth[0][valid]) / scene.depth[0][valid]
        assert np.median(rel) < 0.05

    def test_poses_match_ground_truth(self, oracle_run):
        from dust3r.export import qvec_to_rotmat, read_colmap_model
        from dust3r.utils.synthetic import pose_errors

        scene, out, _ = oracle_run
        _, images, _ = read_colmap_model(str(out / "colmap"))
        # COLMAP images hold world2cam; order them by name
        est = []
        for img in sorted(images.values(), key=lambda im: im.name):
            world2cam = np.eye(4)
            world2cam[:3, :3], world2cam[:3, 3] = qvec_to_rotmat(img.qvec), img.tvec
            est.append(np.linalg.inv(world2cam))
        err = pose_errors(np.stack(est), scene.cam2world)
        assert err["rot_deg"] < 2.0 and err["trans_dir_deg"] < 5.0

    def test_known_intrinsics_are_kept(self, oracle_run):
        from dust3r.export import read_colmap_model

        scene, out, _ = oracle_run
        cameras, images, _ = read_colmap_model(str(out / "colmap"))
        first = next(im for im in images.values() if im.name == "img_000.png")
        params = np.asarray(cameras[first.camera_id].params, dtype=float)
        np.testing.assert_allclose(params[:2], scene.K[0][[0, 1], [0, 1]], rtol=1e-3)


class TestErrors:
    def _run(self, argv, capsys, **kw):
        code = main(argv, **kw)
        err = capsys.readouterr().err.strip().splitlines()
        return code, err

    def test_missing_path(self, capsys, tmp_path):
        code, err = self._run([str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys, model=object())
        assert code == 2 and err[-1].startswith("error: no such image file or folder") and "nope" in err[-1]

    def test_folder_without_images(self, capsys, tmp_path):
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "readme.txt").write_text("x")
        code, err = self._run([str(tmp_path / "in"), "--out", str(tmp_path / "o")], capsys, model=object())
        assert code == 2 and "no images found" in err[-1]

    def test_bad_weights(self, capsys, tmp_path, scene_and_images):
        _, _, folder = scene_and_images
        fake = tmp_path / "fake.pth"
        fake.write_bytes(b"not a checkpoint")
        code, err = self._run([str(folder), "--weights", str(fake), "--out", str(tmp_path / "o")] + FAST, capsys)
        assert code == 2 and err[-1].startswith("error: cannot load model weights") and "fake.pth" in err[-1]
        code, err = self._run([str(folder), "--weights", str(tmp_path / "missing.pth"), "--out",
                               str(tmp_path / "o")] + FAST, capsys)
        assert code == 2 and "weights not found" in err[-1]

    def test_bad_options(self, capsys, tmp_path, scene_and_images):
        _, _, folder = scene_and_images
        code, err = self._run([str(folder), "--out", str(tmp_path), "--formats", "glb,obj"], capsys, model=object())
        assert code == 2 and "obj" in err[-1]
        code, err = self._run([str(folder), "--out", str(tmp_path), "--scene-graph", "star"] + FAST, capsys,
                              model=object())
        assert code == 2 and "unknown scene graph" in err[-1]
        code, err = self._run([str(folder), "--out", str(tmp_path), "--niter1", "-3"], capsys, model=object())
        assert code == 2 and "niter1" in err[-1]

    def test_bad_intrinsics_files(self, tmp_path, scene_and_images):
        _, paths, _ = scene_and_images
        f = tmp_path / "k.json"
        f.write_text("{not json")
        with pytest.raises(ReconstructError, match="cannot read"):
            read_known_intrinsics(str(f), paths)
        f.write_text(json.dumps({"other.png": {"fx": 1, "fy": 1, "cx": 0, "cy": 0}}))
        with pytest.raises(ReconstructError, match="not one of the input images"):
            read_known_intrinsics(str(f), paths)
        f.write_text(json.dumps({"fx": -5, "fy": 1, "cx": 0, "cy": 0}))
        with pytest.raises(ReconstructError, match="positive"):
            read_known_intrinsics(str(f), paths)
        f.write_text(json.dumps({"img_001.png": {"fx": 50}}))
        with pytest.raises(ReconstructError, match="missing fy, cx, cy"):
            read_known_intrinsics(str(f), paths)
        with pytest.raises(ReconstructError, match="not found"):
            read_known_intrinsics(str(tmp_path / "none.json"), paths)

    def test_intrinsics_forms(self, tmp_path, scene_and_images):
        _, paths, _ = scene_and_images
        f = tmp_path / "k.json"
        f.write_text(json.dumps({"K": [[50, 0, 31.5], [0, 51, 23.5], [0, 0, 1]]}))
        shared = read_known_intrinsics(str(f), paths)
        assert sorted(shared) == [0, 1, 2] and shared[2][1, 1] == 51
        f.write_text(json.dumps({"img_002.png": [[40, 0, 30], [0, 40, 20], [0, 0, 1]]}))
        assert list(read_known_intrinsics(str(f), paths)) == [2]


def test_collect_images_and_formats(tmp_path, scene_and_images):
    _, paths, folder = scene_and_images
    assert collect_images([str(folder)]) == sorted(paths)
    assert collect_images([paths[1], paths[0]]) == [paths[1], paths[0]]
    assert _parse_formats("all")[-1] == "depth" and _parse_formats("ply, glb,ply") == ("ply", "glb")
    with pytest.raises(ReconstructError, match="optim level"):
        SparseOptions(optim_level="fast")


@pytest.mark.slow
def test_cli_subprocess_with_tiny_checkpoint(tiny_pth, scene_and_images, tmp_path):
    """The real entry point with a real (tiny, random-weight) checkpoint: runs to the end and writes the files."""
    _, _, folder = scene_and_images
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "mast3r.reconstruct", str(folder), "--weights",
                           str(tiny_pth("mast3r_tiny_a")), "--out", str(out), "--image-size", str(W), "--niter1", "20",
                           "--niter2", "10", "--formats", "glb,ply,cameras", "--min-conf-thr", "0", "--quiet"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("scene.glb", "scene.ply", "cameras.json"):
        assert (out / name).stat().st_size > 0
    assert "glb:" in proc.stdout


class TestChecksBeforeWork:
    """Bad inputs are refused by validate_args, before the model or any image is loaded, and nothing is written."""

    @pytest.fixture
    def no_loading(self, monkeypatch):
        import mast3r.reconstruct

        monkeypatch.setattr(mast3r.reconstruct, "_load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        monkeypatch.setattr(mast3r.reconstruct, "run_sparse_pipeline", lambda *a, **k: pytest.fail("work started"))

    def _run(self, argv, capsys):
        code = main(argv)
        return code, capsys.readouterr().err.strip().splitlines()

    def test_dust3r_checkpoint(self, no_loading, tiny_pth, scene_and_images, tmp_path, capsys):
        _, _, folder = scene_and_images
        ckpt = str(tiny_pth("dust3r_tiny_linear"))
        code, err = self._run([str(folder), "--weights", ckpt, "--out", str(tmp_path / "o"), "--device", "cpu"],
                              capsys)
        assert code == 2 and len(err) == 1 and "holds a DUSt3R model" in err[0] and "dust3r_tiny_linear" in err[0]
        assert not (tmp_path / "o").exists()

    def test_scene_graph_and_out_and_device_each_one_line(self, no_loading, tiny_pth, scene_and_images, tmp_path,
                                                          capsys):
        _, _, folder = scene_and_images
        code, err = self._run([str(folder), "--weights", str(tiny_pth("mast3r_tiny_a")), "--out", "/proc/x",
                               "--scene-graph", "swin-abc", "--device", "cpu"], capsys)
        assert code == 2 and len(err) == 2
        assert err[0].startswith("error: unknown scene graph 'swin-abc'")
        assert err[1].startswith("error: ") and "/proc/x" in err[1]

    def test_existing_result_needs_overwrite(self, no_loading, scene_and_images, tmp_path, capsys):
        _, _, folder = scene_and_images
        out = tmp_path / "out"
        out.mkdir()
        (out / "scene.glb").write_bytes(b"old")
        code, err = self._run([str(folder), "--out", str(out), "--device", "cpu"], capsys)
        assert code == 2 and "not empty" in err[-1] and "--overwrite" in err[-1]
        assert (out / "scene.glb").read_bytes() == b"old"

    def test_out_holding_the_inputs_is_refused(self, no_loading, scene_and_images, capsys):
        _, paths, folder = scene_and_images
        code, err = self._run([paths[0], paths[1], "--out", str(folder), "--overwrite", "--device", "cpu"], capsys)
        assert code == 2 and str(folder) in err[-1]


class TestOutputOwnedByTheRun:
    def test_overwrite_replaces_the_folder_whole(self, scene_and_images, tmp_path, capsys):
        from dust3r.utils.synthetic import OracleModel

        scene, _, folder = scene_and_images
        out = tmp_path / "out"
        out.mkdir()
        for name in ("scene.glb", "colmap.zip", "notes.txt"):
            (out / name).write_bytes(b"from an older run")
        code = main([str(folder), "--out", str(out), "--overwrite", "--formats", "glb,cameras"] + FAST,
                    model=OracleModel(scene))
        assert code == 0
        assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "scene.glb"]
        assert (out / "scene.glb").stat().st_size > 1000
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o777 & ~umask
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
        assert f"glb: {out / 'scene.glb'}" in capsys.readouterr().out

    def test_failed_export_leaves_nothing(self, scene_and_images, tmp_path, monkeypatch, capsys):
        import mast3r.reconstruct
        from dust3r.utils.synthetic import OracleModel

        scene, _, folder = scene_and_images

        def failing_export(scene, out_dir, *a, **k):
            (Path(out_dir) / "scene.glb").write_bytes(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(mast3r.reconstruct, "export_scene", failing_export)
        out = tmp_path / "out"
        code = main([str(folder), "--out", str(out)] + FAST, model=OracleModel(scene))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and err == ["error: reconstruction failed: OSError: disk full"]
        assert list(tmp_path.iterdir()) == []

    def test_image_size_rounded_with_a_plain_note(self, scene_and_images, tmp_path, caplog):
        import warnings

        from dust3r.utils.synthetic import OracleModel

        scene, _, folder = scene_and_images
        argv = [str(folder), "--out", str(tmp_path / "o"), "--formats", "cameras", "--image-size", "70",
                "--niter1", "30", "--niter2", "0", "--quiet"]
        with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO"):
            warnings.simplefilter("always")
            assert main(argv, model=OracleModel(scene)) == 0
        assert not [w for w in caught if issubclass(w.category, UserWarning)]
        assert any("70" in r.getMessage() and "using 64" in r.getMessage() for r in caplog.records)
        cams = json.loads((tmp_path / "o" / "cameras.json").read_text())
        assert len(json.dumps(cams)) > 100
