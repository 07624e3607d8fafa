"""Drift against the reference profile: PSI, the binned KS and chi-square tests and the missing-rate test against
closed forms and scipy, and the alarm rule on null and shifted streams."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medml.data.task import FeatureSpec
from medml.errors import MonitorError
from medml.monitor.drift import AlarmRule, drift, psi
from medml.monitor.profile import build_profile


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(65, 12, n),
            "creatinine": rng.lognormal(0.0, 0.35, n),
            "grade": rng.integers(0, 5, n).astype(float),
            "sex": rng.choice(["female", "male"], n),
            "ward": rng.choice(["medicine", "surgery", "icu"], n, p=[0.5, 0.3, 0.2]),
        }
    )


FEATURES = [
    FeatureSpec("age", "numeric"),
    FeatureSpec("creatinine", "numeric", unit="mg/dL"),
    FeatureSpec("grade", "numeric"),
    FeatureSpec("sex", "categorical"),
    FeatureSpec("ward", "categorical"),
]


def _scores(frame: pd.DataFrame) -> np.ndarray:
    return 1 / (1 + np.exp(-(0.04 * (frame["age"] - 65) + 0.8 * np.log(frame["creatinine"]))))


def _reference(seed: int = 0, n: int = 2000):
    frame = _frame(np.random.default_rng(seed), n)
    return build_profile(frame, FEATURES, _scores(frame), None, threshold=None), frame


def _one_window(profile, current: pd.DataFrame):
    result = drift(profile, current, _scores(current), window=len(current))
    return result.tests.set_index(["test", "feature"])


def test_psi_of_identical_distributions_is_0_and_a_hand_computed_case() -> None:
    assert psi([10, 20, 30], [[1, 2, 3], [10, 20, 30]]).tolist() == [0.0, 0.0]
    # 50/50 against 25/75: (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    assert psi([50, 50], [[25, 75]])[0] == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-12)


def test_ks_on_discrete_values_is_scipys_two_sample_ks() -> None:
    rng = np.random.default_rng(1)
    profile, reference = _reference()
    current = _frame(rng, 300)
    current["grade"] = rng.choice(5, 300, p=[0.1, 0.1, 0.2, 0.3, 0.3]).astype(float)
    row = _one_window(profile, current).loc[("distribution", "grade")]
    peer = stats.ks_2samp(reference["grade"], current["grade"], method="asymp")
    assert row["statistic"] == pytest.approx(peer.statistic, abs=1e-12)
    assert row["p"] == pytest.approx(peer.pvalue, rel=1e-9)


def test_ks_on_continuous_values_is_within_one_bin_of_scipys() -> None:
    rng = np.random.default_rng(2)
    profile, reference = _reference()
    current = _frame(rng, 500)
    current["age"] += 4.0
    row = _one_window(profile, current).loc[("distribution", "age")]
    peer = stats.ks_2samp(reference["age"], current["age"])
    # binned on deciles: a lower bound of the exact statistic, at most one bin's mass (10%) below it
    assert peer.statistic - 0.1 <= row["statistic"] <= peer.statistic + 1e-12


def test_categories_use_the_chi_square_test_of_homogeneity() -> None:
    rng = np.random.default_rng(3)
    profile, reference = _reference()
    current = _frame(rng, 400)
    current["ward"] = rng.choice(["medicine", "surgery", "icu"], 400, p=[0.3, 0.3, 0.4])
    row = _one_window(profile, current).loc[("distribution", "ward")]
    table = pd.crosstab(
        np.r_[np.zeros(len(reference)), np.ones(len(current))], np.r_[reference["ward"], current["ward"]]
    )
    chi2, p, _, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
    assert row["statistic"] == pytest.approx(chi2, rel=1e-9)
    assert row["p"] == pytest.approx(p, rel=1e-9)


def test_a_rare_missing_value_is_judged_by_fishers_exact_test() -> None:
    rng = np.random.default_rng(4)
    profile, _ = _reference()
    current = _frame(rng, 200)
    current.loc[:2, "creatinine"] = np.nan  # 3 missing of 200, none of 2000 in development
    row = _one_window(profile, current).loc[("missing", "creatinine")]
    table = [[0, 2000], [3, 197]]
    one_sided = min(stats.fisher_exact(table, alternative=side).pvalue for side in ("less", "greater"))
    assert row["p"] == pytest.approx(min(1.0, 2 * one_sided), rel=1e-9)
    assert not row["alarm"]


def test_hypergeometric_tails_are_scipys() -> None:
    from medml.monitor.drift import hypergeom_tails

    x, total, marked = np.array([0.0, 37.0, 12.0]), np.array([2200.0, 20200.0, 500.0]), np.array([3.0, 2037.0, 40.0])
    drawn = np.array([200.0, 200.0, 150.0])
    upper, lower = hypergeom_tails(x, total, marked, drawn)
    assert upper == pytest.approx(stats.hypergeom.sf(x - 1, total, marked, drawn), rel=1e-9)
    assert lower == pytest.approx(stats.hypergeom.cdf(x, total, marked, drawn), rel=1e-9)


def test_the_missing_rate_test_holds_its_level_in_the_tail() -> None:
    """1,000,000 windows of 200 with the development missing rate (10%): at the level a window's Bonferroni bound
    reaches (1e-4) at most about 1e-4 of them may be called significant (the normal approximation alone calls
    2.3e-4: its tail is too thin for a binomial this small)."""
    from medml.monitor.drift import missing_test

    missing = np.random.default_rng(12).binomial(200, 0.1, 1_000_000).astype(float)
    p = missing_test(2_000, 20_000, missing, np.full(missing.size, 200.0))
    assert (p < 1e-4).mean() <= 1.3e-4


def test_null_stream_alarms_in_at_most_5_percent_of_windows() -> None:
    profile, _ = _reference(seed=5)
    stream = _frame(np.random.default_rng(6), 200 * 100)
    result = drift(profile, stream, _scores(stream), window=200)
    windows = result.to_frame()
    assert len(windows) == 100
    assert windows["alarm"].mean() <= 0.05
    assert windows["n_tests"].iloc[0] == 5 * 2 + 1 + 1  # distribution and missing per feature, score, PCA


def test_faults_alarm_in_their_first_window_and_name_the_feature() -> None:
    profile, _ = _reference(seed=7)
    stream = _frame(np.random.default_rng(8), 200 * 12)
    stream.loc[800:, "creatinine"] *= 88.4  # reported in umol/L from row 800 on
    stream.loc[1600:, "age"] = np.nan  # the feed stops at row 1600
    result = drift(profile, stream, _scores(stream.fillna({"age": 65.0})), window=200)
    assert "creatinine" in result.features_named(4)
    assert "age" in result.features_named(8)
    assert any(a.kind == "missing" and "age" in a.features for a in result.alarms if a.window == 8)
    assert all("creatinine" not in result.features_named(w) for w in range(4))
    assert "creatinine" in result.alarms[0].message and "PSI" in result.alarms[0].message


def test_small_windows_are_measured_but_not_tested() -> None:
    profile, _ = _reference()
    stream = _frame(np.random.default_rng(9), 210)
    stream["creatinine"] *= 88.4
    result = drift(profile, stream, _scores(stream), window=200, rule=AlarmRule(min_n=30))
    frame = result.to_frame()
    assert frame["alarm"].tolist() == [True, False] and frame["n_tests"].tolist()[1] == 0


def test_windows_by_time() -> None:
    profile, _ = _reference()
    stream = _frame(np.random.default_rng(10), 300)
    stream["time"] = pd.date_range("2026-03-02", periods=300, freq="h", tz="UTC")
    result = drift(profile, stream, _scores(stream), window="7D")
    frame = result.to_frame()
    assert frame["n"].sum() == 300 and len(frame) == 2
    shuffled = stream.sample(frac=1.0, random_state=1)  # rows recorded out of time order: the same windows
    again = drift(profile, shuffled, _scores(shuffled), window="7D")
    pd.testing.assert_frame_equal(again.tests, result.tests, check_exact=False, rtol=1e-9)
    assert (again.windows.ids == result.windows.ids[shuffled.index.to_numpy()]).all()


def test_bad_input_is_one_clear_error() -> None:
    profile, _ = _reference()
    stream = _frame(np.random.default_rng(11), 50)
    with pytest.raises(MonitorError, match="lack 1 of the model's features: ward"):
        drift(profile, stream.drop(columns="ward"), _scores(stream))
    with pytest.raises(MonitorError, match="at least 1 prediction"):
        drift(profile, stream, _scores(stream), window=0)
    with pytest.raises(MonitorError, match="one score per prediction"):
        drift(profile, stream, _scores(stream)[:10])
    with pytest.raises(MonitorError, match="need the time"):
        drift(profile, stream, _scores(stream), window="7D")
