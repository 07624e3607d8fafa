"""PhysioNet 2012 set A: counts, cleaning, hand-checked aggregates of single records, the Parquet cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.data import Cohort, TaskDataset
from medml.data.datasets import physionet2012 as mod
from medml.errors import DataError


def row(ds: TaskDataset, stay: int) -> pd.Series:
    return ds.X.iloc[int(np.flatnonzero(ds.ids == str(stay))[0])]


def test_counts_against_source_txt(physionet: TaskDataset, physionet_cohort: Cohort) -> None:
    t = physionet_cohort.table
    assert len(t) == 4000 and int(t["In-hospital_death"].sum()) == 554
    missing = sorted(t.loc[~t["has_time_series"], "stay_id"].tolist())
    assert missing == [139060, 140501, 140936, 141264]
    assert len(physionet) == 3996
    # None of the 4 stays without a file died, so all 554 deaths remain: 13.9%.
    assert int(physionet.binary_target.values.sum()) == 554
    assert round(physionet.binary_target.prevalence, 3) == 0.139
    assert "4 stays" in physionet.population


def test_features_are_static_plus_six_aggregates_of_37_variables(physionet: TaskDataset) -> None:
    assert len(mod.VARIABLES) == 37
    assert physionet.X.shape[1] == 3 + 37 * 6
    assert list(physionet.X.columns[:3]) == ["Age", "Gender", "Height"]
    for col in ("SAPS-I", "SOFA", "Survival", "Length_of_stay", "In-hospital_death", "RecordID"):
        assert col not in physionet.X.columns and col in physionet.excluded
    # This copy of set A has no ICUType line anywhere: it is reported, not silently missing.
    assert "ICUType" in physionet.excluded
    spec = {f.name: f for f in physionet.features}
    assert spec["HR_mean"].unit == "bpm" and spec["Temp_max"].unit == "degC"
    assert spec["Glucose_first"].unit == "mg/dL" and spec["Lactate_last"].unit == "mmol/L"
    assert spec["HR_count"].unit == "count" and spec["Gender"].kind == "categorical"


def test_record_132539_by_hand(physionet: TaskDataset) -> None:
    # set-a/132539.txt: Age 54, Gender 0, Height -1, Weight -1; 37 HR lines from 73 (00:07) to 86 (47:37),
    # min 58, max 86, sum 2620; Glucose 205 (10:37) and 115 (33:07); 14 Temp lines, 35.1 first, 37.8 last.
    r = row(physionet, 132539)
    assert r["Age"] == 54 and r["Gender"] == "Female" and np.isnan(r["Height"])
    assert (r["HR_first"], r["HR_last"], r["HR_min"], r["HR_max"], r["HR_count"]) == (73, 86, 58, 86, 37)
    assert r["HR_mean"] == pytest.approx(2620 / 37)
    assert (r["Glucose_first"], r["Glucose_last"], r["Glucose_min"], r["Glucose_max"]) == (205, 115, 115, 205)
    assert r["Glucose_mean"] == 160 and r["Glucose_count"] == 2
    assert (r["Temp_first"], r["Temp_last"], r["Temp_count"]) == (35.1, 37.8, 14)
    assert r["Weight_count"] == 0 and np.isnan(r["Weight_first"])
    assert r["Lactate_count"] == 0 and np.isnan(r["Lactate_mean"])


def test_implausible_values_and_sentinels_are_dropped(physionet: TaskDataset) -> None:
    # 140525.txt: 12 pH lines, two of them 734 and 735 (a lost decimal point); the rest 7.32-7.38.
    r = row(physionet, 140525)
    assert r["pH_count"] == 10 and r["pH_max"] == 7.38 and r["pH_min"] == 7.32
    # 132895.txt: 16 Temp lines, the last -17.8.
    r = row(physionet, 132895)
    assert r["Temp_count"] == 15 and r["Temp_last"] == 37.2 and r["Temp_min"] == 35.5
    # 132973.txt: Age 200, MIMIC-II's code for over 89.
    assert row(physionet, 132973)["Age"] == 90
    assert physionet.X["Temp_min"].min() >= 25 and physionet.X["pH_max"].max() <= 8
    assert physionet.X["Height"].dropna().between(100, 250).all()


def test_events_are_long_and_in_minutes(physionet_cohort: Cohort) -> None:
    ev = physionet_cohort.events
    assert ev is not None
    assert list(ev.columns) == ["stay_id", "time", "variable", "value"]
    assert ev["time"].between(0, 48 * 60).all()
    first = ev[ev["stay_id"] == 132539].iloc[0]
    assert (first["time"], first["variable"], first["value"]) == (7, "GCS", 15)
    assert (ev["value"] != -1).all()
    assert set(ev["variable"].cat.categories) == set(mod.VARIABLES)


def test_shorter_window_uses_only_earlier_values(physionet_cohort: Cohort) -> None:
    ds = mod.in_hospital_death(physionet_cohort, hours=24)
    r = row(ds, 132539)
    assert r["Glucose_count"] == 1 and r["Glucose_last"] == 205
    assert "24 hours" in ds.task
    with pytest.raises(DataError, match="48 hours"):
        mod.in_hospital_death(physionet_cohort, hours=72)


def test_cache_is_written_once_and_used(data_root: Path, medml_home: Path) -> None:
    caches = list((medml_home / "cache").glob("physionet2012-*.parquet"))
    assert len(caches) == 1
    assert not list((medml_home / "cache").glob("*.tmp"))
    start = time.perf_counter()
    mod.load(data_root)
    assert time.perf_counter() - start < 10


def test_parse_is_fast_without_cache(data_root: Path) -> None:
    start = time.perf_counter()
    long = mod._parse_archive(data_root / mod.SOURCE)
    assert time.perf_counter() - start < 10
    assert long["stay_id"].nunique() == 3996
    # stay ids come from the file names and agree with each record's own RecordID line.
    rid = long[long["variable"] == "RecordID"]
    assert (rid["stay_id"] == rid["value"]).all() and len(rid) == 3996


def test_survival_task_reads_outcomes_survival_days(
    physionet: TaskDataset, physionet_cohort: Cohort, data_root: Path
) -> None:
    """Death within a year of ICU admission: events and times straight from Outcomes-a.txt's Survival column
    (read here with the csv module), no-death stays censored at 365 days, the binary task's features."""
    import csv

    ds = mod.death_after_admission(physionet_cohort)
    with (data_root / mod.OUTCOMES).open() as f:
        survival = {int(r["RecordID"]): int(r["Survival"]) for r in csv.DictReader(f)}
    expected_time = [min(survival[int(s)], 365) if survival[int(s)] > 0 else 365 for s in ds.ids]
    expected_event = [0 < survival[int(s)] <= 365 for s in ds.ids]
    assert ds.y.time.tolist() == expected_time and ds.y.event.tolist() == expected_event
    assert int(ds.y.event.sum()) == sum(0 < v <= 365 for v in survival.values())  # the 4 missing stays: no death
    pd.testing.assert_frame_equal(ds.X, physionet.X)
    assert "Survival" in ds.excluded and "censored at 365 days" in ds.population
    # every in-hospital death is a death within the year
    assert bool(np.all(ds.y.event[physionet.binary_target.values == 1]))
