"""Bad input to the Spark engine at the command line: one line saying what to do, exit 2, nothing written.

None of these starts Spark: Java, the master and the output folder are checked first, and a view the Spark dialect
cannot express is refused when it is compiled.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medml.config import get_settings

pytest.importorskip("pyspark", reason="the Spark extra is not installed (pip install -e '.[spark]')")

MEDML = [sys.executable, "-m", "medml.cli"]
SUITE_FILE = get_settings().data_root / "fhir/sql-on-fhir-v2/tests/basic.json"


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "MEDML_HOME": str(tmp_path / "home"), "COLUMNS": "200", **env}
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=environ, timeout=300)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    msg = " ".join(proc.stderr.split())
    assert msg.startswith("error:"), msg
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


@pytest.fixture()
def ndjson(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    with gzip.open(folder / "Observation.ndjson.gz", "wt") as f:
        f.write(json.dumps({"resourceType": "Observation", "id": "o1", "status": "final"}) + "\n")
    return folder


def test_no_java_on_the_machine(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run(
        ["fhir", "conformance", str(SUITE_FILE), "--engine", "spark"],
        tmp_path,
        PATH=str(empty),
        JAVA_HOME=str(tmp_path / "no-jdk"),
    )
    assert_one_clear_line(proc, "needs java 17", "no java is on path", "JAVA_HOME")


def test_a_spark_master_that_cannot_be_reached(tmp_path: Path, ndjson: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "parquet"
    proc = run(
        [
            "fhir",
            "ingest",
            str(ndjson),
            "--engine",
            "spark",
            "--out",
            str(out),
            "--master",
            f"spark://127.0.0.1:{port}",
        ],
        tmp_path,
    )
    assert_one_clear_line(proc, f"spark://127.0.0.1:{port} cannot be reached", "--master local[2]")
    assert not out.exists()


def test_a_master_url_spark_does_not_know(tmp_path: Path, ndjson: Path) -> None:
    args = ["fhir", "ingest", str(ndjson), "--engine", "spark", "--out", str(tmp_path / "o"), "--master", "x"]
    proc = run(args, tmp_path)
    assert_one_clear_line(proc, "is not a spark master url")


@pytest.mark.parametrize("command", ["ingest", "view run", "predict"])
def test_an_output_folder_that_exists_is_left_alone(command: str, tmp_path: Path, ndjson: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = {
        "ingest": ["fhir", "ingest", str(ndjson)],
        "view run": ["fhir", "view", "run", "observations", "--input", str(ndjson)],
        "predict": ["predict", "any-model", "--input", str(ndjson), "--id", "id"],
    }[command]
    proc = run([*args, "--engine", "spark", "--out", str(out)], tmp_path)
    assert_one_clear_line(proc, f"{out} already exists", "new folder")
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"


def test_a_view_the_spark_dialect_cannot_express(tmp_path: Path, ndjson: Path) -> None:
    """Spark's VARIANT reads 1.50 as 1.5, so a decimal's boundary inside forEach (its precision) is refused, not
    computed wrong; DuckDB keeps the text and computes it."""
    view = {
        "resourceType": "ViewDefinition",
        "resource": "Observation",
        "status": "active",
        "select": [
            {"forEach": "component", "column": [{"name": "low", "path": "value.ofType(Quantity).value.lowBoundary()"}]}
        ],
    }
    path = tmp_path / "view.json"
    path.write_text(json.dumps(view))
    out = tmp_path / "rows"
    args = ["fhir", "view", "run", str(path), "--engine", "spark", "--input", str(ndjson), "--out", str(out)]
    proc = run(args, tmp_path)
    assert_one_clear_line(proc, "spark engine cannot compute lowboundary()", "--engine duckdb")
    assert not out.exists()
    from medml.fhir.view import compile_view

    assert "json_extract_string" in compile_view(view).sql  # the same view compiles for DuckDB
