"""The SQL-on-FHIR v2 conformance suite (HL7's test files) on Spark: every test passes, with the DuckDB rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medml.config import get_settings
from medml.fhir.conformance import run_conformance, same_rows
from medml.scale import SparkEngine

SUITE = get_settings().data_root / "fhir/sql-on-fhir-v2/tests"


@pytest.fixture(scope="module")
def suite() -> Path:
    if not SUITE.is_dir():
        pytest.skip(f"SQL-on-FHIR test suite not found at {SUITE}")
    return SUITE


def test_whole_suite_passes_on_spark_with_the_rows_duckdb_gives(spark: Any, suite: Path) -> None:
    on_spark = run_conformance([suite], SparkEngine(spark))
    on_duckdb = run_conformance([suite])
    assert [(r.file, r.title, r.reason) for r in on_spark.failures] == []
    assert on_spark.summary() == "106 passed, 0 failed"
    assert len(on_spark.results) == len(on_duckdb.results)
    differ = [
        (s.file, s.title)
        for s, d in zip(on_spark.results, on_duckdb.results, strict=True)
        if (s.rows is None) != (d.rows is None) or (s.rows is not None and not same_rows(s.rows, d.rows or []))
    ]
    assert differ == []
    assert sum(r.rows is not None for r in on_spark.results) > 90  # rows were compared, not only errors
