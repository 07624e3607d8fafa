"""The import direction of DESIGN.md: data at the bottom; models/evaluate/explain; report/registry; top layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medml"
LAYER = {
    "data": 0,
    "fhir": 0,
    "errors": 0,
    "config": 0,
    "models": 1,
    "evaluate": 1,
    "explain": 1,
    "pgx": 1,
    "report": 2,
    "registry": 2,
    "workflow": 3,
    "imaging_workflow": 3,
    "demo": 3,
    "cli": 3,
    "cli_fhir": 3,
    "cli_pgx": 3,
    "cli_image": 3,
    "cli_audit": 3,
    "cli_service": 3,
    "service": 3,
    "monitor": 3,
    "scale": 3,
}


def _area(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medml."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("medml.")}
    return names


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    area = _area(path)
    if area == "__init__":
        return
    own = LAYER[area]
    for target in _imports(path):
        if target == area:
            continue
        assert LAYER[target] <= own, f"{path.relative_to(SRC)} ({area}) imports medml.{target}, a higher layer"
        if own in (1, 2):
            assert LAYER[target] < own, f"{area} must not import its peer medml.{target}"


def test_evaluate_imports_no_model_code() -> None:
    for path in (SRC / "evaluate").rglob("*.py"):
        assert "models" not in _imports(path), path


def test_importing_medml_is_cheap_and_does_nothing() -> None:
    code = (
        "import sys, medml, medml.data, medml.registry, medml.evaluate; "
        "heavy = [m for m in ('mlflow', 'torch', 'pyspark', 'lightgbm', 'optuna') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test files by basename (rootdir-relative, no packages): two of one name break collection."""
    names = [p.name for p in (SRC.parents[1] / "tests").rglob("*.py") if p.name != "conftest.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
