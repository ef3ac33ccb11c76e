"""The error type of the input checks and the small helpers they share."""
from __future__ import annotations

import os
from typing import Any

__all__ = ["InputError", "show_path"]


class InputError(ValueError):
    """A user input (file, folder, option string, calibration) that cannot be used.

    The message is one line that names the input and says what is wrong with it; front ends print it as
    ``error: <message>`` and exit with code 2.
    """


def show_path(path: Any) -> str:
    """A path quoted for a one-line message (``repr`` keeps unicode readable and shows stray blanks)."""
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else repr(path)
