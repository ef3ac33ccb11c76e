"""The original ``mast3r.image_pairs`` names: DUSt3R's pair builder, which also builds ``retrieval-Na-k`` graphs.

``make_pairs(imgs, scene_graph='complete', prefilter=None, symmetrize=True, sim_mat=None)`` is
:func:`dust3r.image_pairs.make_pairs`; ``sim_mat`` is the (N, N) score matrix of
:class:`mast3r.retrieval.processor.Retriever` for ``retrieval`` graphs.
"""
from dust3r.image_pairs import (_filter_edges_seq, filter_edges_seq, filter_pairs_seq,  # noqa: F401
                                make_pairs, sel)

from .retrieval.graph import make_pairs_fps  # noqa: F401

__all__ = ["make_pairs", "sel", "filter_pairs_seq", "filter_edges_seq", "make_pairs_fps"]
