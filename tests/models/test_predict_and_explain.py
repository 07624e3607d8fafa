"""A served score and its reasons in one call (the input converted once) give the numbers of the two calls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medml.models import CalibratedRiskModel, LightGBMRiskModel, LogisticRiskModel


@pytest.fixture(scope="module")
def pima():
    from medml.pipelines.catalogue import load_dataset

    return load_dataset("pima")


@pytest.mark.parametrize("kind", ["lgbm", "logistic"])
def test_one_call_equals_predict_proba_and_contributions(pima, kind: str) -> None:
    X, y = pima.X, pima.y.values
    X = X.assign(sex=pd.Series(np.where(np.arange(len(X)) % 3 == 0, "Female", "Male")).where(X.index % 7 != 0))
    base = (
        LightGBMRiskModel(n_estimators=60, n_jobs=1).fit(X.iloc[:400], y[:400])
        if kind == "lgbm"
        else LogisticRiskModel().fit(X.iloc[:400], y[:400])
    )
    calibrated = CalibratedRiskModel(base, method="isotonic").fit(X.iloc[400:600], y[400:600])
    rows = X.iloc[600:].copy()
    rows.loc[rows.index[::5], "sex"] = "Unknown"  # a category the model never saw: scored as missing, both ways
    for model in (base, calibrated):
        proba, contributions = model.predict_proba_and_contributions(rows)
        np.testing.assert_array_equal(proba, model.predict_proba(rows))
        pd.testing.assert_frame_equal(contributions, model.contributions(rows))
        one, c1 = model.predict_proba_and_contributions(rows.iloc[[3]])  # one patient, as the service scores
        np.testing.assert_array_equal(one, model.predict_proba(rows.iloc[[3]]))
        pd.testing.assert_frame_equal(c1, model.contributions(rows.iloc[[3]]))
