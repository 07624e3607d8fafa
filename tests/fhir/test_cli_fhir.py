"""`medml fhir ...` as a user meets it: real files in, one clear line and exit code 2 for bad input, store intact."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medml.config import get_settings

MEDML = [sys.executable, "-m", "medml.cli"]
DATA = get_settings().data_root
SYNTHEA = DATA / "fhir" / "synthea-r4"


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*MEDML, "fhir", *args], capture_output=True, text=True, env=env, timeout=600)


def assert_clear_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    msg = " ".join(proc.stderr.split())
    assert msg.startswith("error:"), msg
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


def _read_gz(path: str | Path) -> Any:
    with gzip.open(path) as fh:
        return json.loads(fh.read())


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _patients(path: Path, *ids: str) -> Path:
    path.write_text("".join(json.dumps({"resourceType": "Patient", "id": i}) + "\n" for i in ids))
    return path


def test_ingest_stats_get_and_bad_lines(tmp_path: Path, home: Path) -> None:
    files = [str(p) for p in sorted(SYNTHEA.glob("*.json.gz"))[:3]]
    proc = run(["ingest", *files], home)
    assert proc.returncode == 0, proc.stderr
    first = _read_gz(files[0])["entry"][0]["resource"]
    assert "ingested" in proc.stdout and "Observation" in proc.stdout
    stats = run(["stats"], home)
    assert stats.returncode == 0 and "Patient" in stats.stdout
    got = run(["get", f"Patient/{first['id']}"], home)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == first["id"]
    before = (home / "fhir.duckdb").read_bytes()

    bad = tmp_path / "Patient.ndjson"
    bad.write_text(json.dumps({"resourceType": "Patient", "id": "x"}) + "\n{oops\n")
    assert_clear_error(run(["ingest", str(bad)], home), "Patient.ndjson, line 2", "not valid JSON", "--on-error skip")
    assert (home / "fhir.duckdb").read_bytes() == before
    skipped = run(["ingest", str(bad), "--on-error", "skip"], home)
    assert skipped.returncode == 0 and "line 2" in skipped.stderr
    assert_clear_error(run(["get", "Patient/ghost"], home), "Patient/ghost is not in the FHIR store")


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda d: [str(d / "missing.ndjson")], ["does not exist"]),
        (lambda d: [str(_patients(d / "p.txt", "a"))], ["not a FHIR JSON or NDJSON file"]),
        (
            lambda d: [str(_patients(d / "p.ndjson", "a")).replace("p.ndjson", "p.ndjson"), "--on-error", "maybe"],
            ["maybe"],
        ),
    ],
)
def test_ingest_bad_arguments(tmp_path: Path, home: Path, make: object, fragments: list[str]) -> None:
    assert callable(make)
    assert_clear_error(run(["ingest", *make(tmp_path)], home), *fragments)
    assert not (home / "fhir.duckdb").exists() or run(["stats"], home).returncode == 0


def test_stats_without_a_store(home: Path) -> None:
    assert_clear_error(run(["stats"], home), "no FHIR store", "medml fhir ingest")


def test_view_run_to_csv_and_parquet_and_bad_views(tmp_path: Path, home: Path) -> None:
    import pandas as pd

    files = [str(p) for p in sorted(SYNTHEA.glob("[A-Z]*.json.gz"))[:2]]
    assert run(["ingest", *files], home).returncode == 0
    shown = run(["view", "run", "patient_demographics"], home)
    assert shown.returncode == 0 and "2 rows" in shown.stdout, shown.stderr
    view = tmp_path / "heights.json"
    view.write_text(
        json.dumps(
            {
                "resourceType": "ViewDefinition",
                "resource": "Observation",
                "status": "active",
                "where": [{"path": "code.coding.where(code = '8302-2').exists()"}],
                "select": [
                    {"column": [{"name": "id", "path": "id"}, {"name": "cm", "path": "value.ofType(Quantity).value"}]}
                ],
            }
        )
    )
    out_csv, out_pq = tmp_path / "h.csv", tmp_path / "h.parquet"
    assert run(["view", "run", str(view), "--out", str(out_csv)], home).returncode == 0
    assert run(["view", "run", str(view), "--out", str(out_pq)], home).returncode == 0
    a, b = pd.read_csv(out_csv), pd.read_parquet(out_pq)
    raw = [e["resource"] for f in files for e in _read_gz(f)["entry"]]
    heights = sorted(
        r["valueQuantity"]["value"]
        for r in raw
        if r["resourceType"] == "Observation" and any(c["code"] == "8302-2" for c in r["code"]["coding"])
    )
    assert sorted(a["cm"]) == heights and sorted(b["cm"]) == heights

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "resourceType": "ViewDefinition",
                "resource": "Patient",
                "status": "active",
                "select": [{"column": [{"name": "x y", "path": "id"}]}],
            }
        )
    )
    assert_clear_error(run(["view", "run", str(bad)], home), "x y")
    bad.write_text("{")
    assert_clear_error(run(["view", "run", str(bad)], home), "not valid JSON")
    assert_clear_error(run(["view", "run", "labs"], home), "neither a ViewDefinition file nor a built-in view")
    assert_clear_error(run(["view", "run", str(view), "--out", str(tmp_path / "h.xlsx")], home), ".xlsx")
    assert not (tmp_path / "h.xlsx").exists()


def test_conformance_command_prints_the_summary(tmp_path: Path, home: Path) -> None:
    suite = DATA / "fhir" / "sql-on-fhir-v2" / "tests"
    proc = run(["conformance", str(suite)], home)
    assert proc.returncode == 0 and "106 passed, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    wrong = json.loads((suite / "basic.json").read_text())
    wrong["tests"] = wrong["tests"][:1]
    wrong["tests"][0]["expect"] = [{"id": "nobody"}]
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    failed = run(["conformance", str(tmp_path / "wrong.json")], home)
    assert failed.returncode == 1 and "0 passed, 1 failed" in failed.stdout and "FAIL" in failed.stdout


def test_convert_then_ingest_physionet(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "pn"
    proc = run(["convert", "physionet-2012", str(out), "--limit", "3"], home)
    assert proc.returncode == 0, proc.stderr
    assert "3 Patient" in proc.stdout and (out / "Observation.ndjson.gz").is_file()
    assert run(["ingest", str(out)], home).returncode == 0
    assert_clear_error(run(["convert", "mimic-iv", str(out)], home), "physionet-2012")
