"""The MASt3R sparse reconstruction pipeline, shared by the CLI (:mod:`mast3r.reconstruct`) and the browser demo.

No gradio and no argparse here::

    collect_images -> read_known_intrinsics -> run_sparse_pipeline -> export_scene
    (files / folders)  (JSON, original pixels)  (load_images -> make_pairs -> sparse_global_alignment)  (export_all)

Known intrinsics are given in **original-image pixels** (pixel centres at integer coordinates), either one shared
camera ``{"fx":..., "fy":..., "cx":..., "cy":...}`` (or ``{"K": 3x3}``, or a bare 3x3 list) or one entry per
image ``{"img_000.png": {...}, "sub/img_001.png": {...}}``. Keys are matched to the inputs by full path first,
then by base name when that name is unique among the inputs (an ambiguous name is an error listing the
candidates). Images without an entry keep estimated intrinsics.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dust3r.export import ALL_FORMATS
from dust3r.inputs import InputError, check_image_files, check_intrinsics_matrix
from dust3r.inputs import read_known_intrinsics as check_known_intrinsics
from dust3r.reconstruction import UserInputError, prepare_views
from dust3r.utils.views import model_patch_size, view_meta
from mast3r.cloud_opt.defaults import ALIGNMENT_DEFAULTS, OPTIM_LEVELS

__all__ = ["DEFAULT_MODEL", "ALL_FORMATS", "OPTIM_LEVELS", "ReconstructError", "SparseOptions", "collect_images",
           "read_known_intrinsics", "parse_formats", "check_retrieval_input", "make_view_pairs", "run_sparse_pipeline",
           "export_scene"]

DEFAULT_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"


class ReconstructError(UserInputError):
    """A user-facing problem with the inputs of a reconstruction (message printed as one line)."""


def _default(name: str):
    return field(default=ALIGNMENT_DEFAULTS[name])


@dataclass
class SparseOptions:
    """Options of the sparse global alignment; defaults from :data:`mast3r.cloud_opt.defaults.ALIGNMENT_DEFAULTS`.

    lr1 / niter1: coarse alignment (3D matching loss); lr2 / niter2: refinement (2D reprojection loss);
    optim_level: ``coarse`` (no refinement), ``refine`` or ``refine+depth`` (also optimises depth maps);
    matching_conf_thr: matches under this descriptor confidence are dropped;
    shared_intrinsics: one set of intrinsics for every image.
    """
    lr1: float = _default("lr1")
    niter1: int = _default("niter1")
    lr2: float = _default("lr2")
    niter2: int = _default("niter2")
    optim_level: str = _default("optim_level")
    matching_conf_thr: float = _default("matching_conf_thr")
    shared_intrinsics: bool = _default("shared_intrinsics")

    def __post_init__(self):
        if self.optim_level not in OPTIM_LEVELS:
            raise ReconstructError(f"optim level must be one of {OPTIM_LEVELS}, got {self.optim_level!r}")
        for name in ("niter1", "niter2"):
            if int(getattr(self, name)) < 0:
                raise ReconstructError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr1", "lr2"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ReconstructError(f"{name} must be a positive number, got {value}")
        if not math.isfinite(float(self.matching_conf_thr)):
            raise ReconstructError(f"matching_conf_thr must be a finite number, got {self.matching_conf_thr}")

    def aligner_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of :func:`mast3r.cloud_opt.sparse_ga.sparse_global_alignment`."""
        return dict(lr1=float(self.lr1), niter1=int(self.niter1), lr2=float(self.lr2),
                    niter2=0 if self.optim_level == "coarse" else int(self.niter2),
                    opt_depth="depth" in self.optim_level, shared_intrinsics=bool(self.shared_intrinsics),
                    matching_conf_thr=float(self.matching_conf_thr))


# ============================================================================================
# inputs
# ============================================================================================
def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image paths from files and folders (a folder contributes its image files sorted by name), each checked to
    decode (:func:`dust3r.inputs.check_image_files`).

    Raises:
        ReconstructError: one line naming the first bad input.
    """
    try:
        return check_image_files(list(inputs))
    except InputError as exc:
        raise ReconstructError(str(exc)) from None


def read_known_intrinsics(path: str, image_paths: Sequence[str],
                          image_sizes: Optional[Sequence[Tuple[int, int]]] = None) -> Dict[int, np.ndarray]:
    """``{image index: K (3, 3) in original pixels}`` from a JSON file (see the module docstring and
    :func:`dust3r.inputs.read_known_intrinsics`, which checks every matrix against its image).

    Raises:
        ReconstructError: one line naming the file and the entry.
    """
    try:
        return check_known_intrinsics(path, image_paths, image_sizes)
    except InputError as exc:
        raise ReconstructError(str(exc)) from None


def parse_formats(text: str) -> Tuple[str, ...]:
    """``"glb,ply"`` -> ``("glb", "ply")`` (``all``: every format of :data:`dust3r.export.ALL_FORMATS`)."""
    items = [f.strip().lower() for f in text.split(",") if f.strip()]
    if items == ["all"]:
        return tuple(ALL_FORMATS)
    bad = [f for f in items if f not in ALL_FORMATS]
    if bad or not items:
        raise ReconstructError(f"--formats: unknown format(s) {bad or text!r}; choose from {', '.join(ALL_FORMATS)}")
    return tuple(dict.fromkeys(items))


# ============================================================================================
# pipeline
# ============================================================================================
def _unique_keys(paths: Sequence[str], count: int) -> List[str]:
    """Distinct identifiers for the aligner (its caches and init dict are keyed by image name)."""
    keys: List[str] = []
    taken = set()
    for k in range(count):
        key = os.path.abspath(paths[min(k, len(paths) - 1)])
        while key in taken:
            key += "_2"
        keys.append(key)
        taken.add(key)
    return keys


def check_retrieval_input(path: str, flag: str = "--retrieval_model") -> str:
    """Check a retrieval checkpoint given on a command line or to the demo before anything is loaded (asmk / faiss
    installed, the checkpoint and its codebook present and safe); returns ``path``.

    Raises:
        InputError: one line saying why image retrieval is not available.
    """
    from mast3r.retrieval.processor import check_retrieval_model

    try:
        check_retrieval_model(path)
    except (ImportError, ValueError) as exc:  # CheckpointError is a ValueError
        raise InputError(f"{flag} {path}: image retrieval is not available: {exc}") from None
    return path


def make_view_pairs(views: Sequence[Dict[str, Any]], paths: Sequence[str], scene_graph: str, model: Any = None,
                    device: Any = None, retrieval_model: Optional[str] = None) -> List[Tuple[dict, dict]]:
    """The symmetrized ``(view1, view2)`` pairs of ``scene_graph``; ``retrieval-Na-k`` graphs rank the images with
    the retrieval checkpoint ``retrieval_model`` on ``model``'s encoder (:mod:`mast3r.retrieval`).

    ``paths`` are the image files of ``views`` (one image paired with its copy: the same path twice).

    Raises:
        ReconstructError: a bad scene graph, a retrieval graph without ``retrieval_model``, no pair.
    """
    from dust3r.image_pairs import make_pairs
    from dust3r.scene_graph import parse_scene_graph

    sim_mat = None
    try:
        if parse_scene_graph(scene_graph, len(views)).needs_similarity:
            if retrieval_model is None:
                raise ReconstructError(f"scene graph {scene_graph!r} needs a retrieval model (--retrieval_model)")
            from mast3r.retrieval.processor import retrieval_similarity

            files = [paths[min(i, len(paths) - 1)] for i in range(len(views))]
            sim_mat = retrieval_similarity(files, retrieval_model, backbone=model, device=device)
        pairs = make_pairs(views, scene_graph=scene_graph, prefilter=None, symmetrize=True, sim_mat=sim_mat)
    except ValueError as exc:  # includes CheckpointError
        raise ReconstructError(str(exc)) from None
    if not pairs:
        raise ReconstructError(f"scene graph {scene_graph!r} gives no image pairs for {len(views)} images")
    return pairs


def run_sparse_pipeline(model: Any, paths: Sequence[str], device: str, image_size: int = 512,
                        scene_graph: str = "complete", options: Optional[SparseOptions] = None,
                        cache_dir: Optional[str] = None, known_K: Optional[Mapping[int, np.ndarray]] = None,
                        verbose: bool = True, progress=None, retrieval_model: Optional[str] = None,
                        **aligner_kw: Any) -> Tuple[Any, List[str]]:
    """Images -> MASt3R sparse global alignment. Returns ``(scene, names)`` (a ``SparseGA``, image names).

    Args:
        model: AsymmetricMASt3R (or anything with its forward interface).
        paths: image files; one image is paired with a copy of itself.
        device: torch device for the network and the optimisation.
        image_size: long side after resize (512 / 224 for the official checkpoints; other sizes are rounded to
            a multiple of the patch size, with a note in the log).
        scene_graph: ``make_pairs`` scene graph (``complete``, ``swin-N[-noncyclic]``, ``logwin-N``, ``oneref-ID``,
            ``retrieval-Na-k`` with ``retrieval_model``).
        options: :class:`SparseOptions`.
        cache_dir: folder for the aligner's per-pair caches (a temporary folder, removed at the end, if None).
        known_K: ``{image index: K (3, 3) original pixels}`` (see :func:`read_known_intrinsics`).
        verbose: progress bars and logs.
        progress: optional ``callable(fraction, desc=...)`` (the demo's ``gr.Progress``).
        retrieval_model: retrieval checkpoint (``.pth`` with its ``_codebook.pkl``) for ``retrieval`` graphs.
        **aligner_kw: further options of ``sparse_global_alignment`` (e.g. ``subsample``).

    Raises:
        ReconstructError / UserInputError: unreadable images, a scene graph without pairs (before inference).
    """
    from mast3r.cloud_opt.sparse_ga import sparse_global_alignment

    opts = options or SparseOptions()
    report = progress or (lambda *a, **k: None)

    report(0.02, desc="loading images")
    views, names = prepare_views(paths, image_size, model_patch_size(model), verbose)
    keys = _unique_keys(paths, len(views))
    if retrieval_model is not None:
        report(0.05, desc="ranking the images (retrieval)")
    pairs = make_view_pairs(views, paths, scene_graph, model, device, retrieval_model)

    kw: Dict[str, Any] = dict(opts.aligner_kwargs(), device=device, verbose=verbose)
    if known_K:  # original-image pixels, converted by the aligner with each view's resize/crop metadata
        known_K = {int(i): _checked_K(K, i, views, paths) for i, K in known_K.items()}
        kw.update(known_intrinsics=known_K,
                  known_intrinsics_space="original")
    kw.update(aligner_kw)
    report(0.1, desc=f"matching {len(pairs)} pairs + alignment")
    with tempfile.TemporaryDirectory(prefix="mast3r_cache_") as tmp_cache:
        cache = cache_dir or tmp_cache
        os.makedirs(cache, exist_ok=True)
        scene = sparse_global_alignment(keys, pairs, cache, model, **kw)
    if getattr(scene, "views_meta", None) is None:
        scene.views_meta = [view_meta(v) for v in views]
    report(0.9, desc="alignment done")
    return scene, names


def _checked_K(K: Any, i: int, views: Sequence[Dict[str, Any]], paths: Sequence[str]) -> np.ndarray:
    """Known intrinsics of image ``i`` (original pixels) checked against that image's size, before any inference."""
    if not 0 <= int(i) < len(views):
        raise UserInputError(f"known intrinsics given for image index {i}, but there are {len(views)} images")
    H0, W0 = (int(v) for v in np.asarray(views[int(i)]["orig_shape"]).reshape(-1)[:2])
    return check_intrinsics_matrix(K, (W0, H0), f"known intrinsics of {paths[int(i)]}")


# ============================================================================================
# exports
# ============================================================================================
def export_scene(scene: Any, out_dir: str, formats: Sequence[str], names: Sequence[str],
                 min_conf_thr: float = ALIGNMENT_DEFAULTS["min_conf_thr"], clean_depth: bool = True,
                 tsdf_thresh: float = 0.0) -> Dict[str, str]:
    """Write ``formats`` of ``scene`` into ``out_dir`` with :func:`dust3r.export.export_all`.

    Layout: ``scene.glb``, ``scene.ply``, ``colmap/sparse/0/`` + ``colmap/images/`` + ``colmap.zip``,
    ``nerfstudio/transforms.json`` (+ images), ``cameras.json``, ``depth/<stem>_depth.npy|png`` (original size).
    """
    from dust3r.export import export_all

    files = export_all(scene, out_dir, formats=tuple(formats), min_conf_thr=float(min_conf_thr),
                       clean_depth=bool(clean_depth), tsdf_thresh=float(tsdf_thresh), names=list(names))
    return {k: str(v) for k, v in files.items()}


# ============================================================================================
# mapping of large image sets with pycolmap (MASt3R-SfM); kept apart from the sparse pipeline above
# ============================================================================================
#: ``--mapper`` choices: MASt3R's sparse global alignment, or pycolmap's global (GLOMAP) / incremental mapper
MAPPERS = ("sparse_ga", "colmap_global", "colmap_incremental")


def _relative_names(paths: Sequence[str]) -> Tuple[str, List[str]]:
    """``(root, names)``: the deepest common folder of ``paths`` and each path relative to it ('/' separated)."""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return root, [os.path.relpath(p, root).replace(os.sep, "/") for p in absolute]


def run_mapping_pipeline(model: Any, paths: Sequence[str], device: str, work_dir: str, image_size: int = 512,
                         scene_graph: str = "swin-5", mapper: str = "colmap_global", options: Any = None,
                         cache_dir: Optional[str] = None, known_K: Optional[Mapping[int, np.ndarray]] = None,
                         verbose: bool = True, progress=None, retrieval_model: Optional[str] = None,
                         pairs: Optional[Sequence[Any]] = None) -> Tuple[Any, List[str], Any]:
    """Images -> MASt3R matches on a pair graph -> COLMAP database -> pycolmap mapper.

    Returns ``(scene_data, names, result)``: a :class:`dust3r.export.SceneData` of the registered images (for
    :func:`export_scene`), their names, and the :class:`mast3r.colmap.MappingResult` (database, model folder,
    per-view poses). See :mod:`mast3r.colmap.pipeline`.

    Args:
        model, paths, device, image_size, known_K, verbose, progress, retrieval_model: as :func:`run_sparse_pipeline`.
        work_dir: the database and the mapper's models are written there.
        scene_graph: pair graph (``swin-N``, ``logwin-N``, ``complete``, ``retrieval-Na-k``...), unless ``pairs``.
        mapper: ``colmap_global`` or ``colmap_incremental``.
        options: :class:`mast3r.colmap.MappingOptions` (its ``mapper`` is set from ``mapper``).
        cache_dir: persistent match cache (a later run with the same model, images and options reuses it).
        pairs: explicit ``(i, j)`` image pairs (any source, e.g. a retrieval pairs file); overrides ``scene_graph``.

    Raises:
        ReconstructError: bad inputs (duplicate images, no pairs, an unknown mapper); MappingError: nothing mapped.
    """
    import dataclasses

    from mast3r.colmap import MappingOptions, run_colmap_mapping

    if mapper not in MAPPERS[1:]:
        raise ReconstructError(f"mapper must be one of {MAPPERS[1:]} here, got {mapper!r}")
    opts = dataclasses.replace(options or MappingOptions(), mapper=mapper.split("_", 1)[1])
    if len(set(os.path.abspath(p) for p in paths)) != len(paths) or len(paths) < 2:
        raise ReconstructError(f"mapping needs at least 2 distinct images, got {len(paths)} path(s) "
                               f"({len(set(os.path.abspath(p) for p in paths))} distinct)")
    report = progress or (lambda *a, **k: None)
    report(0.02, desc="loading images")
    views, names = prepare_views(paths, image_size, model_patch_size(model), verbose)
    root, rel = _relative_names(paths)
    if pairs is None:
        pairs = make_view_pairs(views, paths, scene_graph, model, device, retrieval_model)
    try:
        result = run_colmap_mapping(model, views, rel, pairs, work_dir, cache_dir=cache_dir, image_dir=root,
                                    device=device, options=opts, known_K=known_K, verbose=verbose, progress=progress)
    except ValueError as exc:
        raise ReconstructError(str(exc)) from None
    keep = [k for k in range(len(views)) if result.scene.registered[k]]
    return result.scene.to_scene_data(views, names), [names[k] for k in keep], result
