"""The original's script names: kapture_mast3r_mapping.py (pycolmap mapping from a pairs file) and demo_glomap.py."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from dust3r.synthetic import OracleModel, make_scene, pose_errors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    scene = make_scene(8, 96, 128, seed=6, baseline=2 * np.pi * 2.8 * 0.35 / 8)
    root = tmp_path_factory.mktemp("kapture_mapping")
    scene.save_images(root / "images")
    lines = ["# kapture format: 1.1", "# query_image, map_image, score"]
    lines += [f"{scene.names[i]}, {scene.names[j]}, 0.9" for i in range(8) for j in range(i + 1, min(8, i + 3))]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return scene, root


def test_kapture_mapping_from_pairs_file(folder, tmp_path):
    scene, root = folder
    script = _script("kapture_mast3r_mapping")
    rc = script.main(["--weights", "unused.pth", "--dir", str(root / "images"), "--pairsfile_path",
                      str(root / "pairs.txt"), "-o", str(tmp_path / "out"), "--use_glomap_mapper", "--device", "cpu",
                      "--image_size", "128", "--min_len_track", "2", "--conf_thr", "1.5"], model=OracleModel(scene))
    assert rc == 0
    rec = pycolmap.Reconstruction(str(tmp_path / "out" / "reconstruction"))
    assert rec.num_reg_images() == 8
    c2w = np.zeros((8, 4, 4))
    for image in rec.images.values():
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        c2w[scene.names.index(image.name)] = np.linalg.inv(w2c)
    assert pose_errors(c2w, scene.cam2world)["rot_deg"] < 0.5


@pytest.mark.parametrize("extra, message", [
    (["--dense_matching"], "dense matching is not supported"),
    (["--skip_geometric_verification"], "not supported")])
def test_kapture_mapping_refuses_unsupported(folder, tmp_path, capsys, extra, message):
    _, root = folder
    rc = _script("kapture_mast3r_mapping").main(["--weights", "w.pth", "--dir", str(root / "images"),
                                                 "--pairsfile_path", str(root / "pairs.txt"), "-o",
                                                 str(tmp_path / "o"), *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_kapture_mapping_bad_pairs_file(folder, tmp_path, capsys):
    scene, root = folder
    bad = tmp_path / "pairs.txt"
    bad.write_text("img_000.png, nowhere.png, 1.0\n")
    rc = _script("kapture_mast3r_mapping").main(["--weights", "w.pth", "--dir", str(root / "images"),
                                                 "--pairsfile_path", str(bad), "-o", str(tmp_path / "o")],
                                                model=OracleModel(scene))
    assert rc == 2 and "unknown image: 'nowhere.png'" in capsys.readouterr().err
    bad.write_text("img_000.png\n")
    with pytest.raises(ValueError, match=r"pairs.txt:1: expected"):
        _script("kapture_mast3r_mapping").read_pairsfile(str(bad))


def test_demo_glomap_explains(capsys):
    assert _script("demo_glomap").main(["--glomap_bin", "glomap"]) == 2
    err = capsys.readouterr().err
    assert "--mapper colmap_global" in err and "no glomap binary" in err
