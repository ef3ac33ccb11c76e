"""Image-to-image retrieval scores (ASMK on the retrieval model's local features), as in MASt3R-SfM.

:class:`Retriever` loads a retrieval checkpoint and its codebook, then ``retriever(image_paths)`` returns the
(N, N) score matrix: every image queried against all of them (row i: image i as the query; not symmetric, because
the query side uses multiple assignment 5 and the database side 1).

Files (the original's layout)::

    <name>_<anything>.pth   {'model': head state_dict (no backbone keys), 'args': Namespace(pretrained,
                            freeze_backbone, prewhiten, hdims, residual, postwhiten, featweights, nfeat, imsize,
                            nclusters)}  -- read with torch.load(weights_only=True)
    <name>_codebook.pkl     asmk Codebook.state_dict() pickle -- read with an allow-list unpickler

Neither file can run code when loaded: a pickle that references anything but tensors / arrays and plain containers
is refused (:class:`dust3r.utils.checkpoint.UnsafeCheckpointError`). ``asmk`` and ``faiss`` are optional
dependencies, imported when a :class:`Retriever` is built.

Command line: ``python -m mast3r.retrieval.processor --model X.pth --input DIR_OR_LIST --outfile scores.npy``.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dust3r.utils.checkpoint import CheckpointError

from ..utils.misc import mkdir_for
from .model import RetrievalModel, default_device, extract_local_features, load_retrieval_checkpoint
from .safe_pickle import load_codebook_state

logger = logging.getLogger(__name__)

__all__ = ["ASMK_PARAMS", "require_asmk", "get_args_parser", "get_impaths", "get_impaths_from_imdir",
           "get_impaths_from_imdir_or_imlistfile", "codebook_path", "load_retrieval_checkpoint",
           "check_retrieval_model", "Retriever",
           "retrieval_similarity", "pairs_from_retrieval", "main"]

#: ASMK settings of the original (the codebook size comes from the checkpoint's ``nclusters``)
ASMK_PARAMS: Dict[str, Any] = {
    "index": {"gpu_id": None},
    "train_codebook": {"codebook": {"size": "64k"}},
    "build_ivf": {"kernel": {"binary": True}, "ivf": {"use_idf": False},
                  "quantize": {"multiple_assignment": 1}, "aggregate": {}},
    "query_ivf": {"quantize": {"multiple_assignment": 5}, "aggregate": {}, "search": {"topk": None},
                  "similarity": {"similarity_threshold": 0.0, "alpha": 3.0}},
}

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "PNG", "JPG", "JPEG")


def require_asmk():
    """``(asmk_method, codebook, index)`` modules of the optional ``asmk`` package (with faiss).

    Raises:
        ImportError: saying how to install them.
    """
    try:
        import faiss  # noqa: F401
        from asmk import asmk_method, codebook, index
    except ImportError as exc:
        raise ImportError(f"image retrieval needs the optional packages 'asmk' and 'faiss' ({exc}): "
                          "pip install faiss-cpu (or faiss-gpu), then asmk from https://github.com/jenicek/asmk "
                          "(pip install cython; pip install git+https://github.com/jenicek/asmk)") from None
    return asmk_method, codebook, index


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("Retrieval scores from a set of images", add_help=False, allow_abbrev=False)
    parser.add_argument("--model", type=str, required=True, help="path to the retrieval model .pth")
    parser.add_argument("--input", type=str, required=True,
                        help="directory containing images or a file containing a list of image paths")
    parser.add_argument("--outfile", type=str, required=True, help="numpy file where to store the score matrix")
    parser.add_argument("--device", type=str, default=None, help="torch device (default: cuda if available)")
    return parser


def get_impaths(imlistfile: str) -> List[str]:
    """Image paths listed in a text file, one a line (empty lines and ``#`` comments skipped)."""
    with open(imlistfile, encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if line and not line.startswith("#")]


def get_impaths_from_imdir(imdir: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[str]:
    """Image files of a folder (by extension), sorted by name."""
    if not os.path.isdir(imdir):
        raise FileNotFoundError(f"image folder not found: '{imdir}'")
    return [os.path.join(imdir, f) for f in sorted(os.listdir(imdir)) if f.endswith(tuple(extensions))]


def get_impaths_from_imdir_or_imlistfile(input_imdir_or_imlistfile: str) -> List[str]:
    if os.path.isfile(input_imdir_or_imlistfile):
        return get_impaths(input_imdir_or_imlistfile)
    return get_impaths_from_imdir(input_imdir_or_imlistfile)


def codebook_path(checkpoint: str) -> str:
    """The codebook next to a checkpoint, named as the original derives it: ``<a>_<b>_<c>.pth`` ->
    ``<a>_<b>_codebook.pkl``."""
    folder, name = os.path.split(os.fspath(checkpoint))
    return os.path.join(folder, "_".join(name.split("_")[:-1]) + "_codebook.pkl")


def _hdims(text: Any) -> List[int]:
    if isinstance(text, (list, tuple)):
        return [int(h) for h in text]
    return [int(h) for h in str(text).split("_")] if str(text) else []


def check_retrieval_model(path: str) -> None:
    """Check a retrieval checkpoint without building the model: asmk / faiss installed, the checkpoint and its
    codebook (:func:`codebook_path`) present, readable and safe (nothing in them is executed).

    Raises:
        ImportError: asmk / faiss missing; CheckpointNotFoundError, UnsafeCheckpointError, CheckpointError.
    """
    require_asmk()
    load_retrieval_checkpoint(path)
    load_codebook_state(codebook_path(path))


class Retriever:
    """ASMK retrieval with a MASt3R retrieval model (the original's class; MASt3R-SLAM subclasses it).

    Args:
        modelname: retrieval checkpoint ``.pth``; the codebook is :func:`codebook_path` of it.
        backbone: the MASt3R model whose encoder feeds the head (loaded from ``args.pretrained`` when None).
        device: torch device (default: cuda if available, else cpu).

    Attributes:
        model (RetrievalModel), imsize (int), device, asmk (``asmk.asmk_method.ASMKMethod`` with the codebook).
    """

    def __init__(self, modelname: str, backbone: Optional[torch.nn.Module] = None, device=None):
        asmk_method, codebook_mod, index_mod = require_asmk()
        modelname = os.fspath(modelname)
        logger.info("loading retrieval model from %s", modelname)
        ckpt = load_retrieval_checkpoint(modelname)
        args = ckpt["args"]
        device = torch.device(device) if device is not None else default_device()
        cb_path = codebook_path(modelname)
        codebook_state = load_codebook_state(cb_path)  # before anything heavy: a bad file fails fast
        if codebook_state["params"].get("size") != args["nclusters"]:
            raise CheckpointError(f"codebook '{cb_path}' has {codebook_state['params'].get('size')} clusters, the "
                                  f"checkpoint expects {args['nclusters']}")
        if backbone is None:
            from mast3r.model import AsymmetricMASt3R

            backbone = AsymmetricMASt3R.from_pretrained(args["pretrained"])
        self.model = RetrievalModel(backbone, freeze_backbone=args["freeze_backbone"], prewhiten=args["prewhiten"],
                                    hdims=_hdims(args["hdims"]), residual=bool(args.get("residual", False)),
                                    postwhiten=args["postwhiten"], featweights=args["featweights"],
                                    nfeat=args["nfeat"]).to(device)
        self.device = device
        result = self.model.load_state_dict(ckpt["state_dict"], strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("backbone")]
        if missing or result.unexpected_keys:
            raise CheckpointError(f"'{modelname}' does not fit its retrieval model: missing {missing[:5]}, "
                                  f"unexpected {result.unexpected_keys[:5]}")
        self.imsize = int(args["imsize"])

        params = {**ASMK_PARAMS, "train_codebook": {"codebook": {"size": args["nclusters"]}}}
        use_gpu = device.type == "cuda" and hasattr(__import__("faiss"), "StandardGpuResources")
        params["index"] = {"gpu_id": (device.index or 0) if use_gpu else None}
        codebook = codebook_mod.Codebook.initialize_from_state(
            codebook_state, index_factory=index_mod.initialize_index(**params["index"]))
        self.asmk = asmk_method.ASMKMethod(params, {}, codebook=codebook)

    def __call__(self, input_imdir_or_imlistfile, outfile: Optional[str] = None) -> np.ndarray:
        """Score matrix (N, N) (asmk's float dtype) of the images: a folder, a list file or a list of paths."""
        if isinstance(input_imdir_or_imlistfile, (str, os.PathLike)):
            impaths = get_impaths_from_imdir_or_imlistfile(os.fspath(input_imdir_or_imlistfile))
        else:
            impaths = list(input_imdir_or_imlistfile)
        if not impaths:
            raise ValueError("no image to retrieve from")
        logger.info("retrieval on %d images", len(impaths))
        feat, ids = extract_local_features(self.model, impaths, self.imsize, tocpu=True, device=self.device)
        feat, ids = feat.numpy(), ids.numpy()
        database = self.asmk.build_ivf(feat, ids)
        _, query_ids, ranks, ranked_scores = database.query_ivf(feat, ids)  # the same images as queries
        scores = np.empty_like(ranked_scores)
        scores[np.arange(ranked_scores.shape[0])[:, None], ranks] = ranked_scores  # undo the ranking
        if outfile is not None:
            np.save(mkdir_for(outfile), scores)
            logger.info("score matrix saved in %s", outfile)
        return scores


def retrieval_similarity(image_paths: Sequence[str], retrieval_checkpoint: str,
                         backbone: Optional[torch.nn.Module] = None, device=None) -> np.ndarray:
    """The (N, N) ASMK score matrix of ``image_paths`` (the retriever is freed afterwards)."""
    retriever = Retriever(retrieval_checkpoint, backbone=backbone, device=device)
    try:
        with torch.no_grad():
            return retriever(list(image_paths))
    finally:
        del retriever
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def pairs_from_retrieval(image_paths: Sequence[str], retrieval_checkpoint: str,
                         backbone: Optional[torch.nn.Module] = None, scene_graph: str = "retrieval-20-10",
                         device=None) -> Tuple[List[Tuple[int, int]], np.ndarray]:
    """Image pairs of a ``retrieval-Na-k`` scene graph, with the score matrix they come from.

    Returns:
        ``(edges, sim_mat)``: undirected edges ``(i, j)``, ``i < j``, each once (see
        :func:`dust3r.image_pairs.retrieval_edges`), and the (N, N) scores. ``make_pairs(views, scene_graph,
        sim_mat=sim_mat)`` gives the same pairs as view tuples.

    Raises:
        ValueError: ``scene_graph`` is not a retrieval graph.
    """
    from dust3r.image_pairs import retrieval_edges
    from dust3r.scene_graph import parse_scene_graph

    graph = parse_scene_graph(scene_graph, len(image_paths))
    if not graph.needs_similarity:
        raise ValueError(f"pairs_from_retrieval needs a 'retrieval-Na-k' scene graph, got {scene_graph!r}")
    sim = retrieval_similarity(image_paths, retrieval_checkpoint, backbone=backbone, device=device)
    edges, _ = retrieval_edges(sim, graph.key_images, graph.neighbours)
    return edges, sim


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(parents=[get_args_parser()], description=__doc__.split("\n")[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    Retriever(args.model, device=args.device)(args.input, outfile=args.outfile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
