"""Where a requirement table or a document names a test (``tests/x.py::test_y[param]``): does it exist? Shared by the
CDS Hooks and SQL-on-FHIR requirement maps and docs/security.md (imported by module name: tests/ is on sys.path).

Tests are found by reading the test files with ``ast``, not by collecting them, so a check runs in a moment.
"""

from __future__ import annotations

import ast
from pathlib import Path


def defined_tests(path: Path) -> tuple[set[str], set[str]]:
    """The test node names a file defines (``test_x``, ``TestY::test_x``) and its string constants (parameter ids)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {
                f"{node.name}::{m.name}"
                for m in node.body
                if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and m.name.startswith("test")
            }
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names, strings


def node_problem(node_id: str, root: Path) -> str | None:
    """Why a node id (``tests/x.py::test_y`` or ``tests/x.py::test_y[param id]``) names no test, or None."""
    path, sep, name = node_id.partition("::")
    if not sep or not path.startswith("tests/") or not path.endswith(".py"):
        return f"{node_id!r} is not tests/...py::test_name"
    file = root / path
    if not file.is_file():
        return f"{path} does not exist"
    name, _, param = name.partition("[")
    names, strings = defined_tests(file)
    if name not in names:
        return f"{path} defines no {name}"
    if param and param.removesuffix("]") not in strings:
        return f"{path}: no parameter id {param.removesuffix(']')!r} for {name}"
    return None
