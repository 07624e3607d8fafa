"""Run the SQL-on-FHIR v2 conformance suite (its JSON test files) through :func:`medml.fhir.view.run_view`.

Each file's resources go into a fresh in-memory :class:`FhirStore`; each test's view is compiled and run as any
view is. Rows are compared as the suite's runners do: as a multiset (SQL gives no row order), each row by column
name, numbers by value, collections in order. ``expectColumns`` checks the column names in order.

``expectError`` passes on an error of a kind the specification names: the view rejected as invalid
(:class:`InvalidViewError`), or the data breaking a rule the specification names when the view runs
(:class:`ViewEvaluationError`: several values for a column that is not a collection, a where path that is not
boolean). Any other failure, an engine limit or a bug, fails the test with its reason, as does an error not expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa

from medml.errors import InputFileError, MedmlError
from medml.fhir.store import FhirStore
from medml.fhir.view import InvalidViewError, ViewEvaluationError, run_view


@dataclass(frozen=True)
class TestResult:
    file: str
    title: str
    passed: bool
    reason: str = ""
    #: the rows the view gave (None when it gave none: an error), to compare engines
    rows: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)


@dataclass
class ConformanceResult:
    results: list[TestResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


def _norm(value: Any) -> Any:
    """A hashable, order-free form of one cell: numbers by value (bools kept apart), lists in order."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(f"{float(value):.10g}")) if math.isfinite(value) else ("n", value)
    if isinstance(value, list | tuple):
        return ("l", tuple(_norm(v) for v in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((k, _norm(v)) for k, v in value.items())))
    return ("s", str(value))


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, _norm(v)) for k, v in row.items()))


def _load(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read SQL-on-FHIR test file {path}: {exc}", "give a readable JSON file") from exc
    ok = isinstance(data, dict) and isinstance(data.get("resources"), list) and isinstance(data.get("tests"), list)
    if not ok or not all(isinstance(t, dict) and "view" in t for t in data["tests"]):
        raise InputFileError(
            f"{path} is not a SQL-on-FHIR test file",
            "a test file is an object with 'resources' and 'tests' (each test with a 'view')",
        )
    return data


def _store(resources: list[Any], path: Path) -> FhirStore:
    """The file's resources in a fresh store; a resource without an id (allowed in the suite) gets a table key."""
    store = FhirStore.in_memory([r for r in resources if isinstance(r, dict) and r.get("id")])
    anonymous = [r for r in resources if not (isinstance(r, dict) and r.get("id"))]
    for i, res in enumerate(anonymous):
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise InputFileError(f"{path}: resource without resourceType", "fix the test file's resources")
        store.con.execute(
            "INSERT INTO resources VALUES (?, ?, NULL, ?)",
            [res["resourceType"], anonymous_key(i + 1), orjson.dumps(res).decode()],
        )
    return store


class ViewEngine(Protocol):
    """Where the suite's views run: one test file's resources are loaded, its views run, then it is closed."""

    def load(self, resources: list[Any], path: Path) -> None: ...

    def run(self, view: dict[str, Any]) -> pa.Table: ...

    def close(self) -> None: ...


class DuckDbEngine:
    """The views on a fresh in-memory :class:`FhirStore` per test file."""

    def __init__(self) -> None:
        self._store: FhirStore | None = None

    def load(self, resources: list[Any], path: Path) -> None:
        self._store = _store(resources, path)

    def run(self, view: dict[str, Any]) -> pa.Table:
        assert self._store is not None
        return run_view(self._store.con, view)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def anonymous_key(i: int) -> str:
    """The table key of the ``i``-th resource without an id in a test file (1-based)."""
    return f"_anonymous_{i}"


def _run_test(engine: ViewEngine, test: dict[str, Any]) -> tuple[bool, str, list[dict[str, Any]] | None]:
    expect_error = bool(test.get("expectError"))
    try:
        table = engine.run(test["view"])
    except InvalidViewError as exc:
        return (True, "", None) if expect_error else (False, f"view rejected: {exc}", None)
    except ViewEvaluationError as exc:
        return (True, "", None) if expect_error else (False, f"view failed on the data: {exc}", None)
    except MedmlError as exc:
        expected = "expected an error the specification names, got " if expect_error else ""
        return False, f"{expected}{type(exc).__name__}: {exc}", None
    rows = table.to_pylist()
    if expect_error:
        return False, "expected the view to be rejected, it ran", rows
    if "expectColumns" in test:
        if table.column_names != list(test["expectColumns"]):
            return False, f"columns {table.column_names}, expected {test['expectColumns']}", rows
        return True, "", rows
    expected = test.get("expect", [])
    if expected and set(table.column_names) != set(expected[0]):
        return False, f"columns {table.column_names}, expected {sorted(expected[0])}", rows
    if same_rows(rows, expected):
        return True, "", rows
    return False, f"rows {rows}, expected {expected}", rows


def same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two row sets are equal as the suite compares them: a multiset, numbers by value, lists in order."""
    return sorted(map(_row_key, a), key=repr) == sorted(map(_row_key, b), key=repr)


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise InputFileError(f"no SQL-on-FHIR test file or directory at {p}", "give a test file or its directory")
    return out


def run_conformance(paths: Sequence[Path], engine: ViewEngine | None = None) -> ConformanceResult:
    """Run every test of every SQL-on-FHIR test file in ``paths`` (files or directories of ``*.json``) on ``engine``
    (default: DuckDB)."""
    engine = engine if engine is not None else DuckDbEngine()
    result = ConformanceResult()
    for path in _files(paths):
        data = _load(path)
        engine.load(data["resources"], path)
        try:
            for i, test in enumerate(data["tests"]):
                title = str(test.get("title", f"test {i + 1}"))
                passed, reason, rows = _run_test(engine, test)
                result.results.append(TestResult(path.name, title, passed, reason, rows))
        finally:
            engine.close()
    return result
