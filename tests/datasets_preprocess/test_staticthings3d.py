"""preprocess_staticthings3d on a fake raw StaticThings3D (tests/helpers/fake_raw/staticthings3d.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from datasets_preprocess import preprocess_staticthings3d as pre
from dust3r.datasets.staticthings3d import PAIRS_DTYPE
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw.staticthings3d import (CAMERAS, FRAMES, SCALE, make_fake_staticthings3d, view_index,
                                                   write_float3)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    fake = make_fake_staticthings3d(str(tmp_path_factory.mktemp("staticthings_raw")))
    out = tmp_path_factory.mktemp("staticthings_processed")
    return fake, out, pre.main(fake.root, None, str(out))


def test_float3_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_float3(str(tmp_path / "a.float3"), arr)
    assert (tmp_path / "a.float3").read_bytes()[:14] == b"float\n3\n4\n3\n2\n"  # dimensions innermost first
    np.testing.assert_array_equal(pre.read_float3(str(tmp_path / "a.float3")), arr)
    (tmp_path / "b.float3").write_bytes(b"PF\n")
    with pytest.raises(ValueError, match="b.float3"):
        pre.read_float3(str(tmp_path / "b.float3"))


def test_layout_of_the_original(processed):
    fake, out, status = processed
    assert status == 0
    for (sub, seq), scene in fake.scenes.items():
        for frame in FRAMES:
            for cam in CAMERAS:
                stem = out / "TRAIN" / sub / seq / cam / f"{frame:04d}"
                if (sub, seq, cam, f"{frame:04d}") == fake.broken:
                    assert not stem.with_suffix(".npz").exists()
                    continue
                k = view_index(frame, cam)
                assert stem.with_name(stem.name + "_clean.jpg").is_file()
                assert stem.with_name(stem.name + "_final.jpg").is_file()
                with np.load(stem.with_suffix(".npz")) as npz:
                    cam2world = npz["cam2world"]
                    K = npz["intrinsics"]
                np.testing.assert_allclose(cam2world[:3, :3], scene.cam2world[k][:3, :3], atol=1e-5)
                np.testing.assert_allclose(cam2world[:3, 3], SCALE * scene.cam2world[k][:3, 3], atol=1e-3)
                scale = 384 / 108 + 1e-8  # 192x108 rescaled to cover 512x384: 682x384
                np.testing.assert_allclose(K[0, 0], scale * scene.K[k][0, 0], rtol=1e-5)
                assert read_exr(stem.with_suffix(".exr")).shape == (384, 682)


def test_pairs_cover_every_two_views_of_a_sequence(processed):
    fake, out, _ = processed
    pairs = np.load(out / "staticthings_pairs.npy")
    assert pairs.dtype == PAIRS_DTYPE
    # 6 views per sequence -> 15 pairs; the broken view (B/0001 right 0007) loses 5
    assert (pairs["scene"] == b"A").sum() == 15 and (pairs["scene"] == b"B").sum() == 10
    broken = (pairs["scene"] == b"B") & (((pairs["cam1"] == b"r") & (pairs["im1"] == 7))
                                         | ((pairs["cam2"] == b"r") & (pairs["im2"] == 7)))
    assert not broken.any()


def test_precomputed_pairs_and_report(processed, tmp_path, caplog):
    fake, _, _ = processed
    rows = np.array([(b"A", 0, b"l", 6, b"r", 8), (b"B", 1, b"r", 7, b"l", 6)], dtype=PAIRS_DTYPE)
    np.save(tmp_path / "staticthings_pairs.npy", rows)
    with caplog.at_level(logging.INFO):
        assert pre.main(fake.root, str(tmp_path / "staticthings_pairs.npy"), str(tmp_path / "out")) == 0
    assert np.load(tmp_path / "out" / "staticthings_pairs.npy").tolist() == [rows[0].tolist()]
    assert "1 skipped" in caplog.text and "TRAIN/B/0001/right/0007" in caplog.text


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pre.main(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="intrinsics"):
        pre.main(str(tmp_path))
