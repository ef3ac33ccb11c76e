"""dust3r.datasets.frame_io (the file access every reader shares) and the reader contract over every class of the
registry (default ROOT, error naming the preprocessing script)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.frame_io import index_file, load_frame, load_npz, missing_root_error, require_keys
from dust3r.datasets.registry import READER_CLASSES, reader_class
from dust3r.utils.exr import write_exr

#: the positional / keyword arguments each reader needs besides ROOT (the recipe's)
READER_ARGS = {"Habitat": ((1_000_000,), {"split": "train"}), "Habitat512": ((1_000_000,), {"split": "train"}),
               "ARKitScenes": ((), {"split": "train"}), "ScanNetpp": ((), {"split": "train"}),
               "Co3d": ((), {"split": "train"}), "WildRgbd": ((), {"split": "train"}),
               "WildRGBD": ((), {"split": "train"})}


class TestLoadNpz:
    def test_round_trip(self, tmp_path):
        path = str(tmp_path / "a.npz")
        np.savez(path, K=np.eye(3), name=np.array("x"))
        arrays = load_npz(path)
        assert sorted(arrays) == ["K", "name"] and (arrays["K"] == np.eye(3)).all()

    def test_missing_file_is_file_not_found(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="b.npz"):
            load_npz(str(tmp_path / "b.npz"))

    def test_corrupt_file_is_os_error_naming_it(self, tmp_path):
        path = tmp_path / "c.npz"
        path.write_bytes(b"not a zip")
        with pytest.raises(OSError, match="c.npz"):
            load_npz(str(path))

    def test_require_keys(self):
        arrays = {"a": np.zeros(1), "b": np.ones(2)}
        b, a = require_keys(arrays, ("b", "a"), "f.npz")
        assert b.shape == (2,) and a.shape == (1,)
        with pytest.raises(OSError, match=r"'f.npz' lacks \['c'\].*rerun"):
            require_keys(arrays, ("a", "c"), "f.npz", hint="; rerun")


class TestLoadFrame:
    @pytest.fixture
    def stem(self, tmp_path):
        import cv2

        stem = str(tmp_path / "000")
        image = np.zeros((6, 8, 3), np.uint8)
        image[..., 0] = 200  # red in RGB
        cv2.imwrite(stem + ".png", image[..., ::-1])
        write_exr(stem + ".exr", np.full((6, 8), 2.5, np.float32))
        np.savez(stem + ".npz", intrinsics=np.eye(3), cam2world=np.eye(4))
        return stem

    def test_reads_the_triple(self, stem):
        image, depth, (K, pose) = load_frame(stem + ".png", stem + ".exr", stem + ".npz", ("intrinsics", "cam2world"))
        assert image.shape == (6, 8, 3) and image[0, 0, 0] == 200 and image[0, 0, 2] == 0
        assert depth.dtype == np.float32 and (depth == 2.5).all()
        assert K.dtype == np.float32 and pose.dtype == np.float32 and (pose == np.eye(4)).all()

    def test_depth_of_another_size(self, stem):
        write_exr(stem + ".exr", np.ones((3, 4), np.float32))
        with pytest.raises(OSError, match=r"000.exr.*\(3, 4\)"):
            load_frame(stem + ".png", stem + ".exr", stem + ".npz", ("intrinsics",))

    def test_camera_without_a_key(self, stem):
        with pytest.raises(OSError, match="000.npz.*lacks.*R_cam2world"):
            load_frame(stem + ".png", stem + ".exr", stem + ".npz", ("R_cam2world",))


def test_missing_root_error_names_path_and_script():
    err = missing_root_error("data/x/index.npz", "X", "preprocess_x.py")
    assert isinstance(err, FileNotFoundError)
    assert "data/x/index.npz" in str(err) and "datasets_preprocess/preprocess_x.py" in str(err)


def test_index_file_in_a_folder(tmp_path):
    class Reader:
        ROOT = str(tmp_path)
        preprocess_script = "preprocess_r.py"

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "all.npz").write_bytes(b"")
    assert index_file(Reader(), "all.npz", folder=str(tmp_path / "sub")) == str(tmp_path / "sub" / "all.npz")
    with pytest.raises(FileNotFoundError, match="Reader.*all.npz.*preprocess_r.py"):
        index_file(Reader(), "all.npz")


@pytest.mark.parametrize("name", sorted(READER_CLASSES))
def test_every_reader_defaults_to_its_processed_root(name, tmp_path, monkeypatch):
    cls = reader_class(name)
    assert issubclass(cls, BaseStereoViewDataset) and isinstance(cls.is_metric_scale, bool)
    assert cls.DEFAULT_ROOT == f"data/{READER_CLASSES[name]}_processed"
    assert os.path.isfile(os.path.join(os.path.dirname(__file__), "..", "..", "..", "datasets_preprocess",
                                       cls.preprocess_script))
    args, kwargs = READER_ARGS.get(name, ((), {}))
    monkeypatch.chdir(tmp_path)  # no data/ here: the default root is missing
    with pytest.raises(FileNotFoundError) as info:
        cls(*args, resolution=224, **kwargs)
    assert cls.DEFAULT_ROOT in str(info.value) and cls.preprocess_script in str(info.value)
