"""The random survival forest kind (``rsf``): scikit-survival's own forest on a real set (GBSG2, shipped in its
wheel), the time grid that keeps it small, occlusion explanations, and a registered bundle that loads and predicts
the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.ensemble import RandomSurvivalForest
from sksurv.metrics import concordance_index_censored

from medml.config import get_settings
from medml.data.targets import SurvivalTarget
from medml.errors import ConfigError
from medml.models.survival import SURVIVAL_KINDS, make_survival_model, survival_array
from medml.models.survival_forest import RandomSurvivalForestModel
from medml.pipelines.survival import SurvivalConfig, load_survival_dataset, train_survival
from medml.registry import load_bundle

pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0:DeprecationWarning")

PARAMS = {"n_estimators": 40, "min_samples_leaf": 10, "max_features": 0.5}


def gbsg2_split() -> tuple[pd.DataFrame, SurvivalTarget, pd.DataFrame, SurvivalTarget, list]:
    ds = load_survival_dataset("gbsg2")
    rng = np.random.default_rng(0)
    test = np.zeros(len(ds), dtype=bool)
    test[rng.choice(len(ds), len(ds) // 4, replace=False)] = True
    tr, te = ds.subset(np.flatnonzero(~test)), ds.subset(np.flatnonzero(test))
    return tr.X, tr.y, te.X, te.y, list(ds.features)  # type: ignore[return-value]


def harrell(y: SurvivalTarget, score: np.ndarray) -> float:
    return float(concordance_index_censored(y.event, y.time, score)[0])


def test_rsf_is_scikit_survivals_forest_on_gbsg2() -> None:
    """Same seed and parameters on the same prepared matrix: the same risk scores, curves and test C-index."""
    X, y, Xt, yt, features = gbsg2_split()
    assert np.unique(y.time).size > 64  # the default grid would round these times: switch it off here
    m = make_survival_model("rsf", features, horizons=(365.0, 730.0), params={**PARAMS, "max_times": 10_000}, seed=7)
    m.fit(X, y)
    assert m.time_grid_ is None
    ref = RandomSurvivalForest(n_estimators=40, min_samples_leaf=10, max_features=0.5, random_state=7, n_jobs=1)
    ref.fit(m.prepared(X), survival_array(y.time, y.event))
    Zt = m.prepared(Xt)
    np.testing.assert_array_equal(m.predict(Xt), ref.predict(Zt))
    assert harrell(yt, m.predict(Xt)) == harrell(yt, ref.predict(Zt))
    assert 0.6 < harrell(yt, m.predict(Xt)) < 0.8  # the user guide's RSF: 0.692 on its own split
    curves = ref.predict_survival_function(Zt[:25])
    at = np.array([200.0, 365.0, 730.0, 1500.0])
    expected = np.array([[f(t) for t in at] for f in curves])
    np.testing.assert_allclose(m.predict_survival(Xt.iloc[:25], at), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(m.predict_risk(Xt.iloc[:25]), 1 - expected[:, 1:3], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(m.predict_survival(Xt.iloc[:5]), ref.predict_survival_function(Zt[:5], True))
    assert (m.predict_survival(Xt.iloc[:5], [0.5]) == 1.0).all()  # before the first follow-up time


def test_the_time_grid_keeps_the_horizons_and_costs_little_discrimination() -> None:
    """The default rounds GBSG2's 500+ distinct times onto <= 64 event-time quantiles plus the horizons: the forest
    is then scikit-survival's on the rounded times, the horizons are grid points, and the test C-index moves
    little from the unrounded forest."""
    X, y, Xt, yt, features = gbsg2_split()
    horizons = (365.0, 730.0)
    exact = make_survival_model("rsf", features, horizons=horizons, params={**PARAMS, "max_times": 10_000}, seed=1)
    rounded = make_survival_model("rsf", features, horizons=horizons, params=PARAMS, seed=1)
    exact.fit(X, y)
    rounded.fit(X, y)
    grid = rounded.time_grid_
    assert grid is not None and grid.size <= 64 + len(horizons) + 1
    assert set(horizons) <= set(grid.tolist()) and grid[-1] == y.time.max()
    assert set(rounded.event_times_.tolist()) <= set(grid.tolist())
    up = grid[np.searchsorted(grid, y.time)]
    assert (up >= y.time).all()
    ref = RandomSurvivalForest(n_estimators=40, min_samples_leaf=10, max_features=0.5, random_state=1, n_jobs=1)
    ref.fit(rounded.prepared(X), survival_array(up, y.event))
    np.testing.assert_array_equal(rounded.predict(Xt), ref.predict(rounded.prepared(Xt)))
    assert abs(harrell(yt, rounded.predict(Xt)) - harrell(yt, exact.predict(Xt))) < 0.02


def test_occlusion_finds_the_one_feature_that_matters() -> None:
    """Simulated: only ``age`` changes the hazard (x3 per 10 years above 60). Its occlusion contribution dominates,
    has the sign of (age - median), and a patient at the reference has zero contributions."""
    rng = np.random.default_rng(2)
    n = 800
    X = pd.DataFrame(
        {
            "age": rng.uniform(40, 80, n),
            "noise": rng.normal(0, 1, n),
            "site": pd.Categorical(rng.choice(["a", "b"], n)),
        }
    )
    t_event = rng.exponential(1 / (0.002 * 3.0 ** ((X["age"].to_numpy() - 60) / 10)))
    t_cens = rng.uniform(200, 1500, n)
    y = SurvivalTarget(np.minimum(t_event, t_cens).round() + 1, t_event <= t_cens, "death")
    m = RandomSurvivalForestModel(horizons=(365.0,), n_estimators=60, min_samples_leaf=15, max_features=1.0).fit(X, y)
    c = m.contributions(X.iloc[:200])
    assert list(c.columns) == ["age", "noise", "site", "bias"]
    mean_abs = c.drop(columns="bias").abs().mean()
    assert mean_abs.idxmax() == "age" and mean_abs["age"] > 5 * max(mean_abs["noise"], mean_abs["site"])
    older = X["age"].iloc[:200] > X["age"].median() + 10
    assert (c.loc[older, "age"] > 0).mean() > 0.9
    ref = m.reference_.copy()
    ref["site"] = pd.Categorical(ref["site"])
    at_ref = m.contributions(ref)
    np.testing.assert_array_equal(at_ref.drop(columns="bias").to_numpy(), 0.0)
    assert at_ref["bias"].iloc[0] == pytest.approx(m.predict_risk(ref)[0, 0], abs=1e-15)
    # each contribution is the forest's own risk difference
    one = X.iloc[[3]]
    occluded = one.assign(age=m.reference_["age"].iloc[0])
    expected = m.predict_risk(one)[0, 0] - m.predict_risk(occluded)[0, 0]
    assert c.loc[3, "age"] == pytest.approx(expected, abs=1e-15)


def test_missing_inputs_are_routed_and_bad_params_refused() -> None:
    X, y, Xt, _, features = gbsg2_split()
    m = make_survival_model("rsf", features, horizons=(365.0,), params=PARAMS).fit(X, y)
    risk = m.predict_risk(Xt.iloc[:5].assign(age=np.nan, tgrade=np.nan))
    assert np.isfinite(risk).all() and ((risk >= 0) & (risk <= 1)).all()
    with pytest.raises(ConfigError, match="max_times"):
        make_survival_model("rsf", features, params={"max_times": 1}).fit(X, y)
    assert "rsf" in SURVIVAL_KINDS


@pytest.mark.slow
def test_rsf_trains_registers_and_its_bundle_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``medml survival train veterans --model rsf`` path: registered, reloaded, same curves; the example patients
    speak of the risk scale, not log hazard ratios."""
    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    settings = get_settings()
    ds = load_survival_dataset("veterans")
    config = SurvivalConfig(model="rsf", horizons=(30.0, 90.0, 180.0), n_boot=20, params={"n_estimators": 50})
    result = train_survival(ds, config, settings)
    loaded = load_bundle(result.bundle.ref, settings)
    assert loaded.metadata.model_kind == "rsf" and loaded.metadata.extra["survival"]["horizons"] == [30, 90, 180]
    np.testing.assert_array_equal(loaded.model.predict_risk(ds.X), result.bundle.model.predict_risk(ds.X))
    np.testing.assert_array_equal(loaded.model.predict_survival(ds.X), result.bundle.model.predict_survival(ds.X))
    np.testing.assert_array_equal(loaded.predict_proba(ds.X)[:, 1], loaded.model.predict_risk(ds.X)[:, 0])
    assert 0.6 < loaded.metadata.metrics["harrell_c"]["value"] < 0.85
    text = loaded.metadata.extra["examples"][0]["factors"][0]["text"]
    assert text.endswith("absolute risk by the first horizon)")
    assert loaded.metadata.extra["explanation_method"].startswith("occlusion")
    html = result.report_path.read_text(encoding="utf-8")
    assert "log hazard" not in html and "to the predicted absolute risk by the first horizon" in html


def test_rsf_search_scores_the_defaults_first_and_stays_in_its_space() -> None:
    """The declared space is searched like the other kinds': trial 0 is the defaults, the best is no worse."""
    from medml.models.survival_search import search_survival

    ds = load_survival_dataset("gbsg2")
    result = search_survival("rsf", ds, horizons=(365.0, 730.0), budget_seconds=120, max_trials=3, seed=2)
    assert result.n_trials == 3 and set(result.params) == {"n_estimators", "min_samples_leaf", "max_features"}
    assert 50 <= result.params["n_estimators"] <= 200 and 5 <= result.params["min_samples_leaf"] <= 80
    assert result.params["max_features"] in ("sqrt", 0.2, 0.33, 0.5)
    assert result.best_ibs <= result.default_ibs
    defaults = RandomSurvivalForestModel()
    assert result.history[0] == result.default_ibs and defaults.n_estimators == 100
