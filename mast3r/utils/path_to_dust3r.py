"""Compatibility no-op.

The original code base added the dust3r and croco checkouts to ``sys.path`` when this module was imported.
Here ``croco``, ``dust3r`` and ``mast3r`` are regular installed packages, so old snippets that still
``import mast3r.utils.path_to_dust3r`` keep working and nothing is modified.
"""
