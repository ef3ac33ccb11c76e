"""What every preprocessing script shares: per-sample processing that reports and skips a broken raw sample."""
from __future__ import annotations

import logging
from typing import Callable, Iterable, List, Sequence, Tuple, TypeVar

from tqdm.auto import tqdm

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
