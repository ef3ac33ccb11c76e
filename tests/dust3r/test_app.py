"""dust3r.app, the front-end layer both demos share: lazy gradio, flags, checks before loading, rendering,
widgets, serving."""
import json
import os
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from dust3r import app
from dust3r.inputs import InputError

W, H = 64, 48
MAST3R_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"


@pytest.fixture(scope="module")
def scene_data():
    """Ground-truth SceneData of a synthetic scene (what an aligner would give, exactly)."""
    from dust3r.export import SceneData
    from dust3r.utils.synthetic import make_scene

    s = make_scene(n_views=3, height=H, width=W, seed=5)
    return SceneData(images=list(s.images), K=s.K, cam2world=s.cam2world, pts3d=list(s.pts3d),
                     names=["a.png", "b.png", "c.png"])


def test_importing_the_app_layer_does_not_import_gradio():
    code = ("import sys, dust3r.app, dust3r.demo, mast3r.demo, mast3r.reconstruct; "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


class TestFlags:
    def test_defaults_and_model_source(self):
        args = app.get_args_parser(default_model=MAST3R_MODEL).parse_args([])
        assert app.server_address(args.server_name, args.local_network) == "127.0.0.1"
        assert args.image_size == 512 and args.max_images == 64 and not args.share
        assert app.model_source(None, args.model_name) == f"naver/{MAST3R_MODEL}"
        assert app.model_source(None, "me/my_model") == "me/my_model"
        assert app.model_source("w.pth", "ignored") == "w.pth"
        with pytest.raises(ValueError, match="--weights"):
            app.model_source(None, None)

    def test_free_port(self):
        port = app.free_port(7860)
        assert 7860 <= port < 7960


class TestChecks:
    def test_device(self):
        assert app.check_device("cpu") == "cpu"
        with pytest.raises(InputError, match="^--device: invalid device 'gpu0'"):
            app.check_device("gpu0")
        if not __import__("torch").cuda.is_available():
            with pytest.raises(InputError, match="CUDA is not available"):
                app.check_device("cuda")

    def test_weights_kind_read_without_loading(self, tiny_pth, tmp_path, monkeypatch):
        import dust3r.model_loading

        monkeypatch.setattr(dust3r.model_loading, "load_pretrained", lambda *a, **k: pytest.fail("loaded"))
        mast3r_ckpt, dust3r_ckpt = str(tiny_pth("mast3r_tiny_a")), str(tiny_pth("dust3r_tiny_linear"))
        assert app.check_weights(mast3r_ckpt, None, ("AsymmetricMASt3R",)) == mast3r_ckpt
        assert app.check_weights(dust3r_ckpt, None) == dust3r_ckpt  # the DUSt3R demo takes both kinds
        with pytest.raises(InputError, match="holds a DUSt3R model"):
            app.check_weights(dust3r_ckpt, None, ("AsymmetricMASt3R",))
        with pytest.raises(InputError, match="^weights not found: 'nope.pth'$"):
            app.check_weights("nope.pth", None)
        bad = tmp_path / "bad.pth"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(InputError, match="^cannot load model weights from .*bad.pth"):
            app.check_weights(str(bad), None)
        # hub ids are told apart by their official names only (no download while checking)
        assert app.check_weights(None, MAST3R_MODEL, ("AsymmetricMASt3R",)) == f"naver/{MAST3R_MODEL}"
        with pytest.raises(InputError, match="DUSt3R"):
            app.check_weights(None, app.DUST3R_MODELS[0], ("AsymmetricMASt3R",))

    def test_demo_args(self, tiny_pth, tmp_path):
        from dust3r.app.launch import validate_demo_args

        parser = app.get_args_parser()
        ok = parser.parse_args(["--weights", str(tiny_pth("mast3r_tiny_a")), "--device", "cpu", "--tmp_dir",
                                str(tmp_path), "--image_size", "224"])
        checked = validate_demo_args(ok, ("AsymmetricMASt3R",))
        assert (checked.device, checked.image_size, checked.tmp_dir) == ("cpu", 224, str(tmp_path))
        injected = validate_demo_args(parser.parse_args(["--device", "cpu"]), ("AsymmetricMASt3R",), model=object())
        assert injected.source is None
        for argv, message in ((["--tmp_dir", "/proc/x"], "/proc/x"), (["--max_images", "0"], "max_images"),
                              (["--image_size", "100000"], "too large")):
            with pytest.raises(InputError, match=re.escape(message)):
                validate_demo_args(parser.parse_args(["--device", "cpu"] + argv), (), model=object())

    def test_serve_ends_in_one_line(self, tmp_path):
        from dust3r.app.launch import DemoInputs, serve

        args = app.get_args_parser().parse_args(["--silent"])
        checked = DemoInputs(str(tmp_path / "missing.pth"), "cpu", 512, None)
        with pytest.raises(SystemExit, match="^error: cannot load model weights from .*missing.pth"):
            serve(args, lambda *a, **k: pytest.fail("built"), checked)


class TestRender:
    def test_write_scene_files(self, scene_data, tmp_path):
        import trimesh

        from dust3r.export import read_colmap_model

        display = app.DisplayOptions(min_conf_thr=0.0, cam_size=0.1, as_pointcloud=True)
        files = app.write_scene_files(scene_data, tmp_path, display, names=scene_data.names)
        assert sorted(files) == sorted(app.DOWNLOAD_FORMATS) and files["colmap"].endswith("colmap.zip")
        cloud = [g for g in trimesh.load(files["glb"]).geometry.values() if isinstance(g, trimesh.PointCloud)]
        assert sum(len(c.vertices) for c in cloud) == 3 * H * W
        names = sorted(trimesh.load(files["glb"]).geometry)
        assert [n for n in names if re.fullmatch(r"camera_\d{3}", n)] == ["camera_000", "camera_001", "camera_002"]
        _, images, _ = read_colmap_model(str(tmp_path / "colmap"))
        assert sorted(im.name for im in images.values()) == ["a.png", "b.png", "c.png"]
        assert len(json.loads(open(files["cameras"]).read())) > 0

    def test_write_glb_respects_display(self, scene_data, tmp_path):
        import trimesh

        path = app.write_glb(scene_data, tmp_path / "mesh.glb", app.DisplayOptions(as_pointcloud=False,
                                                                                    transparent_cams=True))
        geoms = trimesh.load(path).geometry
        assert "mesh" in geoms and not any(n.endswith("_image") for n in geoms)

    def test_export_options_cover_every_display_field(self):
        from dataclasses import fields

        opts = app.DisplayOptions(min_conf_thr=2, tsdf_thresh=0.5).export_options()
        assert set(opts) == {"min_conf_thr", "cam_size", "as_pointcloud", "mask_sky", "clean_depth",
                             "transparent_cams", "tsdf_thresh"} == {f.name for f in fields(app.DisplayOptions)}
        assert (opts["min_conf_thr"], opts["tsdf_thresh"]) == (2.0, 0.5)

    def test_colorize(self):
        maps = [np.array([[0.0, 1.0]]), np.array([[2.0, 4.0]])]
        out = app.colorize(maps)
        assert [o.shape for o in out] == [(1, 2, 3), (1, 2, 3)] and all(o.dtype == np.float32 for o in out)
        assert np.allclose(out[1][0, 1], app.colorize([np.array([[1.0]])])[0][0, 0])  # the global max: same colour
        assert 0.0 <= min(o.min() for o in out) and max(o.max() for o in out) <= 1.0


def test_graph_kinds():
    values = [v for _, v in app.graph_kinds()]
    assert values == ["complete", "swin", "logwin", "oneref"]
    assert "logwin" not in [v for _, v in app.graph_kinds(with_logwin=False)]
    assert app.graph_kinds(with_retrieval=True)[-1][1] == "retrieval"


def test_load_model_one_line(tmp_path):
    with pytest.raises(InputError, match="^cannot load model weights from .*nope.pth'"):
        app.load_model(str(tmp_path / "nope.pth"), "cpu")


@pytest.mark.slow
def test_dust3r_app_serves_a_page(tmp_path):
    """The dense demo served on 127.0.0.1 (non-blocking launch) answers HTTP and cleans its folders on close."""
    import dust3r.demo

    demo = dust3r.demo.build_demo(object(), "cpu", image_size=W, tmp_dir=str(tmp_path), silent=True)
    url = app.launch_demo(demo, server_port=app.free_port(7900), block=False, quiet=True)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"DUSt3R Demo" in response.read()
    finally:
        demo.close()
        demo.session_workspaces.close()
    assert os.listdir(tmp_path) == []
