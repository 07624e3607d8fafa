"""CBPE against closed forms and labels drawn from calibrated scores; realised performance against evaluate/."""

from __future__ import annotations

import numpy as np
import pytest

from medml.errors import MonitorError
from medml.evaluate import auroc, brier
from medml.monitor.estimate import cbpe_auroc, estimate, realised


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-1.0, 1.2, n)))
    return p, (rng.random(n) < p).astype(float)


def test_cbpe_auroc_is_the_expected_auroc_over_all_pairs() -> None:
    """Closed form: each pair (i event, j non-event) with i scored above j counts p_i (1 - p_j), ties and the
    pair of a patient with itself count half, over (sum p)(sum 1 - p)."""
    rng = np.random.default_rng(0)
    p = np.round(rng.random(60), 1)  # ties included
    above = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    expected = np.sum(p[:, None] * (1 - p[None, :]) * above) / (p.sum() * (1 - p).sum())
    assert cbpe_auroc(p) == pytest.approx(expected, abs=1e-12)


def test_on_calibrated_scores_the_estimate_is_the_realised_auroc_and_brier() -> None:
    p, y = _calibrated(200_000, seed=1)
    est = estimate(p, threshold=0.5, windows=p.size)
    assert est.auroc[0].value == pytest.approx(auroc(y, p), abs=0.003)
    assert est.brier[0].value == pytest.approx(brier(y, p), abs=0.002)
    assert est.ppv[0].value == pytest.approx(y[p >= 0.5].mean(), abs=0.01)
    assert est.prevalence[0].value == pytest.approx(y.mean(), abs=0.005)


def test_the_interval_holds_the_realised_auroc_of_a_window_about_95_percent_of_the_time() -> None:
    p, y = _calibrated(200 * 200, seed=2)
    est = estimate(p, threshold=0.3, windows=200).to_frame()
    real = np.array([auroc(y[i : i + 200], p[i : i + 200]) for i in range(0, p.size, 200)])
    inside = (est["auroc_low"] <= real) & (real <= est["auroc_high"])
    assert 0.90 <= inside.mean() <= 0.99
    assert (est["auroc_low"] < est["auroc"]).all() and (est["auroc"] < est["auroc_high"]).all()


def test_realised_by_window_and_subgroup_uses_only_the_outcomes_that_arrived() -> None:
    p, y = _calibrated(1000, seed=4)
    y_late = y.copy()
    y_late[::3] = np.nan
    sex = np.where(np.arange(1000) % 2 == 0, "female", "male")
    res = realised(y_late, p, threshold=0.4, windows=500, subgroups={"sex": sex}, n_boot=100)
    known = ~np.isnan(y_late)
    first = known & (np.arange(1000) < 500)
    row = res.frame.iloc[0]
    assert row["n_outcomes"] == first.sum()
    assert row["auroc"] == pytest.approx(auroc(y[first], p[first]))
    assert row["auroc_low"] < row["auroc"] < row["auroc_high"]
    female = res.subgroups.set_index("group").loc["female"]
    mask = known & (sex == "female")
    assert female["auroc"] == pytest.approx(auroc(y[mask], p[mask]))
    assert female["ppv"] == pytest.approx(y[mask & (p >= 0.4)].mean())


def test_bad_scores_are_one_clear_error() -> None:
    with pytest.raises(MonitorError, match="1 scores are not risks"):
        estimate([0.1, 1.2, 0.3], threshold=0.5)
    with pytest.raises(MonitorError, match="threshold must be a risk"):
        estimate([0.1, 0.2], threshold=2.0)
    with pytest.raises(MonitorError, match="outcomes must be 0, 1"):
        realised([0, 2], [0.1, 0.2], threshold=None)


def test_all_windows_at_once_give_each_windows_own_estimate() -> None:
    """``estimate`` computes every window in one sort; each must equal the direct per-window computation."""
    from medml.monitor.estimate import auroc_sd

    rng = np.random.default_rng(5)
    p = np.round(rng.random(1_050), 2)  # ties within and across windows
    est = estimate(p, threshold=0.4, windows=200, level=0.9).to_frame()
    z = 1.6448536269514722
    for w, start in enumerate(range(0, p.size, 200)):
        pw = p[start : start + 200]
        assert est["auroc"][w] == pytest.approx(cbpe_auroc(pw), abs=1e-12)
        assert est["auroc_high"][w] - est["auroc"][w] == pytest.approx(z * auroc_sd(pw), rel=1e-9)
        assert est["ppv"][w] == pytest.approx(pw[pw >= 0.4].mean(), abs=1e-12)
        assert est["brier"][w] == pytest.approx(np.mean(pw * (1 - pw)), abs=1e-12)
