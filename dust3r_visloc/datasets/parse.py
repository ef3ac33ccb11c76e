"""``--dataset`` strings such as ``"VislocCambridgeLandmarks('/data/Cambridge', subscene='ShopFacade',
pairsfile='APGeM-LM18_top50', topk=20)"`` read with :mod:`ast` against an allow-list of dataset classes, never
evaluated: anything but a call of an allowed class with literal arguments (``__import__('os')``, attribute
access, nested calls, names) is refused with a message quoting it.
"""
from __future__ import annotations

import ast
from typing import Any, Dict, Optional, Tuple

from dust3r.utils.checkpoint.constructor import literal_value, parse_constructor

__all__ = ["DATASET_CLASSES", "parse_dataset_string", "build_dataset"]

_MAX_CHARS = 10_000


def _classes() -> Dict[str, type]:
    from .aachen_day_night import VislocAachenDayNight
    from .cambridge_landmarks import VislocCambridgeLandmarks
    from .inloc import VislocInLoc
    from .sevenscenes import VislocSevenScenes

    return {cls.__name__: cls for cls in (VislocAachenDayNight, VislocInLoc, VislocSevenScenes,
                                          VislocCambridgeLandmarks)}


#: names a dataset string may call
DATASET_CLASSES: Tuple[str, ...] = ("VislocAachenDayNight", "VislocInLoc", "VislocSevenScenes",
                                    "VislocCambridgeLandmarks")


def parse_dataset_string(text: str) -> Tuple[str, tuple, Dict[str, Any]]:
    """``(class_name, args, kwargs)`` of a dataset string, arguments as Python literals.

    Raises:
        ValueError: not one call of an allowed class with literal (str, number, bool, None, tuple, list, dict)
            arguments; the message quotes the offending part.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("dataset string is empty")
    text = text.strip()
    if len(text) > _MAX_CHARS:
        raise ValueError(f"dataset string is too long ({len(text)} characters)")
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"dataset string is not valid Python syntax ({e.msg}): {text!r}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"dataset must be a call like VislocInLoc('/path', pairsfile='...', topk=20), got {text!r}")
    name = call.func.id
    if name not in DATASET_CLASSES:
        raise ValueError(f"{name!r} is not a dataset class; expected one of {list(DATASET_CLASSES)}")
    args = []
    for node in call.args:
        if isinstance(node, ast.Starred):
            raise ValueError(f"argument unpacking is not allowed in a dataset string: {text!r}")
        args.append(literal_value(node, text, f"positional argument {len(args) + 1} of {name}"))
    # the keywords go through the checkpoint constructor-string parser (same literal rules and messages)
    keywords_only = ast.unparse(ast.Call(func=call.func, args=[], keywords=call.keywords))
    kwargs = parse_constructor(keywords_only, DATASET_CLASSES)[1]
    return name, tuple(args), kwargs


def build_dataset(text: str, classes: Optional[Dict[str, type]] = None):
    """The dataset a ``--dataset`` string describes (see :func:`parse_dataset_string`).

    Args:
        classes: name -> class to build (default: the four benchmark datasets).
    """
    name, args, kwargs = parse_dataset_string(text)
    cls = (classes or _classes())[name]
    try:
        return cls(*args, **kwargs)
    except TypeError as e:  # wrong arity / unknown keyword: one line naming the class
        raise ValueError(f"bad arguments for {name}: {e}") from None
