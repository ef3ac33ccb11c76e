"""Image retrieval for MASt3R-SfM: which images of a large set to pair.

* :mod:`.model`: :class:`RetrievalModel`, the retrieval head on MASt3R's encoder (pre-whitening, projector,
  attention, post-whitening) and the local-feature selection :func:`how_select_local`;
* :mod:`.processor`: :class:`Retriever`, the (N, N) ASMK score matrix of a list of images, and
  :func:`pairs_from_retrieval`, the ``retrieval-Na-k`` pairs built from it;
* :mod:`.graph`: the original's ``make_pairs_fps`` / ``farthest_point_sampling`` names;
* :mod:`.safe_pickle`: the allow-list unpickler for the codebook file.

``asmk`` and ``faiss`` are optional: importing this package does not need them, building a :class:`Retriever` does.

Example::

    from mast3r.retrieval import pairs_from_retrieval
    ckpt = "checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric_retrieval_trainingfree.pth"
    edges, sim = pairs_from_retrieval(paths, ckpt, backbone=model, scene_graph="retrieval-20-10", device="cuda")
"""
from .graph import farthest_point_sampling, make_pairs_fps
from .model import RetrievalModel, Whitener, extract_local_features, how_select_local, weighted_spoc
from .processor import (Retriever, check_retrieval_model, codebook_path, load_retrieval_checkpoint,
                        pairs_from_retrieval, retrieval_similarity)
from .safe_pickle import load_codebook_state, safe_load_pickle

__all__ = ["RetrievalModel", "Whitener", "how_select_local", "weighted_spoc", "extract_local_features", "Retriever",
           "check_retrieval_model", "codebook_path", "load_retrieval_checkpoint", "retrieval_similarity",
           "pairs_from_retrieval", "farthest_point_sampling", "make_pairs_fps", "load_codebook_state",
           "safe_load_pickle"]
