"""Pima: 768 women, 268 with diabetes, zeros that encode missing values."""

from __future__ import annotations

from medml.data import TaskDataset


def test_counts(pima: TaskDataset) -> None:
    assert len(pima) == 768 and int(pima.binary_target.values.sum()) == 268
    assert list(pima.X.columns) == [
        "pregnancies",
        "glucose",
        "blood_pressure",
        "skin_thickness",
        "insulin",
        "bmi",
        "pedigree",
        "age",
    ]


def test_zeros_are_missing_where_they_are_impossible(pima: TaskDataset) -> None:
    missing = pima.X.isna().sum().to_dict()
    # Zeros in the file: glucose 5, blood pressure 35, skin 227, insulin 374, BMI 11.
    assert missing == {
        "pregnancies": 0,
        "glucose": 5,
        "blood_pressure": 35,
        "skin_thickness": 227,
        "insulin": 374,
        "bmi": 11,
        "pedigree": 0,
        "age": 0,
    }
    assert (pima.X["pregnancies"] == 0).sum() == 111


def test_units_and_sensitive(pima: TaskDataset) -> None:
    spec = {f.name: f for f in pima.features}
    assert spec["glucose"].unit == "mg/dL" and spec["blood_pressure"].unit == "mmHg" and spec["bmi"].unit == "kg/m2"
    assert set(pima.sensitive["age_band"]) == {"<40", "40-59", "60-79", "80+"}
