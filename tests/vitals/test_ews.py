"""The learned early-warning task: each stay-hour sees only the events up to its hour, its NEWS2 sub-scores are
those of the RCP-tested scorer on the same values, alerts are rising edges, and on the real set A the hourly NEWS2
gives the replay's worst score of every stay; trained through the tabular pipeline it is a registered bundle whose
report and model card show NEWS2 and the other classic scores beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import get_settings
from medml.data.cohort import Cohort
from medml.errors import DataError
from medml.vitals.ews import early_warning_task, rising_edges, stay_hours
from medml.vitals.news2 import news2
from medml.vitals.physionet import replay_physionet2012
from medml.vitals.signs import VitalSigns

EVENTS = [
    (1, 0, "HR", 80),
    (1, 30, "RespRate", 26),
    (1, 30, "SaO2", 95),
    (1, 30, "FiO2", 0.21),
    (1, 30, "NISysABP", 120),
    (1, 30, "GCS", 14),
    (1, 30, "Temp", 37.0),
    (1, 90, "SysABP", 95),
    (1, 100, "HR", 5),  # implausible: left out
    (1, 150, "HR", 110),
    (1, 200, "MechVent", 1),
    (1, 400, "HR", 130),
    (2, 10, "HR", 135),
    (2, 130, "Urine", 40),
]


def cohort(events: list[tuple[int, int, str, float]]) -> Cohort:
    table = pd.DataFrame(
        {
            "stay_id": [1, 2],
            "patient_id": [1, 2],
            "SAPS-I": [10, -1],
            "SOFA": [4, 2],
            "In-hospital_death": [1, 0],
            "has_time_series": [True, True],
            "Age": [70.0, 50.0],
            "Gender": [1.0, 0.0],
        }
    )
    ev = pd.DataFrame(events, columns=["stay_id", "time", "variable", "value"])
    ev["time"] = ev["time"].astype(np.int32)
    ev["variable"] = ev["variable"].astype("category")
    return Cohort(name="t", table=table, patient_id="patient_id", unit_id="stay_id", events=ev, provenance="test")


def row(sh: pd.DataFrame, stay: int, hour: int) -> pd.Series:
    return sh[(sh["stay_id"] == stay) & (sh["hour"] == hour)].iloc[0]


def test_each_hour_sees_only_what_was_charted_by_then() -> None:
    sh = stay_hours(cohort(EVENTS), hours=8).frame
    # hour 2 (02:00): HR 80 at 00:00 is the latest (110 comes at 02:30, 5 bpm is implausible)
    h2 = row(sh, 1, 2)
    assert h2["pulse_last"] == 80 and h2["pulse_count"] == 1 and h2["pulse_hours_since"] == 2.0
    assert h2["systolic_bp_last"] == 95 and h2["systolic_bp_min_6h"] == 95 and h2["systolic_bp_max_6h"] == 120
    h3 = row(sh, 1, 3)
    assert h3["pulse_last"] == 110 and h3["pulse_max_6h"] == 110 and h3["pulse_hours_since"] == 0.5
    # hour 7: 130 at 06:40; six hours before (hour 1) the latest was 80
    h7 = row(sh, 1, 7)
    assert h7["pulse_last"] == 130 and h7["pulse_change_6h"] == 130 - 80 and h7["pulse_min_6h"] == 110
    assert np.isnan(row(sh, 1, 6)["pulse_change_6h"])  # six hours before hour 6 is admission: nothing charted
    assert np.isnan(row(sh, 2, 1)["urine_last"]) and row(sh, 2, 3)["urine_last"] == 40
    # appending later events changes no earlier row
    later = stay_hours(cohort([*EVENTS, (1, 185, "HR", 40), (2, 300, "Temp", 39.5)]), hours=8).frame
    early = sh["hour"] <= 3
    pd.testing.assert_frame_equal(sh[early].reset_index(drop=True), later[early].reset_index(drop=True))


def test_fewer_hours_than_the_trend_window_give_the_same_rows() -> None:
    """The first hours of a stay (fewer than the 6-h trend window, as a stream sees them) are the same rows as those
    hours of the 48-h table."""
    full = stay_hours(cohort(EVENTS), hours=8).frame
    for hours in (1, 3, 5, 6):
        short = stay_hours(cohort(EVENTS), hours=hours).frame
        same = full[full["hour"] <= hours].reset_index(drop=True)
        pd.testing.assert_frame_equal(short.reset_index(drop=True), same, check_like=True)


def test_news2_sub_scores_are_the_scorers_on_the_values_within_four_hours() -> None:
    c = cohort(EVENTS)
    sh = stay_hours(c, hours=8).frame
    for hour in range(1, 9):
        r = row(sh, 1, hour)
        fresh = {
            k: r[f"{col}_last"]
            for k, col in (
                ("respiratory_rate", "resp_rate"),
                ("spo2", "spo2"),
                ("systolic_bp", "systolic_bp"),
                ("pulse", "pulse"),
                ("gcs", "gcs"),
                ("temperature", "temperature"),
            )
            if r[f"{col}_hours_since"] <= 4
        }
        if not np.isnan(r["oxygen_last"]) and hour * 60 - (30 if hour < 4 else 200) <= 240:
            fresh["supplemental_oxygen"] = bool(r["oxygen_last"])
        expected = news2(VitalSigns(**fresh))
        assert r["news2_partial"] == expected.total, hour
        assert r["news2_missing"] == 7 - len(expected.sub_scores), hour
    replay = replay_physionet2012(c, hours=8).stays.set_index("stay_id")
    assert sh.groupby("stay_id")["news2_partial"].max().to_dict() == replay["worst_news2"].to_dict()


def test_alerts_are_rising_edges_per_stay() -> None:
    stays = np.array([1, 1, 1, 1, 1, 2, 2, 2])
    score = np.array([5, 6, 3, 5, 5, 7, 1, 9])
    assert rising_edges(stays, score, 5).tolist() == [True, False, False, True, False, True, False, True]


def test_the_task_is_grouped_by_stay_and_refuses_bad_windows() -> None:
    ds = early_warning_task(cohort(EVENTS), hours=6, every=2)
    assert len(ds) == 6 and list(ds.ids[:3]) == ["1@2h", "1@4h", "1@6h"]
    assert list(ds.groups) == ["1", "1", "1", "2", "2", "2"] and ds.binary_target.values.tolist() == [1, 1, 1, 0, 0, 0]
    assert "stay_id" not in ds.X.columns and "died" not in ds.X.columns
    with pytest.raises(DataError, match="1-48"):
        stay_hours(cohort(EVENTS), hours=49)
    with pytest.raises(DataError, match="every=9"):
        stay_hours(cohort(EVENTS), hours=8, every=9)


@pytest.fixture(scope="module")
def real_cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cohort]:
    root = get_settings().data_root
    if not (root / "icu" / "physionet-2012-set-a" / "set-a.tar.gz").is_file():
        pytest.skip(f"PhysioNet 2012 set A is not under {root} (set MEDML_DATA)")
    from medml.data.datasets import physionet2012

    home: Path = tmp_path_factory.mktemp("medml-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(home))
        yield physionet2012.load_cohort(root)


@pytest.mark.slow  # about 30 s on the shared machine: set A's 3,996 stays, replayed twice
def test_hourly_news2_gives_the_replays_worst_score_for_every_stay_of_set_a(real_cohort: Cohort) -> None:
    sh = stay_hours(real_cohort, hours=24).frame
    ours = sh.groupby("stay_id")["news2_partial"].max()
    replay = replay_physionet2012(real_cohort, hours=24).stays.set_index("stay_id")["worst_news2"]
    assert len(ours) == 3996
    pd.testing.assert_series_equal(ours.astype(float), replay.reindex(ours.index).astype(float), check_names=False)


@pytest.mark.slow  # about a minute on the shared machine: trains and registers a model on 600 stays
def test_trained_like_any_model_with_news2_beside_it(real_cohort: Cohort, tmp_path: Path) -> None:
    from medml.pipelines.ews import train_early_warning
    from medml.pipelines.tabular import TrainConfig, report_inputs
    from medml.registry import load_bundle
    from medml.report.model_card import model_card_markdown

    keep = real_cohort.table["stay_id"].isin(real_cohort.table["stay_id"].iloc[:600])
    assert real_cohort.events is not None
    small = Cohort(
        name=real_cohort.name,
        table=real_cohort.table[keep].reset_index(drop=True),
        patient_id="patient_id",
        unit_id="stay_id",
        events=real_cohort.events[real_cohort.events["stay_id"].isin(real_cohort.table["stay_id"][keep])],
        provenance=real_cohort.provenance,
    )
    settings = replace(get_settings(), home=tmp_path)
    config = TrainConfig(budget_seconds=5, max_trials=3, n_boot=50, name="ews-test")
    result = train_early_warning(config, settings, cohort=small, every=4)
    bundle = load_bundle("ews-test@1", settings)
    comp = bundle.metadata.extra["comparators"]
    names = [r["name"] for r in comp["rows"]]
    assert names[:2] == ["NEWS2 at the same hour", "worst NEWS2, first 24 h"] and "SAPS-I (Outcomes-a)" in names
    # the hourly NEWS2 row is scored on exactly the model's test stay-hours, the worst NEWS2 on their stays
    assert comp["rows"][0]["n"] == result.evaluation.n
    assert comp["rows"][1]["n"] == result.evaluation.n // 12  # every 4 h over 48 h: 12 rows per stay
    html = result.report_path.read_text(encoding="utf-8")
    assert "Beside the classic scores" in html and "worst NEWS2, first 24 h" in html
    assert "worst qSOFA, first 24 h" in model_card_markdown(report_inputs(bundle))


def test_cli_refuses_a_window_outside_set_a(tmp_path: Path) -> None:
    env = {**os.environ, "MEDML_HOME": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "medml.cli", "vitals", "train-ews", "--hours", "72"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1 and "--hours must be 1-48" in proc.stderr
