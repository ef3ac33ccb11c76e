"""The retrieval option of the MASt3R demo and of the reconstruction pipeline (pairs from the retrieval model)."""
from __future__ import annotations

import pytest

from dust3r.inputs import InputError
from dust3r.reconstruction import prepare_views

from .conftest import CHECKPOINT, IMAGES

pytest.importorskip("asmk")
pytest.importorskip("gradio")

DEFAULTS = dict(optim_level="refine", lr1=0.07, niter1=10, lr2=0.014, niter2=10, matching_conf_thr=5.0,
                shared_intrinsics=False)


def _validate(kind, winsize, refid, retrieval):
    from mast3r.demo import validate_run

    d = DEFAULTS
    return validate_run(IMAGES, d["optim_level"], d["lr1"], d["niter1"], d["lr2"], d["niter2"],
                        d["matching_conf_thr"], d["shared_intrinsics"], kind, winsize, False, refid, max_images=0,
                        uploaded=False, retrieval=retrieval)


def test_retrieval_graph_needs_a_retrieval_model():
    with pytest.raises(InputError, match="needs an image-retrieval model"):
        _validate("retrieval", 3, 2, retrieval=False)
    assert _validate("retrieval", 3, 2, retrieval=True).scene_graph == "retrieval-3-2"


def test_scene_graph_widgets():
    from mast3r.demo import set_scenegraph_options

    col, keys, cyclic, neighbours = set_scenegraph_options(["a"] * 30, False, 0, "retrieval")
    assert (col.visible, keys.visible, cyclic.visible, neighbours.visible) == (True, True, False, True)
    assert (keys.value, keys.maximum, neighbours.value, neighbours.maximum) == (20, 30, 10, 29)
    _, keys, _, neighbours = set_scenegraph_options(["a"] * 6, False, 0, "retrieval")
    assert (keys.value, neighbours.value) == (6, 5)


def test_check_retrieval_model(tmp_path):
    from mast3r.demo import check_retrieval_model

    check_retrieval_model(str(CHECKPOINT))
    lonely = tmp_path / CHECKPOINT.name
    lonely.write_bytes(CHECKPOINT.read_bytes())  # no codebook next to it
    with pytest.raises(InputError, match="image retrieval is not available: codebook .* not found"):
        check_retrieval_model(str(lonely))


def test_pipeline_pairs_come_from_the_retrieval_model(backbone, reference):
    from dust3r.image_pairs import retrieval_edges
    from mast3r.reconstruction import ReconstructError, make_view_pairs

    views, _ = prepare_views(IMAGES, 512)
    pairs = make_view_pairs(views, IMAGES, "retrieval-2-1", backbone, "cpu", retrieval_model=str(CHECKPOINT))
    ids = [(a["idx"], b["idx"]) for a, b in pairs]
    edges, _ = retrieval_edges(reference["scores"], 2, 1)
    assert ids == edges + [(j, i) for i, j in edges]
    with pytest.raises(ReconstructError, match="needs a retrieval model"):
        make_view_pairs(views, IMAGES, "retrieval-2-1", backbone, "cpu")
