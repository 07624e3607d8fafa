"""SUPPORT2: counts from the file, no column that leaks the outcome, DNR known at entry only."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from medml.data import TaskDataset
from medml.data.datasets import support2 as mod

LEAKING = (
    "death",
    "d.time",
    "slos",
    "charges",
    "totcst",
    "totmcst",
    "avtisst",
    "sfdm2",
    "surv2m",
    "surv6m",
    "sps",
    "prg2m",
    "prg6m",
    "dnr",
    "dnrday",
    "hospdead",
    "adlsc",
)


def test_counts_match_the_file(support2: TaskDataset, data_root: Path) -> None:
    with gzip.open(data_root / mod.SOURCE, "rt") as f:
        raw = pd.read_csv(f)
    assert raw.shape == (9105, 48)
    assert len(support2) == 9105
    assert int(support2.binary_target.values.sum()) == int(raw["hospdead"].sum()) == 2360
    assert support2.binary_target.name == "died in hospital"
    # One row per patient.
    assert pd.Series(support2.groups).is_unique


def test_no_leaking_or_later_column_is_a_feature(support2: TaskDataset) -> None:
    for col in LEAKING:
        assert col not in support2.X.columns, col
        assert col in support2.excluded, col
    assert "race" not in support2.X.columns and "race" in support2.excluded
    assert "outcome" in support2.excluded["hospdead"]


def test_dnr_kept_only_when_written_before_study_entry(support2: TaskDataset) -> None:
    dnr = support2.X["dnr_before_entry"]
    assert dnr.value_counts().to_dict() == {"no": 8836, "yes": 239}
    assert int(dnr.isna().sum()) == 30


def test_day3_physiology_with_units(support2: TaskDataset) -> None:
    spec = {f.name: f for f in support2.features}
    assert spec["meanbp"].unit == "mmHg" and "day 3" in spec["meanbp"].label
    assert spec["crea"].unit == "mg/dL" and spec["temp"].unit == "degC"
    assert spec["dzgroup"].kind == "categorical" and spec["age"].kind == "numeric"
    assert support2.X["sex"].value_counts().to_dict() == {"Male": 5125, "Female": 3980}
    assert support2.sensitive["race"].value_counts()["Unknown"] == 42
