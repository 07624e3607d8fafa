"""Throughput of SQL-on-FHIR views on >=200,000 resources: Synthea R4 Observations and Patients replicated with new ids.

Run: ``python benchmarks/fhir_view_throughput.py [--n 200000] [--threads 2]``. Prints a table of rows/s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import orjson
import pyarrow as pa

# The views of benchmarks/bench_fhir.py (this script sits beside it: run it from anywhere, Python puts its folder
# first on sys.path).
from bench_fhir import OBSERVATION_VIEW as OBSERVATIONS
from bench_fhir import PATIENT_VIEW as PATIENTS

from medml.config import get_settings
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view

PATIENT_ADDRESSES = {
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}]},
        {
            "forEach": "address",
            "column": [{"name": "city", "path": "city"}, {"name": "postal_code", "path": "postalCode"}],
        },
    ],
}

# The parse floor: one multi-path extraction of scalar fields, no view logic.
FLOORS = {
    "Observation": ["$.id", "$.subject.reference", "$.effectiveDateTime", "$.valueQuantity.value"],
    "Patient": ["$.id", "$.gender", "$.birthDate", "$.deceasedDateTime"],
}


def _templates() -> tuple[list[dict], list[dict]]:
    obs, pts = [], []
    for path in sorted((get_settings().data_root / "fhir/synthea-r4").glob("*.json.gz")):
        for entry in json.loads(gzip.decompress(path.read_bytes()))["entry"]:
            res = entry["resource"]
            if res["resourceType"] == "Observation":
                res["subject"]["reference"] = "Patient/" + res["subject"]["reference"].removeprefix("urn:uuid:")
                obs.append(res)
            elif res["resourceType"] == "Patient":
                pts.append(res)
    return obs, pts


def _fill(store: FhirStore, templates: list[dict], n: int) -> None:
    ids, texts, types = [], [], []
    for i in range(n):
        res = dict(templates[i % len(templates)], id=f"r{i}")
        ids.append(res["id"])
        types.append(res["resourceType"])
        texts.append(orjson.dumps(res).decode())
    batch = pa.table({"resource_type": types, "id": ids, "resource": texts})  # noqa: F841 (read by DuckDB)
    store.con.execute("INSERT INTO resources SELECT resource_type, id, NULL, resource FROM batch")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    obs, pts = _templates()
    store = FhirStore.in_memory()
    _fill(store, obs, args.n)
    _fill(store, pts, args.n)
    store.con.execute(f"SET threads = {args.threads}")
    print(f"{'view':<20}{'resources':>10}{'rows':>10}{'seconds':>9}{'resources/s':>13}")
    for name, view in [
        ("observation (6 col)", OBSERVATIONS),
        ("patient (6 col)", PATIENTS),
        ("patient addresses", PATIENT_ADDRESSES),
    ]:
        run_view(store.con, view)  # warm up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            table = run_view(store.con, view)
            best = min(best, time.perf_counter() - start)
        print(f"{name:<20}{args.n:>10}{table.num_rows:>10}{best:>9.2f}{args.n / best:>13,.0f}")
    for rtype, paths in FLOORS.items():
        sql = f"SELECT json_extract_string(resource, {paths}) FROM resources WHERE resource_type = '{rtype}'"
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            store.con.sql(sql).to_arrow_table()
            best = min(best, time.perf_counter() - start)
        print(f"{'floor: ' + rtype:<20}{args.n:>10}{args.n:>10}{best:>9.2f}{args.n / best:>13,.0f}")
    store.close()


if __name__ == "__main__":
    main()
