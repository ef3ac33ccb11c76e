"""The original's public names that downstream projects import stay importable from their original paths.

``tests/data/spec/downstream_imports.json`` (a copy of the survey in ``../shared/spec``) lists every
``module::name`` that 56 public projects built on croco / dust3r / mast3r import, with the number of projects
that use it. Each name of a module that exists must resolve as ``from module import name`` does (an attribute,
or a submodule). Modules that other issues will add are listed in :data:`EXPECTED_MISSING` with the issue; such a
module is skipped while it does not exist, and checked like the others as soon as it does.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

import pytest

SPEC_PATH = Path(__file__).resolve().parent / "data" / "spec" / "downstream_imports.json"
SPEC = json.loads(SPEC_PATH.read_text())
ENTRIES = [(entry[0].split("::")[0], entry[0].split("::")[1], int(entry[1])) for entry in SPEC["names"]]

#: package prefixes that do not exist yet -> the issue that adds them
EXPECTED_MISSING = {
}


#: names the architecture issue (10) adds to the survey: scripts drive the demo headless through them, and
#: research code calls the original's sparse-GA building blocks
ISSUE_10_NAMES = [
    ("dust3r.inference", "load_model"), ("dust3r.inference", "get_pred_pts3d"),
    ("dust3r.demo", "get_3D_model_from_scene"),
    ("mast3r.demo", "get_reconstructed_scene"), ("mast3r.demo", "SparseGAState"),
    ("mast3r.demo", "set_scenegraph_options"), ("mast3r.demo", "main_demo"),
    ("mast3r.cloud_opt.sparse_ga", "symmetric_inference"), ("mast3r.cloud_opt.sparse_ga", "forward_mast3r"),
    ("dust3r.cloud_opt.init_im_poses", "fast_pnp"), ("dust3r.cloud_opt.init_im_poses", "rigid_points_registration"),
    ("dust3r.cloud_opt.init_im_poses", "sRT_to_4x4"),
]


def _expected_missing(module: str) -> Optional[str]:
    """The issue that adds ``module`` (or one of its parent packages), if it is listed as not existing yet."""
    for prefix, issue in EXPECTED_MISSING.items():
        if module == prefix or module.startswith(prefix + "."):
            return issue
    return None


def _import(module: str):
    """``importlib.import_module(module)``, or None when ``module`` (or a parent package) is not found."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and (module == err.name or module.startswith(err.name + ".")):
            return None
        raise  # a module that exists but fails to import one of its own dependencies


def _resolves(mod, name: str) -> bool:
    """Whether ``from <mod> import <name>`` succeeds: an attribute, or a submodule of the package."""
    if hasattr(mod, name):
        return True
    if not hasattr(mod, "__path__"):
        return False
    return _import(f"{mod.__name__}.{name}") is not None


def _project_modules() -> set:
    return {m for m, _, _ in ENTRIES}


def test_spec_is_the_survey():
    """The copy holds the survey: 152 names from 56 projects, the most used ones first."""
    assert "56 downstream repositories" in SPEC["source"]
    assert len(ENTRIES) == 152
    counts = [n for _, _, n in ENTRIES]
    assert counts == sorted(counts, reverse=True)
    assert ENTRIES[0] == ("dust3r.inference", "inference", 32)
    assert all(m.split(".")[0] in ("croco", "dust3r", "mast3r") for m in _project_modules())


@pytest.mark.parametrize("module, name, n_repos", ENTRIES, ids=[f"{m}::{n}" for m, n, _ in ENTRIES])
def test_name_resolves(module, name, n_repos):
    issue = _expected_missing(module)
    mod = _import(module)
    if mod is None:
        if issue is None:
            pytest.fail(f"module {module} does not exist (imported by {n_repos} downstream projects for {name!r}); "
                        "add it, or list it in EXPECTED_MISSING with the issue that will add it")
        pytest.skip(f"{module} does not exist yet: {issue}")
    assert _resolves(mod, name), (
        f"`from {module} import {name}` fails ({n_repos} downstream projects use it)"
        + (f"; {module} has landed ({issue}) so its names must resolve" if issue else ""))


@pytest.mark.parametrize("module, name", ISSUE_10_NAMES, ids=[f"{m}::{n}" for m, n in ISSUE_10_NAMES])
def test_issue_10_name_resolves(module, name):
    assert _resolves(importlib.import_module(module), name), f"`from {module} import {name}` fails"


def test_expected_missing_is_not_stale():
    """Every prefix listed as missing still names a module of the survey."""
    modules = _project_modules()
    for prefix in EXPECTED_MISSING:
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix
