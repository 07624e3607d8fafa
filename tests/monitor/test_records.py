"""PredictionRecords: validated on creation, written one line each by many writers, read back as records or a table."""

from __future__ import annotations

import multiprocessing
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from medml.errors import DataError, InputFileError
from medml.monitor import PredictionLog, PredictionRecord, summarize_inputs

FEATURES = ["age", "heart_rate", "lactate", "sbp"]


def record(i: int, **changes: object) -> PredictionRecord:
    fields: dict[str, object] = {
        "model": "readmission@3",
        "service": "readmission-risk",
        "patient": f"patient-{i}",
        "time": f"2024-05-01T08:{i % 60:02d}:00.000000Z",
        "score": (i % 1000) / 1000,
        "risk": "high" if i % 2 else "low",
        "inputs": summarize_inputs({"age": 70 + i, "heart_rate": None, "lactate": 2.1}, FEATURES),
        "index_time": "2024-04-30T22:00:00+00:00",
        "hook_instance": f"hook-{i}",
    }
    fields.update(changes)
    return PredictionRecord(**fields)  # type: ignore[arg-type]


def test_input_summary_counts_missing_and_hashes_the_vector() -> None:
    s = summarize_inputs({"age": 70, "heart_rate": None, "sbp": float("nan")}, FEATURES)
    assert (s.n_present, s.n_missing, s.missing) == (1, 3, ("heart_rate", "lactate", "sbp"))
    same = summarize_inputs({"age": np.float64(70.0), "sbp": np.nan}, FEATURES)  # numpy values, absent = None = NaN
    assert same.features_sha256 == s.features_sha256
    assert summarize_inputs({"age": 71}, FEATURES).features_sha256 != s.features_sha256
    assert summarize_inputs({"age": 70}, FEATURES[::-1]).features_sha256 != s.features_sha256  # the model's order
    keys = summarize_inputs({"b": 1, "a": 2})
    assert (keys.n_present, keys.missing) == (2, ())


def test_round_trip_as_records_and_as_a_table(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "predictions.jsonl")
    written = [record(1), record(2, index_time=None, hook_instance=None), record(3, score=1)]
    for r in written:
        log.append(r)
    assert log.read() == written
    assert isinstance(log.read()[2].score, float)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600  # it holds patient ids
    df = log.frame()
    assert list(df["patient"]) == ["patient-1", "patient-2", "patient-3"]
    assert list(df["score"]) == [0.001, 0.002, 1.0]
    assert str(df["time"].dt.tz) == "UTC" and str(df["index_time"].dt.tz) == "UTC"
    assert df["index_time"].isna().tolist() == [False, True, False]
    assert df.loc[0, "missing"] == ("heart_rate", "sbp")
    assert (df["n_present"].dtype, df["n_missing"].tolist()) == (np.dtype("int64"), [2, 2, 2])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "readmission"}, "is not NAME@VERSION"),
        ({"score": 1.5}, "is not a probability between 0 and 1"),
        ({"score": float("nan")}, "is not a probability"),
        ({"score": True}, "is not a probability"),
        ({"time": "2024-05-01T08:30:00"}, "has no time zone"),
        ({"index_time": "yesterday"}, "is not an ISO 8601 time"),
    ],
)
def test_invalid_records_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        record(1, **changes)


def test_reading_a_damaged_log_names_the_line(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "predictions.jsonl")
    with pytest.raises(InputFileError, match="no prediction log at"):
        log.read()
    log.append(record(1))
    with log.path.open("ab") as fh:
        fh.write(b'{"model": "readmission@3", "sco')  # torn by a full disk
    log.append(record(2))  # starts on a line of its own
    with pytest.raises(InputFileError, match=r"line 2 is not a prediction record"):
        log.read()
    lines = log.path.read_bytes().splitlines()
    assert len(lines) == 3  # the torn line did not swallow record 2
    log.path.write_bytes(lines[0] + b"\n" + lines[2] + b"\n")
    assert [r.patient for r in log.read()] == ["patient-1", "patient-2"]


def _append_many(path: Path, tag: int, n: int) -> None:
    log = PredictionLog(path)
    for i in range(n):
        log.append(record(tag * 1000 + i))


def test_threads_and_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, k, 200)) for k in (1, 2)]
    threads = [threading.Thread(target=_append_many, args=(path, k, 100)) for k in (3, 4)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    patients = sorted(r.patient for r in PredictionLog(path).read())
    expected = sorted(f"patient-{k * 1000 + i}" for k, n in ((1, 200), (2, 200), (3, 100), (4, 100)) for i in range(n))
    assert patients == expected


def test_importing_the_monitor_and_audit_is_cheap() -> None:
    code = (
        "import sys, medml.monitor, medml.service.audit; "
        "print(','.join(m for m in ('pandas', 'fastapi', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""
