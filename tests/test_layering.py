"""Layers point one way: croco <- dust3r <- dust3r_visloc <- mast3r. No upward import (not even inside a function), no import cycle,
and DUSt3R works with MASt3R's code absent."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("croco", "dust3r", "dust3r_visloc", "mast3r")  # each may import only itself and the packages before it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for pkg in LAYERS for p in sorted((ROOT / pkg).rglob("*.py"))}


def _enclosing_module(name: str, modules) -> str:
    """The longest prefix of a dotted name that is one of our modules ('' when none)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path, modules) -> Set[str]:
    """Our modules that ``module`` imports anywhere in its body (top level, functions, conditionals)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {_enclosing_module(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else _enclosing_module(target, modules))
    return found - {"", module}


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


class TestImportGraph:
    def test_graph_sees_imports_inside_functions_and_relative_imports(self, tmp_path):
        modules = {"dust3r", "dust3r.utils", "dust3r.utils.device", "dust3r.model", "mast3r", "mast3r.model"}
        path = tmp_path / "probe.py"
        path.write_text("from . import device\nfrom ..model import x\nimport numpy\n"
                        "def f():\n    if True:\n        from mast3r.model import AsymmetricMASt3R\n"
                        "class C:\n    def g(self):\n        import mast3r\n")
        assert _imports("dust3r.utils.probe", path, modules) == {"dust3r.utils.device", "dust3r.model",
                                                                 "mast3r.model", "mast3r"}
        graph = import_graph()
        assert len(graph) > 50
        assert "dust3r.model_loading" in graph["dust3r.model"]
        assert "croco.models.croco" in graph["dust3r.model"]
        assert "dust3r.model" in graph["mast3r.model"]

    def test_cycle_finder_finds_a_planted_cycle(self):
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
        assert _cycles(graph) == [["a", "b", "c"]]
        assert _cycles({"a": {"b"}, "b": set()}) == []

    def test_no_upward_import(self):
        upward = sorted(f"{src} imports {dst}" for src, dsts in import_graph().items() for dst in dsts
                        if LAYERS.index(dst.split(".")[0]) > LAYERS.index(src.split(".")[0]))
        assert not upward, "lower package imports an upper one:\n" + "\n".join(upward)

    def test_no_import_cycle(self):
        cycles = _cycles(import_graph())
        assert not cycles, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


# Run in a fresh interpreter: a meta-path finder installed before anything else makes every mast3r module
# unimportable, then every dust3r module is imported and DUSt3R checkpoints are loaded.
_WITHOUT_MAST3R = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys

    class NoMASt3R(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "mast3r" or name.startswith("mast3r."):
                raise ImportError(f"mast3r is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, NoMASt3R())
    import dust3r

    failed = {}
    names = []
    for info in pkgutil.walk_packages(dust3r.__path__, "dust3r.", onerror=lambda name: failed.setdefault(name, "?")):
        if info.name.endswith(".__main__"):
            continue
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"

    from dust3r.model_loading import load_pretrained
    loaded = [type(load_pretrained(p)).__name__ for p in sys.argv[1:3]]
    try:
        load_pretrained(sys.argv[3])
        mast3r_error = None
    except Exception as exc:
        mast3r_error = f"{type(exc).__name__}: {exc}"
    print(json.dumps(dict(names=names, failed=failed, loaded=loaded, mast3r_error=mast3r_error,
                          mast3r_loaded=sorted(m for m in sys.modules if m.split(".")[0] == "mast3r"))))
""")


def test_dust3r_imports_and_loads_without_mast3r(tiny_pth, data_dir):
    dust3r_pth = data_dir / "models" / "dust3r_tiny_linear.pth"
    dust3r_hf = data_dir / "models" / "dust3r_tiny_linear_hf"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_MAST3R, str(dust3r_pth), str(dust3r_hf),
                           str(tiny_pth("mast3r_tiny_a"))], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["names"]) > 30 and "dust3r.model_loading" in report["names"]
    assert report["failed"] == {}, "dust3r modules that need mast3r:\n" + json.dumps(report["failed"], indent=1)
    assert report["loaded"] == ["AsymmetricCroCo3DStereo", "AsymmetricCroCo3DStereo"]
    error = report["mast3r_error"]
    assert error is not None and error.startswith("CheckpointError")
    assert "'AsymmetricMASt3R'" in error and "package 'mast3r'" in error and "cannot be imported" in error
    assert report["mast3r_loaded"] == []


@pytest.mark.parametrize("entry", ["AsymmetricCroCo3DStereo", "AsymmetricMASt3R"])
def test_model_classes_declared_as_entry_points(entry):
    """setup.py declares the classes in the group the loader consults (the editable install must be current)."""
    from importlib import metadata

    from dust3r.model_loading import ENTRY_POINT_GROUP
    eps = metadata.entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, ())
    by_name = {ep.name: ep for ep in group}
    assert entry in by_name
    assert by_name[entry].load().__name__ == entry
