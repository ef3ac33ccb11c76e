"""What every preprocessing script shares: per-sample processing that reports and skips a broken raw sample,
the writer of a processed frame (``<stem>.jpg`` + ``<stem>.exr`` depth + ``<stem>.npz`` camera) and the pruning of
the pairs that use a frame that was not written."""
from __future__ import annotations

import logging
import os
import shutil
from typing import Callable, Iterable, List, Mapping, Sequence, Tuple, TypeVar, Union

import numpy as np
import PIL.Image
from tqdm.auto import tqdm

from dust3r.utils.exr import write_exr

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: errors a broken raw sample raises (missing file, undecodable image, bad metadata)
SAMPLE_ERRORS = (OSError, ValueError, KeyError, IndexError, EOFError)


def process_samples(items: Sequence[T], process: Callable[[T], None], desc: str,
                    name: Callable[[T], str] = str) -> Tuple[int, List[Tuple[str, str]]]:
    """Run ``process`` on every item with a progress bar; a broken sample is logged (naming it) and skipped.

    Args:
        items: the raw samples (paths, sequence names, ...).
        process: converts one sample; raises one of :data:`SAMPLE_ERRORS` when the sample is broken.
        desc: progress-bar label.
        name: how a sample is named in the report.

    Returns:
        ``(n_done, failures)`` with ``failures`` the ``(sample name, error message)`` of each skipped sample.
    """
    failures: List[Tuple[str, str]] = []
    for item in tqdm(items, desc=desc):
        try:
            process(item)
        except SAMPLE_ERRORS as err:
            failures.append((name(item), f"{type(err).__name__}: {err}"))
            logger.warning("skipping broken sample %s: %s", name(item), err)
    return len(items) - len(failures), failures


def report(n_done: int, failures: Iterable[Tuple[str, str]]) -> int:
    """Log a summary naming every skipped sample; the exit status for a script: 0 when at least one sample was
    written (skipped ones are reported, the rest is kept), 1 when none was."""
    failures = list(failures)
    logger.info("%d samples written, %d skipped", n_done, len(failures))
    for sample, why in failures:
        logger.info("  skipped %s (%s)", sample, why)
    return 0 if n_done > 0 else 1


def frame_done(stem: str) -> bool:
    """Whether the frame ``stem`` was written by an earlier run (its ``.npz``, written last, exists)."""
    return os.path.isfile(stem + ".npz")


def write_frame_files(stem: str, images: Mapping[str, Union[PIL.Image.Image, str]], depthmap: np.ndarray,
                      jpeg_quality: int, **camera: np.ndarray) -> None:
    """Write one processed frame: ``stem + suffix`` for each of ``images`` (a PIL image saved as JPEG at
    ``jpeg_quality``, or the path of a JPEG file copied byte for byte), ``stem.exr`` (float32 depth (H, W),
    non-finite -> 0) and, last (it marks the frame done, see :func:`frame_done`), ``stem.npz`` with ``camera``."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    for suffix, image in images.items():
        if isinstance(image, str):
            shutil.copyfile(image, stem + suffix)
        else:
            image.save(stem + suffix, quality=jpeg_quality)
    depthmap = np.asarray(depthmap, dtype=np.float32)
    write_exr(stem + ".exr", np.where(np.isfinite(depthmap), depthmap, 0.0).astype(np.float32))
    np.savez(stem + ".npz", **camera)


def keep_written_pairs(pairs: np.ndarray, frame_stems: Callable[[tuple], Iterable[str]],
                       what: str = "frame") -> np.ndarray:
    """The rows of ``pairs`` (P, ...) whose frames were all written (:func:`frame_done`), with a warning counting the
    pairs dropped. ``frame_stems`` maps a row (a tuple, ``pairs.tolist()`` order) to the stems of its frames."""
    done: dict = {}

    def written(stem: str) -> bool:
        if stem not in done:
            done[stem] = frame_done(stem)
        return done[stem]

    keep = np.array([all(written(stem) for stem in frame_stems(row)) for row in pairs.tolist()], dtype=bool)
    if (~keep).any():
        logger.warning("%d of %d pairs dropped: a %s of theirs was not written", int((~keep).sum()), len(pairs), what)
    return pairs[keep]
