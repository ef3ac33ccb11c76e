"""The lazy reader tables of dust3r.datasets / mast3r.datasets: a reader module is imported when its class is
first used, a missing or broken one fails only then, and the MASt3R class combines the reader with
MASt3RBaseStereoViewDataset (correspondences) by the original's MRO."""
from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

import dust3r.datasets as d_datasets
import mast3r.datasets as m_datasets
from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.utils.geometry import geotrf, inv
from mast3r.datasets.base.mast3r_base_stereo_view_dataset import MASt3RBaseStereoViewDataset

MODULE = "dust3r.datasets.tiny_reader_for_tests"


def _tiny_module():
    """A reader module in the contract's shape: a plane seen by two cameras 0.2 apart."""
    mod = types.ModuleType(MODULE)

    class TinyReader(BaseStereoViewDataset):
        is_metric_scale = True

        def __init__(self, size=3, *args, ROOT="data/tiny", **kwargs):
            super().__init__(*args, **kwargs)
            self.ROOT, self.size = ROOT, size

        def __len__(self):
            return self.size

        def _get_views(self, idx, resolution, rng):
            K = np.float32([[60, 0, 47.5], [0, 60, 35.5], [0, 0, 1]])
            yy, xx = np.mgrid[0:72, 0:96]
            views = []
            for v in range(2):
                pose = np.eye(4, dtype=np.float32)
                pose[0, 3] = 0.2 * v
                img = np.stack(((xx * 2 + 40 * v) % 256, (yy * 3) % 256, (xx + yy) % 256), -1).astype(np.uint8)
                depth = np.full((72, 96), 3.0, np.float32)
                img, depth, K2 = self._crop_resize_if_necessary(img, depth, K.copy(), resolution, rng=rng)
                views.append(dict(img=img, depthmap=depth, camera_intrinsics=K2, camera_pose=pose, dataset="Tiny",
                                  label="plane", instance=f"{idx}_{v}"))
            return views

    TinyReader.__module__ = MODULE
    mod.TinyReader = TinyReader
    return mod


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(d_datasets.READER_CLASSES, "TinyReader", "tiny_reader_for_tests")
    monkeypatch.setitem(sys.modules, MODULE, _tiny_module())
    yield
    m_datasets._combine.cache_clear()


def test_mast3r_class_combines_reader_and_base(tiny):
    cls = m_datasets.TinyReader
    assert cls.__mro__[1:3] == (d_datasets.TinyReader, MASt3RBaseStereoViewDataset)
    assert m_datasets.TinyReader is cls and pickle.loads(pickle.dumps(cls)) is cls
    ds = cls(4, resolution=(64, 48), n_corres=32, nneg=0.5, aug_crop="auto", seed=9)
    assert len(ds) == 4 and ds.is_metric_scale and ds.ROOT == "data/tiny"
    v1, v2 = ds[0]
    assert v1["is_metric_scale"] and v1["corres"].shape == (32, 2) and v1["valid_corres"].sum() == 16
    # positives: the plane point seen at corres1 projects to corres2 (to pixel rounding), depth ~3 (plane)
    ok = v1["valid_corres"]
    x1, y1 = v1["corres"][ok].T
    pts = v1["pts3d"][y1, x1]
    assert np.allclose(pts[:, 2], 3.0, atol=3e-3)  # nearest-neighbour depth warp
    proj = geotrf(v2["camera_intrinsics"] @ inv(v2["camera_pose"])[:3], pts, norm=1, ncol=2)
    assert np.abs(proj - v2["corres"][ok]).max() <= 0.75
    # parse_dataset with the MASt3R namespace builds the MASt3R class
    built = m_datasets.parse_dataset("10 @ TinyReader(5, resolution=(64, 48), n_corres=8, transform=ColorJitter)")
    assert type(built.dataset) is cls and len(built) == 10 and built.dataset.size == 5
    assert type(d_datasets.parse_dataset("TinyReader(resolution=224)")) is d_datasets.TinyReader


def test_missing_reader_module_fails_only_when_used(monkeypatch):
    monkeypatch.setitem(d_datasets.READER_CLASSES, "Ghost", "ghost_reader_that_does_not_exist")
    with pytest.raises(ImportError, match="dust3r.datasets.ghost_reader_that_does_not_exist"):
        d_datasets.Ghost
    with pytest.raises(ImportError, match="ghost_reader_that_does_not_exist"):
        m_datasets.parse_dataset("Ghost(split='train')")
    with pytest.raises(AttributeError):
        d_datasets.NotADataset
    with pytest.raises(AttributeError):
        m_datasets.NotADataset


def test_broken_reader_module_reports_its_own_error(monkeypatch):
    monkeypatch.setitem(d_datasets.READER_CLASSES, "Broken", "broken_reader_for_tests")
    mod = types.ModuleType("dust3r.datasets.broken_reader_for_tests")  # imports, but lacks the class
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    with pytest.raises(AttributeError, match="Broken"):
        m_datasets.Broken


def test_packages_import_without_any_reader():
    """A fresh interpreter where every reader module import fails still imports both packages."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        from dust3r.datasets import READER_CLASSES\n"
        "        if name.rpartition('.')[2] in set(READER_CLASSES.values()) and name.startswith('dust3r.datasets.'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "import dust3r.datasets, mast3r.datasets\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dust3r.datasets import get_data_loader, BaseStereoViewDataset, ColorJitter, ImgNorm\n"
        "from mast3r.datasets import MASt3RBaseStereoViewDataset\n"
        "try:\n"
        "    mast3r.datasets.Co3d\n"
        "except ImportError as e:\n"
        "    print('lazy:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lazy: blocked dust3r.datasets.co3d" in out.stdout


def test_every_table_name_is_listed():
    for pkg in (d_datasets, m_datasets):
        assert set(d_datasets.READER_CLASSES) <= set(dir(pkg)) and set(d_datasets.READER_CLASSES) <= set(pkg.__all__)
    assert importlib.import_module("dust3r.datasets.utils.cropping").rescale_image_depthmap


#: is_metric_scale of the original's MASt3R classes (mast3r/datasets/__init__.py sets it per class)
ORIGINAL_METRIC = {"ARKitScenes": True, "BlendedMVS": False, "Co3d": False, "MegaDepth": False, "ScanNetpp": True,
                   "StaticThings3D": False, "Waymo": True, "WildRGBD": True}


@pytest.mark.parametrize("name", sorted(d_datasets.READER_CLASSES))
def test_reader_classes_get_the_mast3r_pipeline(name):
    try:
        cls = getattr(m_datasets, name)
    except ImportError as err:  # a reader still missing: lazy by design
        pytest.skip(f"reader not available: {err}")
    assert issubclass(cls, MASt3RBaseStereoViewDataset) and issubclass(cls, getattr(d_datasets, name))
    for method in ("__getitem__", "_crop_resize_if_necessary", "generate_crops_from_pair"):
        assert getattr(cls, method) is getattr(MASt3RBaseStereoViewDataset, method), method
    assert isinstance(cls.is_metric_scale, bool)
    if name in ORIGINAL_METRIC:
        assert cls.is_metric_scale is ORIGINAL_METRIC[name]
