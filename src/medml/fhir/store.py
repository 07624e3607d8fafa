"""The FHIR store: resources kept whole as JSON in DuckDB, one row per (type, id), upserted on re-ingest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import orjson

from medml.errors import DataError
from medml.fhir._r4types import R4_RESOURCE_TYPES

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    resource_type VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    last_updated VARCHAR,
    resource JSON NOT NULL,
    PRIMARY KEY (resource_type, id)
)
"""


def check_resource(resource: Any, where: str = "") -> tuple[str, str]:
    """The (type, id) of a resource, or a DataError that says which one is wrong and why."""
    at = f" ({where})" if where else ""
    if not isinstance(resource, dict):
        raise DataError(f"expected a FHIR resource (a JSON object){at}, got {type(resource).__name__}",
                        "each resource must be a JSON object with resourceType and id")
    rtype = resource.get("resourceType")
    if rtype not in R4_RESOURCE_TYPES:
        raise DataError(f"unknown FHIR R4 resource type {rtype!r}{at}",
                        "resourceType must be one of the FHIR R4 resource types, spelt as in the specification")
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        raise DataError(f"{rtype} without an id{at}", "every stored resource needs an id; add one or export with ids")
    return rtype, rid


class FhirStore:
    """FHIR R4 resources in a DuckDB database (a file, or in memory for a request or a test)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(self.path)
        self.con.execute(SCHEMA)

    @classmethod
    def in_memory(cls, resources: Iterable[dict[str, Any]] = ()) -> FhirStore:
        store = cls(":memory:")
        store.add(resources)
        return store

    def add(self, resources: Iterable[dict[str, Any]]) -> int:
        """Upsert resources in one transaction; a bad resource raises and nothing is written."""
        rows = []
        for i, res in enumerate(resources):
            rtype, rid = check_resource(res, f"resource {i + 1}")
            meta = res.get("meta")
            updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
            rows.append((rtype, rid, updated, orjson.dumps(res).decode()))
        if rows:
            self._upsert(rows)
        return len(rows)

    def _upsert(self, rows: list[tuple[str, str, str | None, str]]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.executemany("INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?)", rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.con.close()
