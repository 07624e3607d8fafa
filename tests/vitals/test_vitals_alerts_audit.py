"""Alerts of the command-line monitors in the audit trail: every NEWS2 alert of `medml vitals watch` and every wearable
trend alert of `medml vitals wearable check` is one record of the service's hash-chained audit log, which `medml
audit verify` accepts; a wearable alert is written once however often the rules run; a log that cannot be written
stops the command with one clear line (exit 2) before anything is scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhir_vitals import full_set
from rcp_tables import MISSING, NEWS2_FILE

from medml.service.audit import digest

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)


def medml(args: list[str], home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", *args], capture_output=True, text=True, env=env, input=stdin, timeout=120
    )


def ndjson(resources: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def records(log: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["event"] == event]


def test_each_watch_alert_is_one_record_of_the_audit_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    feed = tmp_path / "v.ndjson"
    feed.write_text(
        ndjson(
            [
                *full_set(),
                *full_set(patient="Patient/2"),
                *full_set(minutes=30, rr=26, pulse=135),  # Patient/1: low-medium, then medium
                *full_set(minutes=30, patient="Patient/2", rr=26, pulse=135, acvpu="Voice"),  # to high
            ]
        )
    )
    proc = medml(["vitals", "watch", str(feed)], home)
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [(a["patient"], a["band"]) for a in alerts] == [
        ("Patient/1", "low-medium"),
        ("Patient/1", "medium"),
        ("Patient/2", "low-medium"),
        ("Patient/2", "medium"),
        ("Patient/2", "high"),
    ]
    log = home / "service" / "audit.jsonl"
    written = records(log, "vitals-alert")
    assert [r["output_sha256"] for r in written] == [digest(a) for a in alerts]
    for r, a in zip(written, alerts, strict=True):
        assert r["patient"] == a["patient"] and r["model"] == "NEWS2 (RCP 2017)"
        assert r["cards"][0]["summary"].startswith(f"NEWS2 {a['total']}: {a['band']} clinical risk")
        assert r["cards"][0]["indicator"] == {"high": "critical"}.get(a["band"], "warning")
        assert r["caller"]["iss"] == "medml cli: medml vitals watch"
    assert "5 alerts written to the audit log" in proc.stderr
    verified = medml(["audit", "verify", "--log", str(log)], home)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout + verified.stderr
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_every_score_lines_are_not_alerts_and_no_audit_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    text = ndjson([*full_set(), *full_set(minutes=5, rr=30)])
    proc = medml(["vitals", "watch", "-", "--every-score"], home, stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert len(records(home / "service" / "audit.jsonl", "vitals-alert")) == 1  # 14 scores, one of them an alert
    other = tmp_path / "other"
    assert medml(["vitals", "watch", "-", "--no-audit"], other, stdin=text).returncode == 0
    assert not (other / "service" / "audit.jsonl").exists()


def test_an_audit_log_that_cannot_be_written_stops_watch_before_scoring(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    proc = medml(["vitals", "watch", "-", "--audit-log", str(folder)], tmp_path, stdin=ndjson(full_set(rr=30)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a folder" in proc.stderr and "--no-audit" in proc.stderr and proc.stdout == ""


def test_a_wearable_alert_is_written_once_however_often_check_runs(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(
        "timestamp,heart_rate,spo2\n"
        + "".join(f"2026-02-20T03:{m:02d}:00Z,60,{89 if m < 25 else 97}\n" for m in range(0, 60, 5))
    )
    imported = medml(["vitals", "wearable", "import", str(export), "--patient", "Patient/w1"], tmp_path)
    assert imported.returncode == 0, imported.stderr
    first = medml(["vitals", "wearable", "check", "--jsonl"], tmp_path)
    assert first.returncode == 0, first.stderr
    (alert,) = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert "1 new alert(s) written to the audit log" in first.stderr
    again = medml(["vitals", "wearable", "check"], tmp_path)
    assert again.returncode == 0 and "0 new alert(s)" in again.stderr and "(1 already there)" in again.stderr
    log = tmp_path / "service" / "audit.jsonl"
    (record,) = records(log, "wearable-alert")
    assert record["output_sha256"] == digest(alert) and record["patient"] == "Patient/w1"
    assert record["cards"][0]["summary"].startswith("SpO2 low, sustained at 2026-02-20T03:00:00+00:00")
    assert medml(["audit", "verify", "--log", str(log)], tmp_path).returncode == 0
