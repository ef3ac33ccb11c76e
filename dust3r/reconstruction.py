"""Non-UI reconstruction stages that the demos and the CLIs share (no gradio, no argparse).

* :func:`prepare_views`: image files -> ``load_images`` views (a single image is paired with a copy of itself)
  and distinct image names (:func:`unique_names`);
* :func:`reconstruct_dense`: images -> DUSt3R dense global alignment (``PairViewer`` / ``PointCloudOptimizer``);
* :class:`UserInputError`: a problem with what the user gave, reported as one line by every front end (an
  :class:`dust3r.inputs.InputError`, the error of the input checks the front ends run first).

Data flow (see ``docs/architecture.md``)::

    prepare_views -> make_pairs -> inference -> global_aligner(...).compute_global_alignment -> scene
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

from dust3r.inputs import InputError, check_image_size, read_image_size
from dust3r.utils.views import model_patch_size

logger = logging.getLogger(__name__)

__all__ = ["UserInputError", "unique_names", "fit_image_size", "prepare_views", "reconstruct_dense", "DENSE_DEFAULTS"]

#: the DUSt3R demo's dense global-alignment schedule
DENSE_DEFAULTS: Dict[str, Any] = {"schedule": "linear", "niter": 300, "lr": 0.01}


class UserInputError(InputError):
    """Something the user gave (files, options, checkpoint) that cannot be used; the message is one line."""


def unique_names(paths: Sequence[str], count: int) -> List[str]:
    """``count`` distinct image names from the base names of ``paths``.

    Repeated names get ``name_1.ext``, ``name_2.ext``...; indices past the end of ``paths`` (the copy made of a
    single image) reuse the last path. COLMAP and nerfstudio exports need distinct names.
    """
    names: List[str] = []
    taken = set()
    for k in range(count):
        stem, ext = os.path.splitext(os.path.basename(paths[min(k, len(paths) - 1)]))
        name, n = stem + ext, 1
        while name in taken:
            name = f"{stem}_{n}{ext}"
            n += 1
        names.append(name)
        taken.add(name)
    return names


def fit_image_size(image_size: int, image_wh: Sequence[Tuple[int, int]], patch_size: int = 16,
                   what: str = "image size") -> int:
    """The network size to use for images of sizes ``image_wh`` ((W, H) each, after EXIF orientation).

    ``image_size`` is checked and rounded to a multiple of ``patch_size`` (:func:`dust3r.inputs.check_image_size`);
    when an image would still get sides that are not multiples of ``patch_size`` (a square image is cut to 3/4
    of its width, so at sizes that are not multiples of ``4 * patch_size``), the nearest multiple of
    ``4 * patch_size`` is used instead, with a logged note.

    Raises:
        InputError: a size no rounding makes usable.
    """
    from dust3r.utils.image import compute_resize_crop

    size = check_image_size(image_size, patch_size, what)

    def usable(s: int) -> bool:
        finals = [compute_resize_crop(w, h, s, patch_size=patch_size).final_size for w, h in image_wh]
        return all(fw > 0 and fh > 0 and fw % patch_size == 0 and fh % patch_size == 0 for fw, fh in finals)

    if usable(size):
        return size
    step = 4 * patch_size
    fitted = max(step, int(round(size / step)) * step)
    if not usable(fitted):
        raise UserInputError(f"{what} {size} gives crops whose sides are not multiples of the patch size "
                             f"{patch_size}; use 512 or 224")
    logger.warning("Image size %d would crop some images (e.g. square ones) to sides that are not multiples of the "
                   "patch size %d: using %d instead.", size, patch_size, fitted)
    return fitted


def prepare_views(paths: Sequence[str], image_size: int, patch_size: int = 16,
                  verbose: bool = False) -> Tuple[List[Dict[str, Any]], List[str]]:
    """``load_images`` on ``paths`` at ``image_size``; one image is paired with a copy of itself.

    ``image_size`` goes through :func:`fit_image_size` (rounded so that every image gets a crop the model takes,
    with a logged note).

    Returns:
        ``(views, names)``: the view dicts (``img`` (1, 3, H, W), ``true_shape``, ``idx``, ``instance`` and the
        resize metadata) and one distinct name per view.

    Raises:
        InputError: a bad image size; UserInputError: an image that cannot be read.
    """
    from dust3r.utils.image import load_images

    try:
        sizes = [read_image_size(p) for p in paths]
    except InputError as exc:
        raise UserInputError(f"cannot read the images: {exc}") from None
    size = fit_image_size(image_size, sizes, patch_size)
    try:
        views = load_images(list(paths), size=size, verbose=verbose, patch_size=patch_size)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read the images: {exc}") from None
    if len(views) == 1:
        twin = copy.deepcopy(views[0])
        twin["idx"], twin["instance"] = 1, "1"
        views.append(twin)
    return views, unique_names(paths, len(views))


def reconstruct_dense(model: Any, paths: Sequence[str], device: str, image_size: int, scene_graph: str = "complete",
                      schedule: str = DENSE_DEFAULTS["schedule"], niter: int = DENSE_DEFAULTS["niter"],
                      lr: float = DENSE_DEFAULTS["lr"], verbose: bool = False):
    """Images -> dense global alignment (DUSt3R recipe); returns ``(scene, names)``.

    Two images give a ``PairViewer`` (no optimisation), more a ``PointCloudOptimizer`` initialised with the
    minimum spanning tree and optimised for ``niter`` steps with the ``schedule`` learning-rate schedule.

    Raises:
        UserInputError: unreadable image or a scene graph ``make_pairs`` refuses (before any inference).
    """
    from dust3r.cloud_opt import GlobalAlignerMode, global_aligner
    from dust3r.image_pairs import make_pairs
    from dust3r.inference import inference

    views, names = prepare_views(paths, image_size, model_patch_size(model), verbose)
    try:
        pairs = make_pairs(views, scene_graph=scene_graph, prefilter=None, symmetrize=True)
    except (ValueError, NotImplementedError) as exc:
        raise UserInputError(str(exc)) from None
    output = inference(pairs, model, device, batch_size=1, verbose=verbose)
    mode = GlobalAlignerMode.PointCloudOptimizer if len(views) > 2 else GlobalAlignerMode.PairViewer
    scene = global_aligner(output, device=device, mode=mode, verbose=verbose)
    if mode == GlobalAlignerMode.PointCloudOptimizer and int(niter) > 0:
        scene.compute_global_alignment(init="mst", niter=int(niter), schedule=schedule, lr=float(lr))
    return scene, names
