"""Map a function over many inputs with a pool of threads or processes, with a progress bar.

The original's names (:func:`parallel_threads`, :func:`parallel_processes`, :func:`starcall`,
:func:`starstarcall`) and calling convention are kept: downstream preprocessing scripts use them.
"""
from __future__ import annotations

import itertools
import multiprocessing
from multiprocessing.dummy import Pool as ThreadPool
from typing import Any, Callable, Iterable, List, Tuple

from tqdm.auto import tqdm

__all__ = ["parallel_threads", "parallel_processes", "starcall", "starstarcall"]


def starcall(fn_args: Tuple[Callable, Any]) -> Any:
    """``function(*args)`` for a ``(function, args)`` tuple (a picklable top-level helper for process pools)."""
    function, args = fn_args
    return function(*args)


def starstarcall(fn_args: Tuple[Callable, Any]) -> Any:
    """``function(**kwargs)`` for a ``(function, kwargs)`` tuple."""
    function, kwargs = fn_args
    return function(**kwargs)


def _resolve_workers(workers: int) -> int:
    """``workers <= 0`` counts back from the number of CPUs (0 = all of them, -1 = all but one...), at least 1."""
    if workers > 0:
        return workers
    return max(1, multiprocessing.cpu_count() + workers)


def parallel_threads(function: Callable, args: Iterable, workers: int = 0, star_args: bool = False,
                     kw_args: bool = False, front_num: int = 1, Pool=ThreadPool, **tqdm_kw) -> List[Any]:
    """``[function(a) for a in args]`` computed by a pool, results in the order of ``args``.

    Args:
        function: what to call on each element.
        args: the inputs (any iterable).
        workers: pool size; ``<= 0`` counts back from the number of CPUs. With one worker everything runs in
            this thread, in order.
        star_args: call ``function(*a)`` instead of ``function(a)``.
        kw_args: call ``function(**a)``.
        front_num: the first ``front_num`` elements run sequentially in this thread before the pool starts
            (an error in ``function`` then surfaces with a plain traceback).
        Pool: pool class (``multiprocessing.dummy.Pool`` threads by default).
        **tqdm_kw: passed to the progress bar (``desc``, ``disable``...).
    Returns:
        the results, one per element of ``args``.
    """
    if star_args and kw_args:
        raise ValueError("parallel_threads: star_args and kw_args are mutually exclusive")
    workers = _resolve_workers(workers)
    if star_args:
        function, wrap = starcall, (lambda a, f=function: (f, a))
    elif kw_args:
        function, wrap = starstarcall, (lambda a, f=function: (f, a))
    else:
        wrap = None
    try:
        total = len(args)  # type: ignore[arg-type]
    except TypeError:
        total = None
    items = iter(args)
    if wrap is not None:
        items = map(wrap, items)
    if workers == 1:
        return [function(a) for a in tqdm(items, total=total, **tqdm_kw)]
    front = [function(a) for a in itertools.islice(items, max(0, front_num))]
    rest = list(items)
    if not rest:
        return front
    with Pool(workers) as pool:
        out = list(tqdm(pool.imap(function, rest), total=len(rest), **tqdm_kw))
    return front + out


def parallel_processes(*args, **kwargs) -> List[Any]:
    """:func:`parallel_threads` with a pool of processes (``function`` and the inputs must be picklable)."""
    kwargs["Pool"] = multiprocessing.Pool
    return parallel_threads(*args, **kwargs)
