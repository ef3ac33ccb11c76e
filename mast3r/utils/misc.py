"""Small helpers of the original ``mast3r.utils.misc`` (downstream code imports them from here)."""
from __future__ import annotations

import hashlib
import os

__all__ = ["mkdir_for", "hash_md5"]


def mkdir_for(f: str) -> str:
    """Create the folder of file path ``f`` (if any) and return ``f``."""
    folder = os.path.dirname(os.fspath(f))
    if folder:
        os.makedirs(folder, exist_ok=True)
    return f


def hash_md5(s: str) -> str:
    """Hex md5 digest of a string's UTF-8 bytes (the original's cache file names)."""
    return hashlib.md5(s.encode("utf-8")).hexdigest()
