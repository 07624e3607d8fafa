"""Running a compiled view on a DuckDB connection."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from medml.errors import DataError
from medml.fhir.view._compile import compile_view
from medml.fhir.view._errors import ViewEvaluationError


def run_view(con: duckdb.DuckDBPyConnection, view: dict[str, Any], *, table: str = "resources") -> pa.Table:
    """The rows of a ViewDefinition over ``table`` as an Arrow table, columns in the order the view declares them.

    Raises :class:`ViewEvaluationError` when the data break a rule the specification names (several values for a
    column that is not a collection, a where path that is not boolean), :class:`DataError` for other failures.
    """
    compiled = compile_view(view, table=table)
    try:
        return con.sql(compiled.sql).to_arrow_table()
    except duckdb.InvalidInputException as exc:
        for check in compiled.runtime_checks:
            if check.message in str(exc):
                raise ViewEvaluationError(f"view on {compiled.resource}: {check.message}", check.fix) from exc
        raise DataError(
            f"view on {compiled.resource} failed on the data: {exc}",
            "check the column paths against the data (collection: true for repeating elements)",
        ) from exc
