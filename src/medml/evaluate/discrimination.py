"""Discrimination: AUROC, AUPRC (average precision) and their curves.

Each metric has a weighted twin that takes a (resamples x samples) matrix of bootstrap counts and returns one
value per resample, so that bootstrap intervals need one sort, not one call per resample.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medml.evaluate._checks import FloatArray, check_binary

MAX_CURVE_POINTS = 200


def auroc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Area under the ROC curve: the chance that a random event scores above a random non-event (ties 1/2)."""
    y, p = check_binary(y_true, y_score, probabilities=False, both_classes=True, metric="AUROC")
    return float(auroc_weighted(y, p, np.ones((1, y.size)))[0])


def auprc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's step-wise definition)."""
    y, p = check_binary(y_true, y_score, probabilities=False, both_classes=True, metric="AUPRC")
    return float(auprc_weighted(y, p, np.ones((1, y.size)))[0])


def class_sorted_order(y: FloatArray, p: FloatArray) -> npt.NDArray[np.intp]:
    """Order that puts non-events first, then events, each by increasing score: the layout the weighted
    metrics work on without copying (``bootstrap`` arranges its data this way once)."""
    return np.lexsort((p, y))


class _Layout:
    """Cumulative weights of non-events and events in class-sorted order, shared by AUROC and AUPRC."""

    def __init__(self, y: FloatArray, p: FloatArray, weights: FloatArray) -> None:
        n_neg = int(np.sum(y == 0))
        sorted_already = bool(np.all(y[:n_neg] == 0)) and _ascending(p[:n_neg]) and _ascending(p[n_neg:])
        if not sorted_already:
            order = class_sorted_order(y, p)
            y, p, weights = y[order], p[order], weights[:, order]
        neg_scores, pos_scores = p[:n_neg], p[n_neg:]
        self.pos_weights = weights[:, n_neg:]
        self.cum_neg = _cumsum0(weights[:, :n_neg])
        self.neg_below = np.searchsorted(neg_scores, pos_scores, side="left")
        self.neg_at_or_below = np.searchsorted(neg_scores, pos_scores, side="right")
        self.pos_below = np.searchsorted(pos_scores, pos_scores, side="left")
        self.n_pos = self.pos_weights.sum(axis=1)
        self.n_neg = self.cum_neg[:, -1]

    def one_class(self) -> npt.NDArray[np.bool_]:
        return (self.n_pos == 0) | (self.n_neg == 0)


def _ascending(a: FloatArray) -> bool:
    return bool(np.all(a[1:] >= a[:-1]))


def _cumsum0(w: FloatArray) -> FloatArray:
    """Cumulative sums along rows with a leading column of zeros."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def auroc_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """AUROC for each row of ``weights`` (sample counts); NaN for a row holding one class only."""
    lay = _Layout(y, p, weights)
    below = lay.cum_neg[:, lay.neg_below]
    if np.any(lay.neg_at_or_below != lay.neg_below):  # ties between an event and non-events count 1/2
        below += lay.cum_neg[:, lay.neg_at_or_below]
        below *= 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.einsum("ij,ij->i", lay.pos_weights, below) / (lay.n_pos * lay.n_neg)
    out[lay.one_class()] = np.nan
    return out


def auprc_weighted(y: FloatArray, p: FloatArray, weights: FloatArray) -> FloatArray:
    """Average precision for each row of ``weights``; NaN for a row holding one class only.

    Each event contributes its precision at the threshold of its own score (events tied with it flagged too).
    """
    lay = _Layout(y, p, weights)
    cum_pos = _cumsum0(lay.pos_weights)
    tp = lay.n_pos[:, None] - cum_pos[:, lay.pos_below]
    fp = lay.n_neg[:, None] - lay.cum_neg[:, lay.neg_below]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp > 0, tp / (tp + fp), 0.0)
        out = np.einsum("ij,ij->i", lay.pos_weights, precision) / lay.n_pos
    out[lay.one_class()] = np.nan
    return out


def roc_curve(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, max_points: int = MAX_CURVE_POINTS
) -> dict[str, list[float]]:
    """ROC curve ``{"fpr", "tpr"}`` from (0, 0) to (1, 1), thinned to at most ``max_points`` points."""
    y, p = check_binary(y_true, y_score, probabilities=False, both_classes=True, metric="ROC curve")
    order = np.argsort(-p, kind="stable")
    last_of_tie = np.r_[p[order][1:] != p[order][:-1], True]
    tp = np.cumsum(y[order])[last_of_tie]
    fp = np.cumsum(1 - y[order])[last_of_tie]
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    keep = thin_curve(fpr, tpr, max_points)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def pr_curve(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, max_points: int = MAX_CURVE_POINTS
) -> dict[str, list[float]]:
    """Precision-recall curve ``{"recall", "precision"}`` by decreasing threshold, thinned to ``max_points``."""
    y, p = check_binary(y_true, y_score, probabilities=False, both_classes=True, metric="PR curve")
    order = np.argsort(-p, kind="stable")
    last_of_tie = np.r_[p[order][1:] != p[order][:-1], True]
    tp = np.cumsum(y[order])[last_of_tie]
    flagged = np.cumsum(np.ones_like(y))[last_of_tie]
    recall = np.r_[0.0, tp / tp[-1]]
    precision = np.r_[1.0, tp / flagged]
    keep = thin_curve(recall, precision, max_points)
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist()}


def thin_curve(x: FloatArray, y: FloatArray, max_points: int) -> npt.NDArray[np.intp]:
    """Indices of at most ``max_points`` points spread evenly along the curve's length, ends kept."""
    if x.size <= max_points:
        return np.arange(x.size)
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    targets = np.linspace(0.0, length[-1], max_points - 1)
    idx = np.clip(np.searchsorted(length, targets), 0, x.size - 1)
    return np.unique(np.r_[0, idx, x.size - 1])
