"""`medml vitals watch|score` as a user meets them: alerts as JSON lines, a summary of counts, bad lines reported by
number while the stream goes on, and unusable input as one clear line with exit code 2 and no traceback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fhir_vitals import full_set, observation
from rcp_tables import MISSING, NEWS2, NEWS2_FILE, QSOFA, band_score

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)
COMMAND = [sys.executable, "-m", "medml.cli", "vitals"]


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}


def run(args: list[str], home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env(home), input=stdin, timeout=120)


def assert_clear_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("error:") == 1, proc.stderr
    msg = " ".join(proc.stderr.split())
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


def ndjson(resources: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def alerts_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_watch_a_file_writes_alerts_and_a_summary(tmp_path: Path, home: Path) -> None:
    feed = tmp_path / "vitals.ndjson"
    feed.write_text(ndjson([*full_set(), *full_set(minutes=30, rr=26, pulse=135, patient="Patient/1")]))
    proc = run(["watch", str(feed)], home)
    assert proc.returncode == 0, proc.stderr
    alerts = alerts_of(proc.stdout)
    assert [a["band"] for a in alerts] == ["low-medium", "medium"]
    for a in alerts:
        assert {"patient", "time", "total", "band", "sub_scores", "parameters", "score", "version"} <= set(a)
    assert "lines read" in proc.stderr and "14" in proc.stderr and "alerts raised" in proc.stderr


def test_watch_reads_stdin_and_reports_bad_lines_by_number(home: Path) -> None:
    no_subject = observation("8867-4", 80)
    del no_subject["subject"]
    future = observation("8867-4", 80, minutes=60 * 24 * 365 * 30)  # 30 years after 2024
    text = "this is not json\n" + ndjson([no_subject, future, *full_set(rr=30)])
    proc = run(["watch", "-"], home, stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert "line 1: not JSON" in proc.stderr and "line 2: pulse Observation has no subject" in proc.stderr
    assert "line 3: pulse of Patient/1 at 2054" in proc.stderr and "in the future" in proc.stderr
    assert [a["band"] for a in alerts_of(proc.stdout)] == ["low-medium"]
    assert "Traceback" not in proc.stderr


def test_watch_follows_a_growing_file(tmp_path: Path, home: Path) -> None:
    feed = tmp_path / "growing.ndjson"
    feed.write_text(ndjson(full_set()))
    proc = subprocess.Popen(
        [*COMMAND, "watch", str(feed), "--follow", "--idle-exit", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(home),
    )
    time.sleep(1.0)
    later = ndjson(full_set(minutes=10, rr=26, pulse=135))
    with feed.open("a") as f:
        f.write(later[:50])  # half a line: the watcher must wait for the rest
        f.flush()
        time.sleep(0.5)
        f.write(later[50:])
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert [a["band"] for a in alerts_of(stdout)] == ["low-medium", "medium"]
    assert "not JSON" not in stderr


def test_watch_appends_alerts_to_a_file(tmp_path: Path, home: Path) -> None:
    feed = tmp_path / "v.ndjson"
    feed.write_text(ndjson(full_set(rr=30)))
    out = tmp_path / "alerts.jsonl"
    assert run(["watch", str(feed), "--out", str(out)], home).returncode == 0
    assert run(["watch", str(feed), "--out", str(out), "--repeat-minutes", "0"], home).returncode == 0
    assert [a["band"] for a in alerts_of(out.read_text())] == ["low-medium", "low-medium"]


def test_watch_unusable_input_is_one_line_and_exit_2(tmp_path: Path, home: Path) -> None:
    assert_clear_error(run(["watch", str(tmp_path / "absent.ndjson")], home), "does not exist")
    assert_clear_error(run(["watch", str(tmp_path)], home), "is a folder")
    table = tmp_path / "vitals.csv"
    table.write_text("patient,respiratory_rate\n1,16\n")
    assert_clear_error(run(["watch", str(table)], home), "no line of", "NDJSON")
    feed = tmp_path / "v.ndjson"
    feed.write_text(ndjson(full_set()))
    assert_clear_error(run(["watch", str(feed), "--idle-exit", "1"], home), "--follow")
    assert_clear_error(run(["watch", str(feed), "--validity-hours", "-1"], home), "negative")


def _vector_rows() -> list[dict[str, Any]]:
    rows = []
    for i, v in enumerate(NEWS2["test_vectors"]):
        x = v["in"]
        rows.append(
            {
                "patient": f"P{i}",
                "time": "2024-05-01T08:00Z",
                "respiratory_rate": x["rr"],
                "spo2": x["spo2"],
                "spo2_scale": x["scale"],
                "supplemental_oxygen": x["o2"],
                "systolic_bp": x["sbp"],
                "heart_rate": x["pulse"],
                "temperature": x["temp"],
                "consciousness": x["acvpu"],
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_score_a_csv_gives_the_rcp_totals_and_bands(tmp_path: Path, home: Path) -> None:
    path = write_csv(tmp_path / "sets.csv", _vector_rows())
    proc = run(["score", str(path), "--format", "jsonl"], home)
    assert proc.returncode == 0, proc.stderr
    records = alerts_of(proc.stdout)
    for record, vector in zip(records, NEWS2["test_vectors"], strict=True):
        assert record["news2"]["total"] == vector["expect_total"]
        assert record["news2"]["band"] == vector["expect_risk"]
        assert record["news2"]["version"] == "RCP 2017" and record["qsofa"]["score"] == "qSOFA"
    table = run(["score", str(path)], home)
    assert table.returncode == 0 and "low-medium" in table.stdout and "not a diagnosis" in table.stdout


def test_score_a_csv_with_gcs_gives_the_sepsis3_qsofa(tmp_path: Path, home: Path) -> None:
    rows = []
    for i, v in enumerate(QSOFA["test_vectors"]):
        row = dict.fromkeys(
            ["patient", "respiratory_rate", "spo2", "supplemental_oxygen", "systolic_bp", "heart_rate"], ""
        )
        row |= {"patient": f"Q{i}", "respiratory_rate": v["in"]["rr"], "systolic_bp": v["in"]["sbp"]}
        row |= {"temperature": "", "consciousness": "", "gcs": v["in"]["gcs"]}
        rows.append(row)
    proc = run(["score", str(write_csv(tmp_path / "q.csv", rows)), "--format", "jsonl"], home)
    assert proc.returncode == 0, proc.stderr
    got = [r["qsofa"]["total"] for r in alerts_of(proc.stdout)]
    assert got == [v["expect"] for v in QSOFA["test_vectors"]]


def test_score_a_bad_cell_is_reported_and_scored_as_missing(tmp_path: Path, home: Path) -> None:
    rows = _vector_rows()[:2]
    rows[1]["respiratory_rate"] = "fast"
    rows[0]["temperature"] = "98.6"
    proc = run(["score", str(write_csv(tmp_path / "bad.csv", rows)), "--format", "jsonl"], home)
    assert proc.returncode == 0, proc.stderr
    assert "row 3: respiratory_rate 'fast' is not a number" in proc.stderr
    assert "row 2: temperature 98.6 is outside 25-45 degC (give degC)" in proc.stderr
    records = alerts_of(proc.stdout)
    assert records[1]["news2"]["missing"] == ["respiratory rate"] and not records[1]["news2"]["complete"]
    assert records[0]["news2"]["missing"] == ["temperature"]


def test_score_a_csv_with_wrong_columns_is_one_line_and_exit_2(tmp_path: Path, home: Path) -> None:
    rows = _vector_rows()[:1]
    extra = write_csv(tmp_path / "extra.csv", [{**rows[0], "lactate": 2.1}])
    assert_clear_error(run(["score", str(extra)], home), "unknown column(s) 'lactate'", "use only")
    lacking = write_csv(tmp_path / "lacking.csv", [{k: v for k, v in rows[0].items() if k != "heart_rate"}])
    assert_clear_error(run(["score", str(lacking)], home), "lacks the required column(s) heart_rate")
    assert_clear_error(run(["score", str(tmp_path / "none.csv")], home), "does not exist")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_clear_error(run(["score", str(empty)], home), "is empty")


def test_score_fhir_bundle_and_ndjson_per_patient(tmp_path: Path, home: Path) -> None:
    resources = [*full_set(patient="Patient/a"), *full_set(patient="Patient/b", rr=26, pulse=135, sbp=95)]
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}))
    lines = tmp_path / "b.ndjson"
    lines.write_text("{broken\n" + ndjson(resources))
    p = NEWS2["parameters"]
    expected_b = sum(
        band_score(p[table], value)
        for table, value in [("respiration_rate_per_min", 26), ("pulse_per_min", 135), ("systolic_bp_mmHg", 95)]
    )
    for path in (bundle, lines):
        proc = run(["score", str(path), "--format", "jsonl"], home)
        assert proc.returncode == 0, proc.stderr
        by_patient = {r["patient"]: r for r in alerts_of(proc.stdout)}
        assert by_patient["Patient/a"]["news2"]["total"] == 0
        assert by_patient["Patient/b"]["news2"]["total"] == expected_b
        assert by_patient["Patient/b"]["qsofa"]["positive"] is True
    assert "line 1: not JSON" in run(["score", str(lines)], home).stderr
