"""Retrieval fixtures: the original's outputs in ``tests/data/retrieval`` (see its README) and the tiny backbone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "data"
RETRIEVAL = DATA / "retrieval"
INDEX = json.loads((RETRIEVAL / "index.json").read_text())
CHECKPOINT = RETRIEVAL / INDEX["checkpoint"]
CODEBOOK = RETRIEVAL / INDEX["codebook"]
IMAGES = [str(DATA / "images" / name) for name in INDEX["images"]]


@pytest.fixture(scope="session")
def reference():
    return dict(np.load(RETRIEVAL / "retrieval.npz"))


@pytest.fixture(scope="session")
def backbone(tiny_model):
    """The fixture's backbone (``mast3r_tiny_a``, loaded through from_pretrained)."""
    return tiny_model(INDEX["backbone"]["pth"].removesuffix(".pth"))


@pytest.fixture(scope="session")
def retriever(backbone):
    pytest.importorskip("asmk")
    from mast3r.retrieval.processor import Retriever

    return Retriever(str(CHECKPOINT), backbone=backbone, device="cpu")


@pytest.fixture
def retrieval_files(tmp_path):
    """A writable copy of the checkpoint and codebook, named as the original pairs them."""
    ckpt = tmp_path / CHECKPOINT.name
    shutil.copyfile(CHECKPOINT, ckpt)
    shutil.copyfile(CODEBOOK, tmp_path / CODEBOOK.name)
    return ckpt, tmp_path / CODEBOOK.name
