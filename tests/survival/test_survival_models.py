"""Survival model kinds: curves against scikit-survival's own, exact Cox explanations, the boosted model's Cox
gradient against lifelines' Cox fit, and the scikit-learn contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sksurv.linear_model import CoxPHSurvivalAnalysis

from medml.data.targets import SurvivalTarget
from medml.errors import ConfigError, DataError
from medml.models.survival import (
    SURVIVAL_KINDS,
    CoxSurvivalModel,
    GradientBoostedSurvivalModel,
    cox_gradient,
    make_survival_model,
    survival_array,
)

pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0:DeprecationWarning")


def cohort(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, SurvivalTarget]:
    rng = np.random.default_rng(seed)
    age = rng.normal(65, 10, n)
    group = rng.choice(["a", "b", "c"], n)
    lab = rng.normal(1.0, 0.3, n)
    lab[rng.random(n) < 0.1] = np.nan
    lp = 0.04 * (age - 65) + np.where(group == "c", 0.7, 0.0) + 0.5 * np.nan_to_num(lab - 1.0)
    t_event = rng.exponential(1 / (0.002 * np.exp(lp)))
    t_cens = rng.uniform(100, 1500, n)
    X = pd.DataFrame({"age": age, "group": pd.Categorical(group), "lab": lab})
    return X, SurvivalTarget(np.minimum(t_event, t_cens), t_event <= t_cens, "death")


def test_cox_curves_match_scikit_survival_predict_survival_function() -> None:
    X, y = cohort()
    m = CoxSurvivalModel(alpha=1.0).fit(X, y)
    Z = m.prep_.transform(m._frame(X))
    ref = CoxPHSurvivalAnalysis(alpha=1.0, ties="breslow").fit(Z, survival_array(y.time, y.event))
    np.testing.assert_allclose(m.predict(X), ref.predict(Z), atol=1e-10)
    np.testing.assert_allclose(m.event_times_, ref.unique_times_[np.isin(ref.unique_times_, y.time[y.event])])
    times = np.array([100.0, 365.0, 730.0])
    expected = np.array([[f(t) for t in times] for f in ref.predict_survival_function(Z[:20])])
    np.testing.assert_allclose(m.predict_survival(X.iloc[:20], times), expected, atol=1e-10)
    np.testing.assert_allclose(m.predict_risk(X.iloc[:20], [365.0])[:, 0], 1 - expected[:, 1], atol=1e-10)


def test_cox_contributions_are_exact_and_sum_to_the_log_hazard_ratio() -> None:
    X, y = cohort()
    m = CoxSurvivalModel().fit(X, y)
    contrib = m.contributions(X.iloc[:50])
    assert list(contrib.columns) == ["age", "group", "lab", "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), m.predict(X.iloc[:50]), atol=1e-10)
    # the simulated effect of age is 0.04 per year, 0.4 per SD of 10 years
    hr = m.hazard_ratios().set_index("column")
    assert 0.25 < np.log(hr.loc["age", "hazard_ratio"]) < 0.55


def test_predict_proba_is_the_risk_by_the_first_horizon() -> None:
    X, y = cohort()
    for kind in SURVIVAL_KINDS:
        m = SURVIVAL_KINDS[kind](horizons=(365.0, 730.0))
        m.fit(X, y)
        proba = m.predict_proba(X.iloc[:10])
        assert proba.shape == (10, 2)
        np.testing.assert_allclose(proba[:, 1], m.predict_risk(X.iloc[:10])[:, 0])
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        risk = m.predict_risk(X.iloc[:10])
        assert (np.diff(risk, axis=1) >= 0).all()  # risk never falls with a longer horizon


def test_cox_gradient_matches_finite_differences_of_the_partial_likelihood() -> None:
    rng = np.random.default_rng(1)
    t = np.round(rng.exponential(100, 40))  # rounded: tied times, Breslow's handling
    t[t == 0] = 1
    e = rng.random(40) < 0.7
    f = rng.normal(size=40)

    def nll(score: np.ndarray) -> float:
        return float(-sum(score[i] - np.log(np.exp(score[t >= t[i]]).sum()) for i in np.flatnonzero(e)))

    grad, hess = cox_gradient(t, e)(f)
    eps = 1e-6
    numeric = np.array([(nll(f + eps * np.eye(40)[k]) - nll(f - eps * np.eye(40)[k])) / (2 * eps) for k in range(40)])
    np.testing.assert_allclose(grad, numeric, atol=1e-5)
    diag = np.array(
        [(nll(f + 1e-3 * np.eye(40)[k]) - 2 * nll(f) + nll(f - 1e-3 * np.eye(40)[k])) / 1e-6 for k in range(40)]
    )
    np.testing.assert_allclose(hess, diag, atol=1e-3)


def test_boosting_one_binary_feature_converges_to_lifelines_cox_coefficient() -> None:
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(2)
    n = 2000
    x = rng.integers(0, 2, n).astype(float)
    t_event = rng.exponential(1 / (0.01 * np.exp(0.7 * x)))
    t_cens = rng.uniform(10, 300, n)
    t, e = np.minimum(t_event, t_cens), t_event <= t_cens
    ref = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": t, "e": e}), "t", "e").params_["x"]
    m = GradientBoostedSurvivalModel(
        n_estimators=400,
        learning_rate=0.1,
        num_leaves=2,
        min_child_samples=5,
        subsample=1.0,
        colsample_bytree=1.0,
        reg_lambda=0.0,
    ).fit(pd.DataFrame({"x": x}), SurvivalTarget(t, e, "event"))
    scores = m.predict(pd.DataFrame({"x": [0.0, 1.0]}))
    assert scores[1] - scores[0] == pytest.approx(ref, abs=0.01)


def test_gbs_contributions_sum_to_its_score_and_missing_values_are_native() -> None:
    X, y = cohort()
    m = GradientBoostedSurvivalModel(n_estimators=50).fit(X, y)
    c = m.contributions(X.iloc[:30])
    np.testing.assert_allclose(c.sum(axis=1), m.predict(X.iloc[:30]), atol=1e-8)
    assert np.isfinite(m.predict(X.assign(lab=np.nan).iloc[:5])).all()


def test_models_follow_the_scikit_learn_contract() -> None:
    X, y = cohort(300)
    for cls in SURVIVAL_KINDS.values():
        m = cls(horizons=(200.0,))
        twin = clone(m)
        assert twin.get_params() == m.get_params()
        fitted = m.fit(X, survival_array(y.time, y.event))  # scikit-survival's structured target works too
        assert fitted is m
        assert m.predict_survival(X.iloc[:3]).shape == (3, m.event_times_.size)


def test_bad_targets_and_kinds_are_clear_errors() -> None:
    X, y = cohort(100)
    with pytest.raises(DataError, match="censored"):
        CoxSurvivalModel().fit(X, SurvivalTarget(y.time, np.zeros(100, dtype=bool), "death"))
    with pytest.raises(DataError, match="SurvivalTarget"):
        CoxSurvivalModel().fit(X, y.time)
    with pytest.raises(ConfigError, match="cox, gbs, rsf"):
        make_survival_model("deepsurv", ())
    with pytest.raises(ConfigError, match="horizons"):
        CoxSurvivalModel(horizons=(0.0,)).fit(X, y)
