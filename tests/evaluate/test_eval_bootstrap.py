"""Bootstrap intervals: coverage of a known AUROC, Hanley-McNeil width, determinism, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medml.errors import DataError
from medml.evaluate import auroc, bootstrap_ci, bootstrap_many, brier, calibration_slope


def binormal(n: int, d: float, seed: int, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(0, 1) for non-events and N(d, 1) for events: the true AUROC is Phi(d / sqrt 2)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    return y, rng.normal(size=n) + d * y


def hanley_mcneil_se(a: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def test_interval_covers_the_true_auroc_at_about_the_nominal_rate() -> None:
    true_auc = norm.cdf(1.0 / math.sqrt(2))
    hits = 0
    for rep in range(200):
        y, s = binormal(300, 1.0, seed=rep)
        est = bootstrap_ci(auroc, y, s, n_boot=300, seed=rep)
        hits += est.low <= true_auc <= est.high
    assert 0.89 <= hits / 200 <= 0.99


def test_width_matches_hanley_mcneil_and_shrinks_with_n() -> None:
    widths = {}
    for n in (1000, 4000):
        y, s = binormal(n, 1.0, seed=n)
        est = bootstrap_ci(auroc, y, s, n_boot=2000, seed=0)
        se = hanley_mcneil_se(est.value, int(y.sum()), int(n - y.sum()))
        assert (est.high - est.low) / (2 * norm.ppf(0.975) * se) == pytest.approx(1.0, abs=0.12)
        widths[n] = est.high - est.low
    assert widths[4000] / widths[1000] == pytest.approx(0.5, abs=0.1)


def test_deterministic_under_seed_and_seed_matters() -> None:
    y, s = binormal(500, 1.0, seed=1)
    a = bootstrap_ci(auroc, y, s, n_boot=200, seed=7)
    assert a == bootstrap_ci(auroc, y, s, n_boot=200, seed=7)
    assert a != bootstrap_ci(auroc, y, s, n_boot=200, seed=8)
    assert a == bootstrap_many({"auroc": auroc, "brier": brier}, y, 1 / (1 + np.exp(-s)), n_boot=200, seed=7)["auroc"]


def test_fast_path_equals_sklearn_on_the_same_resamples() -> None:
    """A metric without a weighted twin is called once per resample: same resamples, same interval."""
    y, s = binormal(400, 0.8, seed=2)
    fast = bootstrap_ci(auroc, y, s, n_boot=100, seed=3)
    slow = bootstrap_ci(lambda a, b: float(roc_auc_score(a, b)), y, s, n_boot=100, seed=3)
    assert fast.value == pytest.approx(slow.value)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)


def test_one_class_resamples_are_skipped_for_rank_metrics() -> None:
    y = np.array([1, 1] + [0] * 18)
    p = np.linspace(0.05, 0.95, 20)[::-1]
    est = bootstrap_ci(auroc, y, p, n_boot=500, seed=0)  # ~13% of resamples hold no event
    assert est.value == 1.0 and est.low == 1.0 and est.high == 1.0
    y_mixed = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0] * 2)
    p_mixed = np.linspace(0.05, 0.5, 20)
    slope = bootstrap_ci(calibration_slope, y_mixed, p_mixed, n_boot=500, seed=0)
    assert np.isfinite([slope.value, slope.low, slope.high]).all() and slope.low < slope.value < slope.high


def test_strata_keep_each_stratum_size() -> None:
    y, s = binormal(1000, 1.0, seed=4)
    est = bootstrap_ci(lambda a, b: float(np.mean(a)), y, s, n_boot=50, seed=0, strata=y)
    assert est.low == est.high == pytest.approx(y.mean())


def test_zero_resamples_give_the_value_without_interval() -> None:
    y, s = binormal(200, 1.0, seed=5)
    est = bootstrap_ci(auroc, y, s, n_boot=0, seed=0)
    assert est.value == pytest.approx(roc_auc_score(y, s)) and math.isnan(est.low)


def test_bad_options_raise() -> None:
    y, s = binormal(100, 1.0, seed=6)
    with pytest.raises(DataError, match="n_boot"):
        bootstrap_ci(auroc, y, s, n_boot=-1, seed=0)
    with pytest.raises(DataError, match="level"):
        bootstrap_ci(auroc, y, s, n_boot=10, seed=0, level=95)


def test_auroc_bootstrap_on_20k_samples_is_vectorised() -> None:
    """1000 resamples of 20,000 samples take about half a second; one sklearn call per resample takes ~10 s."""
    y, s = binormal(20_000, 1.0, seed=7)
    start = time.perf_counter()
    bootstrap_ci(auroc, y, s, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 4.0
