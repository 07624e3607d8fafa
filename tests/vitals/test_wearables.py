"""Wearable exports: read as FHIR Observations with their Device (checked against the fhir.resources R4B models),
stored once however often imported, the resting-heart-rate rule against pandas' own 5-minute resampling, the trend
and SpO2 rules on closed-form series, and the bad input a user meets (unknown columns, a future time, a value in the
wrong unit, a line that cannot be parsed).

No real wearable export is in ../shared/data: the files here follow the CSV layout documented in
``medml.vitals.wearables`` (a time column, then heart_rate, spo2, steps, sleep with an optional [unit])."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fhir.resources.R4B.device import Device as R4BDevice
from fhir.resources.R4B.observation import Observation as R4BObservation

from medml.errors import ConfigError, InputFileError
from medml.fhir.store import FhirStore
from medml.vitals.wearables import (
    Device,
    Rules,
    check_patient,
    read_wearable_csv,
    read_wearable_fhir,
    resting_heart_rate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PATIENT = "Patient/w1"
WATCH = Device("Acme", "Band 3", "SN-42")


def cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", "vitals", "wearable", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_become_valid_fhir_observations_that_reference_the_device(tmp_path: Path) -> None:
    f = write(
        tmp_path / "export.csv",
        "time,heart_rate[bpm],spo2[1],steps,sleep[h]\n"
        "2026-02-27T23:00:00+01:00,58,0.97,,7.5\n"
        "2026-02-28T08:00:00,71,,1200,\n",
    )
    got = read_wearable_csv(f, PATIENT, WATCH, timezone="Europe/Berlin", now=NOW)
    assert dict(got.measurements) == {"heart_rate": 2, "spo2": 1, "sleep": 1, "steps": 1}
    device, *observations = got.resources
    R4BDevice.model_validate(device)
    by_code: dict[str, list[dict[str, Any]]] = {}
    for obs in observations:
        R4BObservation.model_validate(obs)  # R4B's own validation of every resource we write
        assert obs["device"] == {"reference": f"Device/{device['id']}"}
        assert obs["subject"] == {"reference": PATIENT}
        by_code.setdefault(obs["code"]["coding"][0]["code"], []).append(obs)
    assert by_code["59408-5"][0]["valueQuantity"]["value"] == pytest.approx(97.0)  # fraction -> %
    assert by_code["93832-4"][0]["valueQuantity"] == {
        "value": 450.0,
        "unit": "min",
        "system": "http://unitsofmeasure.org",
        "code": "min",
    }
    # a time without an offset is read in the zone given: 08:00 in Berlin in February is 07:00 UTC
    later = next(o for o in by_code["8867-4"] if o["valueQuantity"]["value"] == 71)
    assert datetime.fromisoformat(later["effectiveDateTime"]) == datetime(2026, 2, 28, 7, tzinfo=UTC)


def test_import_twice_stores_once_and_check_reads_the_store(tmp_path: Path) -> None:
    f = write(
        tmp_path / "export.csv",
        "timestamp,heart_rate,spo2\n"
        + "".join(f"2026-02-20T03:{m:02d}:00Z,60,{89 if m < 25 else 97}\n" for m in range(0, 60, 5)),
    )
    args = ["import", str(f), "--patient", PATIENT, "--manufacturer", "Acme", "--model", "Band 3"]
    for _ in range(2):
        proc = cli(args, tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert "imported 24 Observations (heart_rate 12, spo2 12)" in proc.stdout
    with FhirStore(tmp_path / "fhir.duckdb", read_only=True) as fs:
        assert fs.counts() == {"Device": 1, "Observation": 24}
        # the devices resolve; only the patient, who lives in the EHR's record, is not in this store
        assert set(fs.dangling_references()[1]) == {PATIENT}
    proc = cli(["check", "--jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    # 03:00-03:20 five readings of 89 %: 20 minutes below 92 %, sustained
    assert [(a["rule"], a["at"]) for a in alerts] == [("SpO2 low, sustained", "2026-02-20T03:00:00+00:00")]
    assert alerts[0]["source"].startswith("medml wearable rules@") and "not a diagnosis" in alerts[0]["intended_use"]


def test_resting_heart_rate_is_pandas_lowest_five_minute_mean_per_day() -> None:
    rng = np.random.default_rng(3)
    times = pd.date_range("2026-01-01", periods=3 * 24 * 60, freq="min", tz="UTC")[rng.random(3 * 24 * 60) < 0.3]
    bpm = 60 + 15 * np.sin(np.arange(len(times)) / 200.0) + rng.normal(0, 4, len(times))
    ours = resting_heart_rate(zip(times.to_pydatetime(), bpm.tolist(), strict=True), min_bins=12)
    s = pd.Series(bpm, index=times)
    reference = s.resample("5min").mean().dropna().groupby(lambda t: t.date()).min()
    assert sorted(ours) == list(reference.index)
    np.testing.assert_allclose([ours[d] for d in reference.index], reference.to_numpy(), rtol=1e-12)


def daily(rest: list[float], start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> list[tuple[datetime, float]]:
    """Each day a reading every 5 min from 02:00 to 04:00 at the day's resting rate, and a higher one at noon."""
    out = []
    for d, r in enumerate(rest):
        day = start + timedelta(days=d)
        out += [(day + timedelta(hours=2, minutes=5 * k), r) for k in range(24)]
        out.append((day + timedelta(hours=12), r + 30))
    return out


@pytest.mark.parametrize(("recent", "alerts"), [(66.0, 1), (65.0, 0), (64.0, 0)])
def test_resting_heart_rate_alert_needs_a_rise_over_the_28_day_baseline(recent: float, alerts: int) -> None:
    readings = {"heart_rate": daily([60.0] * 28 + [recent] * 3)}
    got, summary = check_patient(PATIENT, readings, Rules(rise_bpm=5.0))
    assert summary["rhr_baseline"] == 60.0 and summary["rhr_recent"] == recent
    assert len(got) == alerts  # a rise of exactly 5 bpm is not "more than 5"


def test_no_heart_rate_alert_without_enough_baseline_days() -> None:
    got, summary = check_patient(PATIENT, {"heart_rate": daily([60.0] * 13 + [80.0] * 3)}, Rules())
    assert got == [] and "rhr_baseline" not in summary


@pytest.mark.parametrize(
    ("minutes", "gap", "alerts"),
    [
        ([0, 5, 10, 15], None, 1),  # 15 min sustained, 4 readings
        ([0, 5, 10], None, 0),  # 10 min: not sustained
        ([0, 5, 25, 30], None, 0),  # a 20-min gap breaks the run
        ([0, 5, 10, 15], 7, 0),  # a normal reading at 7 min breaks it
    ],
)
def test_spo2_alert_only_when_low_is_sustained(minutes: list[int], gap: int | None, alerts: int) -> None:
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    series = [(t0 + timedelta(minutes=m), 90.0) for m in minutes]
    if gap is not None:
        series.append((t0 + timedelta(minutes=gap), 95.0))
    got, _ = check_patient(PATIENT, {"spo2": sorted(series)}, Rules())
    assert len(got) == alerts


def test_bad_lines_are_counted_and_the_rest_imported(tmp_path: Path) -> None:
    f = write(
        tmp_path / "export.csv",
        "time,heart_rate,spo2\n"
        "2026-02-28T08:00:00Z,70,97\n"
        "2026-02-28T08:05:00Z,71\n"  # a field short: not parseable
        "yesterday,72,96\n"  # not a time
        "2026-02-28T08:10:00Z,abc,96\n"  # heart rate not a number; SpO2 kept
        "2030-01-01T00:00:00Z,70,97\n"  # in the future
        "2026-02-28T08:15:00Z,70,0.95\n",  # SpO2 as a fraction in the % column: wrong unit; heart rate kept
    )
    got = read_wearable_csv(f, PATIENT, WATCH, now=NOW)
    assert dict(got.counts) == {"not parseable": 3, "time in the future": 1, "implausible or wrong unit": 1}
    assert [line for line, _ in got.problems] == [3, 4, 5, 6, 7]
    assert dict(got.measurements) == {"heart_rate": 2, "spo2": 2}
    proc = cli(["import", str(f), "--patient", PATIENT], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "line 7: implausible or wrong unit: spo2 0.95 (expected 50-100 %)" in proc.stderr
    assert "time in the future 1" in " ".join(proc.stderr.split())


def test_unknown_columns_stop_the_import_naming_them_and_nothing_is_written(tmp_path: Path) -> None:
    f = write(tmp_path / "export.csv", "time,heart_rate,calories,spo2[ppm]\n2026-02-28T08:00:00Z,70,300,97\n")
    with pytest.raises(InputFileError, match="'calories', 'spo2\\[ppm\\]'"):
        read_wearable_csv(f, PATIENT, WATCH, now=NOW)
    proc = cli(["import", str(f), "--patient", PATIENT], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1 and "'calories'" in proc.stderr
    assert not (tmp_path / "fhir.duckdb").exists()


def test_an_export_with_no_usable_line_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    f = write(tmp_path / "export.csv", "time,heart_rate\n2099-01-01T00:00:00Z,70\n")
    proc = cli(["import", str(f), "--patient", PATIENT], tmp_path)
    assert proc.returncode == 2 and "time in the future 1" in proc.stderr
    assert not (tmp_path / "fhir.duckdb").exists()


def test_fhir_observations_need_a_device(tmp_path: Path) -> None:
    def obs(i: int, **extra: object) -> dict[str, object]:
        return {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": PATIENT},
            "effectiveDateTime": "2026-02-28T08:00:00Z",
            "valueQuantity": {"value": 64, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            **extra,
        }

    device = {"resourceType": "Device", "id": "d1"}
    lines = [
        device,
        obs(1, device={"reference": "Device/d1"}),
        obs(2),  # no device
        obs(3, device={"reference": "Device/d1"}, valueQuantity={"value": 64, "unit": "Hz", "code": "Hz"}),
        obs(4, device={"reference": "Device/d1"}, effectiveDateTime="2031-01-01T00:00:00Z"),
    ]
    f = write(tmp_path / "obs.ndjson", "\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    got = read_wearable_fhir(f, now=NOW)
    assert [r["id"] for r in got.resources] == ["d1", "o1"]
    assert dict(got.counts) == {
        "no device": 1,
        "implausible or wrong unit": 1,
        "time in the future": 1,
        "not parseable": 1,
    }


def test_options_that_cannot_be_right_are_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "export.csv", "time,heart_rate\n2026-02-28T08:00:00,70\n")
    with pytest.raises(ConfigError, match="Patient/<id>"):
        read_wearable_csv(f, "w1", WATCH, now=NOW)
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        read_wearable_csv(f, PATIENT, WATCH, timezone="Mars/Base", now=NOW)
    with pytest.raises(InputFileError, match="no time column"):
        read_wearable_csv(write(tmp_path / "b.csv", "heart_rate\n70\n"), PATIENT, WATCH, now=NOW)
