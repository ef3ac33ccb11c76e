"""make_pairs.py (repository root): image folder -> pairs file, with every scene graph including retrieval."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from .conftest import CHECKPOINT, IMAGES

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_pairs_script", ROOT / "make_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(IMAGES):
        shutil.copyfile(path, folder / ("sub" if i == 5 else "") / Path(path).name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _read(path):
    lines = Path(path).read_text().splitlines()
    assert lines[:2] == ["# kapture format: 1.1", "# query_image, map_image, score"]
    return [tuple(line.split(", ")) for line in lines[2:]]


def test_image_list_skips_non_images(script, image_dir):
    names = script.get_image_list(str(image_dir))
    assert names == sorted(Path(p).name for p in IMAGES[:5]) + ["sub/f_exif.jpg"]


def test_swin_graph(script, image_dir, tmp_path):
    out = tmp_path / "out" / "pairs.txt"
    assert script.cli(["--dir", str(image_dir), "--scene_graph", "swin-1-noncyclic", "--output", str(out)]) == 0
    rows = _read(out)
    names = script.get_image_list(str(image_dir))
    expected = sorted({(names[i], names[j]) for k in range(5) for i, j in ((k, k + 1), (k + 1, k))})
    assert [(a, b) for a, b, _ in rows] == expected and {s for _, _, s in rows} == {"1.0"}


def test_retrieval_graph(script, image_dir, tmp_path, backbone, reference):
    out = tmp_path / "pairs.txt"
    rows = script.main(str(image_dir), "retrieval-2-1", str(out), backbone=backbone,
                       retrieval_model=str(CHECKPOINT), device="cpu")
    names = script.get_image_list(str(image_dir))
    assert names == [Path(p).name for p in IMAGES[:5]] + ["sub/f_exif.jpg"]  # same order as the fixture
    from dust3r.image_pairs import retrieval_edges
    edges, _ = retrieval_edges(reference["scores"], 2, 1)
    expected = sorted({(names[a], names[b]) for i, j in edges for a, b in ((i, j), (j, i))})
    assert [(a, b) for a, b, _ in _read(out)] == expected == [(a, b) for a, b, _ in rows]


def test_errors(script, image_dir, tmp_path, capsys):
    out = str(tmp_path / "p.txt")
    assert script.cli(["--dir", str(image_dir), "--output", out]) == 2  # default retrieval graph, no model
    assert "needs an image-retrieval model" in capsys.readouterr().err
    assert script.cli(["--dir", str(tmp_path / "nope"), "--scene_graph", "complete", "--output", out]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert script.cli(["--dir", str(image_dir), "--scene_graph", "swin-x", "--output", out]) == 2
    assert "unknown scene graph 'swin-x'" in capsys.readouterr().err
    assert not Path(out).exists()
