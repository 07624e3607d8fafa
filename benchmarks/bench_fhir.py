"""SQL-on-FHIR view engines compared: medml, pysof (Rust), fhir4ds-v2, fhirpathpy row by row, and the DuckDB floor.

The Synthea R4 Bundles are replicated with new ids into Bulk Data NDJSON (one file per type, references rewritten
to ``Type/id`` as a Bulk export has them) until each of a Patient and an Observation view runs on ``--scale``
resources. Every engine runs each view in a fresh process on the same files; the process reports its wall time and
its own peak resident memory, and writes its rows, which are then compared with the hand-written DuckDB query's.
Also measured: medml's ingest rate for the Bundles and the NDJSON, and each engine's pass count on the SQL-on-FHIR
v2 conformance tests. Prints a Markdown table and writes it, with the machine, to ``--out``. Usage:

    .venv/bin/python benchmarks/bench_fhir.py [--scale 200000] [--quick] [--out benchmarks/results-fhir.md]

Peers are optional; one that is missing gets a "not installed" row. pysof 0.2.6's wheel bundles a libcrypto built
for glibc 2.38; where the system's glibc is older its extension fails to load (pysof then only has stubs), so the
pysof process imports it from a shadow package whose ``pysof.libs`` points at the system's OpenSSL 3 (see
`shadow_pysof`). fhir4ds-v2 pins duckdb==1.5.5 and its C++ extensions need exactly that DuckDB, so it lives in its
own environment, given by ``--fhir4ds-python`` (default ``.venv/peers/fhir4ds/bin/python`` when present):

    python3.11 -m venv .venv/peers/fhir4ds && .venv/peers/fhir4ds/bin/pip install fhir4ds-v2 orjson
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import gzip
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
DEFAULT_FHIR4DS_PYTHON = ROOT / ".venv" / "peers" / "fhir4ds" / "bin" / "python"
LOINC = "http://loinc.org"

PATIENT_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "patient_demographics",
    "status": "active",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {"name": "gender", "path": "gender", "type": "code"},
                {"name": "birth_date", "path": "birthDate", "type": "date"},
                {"name": "family", "path": "name.where(use = 'official').first().family", "type": "string"},
                {"name": "given", "path": "name.where(use = 'official').first().given.join(' ')", "type": "string"},
                {"name": "deceased", "path": "deceased.exists()", "type": "boolean"},
            ]
        }
    ],
}
OBSERVATION_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_values",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "string"},
                {"name": "loinc", "path": f"code.coding.where(system = '{LOINC}').code.first()", "type": "code"},
                {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "unit", "path": "value.ofType(Quantity).unit", "type": "string"},
            ]
        }
    ],
}
VIEWS = {"Patient": PATIENT_VIEW, "Observation": OBSERVATION_VIEW}

# The floor: what a hand-written query over an explicit schema costs. DuckDB's list indices start at 1.
FLOOR_SQL = {
    "Patient": """
        SELECT id, gender, birthDate AS birth_date,
               list_filter(name, lambda n: n.use = 'official')[1].family AS family,
               nullif(array_to_string(list_filter(name, lambda n: n.use = 'official')[1].given, ' '), '') AS given,
               deceasedDateTime IS NOT NULL OR deceasedBoolean IS NOT NULL AS deceased
        FROM read_json(?, format = 'newline_delimited', columns = {
            id: 'VARCHAR', gender: 'VARCHAR', birthDate: 'VARCHAR',
            name: 'STRUCT("use" VARCHAR, family VARCHAR, given VARCHAR[])[]',
            deceasedDateTime: 'VARCHAR', deceasedBoolean: 'BOOLEAN'})""",
    "Observation": f"""
        SELECT id,
               regexp_extract(subject.reference, '^Patient/([^/]+)', 1) AS patient_id,
               list_filter(code.coding, lambda c: c.system = '{LOINC}')[1].code AS loinc,
               effectiveDateTime AS effective, valueQuantity.value AS value, valueQuantity.unit AS unit
        FROM read_json(?, format = 'newline_delimited', columns = {{
            id: 'VARCHAR', subject: 'STRUCT(reference VARCHAR)',
            code: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])',
            effectiveDateTime: 'VARCHAR', valueQuantity: 'STRUCT(value DOUBLE, unit VARCHAR)'}})""",
}

NOTES = (
    "'file to rows' is everything from the NDJSON file to the view's rows: ingest + view for medml (an in-memory "
    "store) and fhir4ds (FHIRDataLoader.load_ndjson, then its generated SQL); pysof streams the file through the "
    "view into an NDJSON result file (its default chunks of 1,000). 'vs pysof' and 'vs floor' are ratios of "
    "file-to-rows rates.",
    "Not timed: process start and imports, and fhir4ds' create_connection (about 5 s: its UDFs and C++ extensions).",
    "Peak RSS is the process's own high-water mark (VmHWM) when its rows are ready, interpreter and libraries "
    "included; for a run on the first N resources it is that run's.",
    "Rows are checked against the floor's, matched by id, numbers to 10 significant digits; getReferenceKey() "
    "values are compared by their last segment, since the specification leaves the key's form to each engine "
    "(fhir4ds gives 'Patient/<id>', the others '<id>').",
    "Conformance: the same rows in any order (expectColumns: the same names in order); for pysof and fhir4ds a "
    "test that expects an error passes if the engine raises anything; medml is scored by its own run_conformance.",
    "fhir4ds-v2 runs in its own environment with the duckdb 1.5.5 it pins (its C++ extensions need it), medml "
    "and the floor with this environment's duckdb; the view is given to it without resourceType, which it "
    "rejects unless it is the canonical URL.",
    "The machine may be shared (see the load average above): rates move by tens of percent between runs. An "
    "engine whose first run takes under --repeat-under seconds is run --repeat times and its fastest run kept "
    "('best of N'); slower engines run once.",
)

Say = Callable[..., None]  # print a line of the report (none: an empty line)
ENGINES = ("medml", "pysof", "fhir4ds", "fhirpathpy", "duckdb-floor", "orjson-parse")
ENGINE_LABEL = {
    "medml": "medml (run_view on the store)",
    "pysof": "pysof 0.2.6 (Rust)",
    "fhir4ds": "fhir4ds-v2",
    "fhirpathpy": "fhirpathpy, row by row",
    "duckdb-floor": "floor: DuckDB read_json + SQL",
    "orjson-parse": "floor: orjson.loads per line (no view)",
}


# ---------------------------------------------------------------------------------------------------------------
# Data: Synthea Bundles replicated into NDJSON
# ---------------------------------------------------------------------------------------------------------------


def synthea_bundles(folder: Path) -> list[Path]:
    """The Synthea transaction Bundles (gzipped JSON) in ``folder``."""
    files = sorted(folder.glob("*.json.gz"))
    if not files:
        sys.exit(f"no *.json.gz Bundles in {folder}; give the Synthea folder with --synthea")
    return files


def synthea_resources(files: list[Path]) -> dict[str, list[bytes]]:
    """Patients and Observations of the Bundles as compact JSON, ``urn:uuid:`` references made ``Type/id``."""
    import orjson

    out: dict[str, list[bytes]] = {"Patient": [], "Observation": []}
    urn = re.compile(rb'"reference":"(urn:uuid:[^"]+)"')
    for path in files:
        bundle = orjson.loads(gzip.decompress(path.read_bytes()))
        local = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}".encode()
            for e in bundle["entry"]
            if "fullUrl" in e
        }

        def to_local(m: re.Match[bytes], local: dict[str, bytes] = local) -> bytes:
            return b'"reference":"' + local[m.group(1).decode()] + b'"'

        for entry in bundle["entry"]:
            res = entry["resource"]
            if res["resourceType"] in out:
                out[res["resourceType"]].append(urn.sub(to_local, orjson.dumps(res)))
    return out


def replicate(originals: dict[str, list[bytes]], scale: int, folder: Path) -> dict[str, tuple[Path, int]]:
    """Write ``scale`` or more of each type as NDJSON, copy r of a resource with id ``<id>-r``.

    Copy r of an Observation refers to copy r of its Patient (Patients are replicated more often, so it exists).
    Copies are written copy by copy, so the first lines of a file are a fair sample of the whole.
    """
    import orjson

    copies = {rtype: math.ceil(scale / len(items)) for rtype, items in originals.items()}
    if copies["Observation"] > copies["Patient"]:
        sys.exit("more Observation copies than Patient copies: references would dangle")
    ref = re.compile(r"^(\w+)/([^/]+)$")
    written: dict[str, tuple[Path, int]] = {}
    for rtype, items in originals.items():
        parsed = [orjson.loads(t) for t in items]
        path = folder / f"{rtype}.ndjson"
        n = 0
        with path.open("wb") as fh:
            for r in range(copies[rtype]):
                for res in parsed:
                    res_r = dict(res, id=f"{res['id']}-{r}")
                    for key in ("subject", "encounter"):
                        m = ref.match(res.get(key, {}).get("reference", ""))
                        if m:
                            res_r[key] = {**res[key], "reference": f"{m.group(1)}/{m.group(2)}-{r}"}
                    fh.write(orjson.dumps(res_r) + b"\n")
                    n += 1
        written[rtype] = (path, n)
    return written


# ---------------------------------------------------------------------------------------------------------------
# Engines: each runs in its own process (`--worker`), times one view and writes its rows
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """What one engine did with one view: seconds spent loading and running it, rows and peak memory."""

    ingest_s: float = 0.0
    view_s: float = 0.0
    resources: int = 0
    rows: int = 0
    peak_mib: float = 0.0
    note: str = ""
    columns: list[str] = field(default_factory=list)


def peak_mib() -> float:
    """This process's peak resident memory so far, in MiB.

    VmHWM is the high-water mark of this process's own address space; ``ru_maxrss`` would do elsewhere, but on
    Linux a child inherits its parent's across fork and exec, so it would count the benchmark's own memory.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_lines(path: Path, limit: int | None) -> int:
    with path.open("rb") as fh:
        n = sum(1 for _ in fh)
    return min(n, limit) if limit else n


def engine_medml(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """medml: ingest the NDJSON into an in-memory store, then run_view over it."""
    from medml.fhir.ingest import ingest
    from medml.fhir.store import FhirStore
    from medml.fhir.view import run_view

    store = FhirStore(":memory:")
    start = time.perf_counter()
    report = ingest(store, [path])
    t = Timing(ingest_s=time.perf_counter() - start, resources=report.resources)
    start = time.perf_counter()
    table = run_view(store.con, VIEWS[rtype])
    t.view_s = time.perf_counter() - start
    t.peak_mib, t.rows, t.columns = peak_mib(), table.num_rows, table.column_names
    return t, [list(r.values()) for r in table.to_pylist()]


def shadow_pysof(folder: Path) -> Path | None:
    """A copy of the installed pysof whose bundled OpenSSL libraries are the system's; None when not needed.

    The wheel's extension has an RPATH of ``$ORIGIN/../pysof.libs`` and needs ``libcrypto-<hash>.so.3``, which was
    built against glibc 2.38. A package of symbolic links whose ``pysof.libs`` names the system's ``libcrypto.so.3``
    and ``libssl.so.3`` with the bundled names loads on older glibc (pysof only uses the OpenSSL 3.0 ABI).
    """
    import importlib.util

    spec = importlib.util.find_spec("pysof")
    if spec is None or spec.origin is None:
        return None
    pkg = Path(spec.origin).parent
    libs = pkg.parent / "pysof.libs"
    if not libs.is_dir():
        return None
    system = {}
    for name in ("libcrypto.so.3", "libssl.so.3"):
        found = [
            p
            for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib")
            if (p := Path(d) / name).exists()
        ]
        if not found:
            return None
        system[name.split(".")[0]] = found[0]
    (folder / "pysof").mkdir(parents=True, exist_ok=True)
    (folder / "pysof.libs").mkdir(exist_ok=True)
    for item in pkg.iterdir():
        if item.name != "__pycache__":
            (folder / "pysof" / item.name).symlink_to(item)
    for lib in libs.iterdir():
        stem = lib.name.split("-")[0]
        (folder / "pysof.libs" / lib.name).symlink_to(system.get(stem, lib))
    return folder


def import_pysof(tmp: Path) -> Any:
    """pysof with its Rust extension loaded, from the shadow package if the wheel's own libcrypto cannot load."""
    try:
        import pysof._pysof
    except ImportError:
        for name in [m for m in sys.modules if m == "pysof" or m.startswith("pysof.")]:
            del sys.modules[name]
        shadow = shadow_pysof(tmp / "pysof-shadow")
        if shadow is None:
            raise
        sys.path.insert(0, str(shadow))
        import pysof._pysof
    import pysof

    return pysof


def engine_pysof(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """pysof: stream the NDJSON file through the view into an NDJSON result file (its bounded-memory path)."""
    import orjson

    tmp = Path(tempfile.mkdtemp(prefix="pysof-"))
    pysof = import_pysof(tmp)
    out = tmp / "rows.ndjson"
    view = json.dumps(VIEWS[rtype])
    start = time.perf_counter()
    pysof.process_ndjson_to_file(view, str(path), str(out), "ndjson")  # its default chunk of 1,000 resources
    t = Timing(view_s=time.perf_counter() - start, resources=count_lines(path, limit))
    t.peak_mib = peak_mib()
    names = [c["name"] for c in VIEWS[rtype]["select"][0]["column"]]
    rows = [[rec.get(n) for n in names] for rec in map(orjson.loads, out.read_bytes().splitlines())]
    t.rows, t.columns = len(rows), names
    return t, rows


def engine_fhir4ds(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """fhir4ds-v2: FHIRDataLoader.load_ndjson into its resources table, then the SQL its generator writes."""
    import fhir4ds
    from fhir4ds.cql.loader import FHIRDataLoader

    con = fhir4ds.create_connection()  # registers its UDFs and C++ extensions (about 5 s, not timed)
    loader = FHIRDataLoader(con)
    start = time.perf_counter()
    n = loader.load_ndjson(path)
    t = Timing(ingest_s=time.perf_counter() - start, resources=n)
    view = {k: v for k, v in VIEWS[rtype].items() if k != "resourceType"}  # it wants the canonical URL or none
    start = time.perf_counter()
    sql = fhir4ds.generate_view_sql(view)
    cur = con.execute(sql)
    table = cur.to_arrow_table()
    t.view_s = time.perf_counter() - start
    t.peak_mib, t.rows, t.columns = peak_mib(), table.num_rows, table.column_names
    return t, [list(r.values()) for r in table.to_pylist()]


def fhirpath_reference_key(inputs: list[Any], type_info: Any = None) -> list[str]:
    """getReferenceKey([Type]) for fhirpathpy, which lacks it: the id of a ``Type/id`` reference."""
    want = getattr(type_info, "name", None)
    out = []
    for ref in inputs:
        text = ref.get("reference") if isinstance(ref, dict) else None
        parts = text.split("/_history/")[0].split("/") if isinstance(text, str) else []
        if len(parts) >= 2 and (want is None or parts[-2] == want):
            out.append(parts[-1])
    return out


def engine_fhirpathpy(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """fhirpathpy: each column's FHIRPath compiled once and evaluated on every resource, as a plain loop would."""
    import orjson
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    options = {
        "userInvocationTable": {
            "getReferenceKey": {"fn": fhirpath_reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}}
        }
    }
    columns = VIEWS[rtype]["select"][0]["column"]
    compiled = [fp_compile(c["path"], models["r4"], options) for c in columns]
    rows: list[list[Any]] = []
    start = time.perf_counter()
    with path.open("rb") as fh:
        for i, line in enumerate(fh):
            if limit and i >= limit:
                break
            res = orjson.loads(line)
            row = []
            for fn in compiled:
                got = fn(res, {})
                if len(got) > 1:
                    raise ValueError(f"{res['id']}: a column gave {len(got)} values")
                row.append(got[0] if got else None)
            rows.append(row)
    t = Timing(view_s=time.perf_counter() - start, resources=len(rows), rows=len(rows))
    t.peak_mib, t.columns = peak_mib(), [c["name"] for c in columns]
    return t, rows


def engine_duckdb_floor(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """The floor: DuckDB read_json with the columns declared, and a query written by hand."""
    import duckdb

    con = duckdb.connect()
    start = time.perf_counter()
    table = con.execute(FLOOR_SQL[rtype], [str(path)]).to_arrow_table()
    if table is None:
        raise RuntimeError("DuckDB returned no result for the floor query")
    t = Timing(view_s=time.perf_counter() - start, resources=count_lines(path, limit))
    t.peak_mib, t.rows, t.columns = peak_mib(), table.num_rows, table.column_names
    return t, [list(r.values()) for r in table.to_pylist()]


def engine_orjson(rtype: str, path: Path, limit: int | None) -> tuple[Timing, list[list[Any]]]:
    """The parse floor: orjson.loads of every line, nothing else (no rows to compare)."""
    import orjson

    start = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
            n += 1
    t = Timing(view_s=time.perf_counter() - start, resources=n, note="parse only")
    t.peak_mib = peak_mib()
    return t, []


WORKERS: dict[str, Callable[[str, Path, int | None], tuple[Timing, list[list[Any]]]]] = {
    "medml": engine_medml,
    "pysof": engine_pysof,
    "fhir4ds": engine_fhir4ds,
    "fhirpathpy": engine_fhirpathpy,
    "duckdb-floor": engine_duckdb_floor,
    "orjson-parse": engine_orjson,
}


def plain(value: Any) -> Any:
    """A view value in one comparable form across engines (numbers to 10 significant digits, times as text)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | decimal.Decimal):
        return float(f"{float(value):.10g}")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def head(path: Path, lines: int) -> Path:
    """The first ``lines`` lines of ``path`` in a file of their own, for an engine too slow for all of them."""
    out = Path(tempfile.mkdtemp(prefix="head-")) / path.name
    with path.open("rb") as src, out.open("wb") as dst:
        for i, line in enumerate(src):
            if i >= lines:
                break
            dst.write(line)
    return out


def worker_main(args: argparse.Namespace) -> None:
    """Run one engine on one view and write {timing, rows} as JSON to ``--result``."""
    path = Path(args.data)
    if args.limit and args.worker != "fhirpathpy":  # fhirpathpy stops reading by itself
        path = head(path, args.limit)
    try:
        timing, rows = WORKERS[args.worker](args.view, path, args.limit)
        payload: dict[str, Any] = {"timing": timing.__dict__, "rows": [[plain(v) for v in r] for r in rows]}
    except ModuleNotFoundError as exc:
        payload = {"missing": str(exc)}
    except Exception as exc:  # a peer failing on this view is a result to report, not a crash of the benchmark
        payload = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    Path(args.result).write_text(json.dumps(payload))


# ---------------------------------------------------------------------------------------------------------------
# Conformance: the SQL-on-FHIR v2 test suite, run on each engine
# ---------------------------------------------------------------------------------------------------------------


def conformance_cases(folder: Path) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(file, test, resources) for every test of the suite."""
    for path in sorted(folder.glob("*.json")):
        suite = json.loads(path.read_text())
        for test in suite["tests"]:
            yield path.name, test, suite.get("resources", [])


def rows_match(test: dict[str, Any], got: list[dict[str, Any]], columns: list[str] | None) -> bool:
    """The suite's rule: the same rows, in any order (``expectColumns``: the same column names, in order)."""
    if "expectColumns" in test:
        return columns == test["expectColumns"]
    want = sorted(json.dumps({k: plain(v) for k, v in r.items()}, sort_keys=True) for r in test["expect"])
    have = sorted(json.dumps({k: plain(v) for k, v in r.items()}, sort_keys=True) for r in got)
    return want == have


def conformance_pysof(folder: Path) -> dict[str, Any]:
    """pysof's score: run_view_definition on a collection Bundle of the test's resources."""
    pysof = import_pysof(Path(tempfile.mkdtemp(prefix="pysof-")))
    return score(folder, lambda view, res: _pysof_rows(pysof, view, res))


def _pysof_rows(pysof: Any, view: dict[str, Any], resources: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    rows = json.loads(pysof.run_view_definition(json.dumps(view), json.dumps(bundle), "json"))
    return rows, list(rows[0]) if rows else []


def conformance_fhir4ds(folder: Path) -> dict[str, Any]:
    """fhir4ds-v2's score: the test's resources loaded with FHIRDataLoader, the generated SQL run on them."""
    import fhir4ds
    from fhir4ds.cql.loader import FHIRDataLoader

    con = fhir4ds.create_connection()
    loader = FHIRDataLoader(con)

    def run(view: dict[str, Any], resources: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
        con.execute("DELETE FROM resources")
        loader.load_resources(resources)
        cur = con.execute(fhir4ds.generate_view_sql(view))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, [_json_cell(v) for v in row], strict=True)) for row in cur.fetchall()], names

    return score(folder, run)


def _json_cell(value: Any) -> Any:
    """A JSON text cell (a collection column from DuckDB) as its value."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def conformance_medml(folder: Path) -> dict[str, Any]:
    """medml's score from its own runner, ``run_conformance`` (the same rule: the same rows, in any order)."""
    from medml.fhir.conformance import run_conformance

    outcome = run_conformance([folder])
    joins = [r for r in outcome.results if Path(r.file).name == "fn_join.json"]
    return {
        "passed": outcome.passed,
        "total": len(outcome.results),
        "join": f"{sum(r.passed for r in joins)}/{len(joins)}",
        "failed": [f"{Path(r.file).name}: {r.title}" for r in outcome.results if not r.passed],
    }


def score(
    folder: Path, run: Callable[[dict[str, Any], list[dict[str, Any]]], tuple[list[Any], list[str]]]
) -> dict[str, Any]:
    """Passed tests out of all, and fn_join's share; a test expecting an error passes when the engine refuses it."""
    passed = total = join_pass = join_total = 0
    failed: list[str] = []
    for name, test, resources in conformance_cases(folder):
        total += 1
        try:
            rows, columns = run(test["view"], resources)
            ok = "expectError" not in test and rows_match(test, rows, columns)
        except Exception:  # any refusal or crash on a test is that test's outcome
            ok = "expectError" in test
        passed += ok
        if not ok:
            failed.append(f"{name}: {test['title']}")
        if name == "fn_join.json":
            join_total += 1
            join_pass += ok
    return {"passed": passed, "total": total, "join": f"{join_pass}/{join_total}", "failed": failed}


CONFORMANCE = {"medml": conformance_medml, "pysof": conformance_pysof, "fhir4ds": conformance_fhir4ds}


def conformance_main(args: argparse.Namespace) -> None:
    try:
        payload = CONFORMANCE[args.conformance](Path(args.data))
    except ModuleNotFoundError as exc:
        payload = {"missing": str(exc)}
    except Exception as exc:  # reported in the table
        payload = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    Path(args.result).write_text(json.dumps(payload))


# ---------------------------------------------------------------------------------------------------------------
# Ingest: medml's store (and fhir4ds' loader) on the Synthea Bundles
# ---------------------------------------------------------------------------------------------------------------


def ingest_main(args: argparse.Namespace) -> None:
    """Time loading every Bundle in ``--data`` into a fresh in-memory store."""
    files = synthea_bundles(Path(args.data))
    try:
        start = time.perf_counter()
        if args.ingest == "medml":
            from medml.fhir.ingest import ingest
            from medml.fhir.store import FhirStore

            n = ingest(FhirStore(":memory:"), files).resources
        else:
            import fhir4ds
            from fhir4ds.cql.loader import FHIRDataLoader

            con = fhir4ds.create_connection()
            start = time.perf_counter()
            loader = FHIRDataLoader(con)
            n = sum(loader.load_bundle(json.loads(gzip.decompress(p.read_bytes()))) for p in files)
        payload: dict[str, Any] = {
            "seconds": time.perf_counter() - start,
            "resources": n,
            "files": len(files),
            "peak_mib": peak_mib(),
        }
    except ModuleNotFoundError as exc:
        payload = {"missing": str(exc)}
    except Exception as exc:  # reported in the table
        payload = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    Path(args.result).write_text(json.dumps(payload))


# ---------------------------------------------------------------------------------------------------------------
# The parent: run every child, compare, print
# ---------------------------------------------------------------------------------------------------------------


def run_child(python: str, argv: list[str], timeout: float) -> dict[str, Any]:
    """Run this script as a child with ``argv`` and return the JSON it writes (its timing and rows)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result = Path(fh.name)
    proc = subprocess.Popen(
        [python, str(SCRIPT), *argv, "--result", str(result)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": ""},
    )
    try:
        output = proc.communicate(timeout=timeout)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    try:
        payload = json.loads(result.read_text())
    except ValueError:
        tail = output.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        payload = {"error": f"crashed: {tail[0][:200]}"}
    result.unlink(missing_ok=True)
    return payload


def opaque_keys(rtype: str) -> list[int]:
    """Columns holding getReferenceKey() values, whose form the specification leaves to each engine."""
    return [i for i, c in enumerate(VIEWS[rtype]["select"][0]["column"]) if "getReferenceKey" in c["path"]]


def compare(rows: list[list[Any]], reference: dict[Any, list[Any]], columns: list[str], keys: list[int]) -> str:
    """'ok', or how many rows differ from the reference (matched by id) with the first difference.

    A reference key is compared by its last path segment: ``Patient/1`` and ``1`` are both a valid key for it.
    """
    if not reference:
        return ""
    bad, example = 0, ""
    for row in rows:
        want = reference.get(row[0])
        for i in keys:
            if want is not None and isinstance(row[i], str) and isinstance(want[i], str):
                row, want = list(row), list(want)
                row[i], want[i] = row[i].rsplit("/", 1)[-1], want[i].rsplit("/", 1)[-1]
        if want != row:
            bad += 1
            if not example:
                if want is None:
                    example = f"id {row[0]} not in reference"
                else:
                    col = next(i for i, (a, b) in enumerate(zip(row, want, strict=False)) if a != b)
                    example = f"{columns[col] if col < len(columns) else col}: {row[col]!r} vs {want[col]!r}"
    return "ok" if not bad else f"{bad} rows differ ({example})"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def machine() -> str:
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            cpu,
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {dt.date.today().isoformat()}; load average at start {load}"
    )


def versions(python: str, modules: list[str]) -> str:
    code = (
        "import importlib.metadata as m\n"
        f"for n in {modules!r}:\n"
        "    try: print(f'{n} {m.version(n)}')\n"
        "    except m.PackageNotFoundError: pass"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ", ".join(out.split("\n")[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=200_000, help="resources per view (default 200000)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 5,000 resources per view")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results-fhir.md"), help="results file")
    ap.add_argument("--synthea", help="folder of Synthea Bundles (default: <data root>/fhir/synthea-r4)")
    ap.add_argument("--tests", help="SQL-on-FHIR v2 tests folder (default: <data root>/fhir/sql-on-fhir-v2/tests)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    ap.add_argument(
        "--fhirpathpy-limit",
        type=int,
        default=20_000,
        help="fhirpathpy runs on the first N resources of each file, rate extrapolated (0: all)",
    )
    ap.add_argument(
        "--fhir4ds-limit",
        type=int,
        default=50_000,
        help="fhir4ds runs on the first N resources of each file, rate extrapolated (0: all; about "
        "250 s for 200,000 Patients on 2 cores)",
    )
    ap.add_argument(
        "--fhir4ds-python",
        default=str(DEFAULT_FHIR4DS_PYTHON) if DEFAULT_FHIR4DS_PYTHON.exists() else sys.executable,
        help="a Python whose environment has fhir4ds-v2 (it pins duckdb==1.5.5)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of a quick engine, the fastest kept (default 3)")
    ap.add_argument(
        "--repeat-under",
        type=float,
        default=20,
        help="an engine whose first run took less than this many seconds is repeated (default 20)",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed to each engine on each view")
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--conformance", choices=tuple(CONFORMANCE), help=argparse.SUPPRESS)
    ap.add_argument("--ingest", choices=("medml", "fhir4ds"), help=argparse.SUPPRESS)
    ap.add_argument("--view", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    child = {"worker": worker_main, "conformance": conformance_main, "ingest": ingest_main}
    role = next((name for name in child if getattr(args, name)), None)
    if role is not None:
        with tempfile.TemporaryDirectory(prefix="bench-fhir-child-") as scratch:
            tempfile.tempdir = scratch  # what a child writes (pysof's rows, head files) goes when it ends
            return child[role](args)

    from medml.config import get_settings

    fhir_root = get_settings().data_root / "fhir"
    synthea = Path(args.synthea) if args.synthea else fhir_root / "synthea-r4"
    tests = Path(args.tests) if args.tests else fhir_root / "sql-on-fhir-v2" / "tests"
    scale = 5_000 if args.quick else args.scale
    engines = [e for e in args.engines.split(",") if e]
    python_of = {e: args.fhir4ds_python if e == "fhir4ds" else sys.executable for e in ENGINES}
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say("# FHIR view engines: throughput, ingest and conformance")
    say()
    say(f"machine: {machine()}")
    say(
        f"versions: {versions(sys.executable, ['duckdb', 'pyarrow', 'orjson', 'pysof', 'fhirpathpy'])}; "
        f"fhir4ds env: {versions(args.fhir4ds_python, ['fhir4ds-v2', 'duckdb']) or 'none'}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fhir-") as tmp:
        start = time.perf_counter()
        files = synthea_bundles(synthea)
        data = replicate(synthea_resources(files), scale, Path(tmp))
        sizes = ", ".join(f"{rt} {n:,} ({p.stat().st_size / 2**20:,.0f} MiB)" for rt, (p, n) in data.items())
        say(
            f"data: {len(files)} Synthea Bundles replicated with new ids into NDJSON: {sizes}; "
            f"written in {time.perf_counter() - start:.0f} s"
        )
        say()
        say("## 1. View throughput (file to rows, each engine in a fresh process)")
        say()
        say(
            "| view | engine | resources | ingest s | view s | resources/s (view only) | resources/s (file to rows) "
            "| vs pysof | vs floor | peak RSS MiB | rows | same rows as floor |"
        )
        say("|---|---|---|---|---|---|---|---|---|---|---|---|")
        limits = {"fhirpathpy": args.fhirpathpy_limit, "fhir4ds": args.fhir4ds_limit}
        medml_runs: dict[str, dict[str, Any]] = {}
        for rtype, (path, size) in data.items():
            baseline: dict[str, dict[str, Any]] = {}  # the floor's and pysof's runs, which the others are put against
            for engine in sorted(engines, key=lambda e: (e != "duckdb-floor", e != "pysof")):
                limit = limits.get(engine) or 0
                argv = ["--worker", engine, "--view", rtype, "--data", str(path)]
                argv += ["--limit", str(limit)] if 0 < limit < size else []
                payload = run_child(python_of[engine], argv, args.timeout)
                runs = 1
                while "timing" in payload and runs < args.repeat and seconds(payload) < args.repeat_under:
                    again = run_child(python_of[engine], argv, args.timeout)
                    runs += 1
                    if "timing" in again and seconds(again) < seconds(payload):
                        payload = again
                payload["runs"] = runs
                say_view_row(say, rtype, size, engine, payload, baseline)
                if engine in ("duckdb-floor", "pysof"):
                    baseline[engine] = payload
                if engine == "medml":
                    medml_runs[rtype] = {k: v for k, v in payload.items() if k != "rows"}
        say()
        say_ingest(say, synthea, data, medml_runs, python_of, args.timeout)
    say()
    say_conformance(say, tests, [e for e in ("medml", "pysof", "fhir4ds") if e in engines], python_of, args.timeout)
    say()
    for note in NOTES:
        say(f"- {note}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


def seconds(payload: dict[str, Any]) -> float:
    """Wall seconds of a run, ingest included."""
    return float(payload["timing"]["view_s"] + payload["timing"]["ingest_s"])


def file_to_rows_rate(payload: dict[str, Any], with_ingest: bool = True) -> float:
    """Resources per second of a run, counting its ingest or not."""
    t = payload.get("timing")
    if not t:
        return 0.0
    secs = t["view_s"] + (t["ingest_s"] if with_ingest else 0.0)
    return t["resources"] / secs if secs > 0 else 0.0


def say_view_row(
    say: Say, rtype: str, size: int, engine: str, payload: dict[str, Any], baseline: dict[str, dict[str, Any]]
) -> None:
    """One table row: an engine's rates on a view, its ratios to pysof and the floor, and its rows checked."""
    label = ENGINE_LABEL[engine]
    if "missing" in payload:
        say(f"| {rtype} | {label} | not installed ({payload['missing']}) |||||||||")
        return
    if "error" in payload:
        say(f"| {rtype} | {label} | failed: {payload['error']} |||||||||")
        return
    t = payload["timing"]
    full, view_only = file_to_rows_rate(payload), file_to_rows_rate(payload, with_ingest=False)
    pysof_rate = file_to_rows_rate(baseline.get("pysof", {})) or (full if engine == "pysof" else 0.0)
    floor_rate = file_to_rows_rate(baseline.get("duckdb-floor", {})) or (full if engine == "duckdb-floor" else 0.0)
    reference = {r[0]: r for r in baseline.get("duckdb-floor", {}).get("rows", [])}
    check = t["note"] or (
        "(the reference)"
        if engine == "duckdb-floor"
        else compare(payload["rows"], reference, t["columns"], opaque_keys(rtype))
    )
    if t["resources"] < size:
        check = f"{check}; first {t['resources']:,} resources only, rate extrapolated"
    if payload.get("runs", 1) > 1:
        check = f"{check}; best of {payload['runs']}"
    if t["rows"] != t["resources"] and not t["note"]:
        check = f"⚠ {t['rows']:,} rows for {t['resources']:,} resources; {check}"
    vs_pysof, vs_floor = (
        f"{full / base:.2g}" if full < base / 10 else f"{full / base:.2f}" if base else "n/a"
        for base in (pysof_rate, floor_rate)
    )
    say(
        f"| {rtype} | {label} | {t['resources']:,} | {t['ingest_s']:.2f} | {t['view_s']:.2f} | "
        f"{fmt_rate(view_only)} | {fmt_rate(full)} | {vs_pysof} | {vs_floor} | "
        f"{t['peak_mib']:,.0f} | {t['rows']:,} | {check} |"
    )


def say_ingest(
    say: Say,
    synthea: Path,
    data: dict[str, tuple[Path, int]],
    medml_runs: dict[str, dict[str, Any]],
    python_of: dict[str, str],
    timeout: float,
) -> None:
    """Section 2: resources/s into medml's store from Bundles (and fhir4ds' loader, for scale) and from NDJSON."""
    say("## 2. Ingest rate")
    say()
    say("| engine | input | resources | seconds | resources/s | peak RSS MiB |")
    say("|---|---|---|---|---|---|")
    for engine in ("medml", "fhir4ds"):
        payload = run_child(python_of[engine], ["--ingest", engine, "--data", str(synthea)], timeout)
        if "missing" in payload or "error" in payload:
            say(f"| {engine} | Synthea Bundles | {payload.get('missing') or payload.get('error')} ||||")
            continue
        kept = " distinct (type, id)" if engine == "medml" else " (duplicates across Bundles too)"
        say(
            f"| {engine} | {payload['files']} Synthea Bundles (.json.gz) | {payload['resources']:,}{kept} | "
            f"{payload['seconds']:.2f} | {fmt_rate(payload['resources'] / payload['seconds'])} | "
            f"{payload['peak_mib']:,.0f} |"
        )
    for rtype, (path, _) in data.items():
        payload = medml_runs.get(rtype) or run_child(
            python_of["medml"], ["--worker", "medml", "--view", rtype, "--data", str(path)], timeout
        )
        if "timing" not in payload:
            say(f"| medml | {path.name} | {payload.get('missing') or payload.get('error')} ||||")
            continue
        t = payload["timing"]
        say(
            f"| medml | {path.name} (NDJSON) | {t['resources']:,} | {t['ingest_s']:.2f} | "
            f"{fmt_rate(t['resources'] / t['ingest_s'])} | {t['peak_mib']:,.0f} (with the view) |"
        )


def say_conformance(say: Say, tests: Path, engines: list[str], python_of: dict[str, str], timeout: float) -> None:
    """Section 3: SQL-on-FHIR v2 tests passed by each engine."""
    total = sum(1 for _ in conformance_cases(tests))
    say(f"## 3. SQL-on-FHIR v2 conformance ({total} tests in {tests.name}/)")
    say()
    say("| engine | passed | fn_join.json | failed tests |")
    say("|---|---|---|---|")
    for engine in engines:
        payload = run_child(python_of[engine], ["--conformance", engine, "--data", str(tests)], timeout)
        if "missing" in payload:
            say(f"| {ENGINE_LABEL[engine]} | not installed ({payload['missing']}) |||")
        elif "error" in payload:
            say(f"| {ENGINE_LABEL[engine]} | failed: {payload['error']} |||")
        else:
            failed = payload.get("failed") or []
            shown = "; ".join(failed[:12]) + (f"; and {len(failed) - 12} more" if len(failed) > 12 else "")
            say(f"| {ENGINE_LABEL[engine]} | {payload['passed']}/{payload['total']} | {payload['join']} | {shown} |")


if __name__ == "__main__":
    main()
