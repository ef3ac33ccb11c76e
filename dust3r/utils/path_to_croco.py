"""Compatibility no-op.

The original code base added the croco checkout to ``sys.path`` when this module was imported.
Here ``croco``, ``dust3r`` and ``mast3r`` are regular installed packages, so old snippets that still
``import dust3r.utils.path_to_croco`` keep working and nothing is modified.
"""
