"""No module of the packages grows past MAX_LINES lines unless the README of its folder says why.

A long module is allowed when ``README.md`` beside it has a line naming the file (e.g.
``- `sparse_ga.py`: one algorithm whose stages share ...``); that line is the place to say why it stays whole.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("croco", "dust3r", "mast3r", "dust3r_visloc")
MAX_LINES = 600


def _modules():
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            yield from sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _n_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _excused(path: Path) -> bool:
    """Whether the README.md of the module's folder has a line naming the file."""
    readme = path.parent / "README.md"
    if not readme.is_file():
        return False
    return any(path.name in line for line in readme.read_text(encoding="utf-8").splitlines())


def test_packages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"croco/models/blocks.py", "dust3r/model.py", "mast3r/model.py"} <= names


def test_no_module_over_the_limit_without_a_reason():
    too_long = [f"{p.relative_to(ROOT).as_posix()} ({n} lines)" for p in _modules()
                if (n := _n_lines(p)) > MAX_LINES and not _excused(p)]
    assert not too_long, (f"modules over {MAX_LINES} lines: split them by concept, or say why in the README.md of "
                          f"their folder (a line naming the file): {', '.join(too_long)}")


@pytest.mark.parametrize("readme_line, excused", [("- `big.py`: one algorithm, kept whole", True),
                                                  ("- `other.py`: something else", False)])
def test_readme_line_excuses_the_named_file(tmp_path, readme_line, excused):
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * (MAX_LINES + 1))
    assert _n_lines(big) == MAX_LINES + 1
    (tmp_path / "README.md").write_text(f"# folder\n{readme_line}\n")
    assert _excused(big) is excused
