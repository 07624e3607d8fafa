"""FHIR NDJSON (gzipped or not, files, folders, Bulk Data exports) into Parquet partitioned by resource type, on Spark.

Each resource is kept whole as JSON text beside its type and id: the same columns as the DuckDB store, so the same
views run on either, and DuckDB or any Parquet reader can read what Spark wrote. One pass over the input: lines that
are not a FHIR resource with an id go to a quarantine partition, and if there is any the output is removed and the
first one named; nothing half-written is left.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medml.errors import DataError, InputFileError
from medml.fhir._r4types import R4_RESOURCE_TYPES
from medml.scale._output import check_new_folder, folder_written_whole

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
_INVALID = "__invalid__"


@dataclass(frozen=True)
class IngestReport:
    resources: int
    by_type: dict[str, int]
    files: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds > 0 else 0.0


def ndjson_files(paths: Sequence[Path]) -> list[str]:
    """The NDJSON files of ``paths``: files as given, folders searched (a Bulk Data export's folder included)."""
    files: list[str] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(NDJSON_SUFFIXES))
            if not found:
                raise InputFileError(f"{p} holds no NDJSON files", f"give a folder of {', '.join(NDJSON_SUFFIXES)}")
            files += [str(f.resolve()) for f in found]
        elif p.is_file():
            if not p.name.lower().endswith(NDJSON_SUFFIXES):
                raise InputFileError(f"{p} is not NDJSON", f"the Spark ingest reads {', '.join(NDJSON_SUFFIXES)}")
            files.append(str(p.resolve()))
        else:
            raise InputFileError(f"{p} does not exist", "give NDJSON files or folders of them")
    return files


def ndjson_frame(spark: Any, files: Sequence[str]) -> Any:
    """(resource_type, id, resource) for each non-blank line; resource_type is ``__invalid__`` for a line that is
    not a FHIR R4 resource with an id."""
    from pyspark.sql import functions as F

    lines = spark.read.text(list(files)).where(F.trim("value") != "")
    rtype = F.get_json_object("value", "$.resourceType")
    rid = F.get_json_object("value", "$.id")
    valid = rtype.isin(*sorted(R4_RESOURCE_TYPES)) & rid.isNotNull() & (rid != "")
    return lines.select(
        F.when(valid, rtype).otherwise(F.lit(_INVALID)).alias("resource_type"),
        rid.alias("id"),
        F.col("value").alias("resource"),
    )


def ingest_ndjson(spark: Any, paths: Sequence[Path], out: Path) -> IngestReport:
    """Write the resources of NDJSON ``paths`` to ``out``: Parquet, one folder per resource type."""
    check_new_folder(out)
    files = ndjson_files(paths)
    start = time.perf_counter()
    with folder_written_whole(out) as tmp:
        frame = ndjson_frame(spark, files)
        frame.write.partitionBy("resource_type").parquet(str(tmp))
        if (tmp / f"resource_type={_INVALID}").exists():
            bad = spark.read.parquet(str(tmp)).where(f"resource_type = '{_INVALID}'")
            n = bad.count()
            first = bad.first()
            example = (first["resource"] or "")[:80] if first else ""
            raise DataError(
                f"{n:,} line(s) of the NDJSON are not a FHIR R4 resource with an id, e.g. {example!r}",
                "fix or remove those lines (each line is one resource with resourceType and id); nothing was written",
            )
        written = spark.read.parquet(str(tmp)).groupBy("resource_type").count().collect()
        counts = {r["resource_type"]: int(r["count"]) for r in written}
    return IngestReport(sum(counts.values()), dict(sorted(counts.items())), len(files), time.perf_counter() - start)


def load_resources(spark: Any, paths: Sequence[Path]) -> Any:
    """A resource table from a Parquet folder written by :func:`ingest_ndjson`, or straight from NDJSON (checked:
    a line that is not a resource is an error, as in the ingest)."""
    if len(paths) == 1 and paths[0].is_dir() and any(paths[0].rglob("*.parquet")):
        return spark.read.parquet(str(paths[0])).select("resource_type", "id", "resource")
    frame = ndjson_frame(spark, ndjson_files(paths))
    bad = frame.where(f"resource_type = '{_INVALID}'").first()
    if bad is not None:
        raise DataError(
            f"a line of the NDJSON is not a FHIR R4 resource with an id: {(bad['resource'] or '')[:80]!r}",
            "fix or remove it (each line is one resource with resourceType and id)",
        )
    return frame
