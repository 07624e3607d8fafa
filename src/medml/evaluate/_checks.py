"""Input checks shared by every metric: one place that turns bad arrays into errors that say what to do."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medml.errors import DataError

FloatArray = npt.NDArray[np.float64]


def check_binary(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    probabilities: bool = True,
    both_classes: bool = False,
    metric: str = "this metric",
) -> tuple[FloatArray, FloatArray]:
    """Return ``(y, p)`` as float arrays after checking shape, 0/1 outcomes, finite scores and, if asked,
    probabilities in [0, 1] and both classes present."""
    y = np.asarray(y_true)
    p = np.asarray(y_score)
    if y.ndim != 1 or p.ndim != 1:
        raise DataError(
            f"{metric}: y_true and y_score must be 1-D, got shapes {y.shape} and {p.shape}",
            "pass one outcome and one score per sample",
        )
    if y.shape != p.shape:
        raise DataError(
            f"{metric}: {y.size} outcomes but {p.size} scores",
            "pass y_true and y_score for the same samples, in the same order",
        )
    if y.size == 0:
        raise DataError(f"{metric}: no samples", "evaluate on a non-empty set of predictions")
    try:
        y = y.astype(np.float64)
        p = p.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{metric}: outcomes and scores must be numeric ({err})", "encode outcomes as 0/1") from err
    if np.isnan(y).any():
        raise DataError(f"{metric}: {int(np.isnan(y).sum())} missing outcomes", "drop samples without an outcome")
    if not np.isin(y, (0.0, 1.0)).all():
        bad = sorted({str(v) for v in y[~np.isin(y, (0.0, 1.0))][:3]})
        raise DataError(f"{metric}: outcomes must be 0/1, found {', '.join(bad)}", "map the outcome to 0 and 1")
    if not np.isfinite(p).all():
        raise DataError(
            f"{metric}: {int((~np.isfinite(p)).sum())} missing or infinite scores",
            "check the model's input for unhandled missing values before evaluating",
        )
    if probabilities and ((p < 0).any() or (p > 1).any()):
        raise DataError(
            f"{metric}: scores must be probabilities in [0, 1], found {p.min():.3g} to {p.max():.3g}",
            "pass predicted probabilities (e.g. predict_proba[:, 1]), not logits or raw scores",
        )
    if both_classes:
        require_both_classes(y, metric)
    return y, p


def require_both_classes(y: FloatArray, metric: str) -> None:
    """Raise when ``y`` holds one class only, which leaves rank and calibration metrics undefined."""
    n_events = int(y.sum())
    if n_events == 0 or n_events == y.size:
        only = "events (1)" if n_events else "non-events (0)"
        raise DataError(
            f"{metric} is undefined: y_true holds only {only}, so there is nothing to rank or compare",
            "evaluate on a set that contains both events and non-events (a larger or outcome-stratified split)",
        )
