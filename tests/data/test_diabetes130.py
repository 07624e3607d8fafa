"""Diabetes 130-US hospitals: counts against SOURCE.txt, the death/hospice exclusion, ICD-9 groups, features."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.data import Cohort, TaskDataset
from medml.data.datasets import diabetes130
from medml.data.datasets.diabetes130 import DEATH_OR_HOSPICE, icd9_group, icd9_groups
from medml.errors import DataError


def test_source_counts_match_source_txt(diabetes_cohort: Cohort) -> None:
    t = diabetes_cohort.table
    assert len(t) == 101_766
    assert diabetes_cohort.n_patients == 71_518
    assert t["readmitted"].value_counts().to_dict() == {"NO": 54_864, ">30": 35_545, "<30": 11_357}
    assert round((t["readmitted"] == "<30").mean(), 3) == 0.112


def test_death_or_hospice_codes_are_exactly_those_in_ids_mapping(data_root: Path) -> None:
    with zipfile.ZipFile(data_root / diabetes130.SOURCE) as z:
        name = next(n for n in z.namelist() if n.endswith("IDs_mapping.csv"))
        mapping = diabetes130.read_id_mapping(z.read(name).decode())
    dispositions = mapping["discharge_disposition_id"]
    ended = {k for k, v in dispositions.items() if "expired" in v.lower() or "hospice" in v.lower()}
    assert ended == set(DEATH_OR_HOSPICE) == {11, 13, 14, 19, 20, 21}
    assert dispositions[1] == "Discharged to home"
    assert mapping["admission_type_id"][1] == "Emergency"
    assert mapping["admission_source_id"][7] == "Emergency Room"


def test_task_counts_after_the_exclusion(diabetes: TaskDataset) -> None:
    # 101,766 - 2,423 encounters ending in death or hospice = 99,343 of 69,990 patients; 11,314 readmitted < 30 d.
    assert len(diabetes) == 99_343
    assert np.unique(diabetes.groups).size == 69_990
    assert int(diabetes.binary_target.values.sum()) == 11_314
    assert diabetes.binary_target.prevalence == pytest.approx(0.1139, abs=1e-4)
    assert diabetes.binary_target.name == "readmitted within 30 days"
    assert "2,423" in diabetes.population and "99,343" in diabetes.population


def test_no_death_or_hospice_disposition_is_left(diabetes: TaskDataset) -> None:
    kept = set(diabetes.X["discharge_disposition_id"].dropna().astype(str))
    assert not any("Expired" in d or "Hospice" in d for d in kept)
    assert "Discharged to home" in kept


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("250.83", "Diabetes"),
        ("250", "Diabetes"),
        ("250.01", "Diabetes"),
        ("428", "Circulatory"),
        ("414", "Circulatory"),
        ("785", "Circulatory"),
        ("459", "Circulatory"),
        ("486", "Respiratory"),
        ("786", "Respiratory"),
        ("578", "Digestive"),
        ("787", "Digestive"),
        ("996", "Injury"),
        ("800", "Injury"),
        ("715", "Musculoskeletal"),
        ("739", "Musculoskeletal"),
        ("599", "Genitourinary"),
        ("788", "Genitourinary"),
        ("174", "Neoplasms"),
        ("239", "Neoplasms"),
        ("V57", "Other"),
        ("V45", "Other"),
        ("E909", "Other"),
        ("276", "Other"),
        ("780", "Other"),
        ("8", "Other"),
        ("251", "Other"),
        ("249", "Other"),
        ("140", "Neoplasms"),
        ("389", "Other"),
        ("520", "Digestive"),
    ],
)
def test_icd9_groups_follow_strack_2014(code: str, group: str) -> None:
    assert icd9_group(code) == group


def test_missing_icd9_code_stays_missing() -> None:
    assert icd9_group(None) is None
    s = icd9_groups(pd.Series(["428", None, "V57"], dtype="string"))
    assert s.isna().tolist() == [False, True, False]


def test_features_are_clinical_and_typed(diabetes: TaskDataset) -> None:
    X = diabetes.X
    for col in ("encounter_id", "patient_nbr", "readmitted", "race", "weight", "payer_code", "examide"):
        assert col not in X.columns
    assert set(X["age"].unique()) == {5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0, 95.0}
    assert X["diag_1"].value_counts().idxmax() == "Circulatory"
    assert set(X["max_glu_serum"].cat.categories) == {"Not measured", "Norm", ">200", ">300"}
    assert X["A1Cresult"].value_counts().idxmax() == "Not measured"
    # "NULL", "Not Mapped" and the like are missing, not categories.
    assert "NULL" not in X["admission_type_id"].cat.categories
    spec = {f.name: f for f in diabetes.features}
    assert spec["time_in_hospital"].unit == "days" and spec["age"].unit == "years"
    assert spec["diag_1"].kind == "categorical" and spec["num_medications"].kind == "numeric"
    # The midpoint of "[70-80)" gives the band 60-79.
    band = diabetes.sensitive.loc[X["age"] == 75.0, "age_band"]
    assert set(band) == {"60-79"}


def test_readmission_horizon_other_than_30_days_is_refused(diabetes_cohort: Cohort) -> None:
    with pytest.raises(DataError, match="'<30'"):
        diabetes130.readmission_within(diabetes_cohort, days=90)
