"""SQL-on-FHIR v2 views on Spark: the compiler's Spark dialect over a table of resources kept as JSON text.

The table has the FHIR store's columns (``resource_type``, ``id``, ``resource`` as JSON text): a Parquet folder
written by :func:`medml.scale.ingest.ingest_ndjson`, or rows in memory. Errors come back as the DuckDB engine's:
:class:`ViewEvaluationError` for data that break a rule the specification names, :class:`InvalidViewError` for a
view the compiler rejects, and a ConfigError for a view the Spark dialect cannot express.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from medml.errors import ConfigError, DataError
from medml.fhir.conformance import anonymous_key
from medml.fhir.view import CompiledView, ViewEvaluationError, compile_view

RESOURCES = "resources"
#: the columns of a resource table, as Spark DDL
RESOURCE_SCHEMA = "resource_type STRING, id STRING, resource STRING"


def spark_error(exc: BaseException, compiled: CompiledView) -> Exception:
    """The medml error for what Spark raised running ``compiled``."""
    text = str(exc)
    for check in compiled.runtime_checks:
        if check.message in text:
            return ViewEvaluationError(f"view on {compiled.resource}: {check.message}", check.fix)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if _is_analysis_error(exc):
        return ConfigError(
            f"the Spark engine cannot express this view on {compiled.resource}: {first[:300]}",
            "run it with --engine duckdb, and report the view to medml",
        )
    return DataError(
        f"view on {compiled.resource} failed on Spark: {first[:300]}",
        "check the column paths against the data (collection: true for repeating elements)",
    )


def _is_analysis_error(exc: BaseException) -> bool:
    from pyspark.errors import AnalysisException, ParseException

    return isinstance(exc, AnalysisException | ParseException)


def view_frame(spark: Any, view: dict[str, Any], table: str = RESOURCES) -> tuple[Any, CompiledView]:
    """The view's rows as a (lazy) Spark DataFrame over the registered ``table``, and the compiled view."""
    compiled = compile_view(view, dialect="spark", table=table)
    try:
        return spark.sql(compiled.sql), compiled
    except Exception as exc:  # analysis happens here: pyspark raises its own classes, mapped by spark_error
        raise spark_error(exc, compiled) from None


def run_view_spark(spark: Any, view: dict[str, Any], table: str = RESOURCES) -> pa.Table:
    """The view's rows as an Arrow table, columns in the order the view declares them (as ``run_view``)."""
    frame, compiled = view_frame(spark, view, table)
    try:
        return frame.toArrow()
    except Exception as exc:
        raise spark_error(exc, compiled) from None


def resource_frame(spark: Any, rows: list[tuple[str, str, str]]) -> Any:
    """A Spark DataFrame of (resource_type, id, resource JSON text) rows."""
    return spark.createDataFrame(rows, RESOURCE_SCHEMA)


def write_view(spark: Any, view: dict[str, Any], resources: Any, out: Path) -> tuple[int, list[str]]:
    """Run the view over a resource table and write its rows to ``out`` as Parquet, whole or not at all.

    Returns the number of rows and the column names.
    """
    from medml.scale._output import check_new_folder, folder_written_whole

    check_new_folder(out)
    compiled = compile_view(view, dialect="spark", table=RESOURCES)  # an invalid view is refused before any work
    resources.createOrReplaceTempView(RESOURCES)
    frame, compiled = view_frame(spark, view)
    with folder_written_whole(out) as tmp:
        try:
            frame.write.parquet(str(tmp))
        except Exception as exc:
            raise spark_error(exc, compiled) from None
        rows = spark.read.parquet(str(tmp)).count()
    return rows, [c.name for c in compiled.columns]


class SparkEngine:
    """The conformance suite's views on Spark: each test file's resources become the ``resources`` view."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def load(self, resources: list[Any], path: Path) -> None:
        import orjson

        from medml.errors import InputFileError

        rows: list[tuple[str, str, str]] = []
        anonymous = 0
        for res in resources:
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise InputFileError(f"{path}: resource without resourceType", "fix the test file's resources")
            rid = res.get("id")
            if not rid:
                anonymous += 1
                rid = anonymous_key(anonymous)
            rows.append((res["resourceType"], str(rid), orjson.dumps(res).decode()))
        resource_frame(self.spark, rows).createOrReplaceTempView(RESOURCES)

    def run(self, view: dict[str, Any]) -> pa.Table:
        return run_view_spark(self.spark, view)

    def close(self) -> None:
        self.spark.catalog.dropTempView(RESOURCES)
