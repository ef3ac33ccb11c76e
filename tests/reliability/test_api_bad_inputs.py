"""Bad inputs through the Python API (issue 11): one clear error naming the argument, before any model forward."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dust3r.inputs import InputError, check_image_files

from .support import SpyModel, write_image


# ---------------------------------------------------------------------------------------------------------------
# matching: non-finite descriptors are refused on every path (torch brute force and KD-tree), naming the argument
# ---------------------------------------------------------------------------------------------------------------
def _descriptors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, 8, generator=g)
    return a, a + 0.01 * torch.randn(16, 16, 8, generator=g)


@pytest.mark.parametrize("path_kw", [{"dist": "dot"}, {"dist": "l2"}, {}], ids=["torch-dot", "torch-l2", "kdtree"])
@pytest.mark.parametrize("bad", ["pts1", "pts2"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_fast_reciprocal_nns_refuses_non_finite(path_kw, bad, value):
    from mast3r.fast_nn import fast_reciprocal_NNs

    a, b = _descriptors()
    assert len(fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, **path_kw)[0]) >= 10  # the clean pair matches
    (a if bad == "pts1" else b)[3, 5, 0] = value
    with pytest.raises(ValueError, match=bad) as e:
        fast_reciprocal_NNs(a, b, subsample_or_initxy1=4, **path_kw)
    assert "finite" in str(e.value) or "NaN" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# the reconstruction pipeline refuses bad inputs before the model runs
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path):
    return [str(write_image(tmp_path / "imgs" / f"img_{i}.png", seed=i)) for i in range(3)]


def _pipeline(paths, forward_counter, **kw):
    from mast3r.reconstruction import run_sparse_pipeline

    before = forward_counter()
    with pytest.raises(ValueError) as e:
        run_sparse_pipeline(SpyModel(), paths, "cpu", image_size=64, verbose=False, **kw)
    assert forward_counter() == before, "the model ran before the bad input was refused"
    assert "\n" not in str(e.value)
    return str(e.value)


def test_pipeline_corrupt_image(tmp_path, images, forward_counter):
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert "broken.png" in _pipeline([*images, str(bad)], forward_counter)


def test_pipeline_bad_scene_graph(images, forward_counter):
    assert "swin-abc" in _pipeline(images, forward_counter, scene_graph="swin-abc")


def test_pipeline_known_K_with_last_row_zero(images, forward_counter):
    K = np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 0]])
    message = _pipeline(images, forward_counter, known_K={1: K})
    assert "last row" in message and "img_1.png" in message


def test_pipeline_known_K_with_absurd_principal_point(images, forward_counter):
    K = np.array([[50.0, 0, -99999], [0, 50, 1e12], [0, 0, 1]])
    assert "principal point" in _pipeline(images, forward_counter, known_K={0: K})


def test_known_intrinsics_of_duplicate_base_names_lists_the_candidates(tmp_path):
    from mast3r.reconstruction import read_known_intrinsics

    paths = [str(write_image(tmp_path / d / "same.png", seed=i)) for i, d in enumerate(("dupA", "dupB"))]
    k = tmp_path / "K.json"
    k.write_text(json.dumps({"same.png": {"fx": 50, "fy": 50, "cx": 32, "cy": 24}}))
    with pytest.raises(ValueError, match="ambiguous") as e:
        read_known_intrinsics(str(k), paths)
    assert paths[0] in str(e.value) and paths[1] in str(e.value)
    k.write_text(json.dumps({"dupB/same.png": {"fx": 50, "fy": 50, "cx": 32, "cy": 24}}))
    assert list(read_known_intrinsics(str(k), paths)) == [1]


# ---------------------------------------------------------------------------------------------------------------
# models and devices
# ---------------------------------------------------------------------------------------------------------------
def test_mast3r_from_pretrained_refuses_a_dust3r_checkpoint(tiny_pth):
    from mast3r.model import AsymmetricMASt3R

    path = tiny_pth("dust3r_tiny_linear")
    with pytest.raises(ValueError, match="AsymmetricCroCo3DStereo|DUSt3R") as e:
        AsymmetricMASt3R.from_pretrained(str(path))
    assert path.name in str(e.value)


def test_resolve_device_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from dust3r.utils.device import resolve_device

    with pytest.raises(ValueError, match="cuda") as e:
        resolve_device("cuda")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# odd but valid images load through the API
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_odd_modes_load(tmp_path, mode):
    from dust3r.utils.image import load_images

    path = write_image(tmp_path / "ünïcode 图" / f"img_{mode.replace(';', '')}.png", (80, 60), mode=mode)
    files = check_image_files(str(path.parent))
    views = load_images(files, size=64, verbose=False)
    assert views[0]["img"].shape == (1, 3, 48, 64) and views[0]["filepath"] == str(path)
    assert float(views[0]["img"].std()) > 0.1


def test_bad_images_named_by_the_api(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(InputError, match="a.png"):
        check_image_files(str(tmp_path))
