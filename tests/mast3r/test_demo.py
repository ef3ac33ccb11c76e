"""The MASt3R demo (no browser): defaults that keep the server private, the sparse Run + re-render path, the
original's headless entry points (get_reconstructed_scene, SparseGAState, get_3D_model_from_scene,
set_scenegraph_options, main_demo), the checks before loading, and the two-view matching helper.
The shared plumbing (uploads, sessions, scene-graph strings) is tested in tests/dust3r/test_demo.py and
tests/dust3r/test_app.py."""
import os
import socket
import zipfile

import numpy as np
import pytest

from dust3r.app import DemoState, DisplayOptions, SessionWorkspaces, rerender_outputs
from mast3r.demo import free_port, get_args_parser, match_two_images, model_source, server_address
from mast3r.viz import draw_matches
from tests.dust3r.test_demo import _cameras, _points

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


def test_sparse_run_then_rerender_without_network(synthetic, tmp_path):
    """The demo's Run path (sparse GA) then a display change: new files, no new forward pass."""
    import trimesh

    from dust3r.utils.synthetic import OracleModel, pose_errors
    from mast3r.reconstruction import SparseOptions, run_sparse_pipeline

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


class TestHeadless:
    """The original's entry points, called the way scripts drive the demo without a browser."""

    ARGS = dict(optim_level="refine", lr1=0.07, niter1=80, lr2=0.014, niter2=30, min_conf_thr=1.5,
                matching_conf_thr=5.0, as_pointcloud=True, mask_sky=False, clean_depth=True, transparent_cams=False,
                cam_size=0.05, scenegraph_type="complete", winsize=1, win_cyclic=False, refid=0, TSDF_thresh=0.0,
                shared_intrinsics=False)

    def test_get_reconstructed_scene(self, synthetic, tmp_path):
        from dust3r.utils.synthetic import OracleModel, pose_errors
        from mast3r.demo import SparseGAState, get_3D_model_from_scene, get_reconstructed_scene

        scene_gt, paths = synthetic
        model = _Counting(OracleModel(scene_gt))
        a = list(self.ARGS.values())
        state, outfile = get_reconstructed_scene(str(tmp_path), False, model, "cpu", True, W, None, paths, *a)
        assert isinstance(state, SparseGAState) and outfile == state.outfile_name
        assert outfile.startswith(str(tmp_path)) and outfile.endswith("_scene.glb")
        assert _cameras(outfile) == 3 and _points(outfile) > 1000
        assert state.cache_dir == str(tmp_path / "cache") and os.path.isdir(state.cache_dir)
        err = pose_errors(state.sparse_ga.get_im_poses().detach().cpu().numpy(), scene_gt.cam2world)
        assert err["rot_deg"] < 2.0

        # display changes rewrite the same file without a new forward pass
        calls = model.calls
        assert get_3D_model_from_scene(True, state, min_conf_thr=1e9) == outfile
        assert _points(outfile) == 0 and _cameras(outfile) == 3 and model.calls == calls
        assert get_3D_model_from_scene(True, None) is None

        # a new run reuses the state's cache folder and file name (keyword form of the call)
        kw = dict(self.ARGS, scenegraph_type="swin", winsize=1, win_cyclic=True)
        state2, outfile2 = get_reconstructed_scene(str(tmp_path), False, model, "cpu", True, W, state, paths, **kw)
        assert (outfile2, state2.cache_dir) == (outfile, state.cache_dir) and _cameras(outfile2) == 3
        state2.close()
        assert not os.path.exists(outfile) and not os.path.exists(state.cache_dir)

    def test_bad_inputs_before_inference(self, synthetic, tmp_path):
        from dust3r.inputs import InputError
        from dust3r.utils.synthetic import OracleModel
        from mast3r.demo import get_reconstructed_scene

        scene_gt, paths = synthetic
        model = _Counting(OracleModel(scene_gt))
        a = dict(self.ARGS, scenegraph_type="oneref", refid=7)
        with pytest.raises(InputError, match="out of range"):
            get_reconstructed_scene(str(tmp_path), False, model, "cpu", True, W, None, paths, **a)
        with pytest.raises(InputError, match="optim level"):
            get_reconstructed_scene(str(tmp_path), False, model, "cpu", True, W, None, paths,
                                    **dict(self.ARGS, optim_level="fast"))
        assert model.calls == 0 and list(tmp_path.iterdir()) == []

    def test_state_deletes_only_when_asked(self, tmp_path):
        from mast3r.demo import SparseGAState

        for should_delete in (False, True):
            cache, glb = tmp_path / f"cache{should_delete}", tmp_path / f"{should_delete}.glb"
            cache.mkdir()
            glb.write_bytes(b"x")
            state = SparseGAState(object(), should_delete, str(cache), str(glb))
            del state
            assert cache.exists() != should_delete and glb.exists() != should_delete

    def test_set_scenegraph_options(self):
        from mast3r.demo import set_scenegraph_options

        col, winsize, cyclic, refid = set_scenegraph_options(["a"] * 9, True, 0, "logwin")
        assert (col.visible, winsize.visible, cyclic.visible, refid.visible) == (True, True, True, False)
        assert winsize.value == 2 and cyclic.value is True
        col, winsize, cyclic, refid = set_scenegraph_options(["a"] * 4, False, 0, "oneref")
        assert (col.visible, refid.visible, refid.maximum) == (False, True, 3)

    def test_main_demo(self, monkeypatch, tmp_path):
        import mast3r.demo as demo_module

        served = {}

        def fake_launch(demo, server_name, local_network, server_port, share=False, quiet=False, **kw):
            served.update(demo=demo, host=server_name, port=server_port, share=share)
            demo.session_workspaces.close()

        monkeypatch.setattr(demo_module, "launch_demo", fake_launch)
        demo_module.main_demo(str(tmp_path), object(), "cpu", 512, "127.0.0.1", 7998, silent=True,
                              gradio_delete_cache=600)
        assert served["demo"].title == "MASt3R Demo" and (served["port"], served["share"]) == (7998, False)
        assert served["demo"].session_workspaces.root.parent == tmp_path


def test_dust3r_checkpoint_refused_before_loading(tiny_pth, monkeypatch):
    import dust3r.app.launch
    from mast3r.demo import main

    monkeypatch.setattr(dust3r.app.launch, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    args = get_args_parser().parse_args(["--weights", str(tiny_pth("dust3r_tiny_linear")), "--device", "cpu"])
    with pytest.raises(SystemExit, match="holds a DUSt3R model"):
        main(args)


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


def test_sliders_start_from_the_alignment_defaults(tmp_path):
    from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS
    from mast3r.demo import build_demo

    app = build_demo(object(), "cpu", image_size=W, tmp_dir=str(tmp_path))
    try:
        by_label = {}
        for comp in app.blocks.values():
            by_label.setdefault(getattr(comp, "label", None), []).append(getattr(comp, "value", None))
    finally:
        app.session_workspaces.close()
    d = ALIGNMENT_DEFAULTS
    assert by_label["Coarse LR"] == [d["lr1"]] and by_label["Fine LR"] == [d["lr2"]]
    assert by_label["num_iterations"] == [d["niter1"], d["niter2"]]
    assert by_label["OptLevel"] == [d["optim_level"]] and by_label["min_conf_thr"] == [d["min_conf_thr"]]
    assert by_label["Matching Confidence Thr"] == [d["matching_conf_thr"]]
