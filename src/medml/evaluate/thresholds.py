"""Operating points and clinical utility: metrics at a risk threshold, net benefit and decision curves.

A sample is flagged (predicted positive) when its predicted risk is at or above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from medml.errors import DataError
from medml.evaluate._checks import FloatArray, check_binary


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def threshold_metrics(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, flagged fraction and the confusion counts at ``threshold``.

    A ratio whose denominator is 0 (e.g. PPV when no one is flagged) is NaN.
    """
    y, p = check_binary(y_true, y_prob, metric="threshold metrics")
    flagged = p >= threshold
    event = y == 1
    tp = int(np.sum(flagged & event))
    fp = int(np.sum(flagged & ~event))
    fn = int(np.sum(~flagged & event))
    tn = int(np.sum(~flagged & ~event))
    return {
        "threshold": float(threshold),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "flagged_fraction": _ratio(tp + fp, y.size),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def sensitivity(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float) -> float:
    """Fraction of events flagged at ``threshold`` (NaN without events)."""
    return threshold_metrics(y_true, y_prob, threshold)["sensitivity"]


def specificity(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float) -> float:
    """Fraction of non-events not flagged at ``threshold`` (NaN without non-events)."""
    return threshold_metrics(y_true, y_prob, threshold)["specificity"]


def ppv(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float) -> float:
    """Fraction of flagged samples that are events (NaN when no one is flagged)."""
    return threshold_metrics(y_true, y_prob, threshold)["ppv"]


def threshold_metrics_weighted(
    y: FloatArray, p: FloatArray, weights: FloatArray, threshold: float
) -> dict[str, FloatArray]:
    """Sensitivity, specificity and PPV at ``threshold`` for each row of ``weights`` (NaN for a 0 denominator)."""
    flagged = (p >= threshold).astype(np.float64)
    tp = weights @ (flagged * y)
    fp = weights @ (flagged * (1.0 - y))
    events = weights @ y
    non_events = weights.sum(axis=1) - events
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": np.where(events > 0, tp / events, np.nan),
            "specificity": np.where(non_events > 0, (non_events - fp) / non_events, np.nan),
            "ppv": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
        }


def _check_thresholds(thresholds: FloatArray) -> None:
    if ((thresholds <= 0) | (thresholds >= 1)).any():
        raise DataError(
            "net benefit needs thresholds strictly between 0 and 1",
            "pass risk thresholds such as 0.05 or 0.2 (the odds t/(1-t) weigh a false positive against a true one)",
        )


def net_benefit(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float) -> float:
    """Net benefit of treating those at or above ``threshold`` (Vickers & Elkin 2006): TP/n - FP/n * t/(1-t)."""
    return decision_curve(y_true, y_prob, [threshold])["model"][0]


def decision_curve(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, thresholds: Sequence[float] | npt.ArrayLike
) -> dict[str, list[float]]:
    """Net benefit of the model, of treating all and of treating none (0) at each threshold."""
    y, p = check_binary(y_true, y_prob, metric="decision curve")
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    _check_thresholds(t)
    n = y.size
    event_scores = np.sort(p[y == 1])
    other_scores = np.sort(p[y == 0])
    tp = event_scores.size - np.searchsorted(event_scores, t, side="left")
    fp = other_scores.size - np.searchsorted(other_scores, t, side="left")
    odds = t / (1.0 - t)
    prevalence = event_scores.size / n
    return {
        "threshold": t.tolist(),
        "model": (tp / n - fp / n * odds).tolist(),
        "treat_all": (prevalence - (1.0 - prevalence) * odds).tolist(),
        "treat_none": np.zeros_like(t).tolist(),
    }
