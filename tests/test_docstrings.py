"""A docstring on every public function, method and class of src/medchain (STYLE.md).

Public means a name without a leading underscore, at module level or inside a
public class, in every package. Left out: dunders such as `__init__` (their class
says what they build), methods of a private class, and anything defined inside
a function (the enclosing function's docstring covers it). For a FastAPI route
the docstring is also the route's OpenAPI description.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medchain"


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def undocumented(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, qualified name) of each public definition in the module without a docstring."""

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[int, str]]:
        for node in body:
            if not isinstance(node, Definition) or node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                yield node.lineno, prefix + node.name
            if isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.")

    yield from walk(tree.body, "")


def missing_docstrings(root: Path) -> list[str]:
    """`path::name` of every public definition under `root` without a docstring."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for _line, name in undocumented(ast.parse(path.read_text(), str(path))):
            found.append(f"{rel}::{name}")
    return found


def test_every_public_definition_has_a_docstring() -> None:
    missing = list(missing_docstrings(SRC))
    assert not missing, "public definitions without a docstring:\n" + "\n".join(missing)


def test_checker_finds_what_lacks_a_docstring_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "planted.py").write_text(
        '"""A module."""\n'
        "def bare(): pass\n"
        "async def bare_async(): pass\n"
        "def _private(): pass\n"
        "def documented():\n"
        '    """Says why."""\n'
        "    def nested(): pass\n"
        "class Bare:\n"
        "    def __init__(self): pass\n"
        "    def method(self): pass\n"
        "    @property\n"
        "    def prop(self): return 1\n"
        "    class Inner: pass\n"
        "class _Hidden:\n"
        "    def method(self): pass\n"
    )
    assert missing_docstrings(tmp_path) == [
        "planted.py::bare",
        "planted.py::bare_async",
        "planted.py::Bare",
        "planted.py::Bare.method",
        "planted.py::Bare.prop",
        "planted.py::Bare.Inner",
    ]
