"""The stack: spline logistic regression and LightGBM averaged on the log-odds scale, still explained exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

from medml.data import patient_split
from medml.models import CalibratedRiskModel, LightGBMRiskModel
from medml.models.stack import SplineLogisticRiskModel, StackedRiskModel

FAST = {"n_estimators": 60, "num_leaves": 8}


@pytest.fixture(scope="module")
def pima():
    from medml.pipelines.catalogue import load_dataset

    return load_dataset("pima")


def test_spline_logistic_equals_sklearn_splines() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=600) * 3
    y = (rng.random(600) < 1 / (1 + np.exp(-(0.4 * x**2 - 2)))).astype(int)  # U-shaped risk: a line cannot fit it
    X = pd.DataFrame({"x": x})
    ours = SplineLogisticRiskModel(C=1.0, n_knots=5).fit(X, y)
    knots = np.quantile(x, np.linspace(0, 1, 5))[:, None]
    ref = make_pipeline(
        SplineTransformer(knots=knots, degree=3, extrapolation="linear"),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000),
    )
    # the model adds a missing flag per spline input, all zero here: its coefficient is 0 under the L2 penalty
    np.testing.assert_allclose(ours.predict_proba(X)[:, 1], ref.fit(X, y).predict_proba(X)[:, 1], atol=1e-5)
    straight = LogisticRegression(max_iter=2000).fit(X, y).predict_proba(X)[:, 1]
    assert log_loss(y, ours.predict_proba(X)[:, 1]) < log_loss(y, straight) - 0.1


def test_stack_attributions_sum_to_its_output(pima) -> None:
    model = StackedRiskModel(features=pima.features, weight=0.3, **FAST).fit(pima.X, pima.binary_target.values)
    rows = pima.X.iloc[:200]
    contrib = model.contributions(rows)
    assert list(contrib.columns) == [*(f.name for f in pima.features), "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), model.decision_function(rows), atol=1e-9)
    p = model.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-contrib.sum(axis=1).to_numpy())), atol=1e-12)
    # calibrated, its factors are the stack's own log-odds terms (calibration is monotone on top)
    y = pima.binary_target.values
    calibrated = CalibratedRiskModel(model, method="sigmoid").fit(pima.X.iloc[200:], y[200:])
    np.testing.assert_allclose(
        calibrated.contributions(rows).sum(axis=1), calibrated.decision_function(rows), atol=1e-9
    )


def test_weights_one_and_zero_are_the_families_alone(pima) -> None:
    X, y = pima.X, pima.binary_target.values
    one = StackedRiskModel(features=pima.features, weight=1.0, C=0.3, n_knots=4, **FAST).fit(X, y)
    alone = SplineLogisticRiskModel(features=pima.features, C=0.3, n_knots=4).fit(X, y)
    np.testing.assert_allclose(one.predict_proba(X), alone.predict_proba(X), atol=1e-12)
    zero = clone(one).set_params(weight=0.0).fit(X, y)
    trees = LightGBMRiskModel(features=pima.features, **FAST).fit(X, y)
    np.testing.assert_allclose(zero.predict_proba(X), trees.predict_proba(X), atol=1e-12)


def test_search_trial_learns_the_weight_no_worse_than_either_family(pima) -> None:
    y = pima.binary_target.values
    split = patient_split(pima.groups, y, fractions=(0.6, 0.2, 0.2), seed=0)
    fit, val = split.train, np.concatenate([split.calibration, split.test])
    model = StackedRiskModel(features=pima.features, num_leaves=8)
    learned = model.fit_trial(pima.X.iloc[fit], y[fit], pima.X.iloc[val], y[val])
    assert set(learned) == {"n_estimators", "weight"} and model.weight == learned["weight"]
    loss = log_loss(y[val], model.predict_proba(pima.X.iloc[val])[:, 1])
    for w in (0.0, 1.0):
        other = clone(model).set_params(weight=w)
        other._adopt(model.linear_, model.trees_)
        assert loss <= log_loss(y[val], other.predict_proba(pima.X.iloc[val])[:, 1]) + 1e-12
    assert clone(model).get_params() == model.get_params()
