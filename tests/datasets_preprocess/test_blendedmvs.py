"""preprocess_blendedmvs on a fake raw BlendedMVS (tests/helpers/fake_raw/blendedmvs.py)."""
from __future__ import annotations

import logging
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets_preprocess import preprocess_blendedmvs as pre
from dust3r.datasets.blendedmvs import PAIRS_DTYPE, split_sequences
from dust3r.utils.exr import read_exr
from tests.helpers.fake_raw.blendedmvs import SEQUENCES, make_fake_blendedmvs, write_pfm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    raw = tmp_path_factory.mktemp("blendedmvs_raw")
    fake = make_fake_blendedmvs(str(raw))
    out = tmp_path_factory.mktemp("blendedmvs_processed")
    status = pre.main(str(raw), None, str(out))
    return fake, out, status


class TestPfmAndCams:
    def test_pfm_round_trip_flips_rows(self, tmp_path):
        depth = np.arange(12, dtype=np.float32).reshape(3, 4)
        write_pfm(str(tmp_path / "d.pfm"), depth)
        raw = np.fromfile(tmp_path / "d.pfm", dtype="<f4", offset=len(b"Pf\n4 3\n-1\n"))
        assert raw[:4].tolist() == [8, 9, 10, 11]  # stored bottom row first
        np.testing.assert_array_equal(pre.load_pfm_file(str(tmp_path / "d.pfm")), depth)

    def test_truncated_pfm_is_a_value_error(self, tmp_path):
        write_pfm(str(tmp_path / "d.pfm"), np.ones((3, 4), np.float32))
        with open(tmp_path / "d.pfm", "r+b") as f:
            f.truncate(20)
        with pytest.raises(ValueError, match="d.pfm"):
            pre.load_pfm_file(str(tmp_path / "d.pfm"))

    def test_cam_txt_extrinsic_is_world2cam(self, processed):
        fake, _, _ = processed
        seq = SEQUENCES[1]
        K, cam2world = pre.load_cam_txt(str(Path(fake.root) / seq / "cams" / "00000001_cam.txt"))
        np.testing.assert_allclose(K, fake.scenes[seq].K[1], atol=1e-6)
        np.testing.assert_allclose(cam2world, fake.scenes[seq].cam2world[1], atol=1e-6)

    def test_pair_txt(self, processed):
        fake, _, _ = processed
        pairs = pre.pairs_from_pair_txt(str(Path(fake.root) / SEQUENCES[0] / "cams" / "pair.txt"))
        assert [(a, b) for a, b, _ in pairs] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        assert pairs[0][2] == pytest.approx(50.0)


class TestMain:
    def test_layout_of_the_original(self, processed):
        fake, out, status = processed
        assert status == 0
        for seq, scene in fake.scenes.items():
            for i in range(scene.n_views):
                stem = out / seq / f"{i:08d}"
                if (seq, f"{i:08d}") == fake.broken:
                    assert not any(stem.with_suffix(e).exists() for e in (".jpg", ".exr", ".npz"))
                    continue
                with np.load(stem.with_suffix(".npz")) as cam:
                    assert sorted(cam.files) == ["R_cam2world", "intrinsics", "t_cam2world"]
                    np.testing.assert_allclose(cam["R_cam2world"], scene.cam2world[i][:3, :3], atol=1e-6)
                    np.testing.assert_allclose(cam["t_cam2world"], scene.cam2world[i][:3, 3], atol=1e-5)
                    # 160x120 -> 512x384: focal scaled by 3.2, pixel centres preserved
                    np.testing.assert_allclose(cam["intrinsics"][0, 0], 3.2 * scene.K[i][0, 0], rtol=1e-5)
                    np.testing.assert_allclose(cam["intrinsics"][:2, 2], 3.2 * (scene.K[i][:2, 2] + 0.5) - 0.5,
                                               atol=1e-4)
                depth = read_exr(stem.with_suffix(".exr"))
                assert depth.shape == (384, 512) and depth.dtype == np.float32
                # nearest-neighbour rescale of the rendered depth
                assert depth[::32, ::32].tolist() == scene.depth[i][(np.arange(0, 384, 32) / 3.2).astype(int)][
                    :, (np.arange(0, 512, 32) / 3.2).astype(int)].tolist()

    def test_pairs_from_pair_txt_without_the_broken_frame(self, processed):
        fake, out, _ = processed
        pairs = np.load(out / "blendedmvs_pairs.npy")
        assert pairs.dtype == PAIRS_DTYPE
        broken_seq, broken_frame = fake.broken
        high, low = split_sequences(broken_seq)
        in_broken = (pairs["seq_high"] == high) & (pairs["seq_low"] == low)
        assert in_broken.sum() == 3 and (~in_broken).sum() == 6  # 4 frames -> 6 pairs, 3 lost with frame 3
        assert not ((pairs["img1"] == int(broken_frame)) & in_broken).any()
        assert not ((pairs["img2"] == int(broken_frame)) & in_broken).any()

    def test_broken_sample_is_reported(self, tmp_path, caplog):
        raw = tmp_path / "raw"
        fake = make_fake_blendedmvs(str(raw), n_views=2)
        with caplog.at_level(logging.INFO):
            assert pre.main(str(raw), None, str(tmp_path / "out")) == 0
        assert "1 skipped" in caplog.text and fake.broken[1] in caplog.text and fake.broken[0] in caplog.text

    def test_precomputed_pairs_of_naver(self, tmp_path, processed):
        fake, _, _ = processed
        high, low = split_sequences(SEQUENCES[1])
        high0, low0 = split_sequences(SEQUENCES[0])
        rows = np.array([(high, low, 0, 3, 1.0), (high0, low0, 1, 3, 1.0), (high0, low0, 0, 2, 0.5)],
                        dtype=PAIRS_DTYPE)
        np.save(tmp_path / "blendedmvs_pairs.npy", rows)
        out = tmp_path / "out"
        assert pre.main(fake.root, str(tmp_path / "blendedmvs_pairs.npy"), str(out)) == 0
        kept = np.load(out / "blendedmvs_pairs.npy")
        assert kept.tolist() == [rows[0].tolist(), rows[2].tolist()]  # (seq0, 1, 3) touches the broken frame

    def test_missing_dir(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            pre.main(str(tmp_path / "nowhere"), None, str(tmp_path / "out"))
        with pytest.raises(FileNotFoundError, match="no BlendedMVS sequence"):
            pre.main(str(tmp_path), None, str(tmp_path / "out"))

    def test_script_and_original_name_run(self, tmp_path, monkeypatch):
        make_fake_blendedmvs(str(tmp_path / "raw"), n_views=2)
        script = "preprocess_blendedmvs.py"  # as a script from a checkout: its own process
        res = subprocess.run([sys.executable, str(ROOT / "datasets_preprocess" / script), "--blendedmvs_dir",
                              str(tmp_path / "raw"), "--output_dir", str(tmp_path / script)],
                             capture_output=True, text=True, cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr
        assert (tmp_path / script / "blendedmvs_pairs.npy").is_file()
        script = "preprocess_blendedMVS.py"  # the original's name: its __main__ in this process (saves a start-up)
        monkeypatch.setattr(sys, "argv", [script, "--blendedmvs_dir", str(tmp_path / "raw"), "--output_dir",
                                          str(tmp_path / script)])
        monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # leave this process's logging alone
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / "datasets_preprocess" / script), run_name="__main__")
        assert exit_info.value.code == 0
        assert (tmp_path / script / "blendedmvs_pairs.npy").is_file()
