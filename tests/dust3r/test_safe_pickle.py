"""dust3r.utils.safe_pickle: pickles and .npz files with string arrays load, code-carrying ones are refused unrun."""
from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from dust3r.utils.checkpoint import UnsafeCheckpointError
from dust3r.utils.safe_pickle import safe_load_npz, safe_loads


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_npz_with_string_arrays_loads_like_numpy(tmp_path):
    path = tmp_path / "pairs.npz"
    scenes = np.array(["0001 0", "0002 1"], dtype=object)
    pairs = np.array([(0, 1, 2, 0.5)], dtype=[("scene", "i4"), ("a", "i4"), ("b", "i4"), ("score", "f4")])
    np.savez(path, scenes=scenes, pairs=pairs, plain=np.arange(5.0))
    got = safe_load_npz(path)
    ref = np.load(path, allow_pickle=True)
    assert sorted(got) == ["pairs", "plain", "scenes"]
    assert got["scenes"].tolist() == ref["scenes"].tolist() == ["0001 0", "0002 1"]
    assert got["pairs"].dtype == pairs.dtype and got["pairs"].tolist() == pairs.tolist()
    np.testing.assert_array_equal(got["plain"], np.arange(5.0))


def test_npz_object_array_carrying_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, evil, allow_pickle=True)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("names.npy", buf.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|nothing from the file"):
        safe_load_npz(path)
    assert not marker.exists()


def test_object_arrays_of_other_objects_are_refused():
    data = pickle.dumps(np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsafeCheckpointError, match="array of Python objects"):
        safe_loads(data, object_arrays=True)
    with pytest.raises(UnsafeCheckpointError, match="array of Python objects"):
        safe_loads(pickle.dumps(np.array(["x"], dtype=object)))  # strings only when asked for


def test_not_an_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(OSError, match="npz"):
        safe_load_npz(path)
    with pytest.raises(FileNotFoundError):
        safe_load_npz(tmp_path / "missing.npz")
