"""Percentile bootstrap intervals, vectorised: resamples are rows of a count matrix, and the built-in metrics
have weighted twins that score every row at once (AUROC via one sort, not one scikit-learn call per resample)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from medml.errors import DataError
from medml.evaluate._checks import FloatArray, check_binary
from medml.evaluate.calibration import (
    brier,
    brier_weighted,
    calibration_intercept,
    calibration_intercept_weighted,
    calibration_slope,
    calibration_slope_weighted,
    scaled_brier,
    scaled_brier_weighted,
)
from medml.evaluate.discrimination import auprc, auprc_weighted, auroc, auroc_weighted
from medml.evaluate.schema import Estimate

Metric = Callable[[npt.ArrayLike, npt.ArrayLike], float]
WeightedMetric = Callable[[FloatArray, FloatArray, FloatArray], FloatArray]

# Weighted twin of each built-in metric, and whether the metric needs both classes in a resample.
WEIGHTED: dict[Callable[..., float], tuple[WeightedMetric, bool]] = {
    auroc: (auroc_weighted, True),
    auprc: (auprc_weighted, True),
    brier: (brier_weighted, False),
    scaled_brier: (scaled_brier_weighted, True),
    calibration_slope: (calibration_slope_weighted, True),
    calibration_intercept: (calibration_intercept_weighted, True),
}
# Rows of the count matrix generated at once; bounds memory at about 16 MB per float matrix.
_CHUNK_ELEMENTS = 2_000_000
# An interval needs at least this fraction of resamples to give a finite value, else it is NaN.
MIN_VALID_FRACTION = 0.5


def resample_counts(
    n: int, n_boot: int, seed: int | np.random.Generator, strata: npt.ArrayLike | None = None
) -> Iterator[FloatArray]:
    """Yield blocks of bootstrap resamples as (rows x n) matrices of how often each sample is drawn.

    With ``strata``, each resample draws within each stratum as many samples as it holds.
    """
    rng = np.random.default_rng(seed)
    members: list[npt.NDArray[np.int32]] | None = None
    if strata is not None:
        codes = np.unique(np.asarray(strata), return_inverse=True)[1].ravel()
        members = [np.flatnonzero(codes == c).astype(np.int32) for c in range(codes.max() + 1)]
    rows = max(1, min(n_boot, _CHUNK_ELEMENTS // max(n, 1)))
    for start in range(0, n_boot, rows):
        r = min(rows, n_boot - start)
        if members is None:
            picks = rng.integers(0, n, size=(r, n), dtype=np.int32)
        else:
            picks = np.concatenate([_draw_within(m, r, rng) for m in members], axis=1)
        picks += (np.arange(r, dtype=picks.dtype) * n)[:, None]
        yield np.bincount(picks.ravel(), minlength=r * n).reshape(r, n).astype(np.float64)


def _draw_within(members: npt.NDArray[np.int32], rows: int, rng: np.random.Generator) -> npt.NDArray[np.int32]:
    """``rows`` resamples of the sample indices ``members`` (arithmetic, not a gather, when they are a range)."""
    picks = rng.integers(0, members.size, size=(rows, members.size), dtype=np.int32)
    if members[-1] - members[0] + 1 == members.size:
        picks += members[0]
        return picks
    return members[picks]


def percentile_interval(values: FloatArray, level: float, n_boot: int) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap ``values``; NaN when too few resamples gave one."""
    finite = values[np.isfinite(values)]
    if n_boot == 0 or finite.size < max(1, MIN_VALID_FRACTION * n_boot):
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _check_options(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise DataError(f"n_boot must be 0 or more, got {n_boot}", "use e.g. 1000 resamples, or 0 for no intervals")
    if not 0.0 < level < 1.0:
        raise DataError(f"interval level must be between 0 and 1, got {level}", "use e.g. 0.95")


def _scores_by_row(
    metric: Metric, y: FloatArray, p: FloatArray, counts: FloatArray, skip_one_class: bool
) -> FloatArray:
    """Fallback for metrics without a weighted twin: one call per resample."""
    out = np.full(counts.shape[0], np.nan)
    for i, row in enumerate(counts):
        idx = np.repeat(np.arange(y.size), row.astype(np.intp))
        events = y[idx].sum()
        if skip_one_class and (events == 0 or events == idx.size):
            continue
        out[i] = metric(y[idx], p[idx])
    return out


def bootstrap_many(
    metrics: Mapping[str, Metric],
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    strata: npt.ArrayLike | None = None,
    skip_one_class: bool | None = None,
) -> dict[str, Estimate]:
    """Percentile bootstrap intervals of several metrics on the same resamples (see ``bootstrap_ci``)."""
    _check_options(n_boot, level)
    y, p = check_binary(y_true, y_score, probabilities=False, metric="bootstrap")
    if strata is not None and np.asarray(strata).shape != y.shape:
        raise DataError("bootstrap: strata must give one label per sample", "pass e.g. the outcome or a group column")
    values = {name: metric(y_true, y_score) for name, metric in metrics.items()}
    # Resamples are exchangeable, so the data can be put once in the layout the weighted metrics need.
    keys = [p, y] if strata is None else [p, y, np.unique(np.asarray(strata), return_inverse=True)[1].ravel()]
    order = np.lexsort(keys)
    y, p = y[order], p[order]
    strata = None if strata is None else np.asarray(strata)[order]
    draws: dict[str, list[FloatArray]] = {name: [] for name in metrics}
    with single_threaded_blas():
        _draw(metrics, y, p, n_boot, seed, strata, skip_one_class, draws)
    out = {}
    for name in metrics:
        low, high = percentile_interval(np.concatenate(draws[name]) if n_boot else np.empty(0), level, n_boot)
        out[name] = Estimate(float(values[name]), low, high)
    return out


def single_threaded_blas() -> threadpool_limits:
    """Context in which BLAS runs on one thread: its (resamples x n) matrix-vector products are memory-bound,
    and a second BLAS thread that spins while the cores are busy made bootstraps several times slower."""
    return threadpool_limits(limits=1, user_api="blas")


def _draw(
    metrics: Mapping[str, Metric],
    y: FloatArray,
    p: FloatArray,
    n_boot: int,
    seed: int,
    strata: npt.ArrayLike | None,
    skip_one_class: bool | None,
    draws: dict[str, list[FloatArray]],
) -> None:
    for counts in resample_counts(y.size, n_boot, seed, strata) if n_boot else ():
        for name, metric in metrics.items():
            weighted, needs_both = WEIGHTED.get(metric, (None, True))
            if weighted is not None:  # its twin returns NaN where the metric is undefined
                draws[name].append(weighted(y, p, counts))
            else:
                skip = needs_both if skip_one_class is None else skip_one_class
                draws[name].append(_scores_by_row(metric, y, p, counts, skip))


def bootstrap_ci(
    metric: Metric,
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    strata: npt.ArrayLike | None = None,
    skip_one_class: bool | None = None,
) -> Estimate:
    """Value of ``metric(y_true, y_score)`` with its percentile bootstrap interval, deterministic under ``seed``.

    Resamples holding one class only are skipped for metrics that need both (the built-in rank and
    calibration metrics; any metric without a known twin unless ``skip_one_class=False``).
    """
    return bootstrap_many(
        {"metric": metric},
        y_true,
        y_score,
        n_boot=n_boot,
        seed=seed,
        level=level,
        strata=strata,
        skip_one_class=skip_one_class,
    )["metric"]
