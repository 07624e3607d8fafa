"""Survival metrics against scikit-survival's and lifelines' own functions, and D-calibration against the
probability integral transform (a true model's survival at the event time is uniform)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sksurv import metrics as sk
from sksurv.datasets import load_gbsg2
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.preprocessing import OneHotEncoder

from medml.errors import DataError
from medml.evaluate import survival as S

# lifelines 0.30.0 (the last release that installs beside pandas 3) calls DataFrame.var positionally, which pandas
# 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0:DeprecationWarning")


@pytest.fixture(scope="module")
def gbsg() -> dict[str, np.ndarray]:
    X, y = load_gbsg2()
    X = OneHotEncoder().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=1, stratify=y["cens"])
    m = CoxPHSurvivalAnalysis().fit(Xtr, ytr)
    horizons = np.array([365.0, 730.0, 1095.0])
    grid = np.percentile(yte["time"], np.linspace(5, 81, 15))
    fns = m.predict_survival_function(Xte)
    return {
        "ytr": ytr,
        "yte": yte,
        "risk": m.predict(Xte),
        "horizons": horizons,
        "surv_h": np.array([[f(h) for h in horizons] for f in fns]),
        "grid": grid,
        "surv_grid": np.array([[f(h) for h in grid] for f in fns]),
    }


def test_harrell_c_matches_sksurv_and_lifelines(gbsg: dict[str, np.ndarray]) -> None:
    from lifelines.utils import concordance_index

    t, e, r = gbsg["yte"]["time"], gbsg["yte"]["cens"], gbsg["risk"]
    ours = S.harrell_c(t, e, r)
    assert ours == pytest.approx(sk.concordance_index_censored(e, t, r)[0], abs=1e-12)
    assert ours == pytest.approx(concordance_index(t, -r, e), abs=1e-12)


def test_harrell_c_counts_ties_in_risk_and_time_like_sksurv() -> None:
    t = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0])
    e = np.array([1, 1, 0, 1, 0, 1, 0], dtype=bool)
    r = np.array([3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.5])
    assert S.harrell_c(t, e, r) == pytest.approx(sk.concordance_index_censored(e, t, r)[0], abs=1e-12)


def test_uno_c_matches_sksurv(gbsg: dict[str, np.ndarray]) -> None:
    ytr, yte, r = gbsg["ytr"], gbsg["yte"], gbsg["risk"]
    for tau in (None, 1500.0):
        ours = S.uno_c(yte["time"], yte["cens"], r, train_time=ytr["time"], train_event=ytr["cens"], tau=tau)
        assert ours == pytest.approx(sk.concordance_index_ipcw(ytr, yte, r, tau=tau)[0], abs=1e-12)


def test_time_dependent_auc_matches_sksurv(gbsg: dict[str, np.ndarray]) -> None:
    ytr, yte = gbsg["ytr"], gbsg["yte"]
    risk = 1 - gbsg["surv_h"]
    ours = S.time_dependent_auc(
        yte["time"], yte["cens"], risk, gbsg["horizons"], train_time=ytr["time"], train_event=ytr["cens"]
    )
    np.testing.assert_allclose(ours, sk.cumulative_dynamic_auc(ytr, yte, risk, gbsg["horizons"])[0], atol=1e-12)


def test_brier_and_integrated_brier_match_sksurv(gbsg: dict[str, np.ndarray]) -> None:
    ytr, yte, grid, s = gbsg["ytr"], gbsg["yte"], gbsg["grid"], gbsg["surv_grid"]
    ours = S.brier_scores(yte["time"], yte["cens"], s, grid, train_time=ytr["time"], train_event=ytr["cens"])
    np.testing.assert_allclose(ours, sk.brier_score(ytr, yte, s, grid)[1], atol=1e-12)
    assert S.integrated_brier(grid, ours) == pytest.approx(sk.integrated_brier_score(ytr, yte, s, grid), abs=1e-12)


def test_kaplan_meier_matches_sksurv_and_lifelines_with_its_interval(gbsg: dict[str, np.ndarray]) -> None:
    from lifelines import KaplanMeierFitter

    t, e = gbsg["yte"]["time"], gbsg["yte"]["cens"]
    km = S.kaplan_meier(t, e)
    times, surv = kaplan_meier_estimator(e, t)
    np.testing.assert_allclose(km.times, times)
    np.testing.assert_allclose(km.survival, surv, atol=1e-12)
    _, rs = kaplan_meier_estimator(e, t, reverse=True)
    np.testing.assert_allclose(S.kaplan_meier(t, e, reverse=True).survival, rs, atol=1e-12)
    kmf = KaplanMeierFitter().fit(t, e)
    for h in (365.0, 1000.0):
        ci = kmf.confidence_interval_.loc[:h].iloc[-1].to_numpy()
        assert km.at(h)[()] == pytest.approx(float(kmf.predict(h)), abs=1e-12)
        np.testing.assert_allclose(km.interval_at(h), ci, atol=1e-6)


def test_ici_agrees_with_lifelines_survival_probability_calibration() -> None:
    """Austin et al.'s ICI against lifelines' (a flexible parametric model, not a Cox model: close, not equal)."""
    import matplotlib

    matplotlib.use("Agg")
    from lifelines import CoxPHFitter
    from lifelines.calibration import survival_probability_calibration
    from lifelines.datasets import load_rossi
    from matplotlib import pyplot as plt

    df = load_rossi()
    cph = CoxPHFitter().fit(df, "week", "arrest")
    t0 = 40.0
    risk = 1 - cph.predict_survival_function(df, times=[t0]).T.squeeze().to_numpy()
    _, ici_lifelines, _ = survival_probability_calibration(cph, df, t0=t0)
    plt.close("all")
    ours = S.smooth_calibration(df["week"], df["arrest"], risk, t0)
    assert ours.ici == pytest.approx(ici_lifelines, abs=0.01)
    # a model whose risks are doubled is visibly miscalibrated
    assert S.smooth_calibration(df["week"], df["arrest"], np.clip(2 * risk, 0, 0.99), t0).ici > 0.1


def _exponential_cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    rate = 0.002 * np.exp(0.8 * x)
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(50, 1500, size=n)
    return np.minimum(t_event, t_cens), t_event <= t_cens, rate, x


def test_d_calibration_does_not_reject_the_true_model_and_rejects_a_wrong_one() -> None:
    t, e, rate, _ = _exponential_cohort(3000, seed=3)
    true = S.d_calibration(t, e, np.exp(-rate * t))
    assert true.p_value > 0.05
    assert sum(true.counts) == pytest.approx(t.size)
    wrong = S.d_calibration(t, e, np.exp(-2.0 * rate * t))
    assert wrong.p_value < 1e-6


def test_d_calibration_spreads_a_censored_patient_over_the_bins_below() -> None:
    # one event at S = 0.95 (last bin) and one censored at S = 0.25: a quarter... in detail 0.05/0.25 in its own
    # bin [0.2, 0.3) and 0.1/0.25 in each of the two below
    d = S.d_calibration(np.array([1.0, 2.0]), np.array([1, 0]), np.array([0.95, 0.25]))
    np.testing.assert_allclose(d.counts, [0.4, 0.4, 0.2, 0, 0, 0, 0, 0, 0, 1.0])


def test_km_calibration_of_a_true_model_lies_on_the_diagonal() -> None:
    t, e, rate, _ = _exponential_cohort(4000, seed=5)
    risk = 1 - np.exp(-rate * 365.0)
    groups = S.km_calibration(t, e, risk, 365.0, groups=5)
    pred, obs = np.array(groups["predicted"]), np.array(groups["observed"])
    assert np.abs(pred - obs).max() < 0.05
    assert all(lo <= o <= hi for lo, o, hi in zip(groups["low"], groups["observed"], groups["high"], strict=True))
    assert S.smooth_calibration(t, e, risk, 365.0).ici < 0.02


@pytest.mark.parametrize(
    ("time", "event", "fragment"),
    [
        ([1.0, -2.0, 3.0], [1, 0, 1], "zero or negative"),
        ([1.0, 0.0, 3.0], [1, 0, 1], "zero or negative"),
        ([1.0, 2.0, 3.0], [1, 2, 0], "0 (censored) or 1"),
        ([1.0, 2.0, 3.0], ["yes", "no", "no"], "0 (censored) or 1"),
        ([1.0, 2.0, 3.0], [0, 0, 0], "every one of the 3 patients is censored"),
        (np.array(["1", "two", "3"], dtype=object), [1, 0, 1], "must be numbers"),
    ],
)
def test_bad_survival_data_is_one_clear_error(time: object, event: object, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        S.check_survival(time, event)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_a_horizon_past_the_last_follow_up_is_refused() -> None:
    with pytest.raises(DataError, match="past the last follow-up"):
        S.check_horizons([180, 5000], np.array([10.0, 400.0, 900.0]))


def test_evaluate_survival_gathers_every_measure_with_intervals(gbsg: dict[str, np.ndarray]) -> None:
    ytr, yte = gbsg["ytr"], gbsg["yte"]
    times = np.unique(np.concatenate([gbsg["horizons"], gbsg["grid"]]))
    # step curves of a Cox model on a grid that holds the horizons and the Brier grid, so both read exactly
    curves = np.column_stack([gbsg["surv_h"], gbsg["surv_grid"]])
    order = np.argsort(np.concatenate([gbsg["horizons"], gbsg["grid"]]))
    _, first = np.unique(np.concatenate([gbsg["horizons"], gbsg["grid"]])[order], return_index=True)
    curves = curves[:, order][:, first]
    pred = S.SurvivalPredictions(
        np.arange(len(yte)).astype(object), yte["time"], yte["cens"], gbsg["risk"], times, curves
    )
    rep = S.evaluate_survival(
        pred,
        train_time=ytr["time"],
        train_event=ytr["cens"],
        horizons=gbsg["horizons"],
        dataset="gbsg2",
        split="test",
        population="",
        n_boot=100,
        seed=0,
    )
    c = rep.discrimination["harrell_c"]
    assert c.value == pytest.approx(sk.concordance_index_censored(yte["cens"], yte["time"], gbsg["risk"])[0])
    assert c.low < c.value < c.high
    auc = [a["auc"].value for a in rep.discrimination["td_auc"]]
    np.testing.assert_allclose(auc, sk.cumulative_dynamic_auc(ytr, yte, 1 - gbsg["surv_h"], gbsg["horizons"])[0])
    assert len(rep.calibration["horizons"]) == 3
    assert 0 <= rep.calibration["d_calibration"]["p_value"] <= 1
    assert rep.to_json()  # strict JSON: it goes into the bundle


def test_subgroup_concordance_is_harrells_c_within_each_group(gbsg: dict[str, np.ndarray]) -> None:
    import pandas as pd

    t, e, r = gbsg["yte"]["time"], gbsg["yte"]["cens"], gbsg["risk"]
    rng = np.random.default_rng(0)
    groups = np.where(rng.random(t.size) < 0.5, "a", "b").astype(object)
    groups[:5] = "tiny"
    (attr,) = S.subgroup_concordance(t, e, r, pd.DataFrame({"site": groups}), n_boot=50)
    by_group = {g["group"]: g for g in attr["groups"]}
    for name in ("a", "b"):
        m = groups == name
        expected = sk.concordance_index_censored(e[m], t[m], r[m])[0]
        c = by_group[name]["harrell_c"]
        assert c.value == pytest.approx(expected, abs=1e-12)
        assert c.low <= c.value <= c.high
    assert by_group["tiny"]["harrell_c"] is None and "fewer than" in by_group["tiny"]["note"]
    gap = attr["gaps"]["harrell_c"]
    assert gap.value == pytest.approx(abs(by_group["a"]["harrell_c"].value - by_group["b"]["harrell_c"].value))
