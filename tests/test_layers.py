"""The import direction of DESIGN.md: data at the bottom; models/evaluate/explain; report/registry; pipelines; the
service and the CLI on top. The service never imports pipelines, report or training libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medml"
LAYER = {
    # the bottom: sources and stores
    "data": 0,
    "fhir": 0,
    "deid": 0,
    "pgx": 0,
    "errors": 0,
    "config": 0,
    # models and the computations on their outputs
    "models": 1,
    "evaluate": 1,
    "explain": 1,
    "vitals": 1,
    # what is written down about a model
    "report": 2,
    "registry": 2,
    # orchestration
    "pipelines": 3,
    "monitor": 3,
    "scale": 3,
    # the two front doors
    "service": 4,
    "cli": 4,
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


def test_the_service_imports_no_training_code() -> None:
    """DESIGN.md: what the service needs to serve a model is written into the bundle at training time."""
    for path in (SRC / "service").rglob("*.py"):
        assert not _imports(path) & {"pipelines", "report", "cli"}, path


def test_loading_the_service_loads_no_training_library() -> None:
    """Building the whole app, every router included, pulls in neither the pipelines nor optuna, matplotlib or the
    report (a subprocess: this test session has them loaded already)."""
    code = (
        "import sys, medml.service, medml.service.app, medml.service.routers.hooks, medml.service.routers.images, "
        "medml.service.routers.pages, medml.fhir.server; "
        "loaded = [m for m in ('optuna', 'matplotlib', 'medml.pipelines', 'medml.report', 'medml.cli', 'torch') "
        "if m in sys.modules]; print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""


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
