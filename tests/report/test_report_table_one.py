"""Table 1 against pandas computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medml.data.task import FeatureSpec
from medml.errors import DataError
from medml.report import table_one


def _var(t1: dict, name: str) -> dict:
    return next(v for v in t1["variables"] if v["name"] == name)


def test_group_sizes(cohort):
    t1 = table_one(cohort.X, cohort.y, cohort.features)
    assert t1["n"] == {"overall": 1500, "no": int((cohort.y == 0).sum()), "yes": int((cohort.y == 1).sum())}
    assert [v["name"] for v in t1["variables"]] == [f.name for f in cohort.features]


@pytest.mark.parametrize("name", ["age", "creatinine", "lactate"])
def test_numeric_median_iqr_and_missing_match_pandas(cohort, name):
    t1 = table_one(cohort.X, cohort.y, cohort.features)
    v = _var(t1, name)
    for group, mask in (("overall", np.ones(len(cohort.y), bool)), ("no", cohort.y == 0), ("yes", cohort.y == 1)):
        col = cohort.X.loc[mask, name]
        s = v["stats"][group]
        assert s["median"] == pytest.approx(col.median())
        assert s["q1"] == pytest.approx(col.quantile(0.25))
        assert s["q3"] == pytest.approx(col.quantile(0.75))
        assert s["missing"] == col.isna().sum()
        assert s["missing_pct"] == pytest.approx(100 * col.isna().mean())
        assert s["n"] == col.notna().sum()
    if name != "age":
        assert v["stats"]["overall"]["missing"] > 0  # the simulation leaves some missing: the test is not vacuous


def test_numeric_smd_is_the_pooled_sd_formula(cohort):
    v = _var(table_one(cohort.X, cohort.y, cohort.features), "age")
    a = cohort.X.loc[cohort.y == 1, "age"]
    b = cohort.X.loc[cohort.y == 0, "age"]
    expected = (a.mean() - b.mean()) / math.sqrt((a.var() + b.var()) / 2)
    assert v["smd"] == pytest.approx(expected)
    assert v["smd"] > 0.2  # age raises the simulated risk


def test_categorical_counts_percentages_and_missing_level(cohort):
    v = _var(table_one(cohort.X, cohort.y, cohort.features), "admission")
    levels = {lv["level"]: lv["stats"] for lv in v["levels"]}
    col = cohort.X["admission"]
    for group, mask in (("overall", np.ones(len(cohort.y), bool)), ("yes", cohort.y == 1)):
        sub = col[mask]
        for level in ("emergency", "elective", "urgent"):
            assert levels[level][group]["n"] == (sub == level).sum()
            assert levels[level][group]["pct"] == pytest.approx(100 * (sub == level).mean())
        assert levels["missing"][group]["n"] == sub.isna().sum()
    assert [lv["level"] for lv in v["levels"]][:3] == col.value_counts().index[:3].tolist()


def test_rare_levels_are_pooled_as_other(cohort):
    v = _var(table_one(cohort.X, cohort.y, cohort.features, max_levels=3), "ward")
    names = [lv["level"] for lv in v["levels"]]
    top3 = cohort.X["ward"].value_counts().index[:3].tolist()
    assert names == [*top3, "other"]
    other = next(lv for lv in v["levels"] if lv["level"] == "other")["stats"]["overall"]
    assert other["n"] == (~cohort.X["ward"].isin(top3)).sum()
    total = sum(lv["stats"]["no"]["pct"] for lv in v["levels"])
    assert total == pytest.approx(100.0)


def test_binary_categorical_smd():
    X = pd.DataFrame({"sex": ["F"] * 30 + ["M"] * 70 + ["F"] * 60 + ["M"] * 40})
    y = np.array([0] * 100 + [1] * 100)
    v = table_one(X, y, [FeatureSpec("sex", "categorical")])["variables"][0]
    p1, p0 = 0.4, 0.7  # share of "M" (the level kept after dropping the first) with / without the outcome
    assert v["smd"] == pytest.approx(abs(p1 - p0) / math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2))


def test_nullable_and_string_dtypes():
    X = pd.DataFrame(
        {"x": pd.array([1, None, 3, 4], dtype="Int64"), "c": pd.array(["a", None, "b", "a"], dtype="string")}
    )
    t1 = table_one(X, np.array([0, 0, 1, 1]), [FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")])
    x = t1["variables"][0]["stats"]["overall"]
    assert (x["median"], x["missing"]) == (3.0, 1)
    levels = {lv["level"]: lv["stats"]["overall"]["n"] for lv in t1["variables"][1]["levels"]}
    assert levels == {"a": 2, "b": 1, "missing": 1}


def test_empty_outcome_group_gives_none():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    t1 = table_one(X, np.zeros(3), [FeatureSpec("x", "numeric")])
    assert t1["variables"][0]["stats"]["yes"]["median"] is None
    assert t1["variables"][0]["smd"] is None


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (pd.DataFrame({"x": [1.0, 2.0]}), np.array([0, 1, 1]), "3 outcomes for 2 rows"),
        (pd.DataFrame({"x": [1.0, 2.0]}), np.array([0, 2]), "other than 0 and 1"),
        (pd.DataFrame({"z": [1.0, 2.0]}), np.array([0, 1]), "not in the data"),
        (pd.DataFrame({"x": ["a", "b"]}), np.array([0, 1]), "non-numeric"),
    ],
)
def test_bad_input_says_what_is_wrong(X, y, message):
    with pytest.raises(DataError, match=message):
        table_one(X, y, [FeatureSpec("x", "numeric")])
