"""Demo building blocks (no browser): defaults that keep the server private, upload checks, per-session folders,
scene-graph controls, the shared reconstruction + re-render path, and the two-view matching helper."""
import importlib.util
import os
import socket
import zipfile

import numpy as np
import PIL.Image
import pytest

from dust3r.demo import (DemoState, DisplayOptions, SessionWorkspaces, UserInputError, max_window_size,
                         reconstruct_dense, rerender_outputs, scene_graph_string, validate_uploads)
from mast3r.demo import free_port, get_args_parser, match_two_images, model_source, server_address
from mast3r.viz import draw_matches

HAS_EXPORT = importlib.util.find_spec("dust3r.export") is not None
needs_export = pytest.mark.skipif(not HAS_EXPORT, reason="dust3r.export (helper 'export') is not in the tree yet")
W, H = 64, 48


def test_defaults_bind_localhost():
    args = get_args_parser().parse_args([])
    assert server_address(args.server_name, args.local_network) == "127.0.0.1"
    assert server_address(None, True) == "0.0.0.0"
    assert server_address("10.1.2.3", False) == "10.1.2.3"
    assert model_source(None, args.model_name) == "naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
    assert model_source("ckpt.pth", args.model_name) == "ckpt.pth"
    assert not args.share and args.server_port is None and args.tmp_dir is None


def test_original_flags_parse():
    args = get_args_parser().parse_args(
        ["--weights", "w.pth", "--retrieval_model", "r.pth", "--device", "cpu", "--image_size", "224",
         "--server_name", "1.2.3.4", "--server_port", "7999", "--share", "--tmp_dir", "/tmp/x", "--silent",
         "--gradio_delete_cache", "600"])
    assert (args.weights, args.image_size, args.server_port, args.gradio_delete_cache) == ("w.pth", 224, 7999, 600)
    with pytest.raises(SystemExit):  # the original makes these exclusive
        get_args_parser().parse_args(["--local_network", "--server_name", "1.2.3.4"])


def test_retrieval_flag_is_refused_clearly():
    from mast3r.demo import main

    args = get_args_parser().parse_args(["--weights", "w.pth", "--retrieval_model", "r.pth"])
    with pytest.raises(SystemExit, match="retrieval is not available"):
        main(args, model=object())


def test_free_port_skips_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        busy = s.getsockname()[1]
        s.listen()
        assert free_port(busy, "127.0.0.1") > busy


def _png(path, size=(W, H)):
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


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


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from dust3r.utils.synthetic import make_scene

    scene = make_scene(n_views=3, height=H, width=W, seed=3)
    return scene, scene.save_images(tmp_path_factory.mktemp("demo_imgs"))


class _Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *a, **k):
        self.calls += 1
        return self.model(*a, **k)


@needs_export
def test_sparse_run_then_rerender_without_network(synthetic, tmp_path):
    """The demo's Run path (sparse GA) then a display change: new files, no new forward pass."""
    import trimesh

    from dust3r.utils.synthetic import OracleModel, pose_errors
    from mast3r.reconstruct import SparseOptions, run_sparse_pipeline

    scene_gt, paths = synthetic
    model = _Counting(OracleModel(scene_gt))
    ws = SessionWorkspaces(str(tmp_path))
    workdir = ws.create("s1")
    scene, names = run_sparse_pipeline(model, paths, "cpu", W, "complete", SparseOptions(niter1=80, niter2=30),
                                       cache_dir=str(workdir / "cache"), verbose=False)
    assert names == ["img_000.png", "img_001.png", "img_002.png"]
    assert pose_errors(scene.get_im_poses().detach().cpu().numpy(), scene_gt.cam2world)["rot_deg"] < 2.0
    state = DemoState(scene, "s1", workdir, names)
    calls = model.calls
    glb, downloads, status = rerender_outputs(state, DisplayOptions())
    assert sorted(os.path.basename(d) for d in downloads) == ["cameras.json", "colmap.zip", "scene.glb", "scene.ply"]
    assert all(d.startswith(str(workdir)) for d in downloads)
    cloud = [g for g in trimesh.load(glb).geometry.values() if isinstance(g, trimesh.PointCloud)]
    n_default = sum(len(c.vertices) for c in cloud)
    assert n_default > 1000
    with zipfile.ZipFile(next(d for d in downloads if d.endswith(".zip"))) as z:
        assert any(n.endswith(("images.bin", "images.txt")) for n in z.namelist())

    first_dir = os.path.dirname(glb)
    glb2, _, status2 = rerender_outputs(state, DisplayOptions(min_conf_thr=1e6))  # everything masked out
    assert model.calls == calls and status2 == "Display updated."
    assert not os.path.exists(first_dir) and os.path.exists(glb2)
    clouds2 = [g for g in trimesh.load(glb2).geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert sum(len(c.vertices) for c in clouds2) < n_default
    ws.close()
    assert rerender_outputs(state, DisplayOptions())[2].startswith("This session has expired")
    assert rerender_outputs(None, DisplayOptions())[0] is None


def test_dense_demo_pipeline(synthetic):
    """demo_dust3r_ga's path: inference + dense global alignment recovers the synthetic cameras."""
    from dust3r.demo import dense_gallery
    from dust3r.utils.synthetic import OracleModel, pose_errors

    scene_gt, paths = synthetic
    scene, names = reconstruct_dense(OracleModel(scene_gt), paths, "cpu", W, "complete", "linear", 100)
    err = pose_errors(scene.get_im_poses().detach().cpu().numpy(), scene_gt.cam2world)
    assert err["rot_deg"] < 0.5 and err["trans_dir_deg"] < 1.0
    gallery = dense_gallery(scene)
    assert len(gallery) == 9 and all(g.shape == (H, W, 3) for g in gallery)
    with pytest.raises(UserInputError, match="unknown scene graph"):
        reconstruct_dense(OracleModel(scene_gt), paths, "cpu", W, "star")


@needs_export
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
    assert isinstance(trimesh.load(files["glb"]), trimesh.Scene)
    assert os.path.getsize(files["colmap"]) > 0 and files["colmap"].endswith(".zip")


@pytest.mark.parametrize("module", ["mast3r.demo", "dust3r.demo"])
def test_apps_build_with_an_injected_model(module, tmp_path):
    """Both apps build from a model object (no launch), with their session folders under tmp_dir."""
    import importlib

    app = importlib.import_module(module).build_demo(object(), "cpu", image_size=W, tmp_dir=str(tmp_path))
    try:
        assert app.session_workspaces.root.parent == tmp_path
        assert app.title in ("MASt3R Demo", "DUSt3R Demo")
    finally:
        app.session_workspaces.close()
    assert list(tmp_path.iterdir()) == []


def test_match_two_images_and_drawing(tiny_model, data_dir):
    model = tiny_model("mast3r_tiny_b")
    res = match_two_images(model, [data_dir / "images" / "d_small.png", data_dir / "images" / "e_alpha.png"],
                           "cpu", image_size=224)
    assert res.img0.shape == (224, 224, 3) and len(res.xy0) == len(res.xy1)
    assert (res.xy0 >= 3).all() and (res.xy0 < 224 - 3).all()
    drawing = res.drawing(n_viz=5)
    assert drawing.shape == (224, 448, 3) and drawing.dtype == np.uint8
    with pytest.raises(ValueError, match="exactly 2 images"):
        match_two_images(model, [data_dir / "images" / "d_small.png"], "cpu")


def test_draw_matches_validates():
    img = np.zeros((10, 12, 3))
    out = draw_matches(img, np.zeros((14, 8, 3)), np.array([[1, 2]]), np.array([[3, 4]]))
    assert out.shape == (14, 20, 3) and out.max() > 0
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        draw_matches(img, img, np.zeros((3, 2)), np.zeros((2, 2)))
