"""Calibration metrics against closed forms, scikit-learn and simulated data of known calibration."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_sim import simulate
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from medml.errors import DataError
from medml.evaluate import (
    brier,
    calibration_curve,
    calibration_intercept_slope,
    ece,
    ici,
    scaled_brier,
    smooth_calibration,
)
from medml.evaluate._loess import loess
from medml.evaluate.calibration import (
    calibration_intercept_weighted,
    calibration_slope_weighted,
    logit,
)


def test_brier_equals_sklearn_and_scaled_brier_its_definition() -> None:
    y, p, _ = simulate(2000, seed=1)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    prevalence = y.mean()
    assert scaled_brier(y, p) == pytest.approx(1 - brier_score_loss(y, p) / (prevalence * (1 - prevalence)))
    assert scaled_brier(y, np.full(y.size, prevalence)) == pytest.approx(0.0, abs=1e-12)


def test_perfectly_calibrated_model_has_slope_one_intercept_zero() -> None:
    y, p, _ = simulate(200_000, seed=2)
    fit = calibration_intercept_slope(y, p)
    assert fit.slope == pytest.approx(1.0, abs=0.03)
    assert fit.intercept == pytest.approx(0.0, abs=0.02)


def test_overconfident_model_has_slope_one_half() -> None:
    """p = sigmoid(2 logit(true risk)) is recalibrated by halving its log-odds: slope 0.5, offset intercept 0.5x."""
    y, p, _ = simulate(200_000, seed=3, shift=0.0, miscalibration=2.0)
    assert calibration_intercept_slope(y, p).slope == pytest.approx(0.5, abs=0.01)


def test_slope_equals_unpenalised_sklearn_logistic_regression() -> None:
    y, p, _ = simulate(3000, seed=4, miscalibration=1.4)
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit(p)[:, None], y)
    assert calibration_intercept_slope(y, p).slope == pytest.approx(model.coef_[0, 0], rel=1e-5)


def test_intercept_closed_forms() -> None:
    """With a constant prediction the offset model gives logit(prevalence) - logit(p); in general the
    recalibrated risks average to the prevalence (the score equation)."""
    y = np.array([1] * 30 + [0] * 70)
    fit = calibration_intercept_slope(y, np.full(100, 0.2))
    assert fit.intercept == pytest.approx(np.log(0.3 / 0.7) - np.log(0.2 / 0.8), abs=1e-9)
    y, p, _ = simulate(2000, seed=5, shift=-1.0)
    a = calibration_intercept_slope(y, p).intercept
    assert np.mean(1 / (1 + np.exp(-(a + logit(p))))) == pytest.approx(y.mean(), abs=1e-9)


def test_slope_closed_form_for_two_risk_levels() -> None:
    """Logistic regression on a two-valued covariate fits the two observed log-odds exactly."""
    y = np.array([1] * 10 + [0] * 40 + [1] * 30 + [0] * 20)
    p = np.array([0.1] * 50 + [0.7] * 50)
    expected = (np.log(30 / 20) - np.log(10 / 40)) / (logit(np.array([0.7]))[0] - logit(np.array([0.1]))[0])
    assert calibration_intercept_slope(y, p).slope == pytest.approx(expected, rel=1e-9)


def test_weighted_calibration_equals_fit_on_repeated_sample() -> None:
    y, p, _ = simulate(500, seed=6)
    rng = np.random.default_rng(6)
    counts = rng.multinomial(500, np.full(500, 1 / 500), size=3).astype(float)
    slopes = calibration_slope_weighted(y.astype(float), p, counts)
    intercepts = calibration_intercept_weighted(y.astype(float), p, counts)
    for row, slope, intercept in zip(counts, slopes, intercepts, strict=True):
        idx = np.repeat(np.arange(500), row.astype(int))
        fit = calibration_intercept_slope(y[idx], p[idx])
        assert slope == pytest.approx(fit.slope, abs=1e-6)
        assert intercept == pytest.approx(fit.intercept, abs=1e-6)


def test_loess_reproduces_a_quadratic_exactly() -> None:
    x = np.random.default_rng(7).random(500)
    y = 0.2 - 0.5 * x + 1.3 * x**2
    at = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(loess(x, y, at), 0.2 - 0.5 * at + 1.3 * at**2, atol=1e-9)


def test_ici_near_zero_when_calibrated_and_matches_known_miscalibration() -> None:
    y, p, _ = simulate(20_000, seed=8, shift=-1.0)
    assert ici(y, p) < 0.01
    y, p, risk = simulate(20_000, seed=9, shift=-1.0, miscalibration=2.0)
    true_ici = np.mean(np.abs(risk - p))  # the true calibration curve is known here
    assert true_ici > 0.04
    assert ici(y, p) == pytest.approx(true_ici, abs=0.01)
    smooth = smooth_calibration(y, p)
    assert len(smooth["predicted"]) <= 100
    truth = 1 / (1 + np.exp(-logit(np.asarray(smooth["predicted"])) / 2))
    middle = slice(10, 90)
    np.testing.assert_allclose(np.asarray(smooth["observed"])[middle], truth[middle], atol=0.04)


def test_calibration_curve_matches_sklearn_quantile_bins() -> None:
    y, p, _ = simulate(5000, seed=10)
    curve = calibration_curve(y, p)
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(curve["observed"], prob_true)
    np.testing.assert_allclose(curve["predicted"], prob_pred)
    assert sum(curve["count"]) == 5000 and len(curve["count"]) == 10


def test_ece_hand_computed() -> None:
    # bins [0.1, 0.2): p 0.1, 0.1 with y 0, 1 -> |0.5 - 0.1| = 0.4 over 2 samples;
    # bin [0.9, 1.0]: p 0.9, 1.0 with y 1, 1 -> |1 - 0.95| = 0.05 over 2 samples
    assert ece([0, 1, 1, 1], [0.1, 0.1, 0.9, 1.0]) == pytest.approx((2 * 0.4 + 2 * 0.05) / 4)


def test_probabilities_outside_unit_interval_are_rejected() -> None:
    with pytest.raises(DataError, match=r"probabilities in \[0, 1\]"):
        brier([0, 1], [-0.5, 2.0])
    with pytest.raises(DataError, match="only events"):
        calibration_intercept_slope([1, 1, 1], [0.2, 0.3, 0.4])
