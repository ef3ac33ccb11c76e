"""Shared fixtures: tiny parity models rebuilt from their manifests, written in every checkpoint form."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_weights

DATA = Path(__file__).resolve().parent / "data"

# the fixtures were produced with 2 threads; keep runs deterministic and comparable
torch.set_num_threads(int(os.environ.get("MAST3R_TEST_THREADS", "2")))


CUDA_SKIP_REASON = "needs a CUDA device (torch.cuda.is_available() is False)"


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests are skipped, with one reason, on a machine where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=CUDA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_rng():
    """Every test starts from the same global RNG state: unseeded draws give the same values on every run."""
    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_ckpts")


@pytest.fixture(scope="session")
def tiny_pth(tiny_ckpt_dir):
    """``tiny_pth(name)`` -> path of the official-format .pth of a tiny parity model (built once)."""
    def build(name: str) -> Path:
        path = tiny_ckpt_dir / f"{name}.pth"
        if not path.exists():
            tiny_weights.write_pth(name, path)
        return path
    return build


@pytest.fixture(scope="session")
def tiny_hf(tiny_ckpt_dir):
    """``tiny_hf(name)`` -> Hugging Face directory (as written by the original save_pretrained)."""
    def build(name: str) -> Path:
        path = tiny_ckpt_dir / f"{name}_hf"
        if not (path / "model.safetensors").exists():
            tiny_weights.write_hf(name, path)
        return path
    return build


@pytest.fixture(scope="session")
def tiny_model(tiny_pth):
    """``tiny_model(name)`` -> model loaded through the public from_pretrained path (cached per session)."""
    cache = {}

    def load(name: str):
        if name not in cache:
            from dust3r.model_loading import load_pretrained
            cache[name] = load_pretrained(tiny_pth(name))
        return cache[name]
    return load
