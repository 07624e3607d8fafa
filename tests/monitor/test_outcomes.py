"""Outcomes read from files: PhysioNet 2012 stays as FHIR against the challenge's own Outcomes-a.txt, CSV tables,
and the times of a file (zones, a mix of zones, dates)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from medml.config import get_settings
from medml.errors import ConfigError, DataError, InputFileError
from medml.monitor.outcomes import read_outcomes

SET_A = get_settings().data_root / "icu" / "physionet-2012-set-a"
STAYS = (132539, 132540, 132541, 132543, 132545, 132547, 132548, 132551, 132592, 132973, 133308, 135757)
needs_physionet = pytest.mark.skipif(not (SET_A / "set-a.tar.gz").is_file(), reason=f"no PhysioNet data at {SET_A}")


def challenge_outcomes() -> dict[str, dict[str, str]]:
    """Outcomes-a.txt as the challenge ships it, read with the csv module: RecordID -> its row."""
    with (SET_A / "Outcomes-a.txt").open(newline="") as fh:
        return {r["RecordID"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def stays_ndjson(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from medml.fhir.convert.physionet2012 import iter_stays

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet data at {SET_A}")
    path = tmp_path_factory.mktemp("fhir") / "stays.ndjson"
    with path.open("wb") as fh:
        for stay in iter_stays(SET_A, record_ids=STAYS):
            for res in stay[:2]:  # the Patient and the Encounter
                fh.write(orjson.dumps(res) + b"\n")
    yield path


@needs_physionet
def test_discharge_dispositions_are_the_challenges_in_hospital_deaths(stays_ndjson: Path) -> None:
    rows = read_outcomes(stays_ndjson)
    truth = challenge_outcomes()
    assert len(rows) == len(STAYS)
    for r in rows:
        record = r.patient.removeprefix("pn2012-")
        assert r.encounter == r.patient  # the converter names the stay's Encounter as its Patient
        assert r.value == float(truth[record]["In-hospital_death"]), record
        assert r.outcome == "discharge disposition exp" and r.source == "stays.ndjson"
    assert sum(r.value for r in rows) == sum(int(truth[str(s)]["In-hospital_death"]) for s in STAYS)


@needs_physionet
def test_deaths_are_the_patients_with_a_survival_time(stays_ndjson: Path) -> None:
    rows = read_outcomes(stays_ndjson, rule="death", outcome="death")
    truth = challenge_outcomes()
    died = {f"pn2012-{s}" for s in STAYS if truth[str(s)]["Survival"] != "-1"}
    assert {r.patient for r in rows} == died and all(r.value == 1.0 for r in rows)
    assert all(r.encounter is None and r.time is not None and r.time.tzinfo is not None for r in rows)
    assert all(r.time is not None and (r.time.hour, r.time.minute) == (0, 0) for r in rows)  # a date: 00:00 UTC


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_of_outcomes_with_zones(tmp_path: Path) -> None:
    f = write(
        tmp_path / "o.csv",
        "patient,encounter,outcome,value,time\n"
        "p1,e1,death,1,2024-05-01T10:00:00+02:00\n"
        "p2,,death,no,2024-05-02T08:00:00Z\n"
        "p3,e3,lactate,4.5,2024-05-03\n",
    )
    rows = read_outcomes(f)
    assert [(r.patient, r.encounter, r.outcome, r.value) for r in rows] == [
        ("p1", "e1", "death", 1.0),
        ("p2", None, "death", 0.0),
        ("p3", "e3", "lactate", 4.5),
    ]
    assert rows[0].time == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert rows[2].time == datetime(2024, 5, 3, tzinfo=UTC)


def test_a_mix_of_times_with_and_without_a_zone_is_refused(tmp_path: Path) -> None:
    f = write(
        tmp_path / "o.csv",
        "patient,value,time\np1,1,2024-05-01T10:00:00Z\np2,0,2024-05-01T11:00:00\np3,0,2024-05-01T12:00:00\n",
    )
    with pytest.raises(
        DataError, match=r"mixes times with a time zone \(o.csv, line 2.*and without one \(o.csv, line 3"
    ):
        read_outcomes(f, outcome="death")
    with pytest.raises(DataError, match="mixes times"):
        read_outcomes(f, outcome="death", timezone="Europe/Berlin")  # a zone for the naive ones does not settle it


def test_times_without_a_zone_need_the_zone_they_were_written_in(tmp_path: Path) -> None:
    f = write(tmp_path / "o.csv", "patient,value,time\np1,1,2024-05-01 10:00\np2,0,2024-12-01 10:00\n")
    with pytest.raises(DataError, match="have no time zone.*--timezone"):
        read_outcomes(f, outcome="death")
    rows = read_outcomes(f, outcome="death", timezone="Europe/Berlin")
    # Central European Summer Time (UTC+2) in May, standard time (UTC+1) in December
    assert [r.time for r in rows] == [datetime(2024, 5, 1, 8, 0, tzinfo=UTC), datetime(2024, 12, 1, 9, 0, tzinfo=UTC)]
    with pytest.raises(ConfigError, match="unknown time zone"):
        read_outcomes(f, outcome="death", timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("patient,outcome\np1,death\n", DataError, "no column value"),
        ("patient,outcome,value\np1,death,maybe\n", DataError, "line 2: value 'maybe' is not 1/0"),
        ("patient,outcome,value\n,death,1\n", DataError, "line 2: no patient"),
        ("patient,outcome,value,time\np1,death,1,yesterday\n", DataError, "'yesterday' is not an ISO 8601"),
        ("patient,outcome,value\n", DataError, "no outcomes"),
        ("", InputFileError, "is empty"),
    ],
)
def test_a_bad_csv_says_what_is_wrong(tmp_path: Path, text: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        read_outcomes(write(tmp_path / "o.csv", text))


def observation(i: int, code: str, value: dict[str, Any], when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/p{i}"},
        "encounter": {"reference": f"Encounter/e{i}"},
        "effectiveDateTime": when,
        **value,
    }


def test_observations_and_conditions_named_by_the_task(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation(1, "2524-7", {"valueQuantity": {"value": 4.1}}, "2024-05-01T08:00:00Z")},
            {"resource": observation(2, "2524-7", {"valueQuantity": {"value": 1.2}}, "2024-05-01T09:00:00+01:00")},
            {"resource": observation(3, "8867-4", {"valueQuantity": {"value": 80}}, "2024-05-01T08:00:00Z")},
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91302008"}]},
                    "subject": {"reference": "http://ehr.example/fhir/Patient/p4"},
                    "onsetDateTime": "2024-05-02T00:30:00Z",
                }
            },
        ],
    }
    f = tmp_path / "bundle.json"
    f.write_bytes(orjson.dumps(bundle))
    lactate = read_outcomes(f, rule="observation:http://loinc.org|2524-7")
    assert [(r.patient, r.encounter, r.value) for r in lactate] == [("p1", "e1", 4.1), ("p2", "e2", 1.2)]
    assert lactate[1].time == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert lactate[0].outcome == "observation http://loinc.org|2524-7"
    (sepsis,) = read_outcomes(f, rule="condition:91302008", outcome="sepsis")
    assert (sepsis.patient, sepsis.encounter, sepsis.value, sepsis.outcome) == ("p4", None, 1.0, "sepsis")
    with pytest.raises(DataError, match="none with the outcome"):
        read_outcomes(f, rule="condition:0000")
    with pytest.raises(ConfigError, match="unknown outcome rule"):
        read_outcomes(f, rule="observation")


def test_a_fhir_time_with_a_time_but_no_zone_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "obs.ndjson"
    f.write_bytes(
        orjson.dumps(observation(1, "2524-7", {"valueQuantity": {"value": 4.1}}, "2024-05-01T08:00:00Z"))
        + b"\n"
        + orjson.dumps(observation(2, "2524-7", {"valueQuantity": {"value": 2.0}}, "2024-05-01T09:00:00"))
        + b"\n"
    )
    with pytest.raises(DataError, match=r"mixes times .*obs.ndjson, line 2"):
        read_outcomes(f, rule="observation:2524-7")
    f.write_bytes(b'{"resourceType": "Observation"\n')
    with pytest.raises(InputFileError, match="line 1 is not JSON"):
        read_outcomes(f, rule="observation:2524-7")


@needs_physionet
def test_the_cli_loads_fhir_outcomes_joined_to_the_stays_predictions(
    stays_ndjson: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    from datetime import timedelta

    from medml.cli.main import main
    from medml.monitor.store import MonitorStore, PredictionRow

    home = tmp_path / "home"
    store = MonitorStore(home / "monitor.duckdb")
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    # two predictions per stay, as the service records them (encounter = the stay's Encounter id)
    store.record(
        PredictionRow("pn-model", 1, "svc", f"pn2012-{s}", t0 + timedelta(hours=h), 0.3, {"x": 1.0}, f"pn2012-{s}")
        for s in STAYS
        for h in (6, 48)
    )

    def medml(*args: str) -> int:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MEDML_HOME", str(home))
            mp.setattr(sys, "argv", ["medml", *args])
            umask = os.umask(0o022)
            os.umask(umask)
            try:
                main()
                return 0
            except SystemExit as e:
                return int(e.code or 0)
            finally:
                os.umask(umask)

    capsys.readouterr()
    assert medml("monitor", "outcomes", str(stays_ndjson), "--from", "discharge", "--outcome", "death") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"loaded {len(STAYS)} new outcome(s) of {len(STAYS)} patient(s)" in out
    assert f"death: {2 * len(STAYS)} prediction(s) now have this outcome" in out
    truth = challenge_outcomes()
    joined = store.joined("pn-model")
    assert len(joined) == 2 * len(STAYS)
    for r in joined.itertuples():
        assert r.outcome == float(truth[str(r.patient).removeprefix("pn2012-")]["In-hospital_death"])
    # a disposition code that is not the event's: the same stays, other values: refused, nothing changes
    before = store.outcomes()
    assert medml("monitor", "outcomes", str(stays_ndjson), "--outcome", "death", "--event-codes", "oth") == 2
    assert "contradict the ones loaded before" in " ".join(capsys.readouterr().err.split())
    pd.testing.assert_frame_equal(store.outcomes(), before)
