"""datasets_preprocess._common: broken samples reported and skipped, the processed-frame writer, pair pruning."""
from __future__ import annotations

import logging

import numpy as np
import PIL.Image
import pytest

from datasets_preprocess._common import frame_done, keep_written_pairs, process_samples, report, write_frame_files
from dust3r.datasets.frame_io import load_frame


def test_process_samples_skips_and_names_broken_samples(caplog):
    done = []

    def process(item: int) -> None:
        if item == 2:
            raise ValueError("bad metadata")
        done.append(item)

    with caplog.at_level(logging.WARNING):
        n_done, failures = process_samples([1, 2, 3], process, desc="t", name=lambda i: f"sample{i}")
    assert n_done == 2 and done == [1, 3]
    assert failures == [("sample2", "ValueError: bad metadata")]
    assert any("sample2" in r.getMessage() for r in caplog.records)
    assert report(n_done, failures) == 0 and report(0, failures) == 1


def test_write_frame_files_round_trip(tmp_path):
    stem = str(tmp_path / "scene" / "0001")
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, 8:] = (0, 0, 255)
    depth = np.full((12, 16), 3.0, np.float32)
    depth[0, 0] = np.nan
    assert not frame_done(stem)
    write_frame_files(stem, {".jpg": PIL.Image.fromarray(rgb)}, depth, 95, intrinsics=np.eye(3), cam2world=np.eye(4))
    assert frame_done(stem)
    image, loaded, (K, pose) = load_frame(stem + ".jpg", stem + ".exr", stem + ".npz", ("intrinsics", "cam2world"))
    assert np.abs(image.astype(int) - rgb).mean() < 8  # JPEG
    assert (image[:, 12, 2] > 200).all() and (image[:, 2] < 40).all()  # RGB order kept: blue right, black left
    assert loaded[0, 0] == 0 and (loaded.ravel()[1:] == 3).all()  # non-finite depth -> invalid
    assert (K == np.eye(3)).all() and (pose == np.eye(4)).all()


def test_write_frame_files_copies_a_jpeg_source(tmp_path):
    src = tmp_path / "raw.jpg"
    PIL.Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(src)
    stem = str(tmp_path / "out")
    write_frame_files(stem, {"_a.jpg": str(src)}, np.ones((4, 4)), 80, intrinsics=np.eye(3))
    assert (tmp_path / "out_a.jpg").read_bytes() == src.read_bytes()


def test_keep_written_pairs_drops_pairs_of_missing_frames(tmp_path, caplog):
    for name in ("a", "b"):
        np.savez(str(tmp_path / name) + ".npz", x=np.zeros(1))
    pairs = np.array([(0, 1), (0, 2), (1, 0)])
    names = ["a", "b", "c"]
    with caplog.at_level(logging.WARNING):
        kept = keep_written_pairs(pairs, lambda row: [str(tmp_path / names[i]) for i in row], what="image")
    assert kept.tolist() == [[0, 1], [1, 0]]
    assert any("1 of 3 pairs dropped: a image" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("dtype", [np.dtype([("s", "S1"), ("i", "<u2"), ("j", "<u2")])])
def test_keep_written_pairs_on_structured_rows(tmp_path, dtype):
    np.savez(str(tmp_path / "A_1") + ".npz", x=np.zeros(1))
    np.savez(str(tmp_path / "A_2") + ".npz", x=np.zeros(1))
    pairs = np.array([(b"A", 1, 2), (b"A", 1, 3)], dtype=dtype)
    kept = keep_written_pairs(pairs, lambda row: [str(tmp_path / f"{row[0].decode()}_{k}") for k in row[1:]])
    assert kept.dtype == dtype and kept.tolist() == [(b"A", 1, 2)]
