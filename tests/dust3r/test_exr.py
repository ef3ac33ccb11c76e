"""dust3r.utils.exr: EXR depth maps with or without OpenCV's OpenEXR support."""
from __future__ import annotations

import numpy as np
import pytest

from dust3r.utils import exr


@pytest.fixture(params=["auto", "openexr"])
def backend(request, monkeypatch):
    if request.param == "openexr":  # the path taken where cv2 is built without OpenEXR
        monkeypatch.setattr(exr, "_cv2_has_openexr", lambda: False)
    return request.param


def test_float32_round_trip_is_exact(tmp_path, backend):
    depth = np.random.default_rng(0).uniform(0.1, 80, size=(7, 11)).astype(np.float32)
    depth[0, 0] = 0
    exr.write_exr(tmp_path / "d.exr", depth)
    back = exr.read_exr(tmp_path / "d.exr")
    assert back.dtype == np.float32 and back.shape == (7, 11)
    np.testing.assert_array_equal(back, depth)


def test_half_floats(tmp_path, backend):
    depth = np.linspace(0.5, 10, 24, dtype=np.float32).reshape(4, 6)
    exr.write_exr(tmp_path / "h.exr", depth, half=True)
    back = exr.read_exr(tmp_path / "h.exr")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, depth.astype(np.float16).astype(np.float32))


def test_rgb(tmp_path, backend):
    img = np.random.default_rng(1).uniform(size=(5, 4, 3)).astype(np.float32)
    exr.write_exr(tmp_path / "c.exr", img)
    np.testing.assert_array_equal(exr.read_exr(tmp_path / "c.exr"), img)


def test_errors_name_the_file(tmp_path, backend):
    with pytest.raises(FileNotFoundError, match="missing.exr"):
        exr.read_exr(tmp_path / "missing.exr")
    (tmp_path / "bad.exr").write_bytes(b"not an exr file at all")
    with pytest.raises(OSError, match="bad.exr"):
        exr.read_exr(tmp_path / "bad.exr")
    with pytest.raises(ValueError, match="shape"):
        exr.write_exr(tmp_path / "x.exr", np.zeros((2, 2, 2), np.float32))


def test_clear_error_without_any_backend(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_openexr(name, *args, **kwargs):
        if name == "OpenEXR":
            raise ImportError("No module named 'OpenEXR'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(exr, "_cv2_has_openexr", lambda: False)
    monkeypatch.setattr(builtins, "__import__", no_openexr)
    with pytest.raises(ImportError, match="pip install openexr"):
        exr.write_exr(tmp_path / "d.exr", np.zeros((2, 2), np.float32))
