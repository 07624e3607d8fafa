"""The monitoring store: predictions with the features the model saw, outcomes joined late, owner-only, retention,
and several processes writing one DuckDB file."""

from __future__ import annotations

import multiprocessing
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.errors import DataError
from medml.monitor.store import PREDICTION_COLUMNS, MonitorStore, OutcomeRow, PredictionRow

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def row(i: int, **changes: object) -> PredictionRow:
    fields: dict[str, object] = {
        "model": "sepsis",
        "version": 2,
        "service": "sepsis-risk",
        "patient": f"p{i}",
        "encounter": f"e{i}",
        "time": T0 + timedelta(minutes=i),
        "index_time": T0 + timedelta(minutes=i) - timedelta(hours=1),
        "score": (i % 100) / 100,
        "risk": "warning",
        "threshold": 0.2,
        "features": {"age": 40.0 + i, "lactate": None if i % 3 == 0 else 1.0 + i / 10, "sex": "F" if i % 2 else "M"},
        "hook_instance": f"h{i}",
    }
    fields.update(changes)
    return PredictionRow(**fields)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> MonitorStore:
    return MonitorStore(tmp_path / "home" / "monitor.duckdb")


def test_predictions_come_back_with_one_column_per_feature_as_recorded(store: MonitorStore) -> None:
    rows = [row(i) for i in reversed(range(20))]  # written out of time order
    assert store.record(rows) == 20
    got = store.predictions("sepsis")
    expected = pd.DataFrame([dict(r.features) for r in sorted(rows, key=lambda r: r.time)])
    assert list(got.columns) == [*PREDICTION_COLUMNS, "age", "lactate", "sex"]
    np.testing.assert_array_equal(got["age"].to_numpy(), expected["age"].to_numpy(dtype=float))
    np.testing.assert_array_equal(got["lactate"].to_numpy(), expected["lactate"].to_numpy(dtype=float))
    assert got["sex"].tolist() == expected["sex"].tolist()
    assert got["patient"].tolist() == [f"p{i}" for i in range(20)]
    assert got["time"].dt.tz is not None and got["time"].iloc[3] == pd.Timestamp(T0 + timedelta(minutes=3))
    assert got["score"].tolist() == [(i % 100) / 100 for i in range(20)]
    assert not got["shadow"].any() and (got["version"] == 2).all() and (got["threshold"] == 0.2).all()
    # the model's own feature order, and a feature never recorded is all missing
    chosen = store.predictions("sepsis", features=["sex", "age", "creatinine"])
    assert list(chosen.columns[-3:]) == ["sex", "age", "creatinine"] and chosen["creatinine"].isna().all()


def test_times_in_other_zones_are_stored_as_the_same_instant(store: MonitorStore) -> None:
    berlin = timezone(timedelta(hours=2))
    store.record([row(0, time=datetime(2024, 5, 1, 10, 0, tzinfo=berlin))])
    assert store.predictions("sepsis")["time"].iloc[0] == pd.Timestamp("2024-05-01T08:00:00Z")


def test_selection_by_version_time_and_shadow(store: MonitorStore) -> None:
    store.record([row(i) for i in range(10)] + [row(i, version=3) for i in range(4)])
    store.record([row(i, version=3, shadow=True, score=0.9) for i in range(5)])
    assert len(store.predictions("sepsis")) == 14
    assert len(store.predictions("sepsis", 3)) == 4
    assert len(store.predictions("sepsis", 3, shadow=True)) == 5
    assert len(store.predictions("sepsis", 3, shadow=None)) == 9
    window = store.predictions("sepsis", 2, since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=7))
    assert window["patient"].tolist() == ["p3", "p4", "p5", "p6"]
    assert store.predictions("other").empty


def test_a_bad_row_writes_nothing(store: MonitorStore) -> None:
    store.record([row(0)])
    with pytest.raises(DataError, match="not a probability"):
        store.record([row(1), row(2, score=1.5)])
    with pytest.raises(DataError, match="no time zone"):
        store.record([row(3, time=datetime(2024, 5, 1, 8, 0))])
    assert store.predictions("sepsis")["patient"].tolist() == ["p0"]


def test_the_file_and_its_log_are_readable_by_the_owner_only(store: MonitorStore) -> None:
    store.record([row(i) for i in range(3)])
    for p in store.path.parent.iterdir():
        if p.name.startswith("monitor.duckdb"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".monitor-")]  # no temporary left


def test_outcomes_join_by_encounter_first_then_by_patient(store: MonitorStore) -> None:
    store.record(
        [
            row(1),  # p1 / e1
            row(2, patient="p1", encounter="e2", time=T0 + timedelta(days=3)),  # p1's second stay
            row(3, encounter=None),  # p3, no encounter in context
            row(4),
        ]
    )
    summary = store.load_outcomes(
        [
            OutcomeRow("p1", "death in hospital", 1, encounter="e2", time=T0 + timedelta(days=5)),
            OutcomeRow("p1", "death in hospital", 0),  # the patient's, for any stay without its own
            OutcomeRow("p3", "death in hospital", 0, encounter="e9"),
        ]
    )
    assert (summary.new, summary.already, summary.patients) == (3, 0, 2)
    j = store.joined("sepsis").set_index("encounter", drop=False)
    by_prediction = dict(zip(j["hook_instance"], j["outcome"], strict=True))
    assert by_prediction["h1"] == 0.0  # e1 has no outcome of its own: the patient's
    assert by_prediction["h2"] == 1.0  # e2's own
    assert by_prediction["h3"] == 0.0  # a prediction without an encounter takes the patient's outcome
    assert np.isnan(by_prediction["h4"])  # not known yet
    assert len(j) == 4  # one row per prediction, never duplicated by the join


def test_before_any_outcome_every_prediction_has_an_unknown_one(store: MonitorStore) -> None:
    store.record([row(i) for i in range(3)])
    j = store.joined("sepsis")
    assert len(j) == 3 and j["outcome"].isna().all() and j["outcome_time"].isna().all()
    assert list(j.columns[-3:]) == ["outcome", "outcome_time", "outcome_name"]


def test_reloading_outcomes_is_idempotent_and_contradictions_change_nothing(store: MonitorStore) -> None:
    store.record([row(i) for i in range(5)])
    outcomes = [OutcomeRow(f"p{i}", "death", i % 2, encounter=f"e{i}", time=T0 + timedelta(days=2)) for i in range(5)]
    first = store.load_outcomes(outcomes[::-1])  # any order
    again = store.load_outcomes(outcomes)
    assert (first.new, first.already) == (5, 0)
    assert (again.new, again.already) == (0, 5)
    before = store.outcomes()
    assert len(before) == 5
    flipped = OutcomeRow("p1", "death", 0, encounter="e1", time=T0 + timedelta(days=2))
    with pytest.raises(DataError, match="contradict the ones loaded before"):
        store.load_outcomes([OutcomeRow("p0", "death", 0, encounter="e0", time=T0 + timedelta(days=2)), flipped])
    with pytest.raises(DataError, match="contradictory outcomes"):
        store.load_outcomes([flipped, OutcomeRow("p1", "death", 1, encounter="e1", time=T0 + timedelta(days=2))])
    with pytest.raises(DataError, match="duplicate outcomes"):
        store.load_outcomes([outcomes[2], outcomes[2]])
    pd.testing.assert_frame_equal(store.outcomes(), before)


def test_outcomes_of_patients_never_scored_are_refused_or_skipped_when_asked(store: MonitorStore) -> None:
    store.record([row(1)])
    rows = [OutcomeRow("p1", "death", 1), OutcomeRow("stranger", "death", 0), OutcomeRow("other", "death", 1)]
    with pytest.raises(DataError, match="2 patient.s. in the outcomes were never scored"):
        store.load_outcomes(rows)
    assert store.outcomes().empty
    summary = store.load_outcomes(rows, skip_unknown=True)
    assert (summary.new, summary.unknown_skipped) == (1, 2)
    assert store.outcomes()["patient"].tolist() == ["p1"]


def test_several_outcome_names_must_be_chosen_from(store: MonitorStore) -> None:
    store.record([row(1)])
    store.load_outcomes([OutcomeRow("p1", "death", 1), OutcomeRow("p1", "lactate", 4.2, encounter="e1")])
    with pytest.raises(DataError, match="2 outcomes loaded: death, lactate"):
        store.joined("sepsis")
    assert store.joined("sepsis", outcome="lactate")["outcome"].tolist() == [4.2]


def test_purge_keeps_the_retention_window(store: MonitorStore) -> None:
    now = datetime(2024, 12, 1, tzinfo=UTC)
    store.record([row(i, time=now - timedelta(days=10 * i)) for i in range(10)])  # 0, 10, ..., 90 days old
    store.load_outcomes([OutcomeRow("p8", "death", 1, time=now - timedelta(days=70))])
    assert store.purge(45, now=now) == (5, 1)  # 50..90 days old go
    assert sorted(store.predictions("sepsis")["patient"]) == ["p0", "p1", "p2", "p3", "p4"]
    assert store.outcomes().empty
    with pytest.raises(DataError):
        store.purge(0)


def _write_many(path: str, start: int) -> None:
    s = MonitorStore(Path(path))
    for i in range(start, start + 20):
        s.record([row(i)])


def test_processes_writing_at_once_wait_for_each_other(store: MonitorStore) -> None:
    store.record([row(1000)])  # created before the writers start
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(store.path), k * 100)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    got = store.predictions("sepsis")
    assert len(got) == 61 and got["id"].is_unique
