"""Odd but valid inputs must WORK through ``python -m mast3r.reconstruct`` (one run with the tiny MASt3R model).

The run reads, from a folder with a non-ASCII name: an RGBA PNG with a non-ASCII file name, an 8-bit grayscale
PNG, a 16-bit grayscale PNG and an EXIF-rotated JPEG (stored landscape, Orientation=6), plus a HEIC file that a
machine without pillow-heif must skip with a warning naming it. ``--image-size 70`` is rounded to 64 with a
plain log line (no ``warnings.warn``). Each test below checks one of these rows on that run.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import numpy as np
import PIL.Image
import pytest

from .support import HEIC_HEAD, write_image

IMAGES = {"фото_rgba.png": ("RGBA", (64, 48)), "gray.png": ("L", (64, 48)), "gray16.png": ("I;16", (64, 48))}


def _exif_rotated_jpeg(path):
    """Stored 64x48 with EXIF Orientation=6 (rotate 90° clockwise to display): decoded as 48x64 portrait."""
    rng = np.random.default_rng(7)
    img = PIL.Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, tiny_model):
    import dust3r.utils.image as image
    from mast3r.reconstruct import main

    root = tmp_path_factory.mktemp("odd")
    folder = root / "données 照片"
    for seed, (name, (mode, size)) in enumerate(IMAGES.items()):
        write_image(folder / name, size, mode=mode, seed=seed)
    _exif_rotated_jpeg(folder / "exif6.jpg")
    (folder / "skip.HEIC").write_bytes(HEIC_HEAD)
    out = root / "résultats" / "out"

    records = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    stderr = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stderr(stderr):
            warnings.simplefilter("always")
            mp.setattr(image, "heif_available", lambda: False)  # as on a machine without pillow-heif
            code = main([str(folder), "--out", str(out), "--image-size", "70", "--scene-graph", "oneref-0",
                         "--niter1", "10", "--niter2", "5", "--formats", "cameras,depth", "--min-conf-thr", "0",
                         "--quiet"], model=tiny_model("mast3r_tiny_a"))
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
    log = "\n".join(r.getMessage() for r in records)
    return {"code": code, "out": out, "folder": folder, "log": log, "stderr": stderr.getvalue(), "warnings": caught}


def _cameras(run):
    return json.loads((run["out"] / "cameras.json").read_text(encoding="utf-8"))


def test_run_succeeds_with_every_odd_image(odd_run):
    assert odd_run["code"] == 0, odd_run["stderr"][-2000:]
    names = sorted(img["name"] for img in _cameras(odd_run)["images"])
    assert names == sorted(["exif6.jpg", *IMAGES])


@pytest.mark.parametrize("name", ["фото_rgba.png", "gray.png", "gray16.png"])
def test_colour_modes_and_unicode_names_give_depth(odd_run, name):
    stem = name.rsplit(".", 1)[0]
    depth = np.load(odd_run["out"] / "depth" / f"{stem}_depth.npy")
    assert depth.shape == (48, 64)  # original pixels (H, W)
    assert np.isfinite(depth).mean() > 0.5


def test_exif_rotated_image_is_portrait(odd_run):
    entry = next(img for img in _cameras(odd_run)["images"] if img["name"] == "exif6.jpg")
    assert (entry["width"], entry["height"]) == (48, 64)
    assert np.load(odd_run["out"] / "depth" / "exif6_depth.npy").shape == (64, 48)


def test_heic_skipped_with_a_warning_naming_it(odd_run):
    assert "skip.HEIC" in odd_run["log"] and "pillow-heif" in odd_run["log"]
    assert all(img["name"] != "skip.HEIC" for img in _cameras(odd_run)["images"])


def test_image_size_rounded_with_a_plain_note(odd_run):
    assert "70" in odd_run["log"] and "64" in odd_run["log"]
    assert all(img["network_width"] % 16 == 0 and img["network_height"] % 16 == 0
               for img in _cameras(odd_run)["images"])
    ours = [w for w in odd_run["warnings"] if issubclass(w.category, UserWarning)
            and ("/dust3r/" in w.filename or "/mast3r/" in w.filename or "patch" in str(w.message))]
    assert not ours, [str(w.message) for w in ours]


def test_sixteen_bit_keeps_its_high_byte(odd_run):
    from dust3r.utils.image import load_images

    path = odd_run["folder"] / "gray16.png"
    raw = np.asarray(PIL.Image.open(path)).astype(np.int64)
    view = load_images([str(path)], size=64, verbose=False)[0]
    u8 = np.rint((view["img"][0, 0].numpy() + 1) * 127.5)
    assert u8.std() > 20  # not saturated to white as a plain convert('RGB') would do
    assert abs(u8.mean() - (raw >> 8).mean()) < 3
