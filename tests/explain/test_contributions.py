"""Explanations: attributions add up to the model's own output, and read in clinical words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medml.data import FeatureSpec
from medml.explain import global_importance, top_factors
from medml.models import CalibratedRiskModel, make_model


@pytest.fixture(scope="module")
def pima():
    from medml.pipelines.catalogue import load_dataset

    return load_dataset("pima")


@pytest.mark.parametrize("kind", ["logistic", "lgbm"])
def test_attributions_sum_to_the_raw_output(kind: str, pima) -> None:
    y = pima.binary_target.values
    model = make_model(kind, pima.features, seed=0).fit(pima.X, y)
    contrib = model.contributions(pima.X)
    assert list(contrib.columns) == [f.name for f in pima.features] + ["bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), model.decision_function(pima.X), atol=1e-9)
    # The raw output is the log-odds of the model's own probability.
    p = model.predict_proba(pima.X)[:, 1]
    np.testing.assert_allclose(model.decision_function(pima.X), np.log(p / (1 - p)), atol=1e-6)
    # Through the calibration wrapper the attribution still explains the underlying log-odds.
    cal = CalibratedRiskModel(model).fit(pima.X, y)
    np.testing.assert_allclose(cal.contributions(pima.X).sum(axis=1), cal.decision_function(pima.X), atol=1e-9)


def test_logistic_attribution_is_coefficient_times_centred_value() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"lactate": rng.gamma(2, 1, 400)})
    y = (rng.random(400) < 1 / (1 + np.exp(-(X["lactate"] - 2)))).astype(int)
    model = make_model("logistic", [FeatureSpec("lactate", "numeric", "mmol/L", "Lactate")]).fit(X, y)
    clf = model.pipeline_[-1]
    scaler = model.pipeline_[0].named_transformers_["num"].named_steps["scale"]
    # One numeric column (no missing values, so its missing-indicator column is dropped): closed form.
    w = clf.coef_[0, 0] / scaler.scale_[0]
    expected = w * (X["lactate"] - X["lactate"].mean())
    np.testing.assert_allclose(model.contributions(X)["lactate"], expected, atol=1e-9)


def test_global_importance_ranks_the_planted_driver_first() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame(
        {"noise": rng.normal(size=3000), "creatinine": rng.normal(1.0, 0.4, 3000), "ward": rng.choice(["A", "B"], 3000)}
    )
    y = (rng.random(3000) < 1 / (1 + np.exp(-4 * (X["creatinine"] - 1)))).astype(int)
    features = [
        FeatureSpec("noise", "numeric"),
        FeatureSpec("creatinine", "numeric", "mg/dL", "Creatinine"),
        FeatureSpec("ward", "categorical", "", "Ward"),
    ]
    for kind in ("logistic", "lgbm"):
        model = make_model(kind, features).fit(X, y)
        imp = global_importance(model, X)
        assert imp[0]["feature"] == "creatinine" and imp[0]["label"] == "Creatinine" and imp[0]["unit"] == "mg/dL"
        assert imp[0]["importance"] > 5 * imp[-1]["importance"]


def test_top_factors_are_in_clinical_words() -> None:
    X = pd.DataFrame({"creatinine": [0.8, 3.5, 1.0, 0.7] * 50, "age": [40.0, 85, np.nan, 30] * 50})
    y = np.array([0, 1, 0, 0] * 50)
    features = [
        FeatureSpec("creatinine", "numeric", "mg/dL", "Creatinine"),
        FeatureSpec("age", "numeric", "years", "Age"),
    ]
    model = make_model("logistic", features).fit(X, y)
    factors = top_factors(model, X.iloc[[1, 2]], k=2)
    high = factors[0][0]
    assert high.label in ("Creatinine", "Age") and high.direction == "raises risk"
    assert abs(factors[0][0].contribution) >= abs(factors[0][1].contribution)
    creat = next(f for f in factors[0] if f.feature == "creatinine")
    assert creat.sentence().startswith("Creatinine 3.5 mg/dL: raises risk (+")
    age_missing = next(f for f in factors[1] if f.feature == "age")
    assert age_missing.value == "missing" and "years" not in age_missing.sentence()
