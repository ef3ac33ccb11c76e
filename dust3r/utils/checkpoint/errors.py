"""The one exception hierarchy of checkpoint I/O (see :mod:`dust3r.utils.checkpoint`)."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint path, file, directory or hub id cannot be used. The message names it and says why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint (or a file it needs) does not exist locally and could not be fetched.

    Both a :class:`CheckpointError` (hence a ``ValueError``) and a ``FileNotFoundError``.
    """

    def __init__(self, message: str):
        # OSError's multi-argument constructor would reformat the message; keep it as given.
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsafeCheckpointError(CheckpointError):
    """The file contains pickled code or classes outside the allow-list; it was refused before running anything."""
