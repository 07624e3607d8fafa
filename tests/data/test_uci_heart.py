"""UCI heart disease: four sites, counts and prevalences, clinical features, impossible zeros as missing."""

from __future__ import annotations

import pytest

from medml.data import TaskDataset
from medml.data.datasets import uci_heart
from medml.errors import NotFoundError

# (rows, patients with num > 0), counted from processed.*.data.
EXPECTED = {
    "heart-cleveland": (303, 139),
    "heart-hungary": (294, 106),
    "heart-switzerland": (123, 115),
    "heart-va": (200, 149),
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_rows_and_cases(key: str, heart: dict[str, TaskDataset]) -> None:
    ds = heart[key]
    assert (len(ds), int(ds.binary_target.values.sum())) == EXPECTED[key]
    assert len(ds.X.columns) == 13 and "num" not in ds.X.columns


def test_features_have_clinical_labels_and_units(heart: dict[str, TaskDataset]) -> None:
    ds = heart["heart-cleveland"]
    spec = {f.name: f for f in ds.features}
    assert (spec["trestbps"].unit, spec["chol"].unit, spec["thalach"].unit, spec["oldpeak"].unit) == (
        "mmHg",
        "mg/dL",
        "bpm",
        "mm",
    )
    assert spec["age"].unit == "years"
    for c in ("cp", "restecg", "slope", "thal", "ca", "sex", "fbs", "exang"):
        assert spec[c].kind == "categorical", c
    first = ds.X.iloc[0]  # 63,1,1,145,233,1,2,150,0,2.3,3,0,6,0
    assert first["cp"] == "typical angina" and first["sex"] == "Male" and first["thal"] == "fixed defect"
    assert first["slope"] == "downsloping" and first["ca"] == "0" and first["chol"] == 233
    assert ds.binary_target.values[0] == 0


def test_zero_cholesterol_is_missing(heart: dict[str, TaskDataset]) -> None:
    assert heart["heart-switzerland"].X["chol"].isna().all()
    assert int(heart["heart-va"].X["chol"].isna().sum()) == 49 + 7
    assert (heart["heart-cleveland"].X["chol"].dropna() > 0).all()
    assert not (heart["heart-va"].X["trestbps"] == 0).any()


def test_unknown_site() -> None:
    with pytest.raises(NotFoundError, match="cleveland, hungary, switzerland, va"):
        uci_heart.load_cohort("germany")
