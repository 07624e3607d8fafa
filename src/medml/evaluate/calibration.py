"""Calibration: Brier score, calibration intercept and slope, ICI, ECE and calibration curves.

The intercept is calibration-in-the-large (a logistic model of y with logit(p) as offset); the slope is the
coefficient of logit(p) in an unpenalised logistic regression of y on logit(p) (Van Calster et al. 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from medml.evaluate._checks import FloatArray, check_binary
from medml.evaluate._loess import loess

# Probabilities of exactly 0 or 1 have infinite logits; they are clipped to this distance from the bounds.
LOGIT_EPS = 1e-10
_MAX_NEWTON = 50
# Newton converges quadratically: after a step of size s the error is about s**2, so 1e-5 means ~1e-10.
_STEP_TOL = 1e-5
# Bootstrap refits stop earlier: their error (~1e-6) is far below the spread of the resampled estimates.
_BOOTSTRAP_STEP_TOL = 1e-3
# The calibration intercept is searched in [-60, 60]; logits are clipped at about +-23.
_INTERCEPT_BOUND = 60.0


class CalibrationFit(NamedTuple):
    """Calibration intercept (in the large; ideal 0) and slope (ideal 1)."""

    intercept: float
    slope: float


def logit(p: FloatArray) -> FloatArray:
    """Log-odds of ``p``, clipped at ``LOGIT_EPS`` from 0 and 1."""
    q = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(q) - np.log1p(-q)


def brier(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 is perfect)."""
    y, p = check_binary(y_true, y_prob, metric="Brier score")
    return float(np.mean((p - y) ** 2))


def scaled_brier(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """1 - Brier / Brier of predicting the prevalence for everyone (1 is perfect, 0 no better than prevalence)."""
    y, p = check_binary(y_true, y_prob, both_classes=True, metric="scaled Brier score")
    return float(scaled_brier_weighted(y, p, np.ones((1, y.size)))[0])


def brier_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """Brier score for each row of ``weights`` (sample counts)."""
    return weights @ ((p - y) ** 2) / weights.sum(axis=1)


def scaled_brier_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """Scaled Brier score for each row of ``weights``; NaN for a row holding one class only."""
    total = weights.sum(axis=1)
    prevalence = weights @ y / total
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - (weights @ ((p - y) ** 2) / total) / (prevalence * (1.0 - prevalence))
    out[(prevalence <= 0) | (prevalence >= 1)] = np.nan
    return out


def calibration_intercept_slope(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> CalibrationFit:
    """Calibration intercept (offset model, slope fixed at 1) and slope, both unpenalised maximum likelihood.

    The slope is NaN where no finite estimate exists (predictions that separate the classes, or one risk).
    """
    y, p = check_binary(y_true, y_prob, both_classes=True, metric="calibration intercept and slope")
    ones = np.ones((1, y.size))
    x = logit(p)
    return CalibrationFit(float(_fit_intercept(y, x, ones)[0]), float(_fit_slope(y, x, ones)[1][0]))


def calibration_slope(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Coefficient of logit(p) in a logistic regression of y on logit(p); below 1 means too extreme risks."""
    return calibration_intercept_slope(y_true, y_prob).slope


def calibration_intercept(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Calibration-in-the-large; above 0 means risks are too low on average."""
    return calibration_intercept_slope(y_true, y_prob).intercept


def calibration_slope_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """Calibration slope for each row of ``weights``; NaN where one class only or no finite estimate."""
    x = logit(p)
    start = _fit_slope(y, x, np.ones((1, y.size)))
    return _fit_slope(y, x, weights, start=(float(start[0][0]), float(start[1][0])), tol=_BOOTSTRAP_STEP_TOL)[1]


def calibration_intercept_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """Calibration intercept for each row of ``weights``; NaN where one class only."""
    x = logit(p)
    start = _fit_intercept(y, x, np.ones((1, y.size)))
    return _fit_intercept(y, x, weights, start=float(start[0]), tol=_BOOTSTRAP_STEP_TOL)


def _sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function, in place on ``z`` (numpy's exp is several times faster than scipy's expit here)."""
    np.negative(z, out=z)
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)


def _fit_slope(
    y: FloatArray,
    x: FloatArray,
    weights: FloatArray,
    start: tuple[float, float] | None = None,
    tol: float = _STEP_TOL,
) -> tuple[FloatArray, FloatArray]:
    """Newton-Raphson for logit P(y=1) = a + b x, one fit per row of ``weights``; returns ``(a, b)``.

    Starts from ``start`` or from the null model (a = log-odds of the prevalence, b = 0), the usual IRLS start;
    starting from the identity (0, 1) diverged for strongly overconfident predictions.
    """
    rows = weights.shape[0]
    total = weights.sum(axis=1)
    events = weights @ y
    events_x = weights @ (y * x)
    invalid = (events <= 0) | (events >= total)
    if start is None or not np.all(np.isfinite(start)):
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.log(events) - np.log(total - events)
        a[~np.isfinite(a)] = 0.0
        b = np.zeros(rows)
    else:
        a = np.full(rows, start[0])
        b = np.full(rows, start[1])
    xx = x * x
    active = ~invalid
    for _ in range(_MAX_NEWTON):
        if not active.any():
            break
        w = weights if active.all() else weights[active]
        mu = np.multiply(b[active, None], x[None, :])
        mu += a[active, None]
        _sigmoid(mu)
        v = w * mu
        g0, g1 = events[active] - v.sum(axis=1), events_x[active] - v @ x
        np.subtract(1.0, mu, out=mu)
        v *= mu  # w mu (1 - mu)
        h00, h01, h11 = v.sum(axis=1), v @ x, v @ xx
        with np.errstate(invalid="ignore", divide="ignore"):
            det = h00 * h11 - h01 * h01
            da = (h11 * g0 - h01 * g1) / det
            db = (h00 * g1 - h01 * g0) / det
        a[active] += da
        b[active] += db
        done = np.abs(da) + np.abs(db) < tol
        bad = ~np.isfinite(da) | ~np.isfinite(db)
        idx = np.flatnonzero(active)
        active[idx[done | bad]] = False
        invalid[idx[bad]] = True
    invalid |= active  # did not converge (e.g. a resample with complete separation)
    a[invalid] = np.nan
    b[invalid] = np.nan
    return a, b


def _fit_intercept(
    y: FloatArray, x: FloatArray, weights: FloatArray, start: float | None = None, tol: float = _STEP_TOL
) -> FloatArray:
    """Solve sum w (y - sigmoid(a + x)) = 0 for a, one per row of ``weights``: Newton steps kept inside a
    shrinking bracket (bisection when a step leaves it), so it converges even for risks near 0 or 1."""
    total = weights.sum(axis=1)
    events = weights @ y
    invalid = (events <= 0) | (events >= total)
    lo = np.full(weights.shape[0], -_INTERCEPT_BOUND)
    hi = np.full(weights.shape[0], _INTERCEPT_BOUND)
    if start is None:  # log-odds of the prevalence minus the mean predicted log-odds
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.log(events) - np.log(total - events) - (weights @ x) / total
    else:
        a = np.full(weights.shape[0], start)
    a = np.where(invalid | ~np.isfinite(a), 0.0, np.clip(a, lo, hi))
    for _ in range(_MAX_NEWTON * 2):
        mu = _sigmoid(a[:, None] + x[None, :])
        g = events - np.einsum("ij,ij->i", weights, mu)  # decreasing in a
        mu -= mu * mu
        h = np.einsum("ij,ij->i", weights, mu)
        lo = np.where(g > 0, a, lo)
        hi = np.where(g > 0, hi, a)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            new = a + g / h
        new = np.where(np.isfinite(new) & (new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
        new[invalid] = 0.0
        step = np.abs(new - a)
        a = new
        if np.all(step < tol):
            break
    a[invalid] = np.nan
    return a


def calibration_curve(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 10) -> dict[str, list[float]]:
    """Bins of predicted risk at its quantiles (deciles by default): mean predicted, observed fraction, count.

    Bin edges follow scikit-learn's ``calibration_curve(strategy="quantile")``; empty bins are dropped.
    """
    y, p = check_binary(y_true, y_prob, metric="calibration curve")
    edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    return _binned(y, p, np.searchsorted(edges[1:-1], p), n_bins)


def ece(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error: |observed - predicted| over equal-width bins of risk, weighted by count."""
    y, p = check_binary(y_true, y_prob, metric="ECE")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    curve = _binned(y, p, np.searchsorted(edges[1:-1], p, side="right"), n_bins)
    gaps = np.abs(np.asarray(curve["observed"]) - np.asarray(curve["predicted"]))
    return float(np.sum(gaps * np.asarray(curve["count"])) / y.size)


def _binned(y: FloatArray, p: FloatArray, bin_ids: npt.NDArray[np.intp], n_bins: int) -> dict[str, list[float]]:
    count = np.bincount(bin_ids, minlength=n_bins)
    nonzero = count > 0
    predicted = np.bincount(bin_ids, weights=p, minlength=n_bins)[nonzero] / count[nonzero]
    observed = np.bincount(bin_ids, weights=y, minlength=n_bins)[nonzero] / count[nonzero]
    return {"predicted": predicted.tolist(), "observed": observed.tolist(), "count": count[nonzero].tolist()}


def smooth_calibration(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_points: int = 100) -> dict[str, list[float]]:
    """Loess-smoothed calibration curve at ``n_points`` quantiles of predicted risk, clipped to [0, 1]."""
    y, p = check_binary(y_true, y_prob, metric="smooth calibration curve")
    grid = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_points)))
    observed = np.clip(loess(p, y, grid), 0.0, 1.0)
    return {"predicted": grid.tolist(), "observed": observed.tolist()}


def ici(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, grid_points: int = 200) -> float:
    """Integrated Calibration Index (Austin & Steyerberg 2019): mean |loess(y ~ p) - p| over the samples.

    Loess is evaluated on ``grid_points`` quantiles of p (every distinct p when fewer) and interpolated.
    """
    y, p = check_binary(y_true, y_prob, both_classes=True, metric="ICI")
    distinct = np.unique(p)
    grid = distinct if distinct.size <= grid_points else np.unique(np.quantile(p, np.linspace(0, 1, grid_points)))
    smoothed = np.interp(p, grid, loess(p, y, grid))
    return float(np.mean(np.abs(smoothed - p)))
