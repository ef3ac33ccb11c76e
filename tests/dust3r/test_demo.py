"""The DUSt3R demo (dust3r.demo): upload checks, per-session folders, the dense Run path, the original's headless
entry points (get_3D_model_from_scene, get_reconstructed_scene, set_scenegraph_options, main_demo) and the
one-line errors of the command line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from dust3r.demo import (DemoState, DisplayOptions, SessionWorkspaces, UserInputError, max_window_size,
                         reconstruct_dense, scene_graph_string, validate_uploads)

ROOT = Path(__file__).resolve().parents[2]
W, H = 64, 48


def _png(path, size=(W, H)):
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def _cameras(glb_path):
    """Number of camera frustums in a GLB written by dust3r.export (geometries named camera_NNN)."""
    import trimesh

    names = trimesh.load(str(glb_path)).geometry.keys()
    return sum(1 for n in names if re.fullmatch(r"camera_\d{3}", n))


def _points(glb_path):
    import trimesh

    geoms = trimesh.load(str(glb_path)).geometry.values()
    return sum(len(g.vertices) for g in geoms if isinstance(g, trimesh.PointCloud))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from dust3r.utils.synthetic import make_scene

    scene = make_scene(n_views=3, height=H, width=W, seed=3)
    return scene, scene.save_images(tmp_path_factory.mktemp("demo_imgs"))


@pytest.fixture(scope="module")
def dense_scene(synthetic):
    from dust3r.utils.synthetic import OracleModel

    scene_gt, paths = synthetic
    return reconstruct_dense(OracleModel(scene_gt), paths, "cpu", W, "complete", "linear", 100)


class TestValidateUploads:
    def test_good_images_in_order(self, tmp_path):
        paths = [_png(tmp_path / f"{k}.png") for k in (2, 0, 1)]
        assert validate_uploads(paths, max_images=5, allowed_roots=[str(tmp_path)]) == paths

    def test_messages(self, tmp_path):
        txt = tmp_path / "notes.txt"
        txt.write_text("hello")
        good = _png(tmp_path / "a.png")
        with pytest.raises(UserInputError, match="'notes.txt' is not an image"):
            validate_uploads([good, str(txt)], max_images=5)
        with pytest.raises(UserInputError, match="at least 1 image"):
            validate_uploads([], max_images=5)
        with pytest.raises(UserInputError, match="at least 1 image"):
            validate_uploads(None, max_images=5)
        with pytest.raises(UserInputError, match="Too many images: 3 uploaded, at most 2"):
            validate_uploads([good] * 3, max_images=2)
        with pytest.raises(UserInputError, match="not a regular uploaded file"):
            validate_uploads([str(tmp_path)], max_images=2)

    def test_paths_are_confined(self, tmp_path):
        outside = _png(tmp_path / "outside.png")
        root = tmp_path / "uploads"
        root.mkdir()
        link = root / "link.png"
        os.symlink(outside, link)
        with pytest.raises(UserInputError, match="not a regular uploaded file"):
            validate_uploads([str(link)], max_images=2, allowed_roots=[str(root)])
        with pytest.raises(UserInputError, match="not in the upload folder"):
            validate_uploads([outside], max_images=2, allowed_roots=[str(root)])
        with pytest.raises(UserInputError, match="not in the upload folder"):
            validate_uploads([str(root / ".." / "outside.png")], max_images=2, allowed_roots=[str(root)])


class TestSessionWorkspaces:
    def test_private_folders_released(self, tmp_path):
        ws = SessionWorkspaces(str(tmp_path / "parent"))
        assert ws.root.parent == tmp_path / "parent"
        a, b = ws.create("alice"), ws.create("bob")
        assert a != b and a.is_dir() and b.is_dir() and ws.create("alice") == a
        assert oct(a.stat().st_mode & 0o777) == "0o700"
        (a / "scene.glb").write_bytes(b"x")
        state = DemoState(scene=object(), session_id="alice", workdir=a)
        ws.attach("alice", state)
        ws.release("alice")
        assert not a.exists() and b.is_dir() and set(ws.active()) == {"bob"}
        assert state.scene is None  # the ended session's scene is freed even if gradio still holds the state
        ws.release("alice")  # twice is fine
        ws.close()
        assert not ws.root.exists()


def test_scene_graph_controls():
    assert scene_graph_string("complete") == "complete"
    assert scene_graph_string("swin", 2, True) == "swin-2"
    assert scene_graph_string("logwin", 3, False) == "logwin-3-noncyclic"
    assert scene_graph_string("oneref", refid=4) == "oneref-4"
    with pytest.raises(UserInputError):
        scene_graph_string("star")
    assert [max_window_size(n, "swin", False) for n in (1, 2, 5)] == [1, 1, 4]
    assert [max_window_size(n, "swin", True) for n in (1, 5, 8)] == [1, 2, 4]
    assert [max_window_size(n, "logwin", False) for n in (2, 5, 8)] == [1, 3, 3]
    assert max_window_size(9, "logwin", True) == 2


def test_dense_demo_pipeline(synthetic, dense_scene):
    """demo_dust3r_ga's path: inference + dense global alignment recovers the synthetic cameras."""
    from dust3r.demo import dense_gallery
    from dust3r.utils.synthetic import OracleModel, pose_errors

    scene_gt, paths = synthetic
    scene, names = dense_scene
    assert names == ["img_000.png", "img_001.png", "img_002.png"]
    err = pose_errors(scene.get_im_poses().detach().cpu().numpy(), scene_gt.cam2world)
    assert err["rot_deg"] < 0.5 and err["trans_dir_deg"] < 1.0
    gallery = dense_gallery(scene)
    assert len(gallery) == 9 and all(g.shape == (H, W, 3) for g in gallery)
    with pytest.raises(UserInputError, match="unknown scene graph"):
        reconstruct_dense(OracleModel(scene_gt), paths, "cpu", W, "star")


class TestGet3DModelFromScene:
    def test_writes_glb_with_every_camera(self, dense_scene, tmp_path):
        from dust3r.demo import get_3D_model_from_scene

        scene, _ = dense_scene
        thr_before = getattr(scene, "min_conf_thr", None)
        out = get_3D_model_from_scene(str(tmp_path), True, scene, min_conf_thr=1.0, as_pointcloud=True)
        assert out == str(tmp_path / "scene.glb") and os.path.getsize(out) > 0
        assert _cameras(out) == 3 and _points(out) > 1000
        assert getattr(scene, "min_conf_thr", None) == thr_before  # the caller's scene is not changed
        # a higher threshold keeps fewer points; the mesh form has no point cloud
        get_3D_model_from_scene(str(tmp_path), True, scene, 1e9, True)
        assert _points(out) == 0 and _cameras(out) == 3
        mesh = get_3D_model_from_scene(str(tmp_path), True, scene, min_conf_thr=1.0, as_pointcloud=False)
        assert _points(mesh) == 0 and _cameras(mesh) == 3
        assert get_3D_model_from_scene(str(tmp_path), True, None) is None

    def test_convert_scene_output_to_glb_from_arrays(self, dense_scene, tmp_path):
        from dust3r.demo import _convert_scene_output_to_glb

        scene, _ = dense_scene
        pts = [p.detach().numpy() for p in scene.get_pts3d()]
        masks = [np.ones(p.shape[:2], bool) for p in pts]
        masks[0][:] = False
        out = _convert_scene_output_to_glb(str(tmp_path), scene.imgs, pts, masks, scene.get_focals().detach(),
                                           scene.get_im_poses().detach(), as_pointcloud=True, silent=True)
        assert _cameras(out) == 3 and _points(out) == 2 * H * W


def test_get_reconstructed_scene_original_signature(synthetic, tmp_path):
    from dust3r.demo import get_reconstructed_scene
    from dust3r.inputs import InputError
    from dust3r.utils.synthetic import OracleModel, pose_errors

    scene_gt, paths = synthetic
    scene, outfile, imgs = get_reconstructed_scene(str(tmp_path), OracleModel(scene_gt), "cpu", True, W, paths,
                                                   "linear", 100, 1.0, True, False, True, False, 0.05, "swin", 1, 0)
    assert outfile == str(tmp_path / "scene.glb") and _cameras(outfile) == 3
    assert len(imgs) == 9 and imgs[1].shape == (H, W, 3)
    assert pose_errors(scene.get_im_poses().detach().cpu().numpy(), scene_gt.cam2world)["rot_deg"] < 1.0
    with pytest.raises(InputError, match="no such image"):
        get_reconstructed_scene(str(tmp_path), None, "cpu", True, W, [str(tmp_path / "nope.png")], "linear", 1,
                                1.0, True, False, True, False, 0.05, "complete", 1, 0)


def test_set_scenegraph_options():
    from dust3r.demo import set_scenegraph_options

    winsize, refid = set_scenegraph_options(["a", "b", "c", "d", "e"], 1, 0, "swin")
    assert (winsize.visible, refid.visible, winsize.value, winsize.maximum) == (True, False, 2, 2)
    winsize, refid = set_scenegraph_options(["a", "b", "c"], 1, 0, "oneref")
    assert (winsize.visible, refid.visible, refid.maximum) == (False, True, 2)


def test_main_demo_builds_and_serves(monkeypatch, tmp_path):
    import dust3r.demo as demo_module

    served = {}

    def fake_launch(demo, server_name, local_network, server_port, share=False, quiet=False, **kw):
        served.update(demo=demo, host=server_name, port=server_port)
        demo.session_workspaces.close()

    monkeypatch.setattr(demo_module, "launch_demo", fake_launch)
    demo_module.main_demo(str(tmp_path), object(), "cpu", 224, "127.0.0.1", 7999, silent=True)
    assert served["demo"].title == "DUSt3R Demo" and (served["host"], served["port"]) == ("127.0.0.1", 7999)
    assert served["demo"].session_workspaces.root.parent == tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dust3r_tiny_linear", "mast3r_tiny_b"])
def test_dense_demo_runs_real_checkpoints(name, tiny_model, synthetic, tmp_path):
    """demo_dust3r_ga works with DUSt3R and MASt3R checkpoints (tiny random weights: only the plumbing is checked)."""
    import torch
    import trimesh

    from dust3r.demo import write_scene_files

    _, paths = synthetic
    scene, names = reconstruct_dense(tiny_model(name), paths, "cpu", W, "swin-1", "linear", 5)
    assert torch.isfinite(scene.get_im_poses()).all() and len(names) == 3
    files = write_scene_files(scene, tmp_path, DisplayOptions(min_conf_thr=1.0, as_pointcloud=False), names)
    assert isinstance(trimesh.load(files["glb"]), trimesh.Scene) and _cameras(files["glb"]) == 3
    assert os.path.getsize(files["colmap"]) > 0 and files["colmap"].endswith(".zip")


class TestCommandLine:
    """The scripts end in one ``error:`` line and a non-zero exit, never a traceback."""

    def _run(self, script, *args, env=None):
        proc = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                              timeout=300, cwd=str(ROOT), env=dict(os.environ, **(env or {})))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        return lines[0]

    @pytest.mark.parametrize("script", ["demo.py", "demo_dust3r_ga.py"])
    def test_missing_weights(self, script):
        assert self._run(script, "--weights", "missing.pth") == "error: weights not found: 'missing.pth'"

    @pytest.mark.slow
    def test_hub_default_offline(self, tmp_path):
        line = self._run("demo.py", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
        assert "naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric" in line

    def test_flags_checked_before_loading(self, tiny_pth, tmp_path):
        from dust3r.demo import get_args_parser, validate_args
        from dust3r.inputs import InputError

        dust3r_ckpt = str(tiny_pth("dust3r_tiny_linear"))
        args = get_args_parser().parse_args(["--weights", dust3r_ckpt, "--device", "cpu", "--image_size", "100",
                                             "--tmp_dir", str(tmp_path / "t")])
        checked = validate_args(args)
        assert (checked.source, checked.image_size, checked.tmp_dir) == (dust3r_ckpt, 96, str(tmp_path / "t"))
        assert not (tmp_path / "t").exists()  # checking writes nothing
        args = get_args_parser().parse_args(["--weights", dust3r_ckpt, "--device", "cpu", "--image_size", "8"])
        with pytest.raises(InputError, match="too small"):
            validate_args(args)
        (tmp_path / "file").write_text("x")
        args = get_args_parser().parse_args(["--weights", dust3r_ckpt, "--device", "cpu", "--tmp_dir",
                                             str(tmp_path / "file")])
        with pytest.raises(InputError, match="tmp_dir"):
            validate_args(args)

    @pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a CPU-only machine")
    def test_unavailable_device(self, tiny_pth):
        from dust3r.demo import get_args_parser, main

        args = get_args_parser().parse_args(["--weights", str(tiny_pth("dust3r_tiny_linear")), "--device", "cuda"])
        with pytest.raises(SystemExit, match="^error: --device: .*CUDA is not available"):
            main(args)
