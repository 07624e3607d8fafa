"""Performance by subgroup of each sensitive attribute, the gaps between groups, and which gaps to flag.

Per-group values come from fairlearn's ``MetricFrame``; intervals from one bootstrap per attribute that
resamples within each group, so a group's interval and the gaps' intervals share the same resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from fairlearn.metrics import MetricFrame

from medml.errors import DataError
from medml.evaluate._checks import FloatArray, check_binary
from medml.evaluate.bootstrap import percentile_interval, resample_counts, single_threaded_blas
from medml.evaluate.calibration import brier, brier_weighted, calibration_slope, calibration_slope_weighted
from medml.evaluate.discrimination import auprc, auprc_weighted, auroc, auroc_weighted
from medml.evaluate.schema import Estimate
from medml.evaluate.thresholds import threshold_metrics, threshold_metrics_weighted

UNKNOWN = "Unknown"
# A gap is flagged when it exceeds its tolerance and its interval excludes 0. AUPRC and Brier gaps are
# reported but never flagged: both move with a group's prevalence even when the model serves it equally well.
GAP_TOLERANCE: dict[str, float] = {
    "auroc": 0.05,
    "calibration_slope": 0.2,
    "sensitivity": 0.1,
    "specificity": 0.1,
    "ppv": 0.1,
}
RANK_METRICS = ("auroc", "auprc", "calibration_slope")
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv")
GAP_METRICS = ("auroc", "auprc", "brier", "calibration_slope", *THRESHOLD_METRICS)


def group_labels(column: pd.Series) -> npt.NDArray[np.str_]:
    """Group label of each sample as text; missing values become ``"Unknown"``."""
    missing = column.isna().to_numpy()
    text = column.astype(object).to_numpy()
    return np.array([UNKNOWN if m else str(v) for v, m in zip(text, missing, strict=True)], dtype=str)


def _group_summary(threshold: float, min_n: int) -> Callable[[npt.ArrayLike, npt.ArrayLike], dict[str, float]]:
    """One metric returning every per-group value: fairlearn copies its inputs element by element for each
    metric it is given, which took seconds for nine metrics on 20,000 samples, and one summary takes one copy.

    AUROC, AUPRC and calibration slope are NaN for a group with fewer than ``min_n`` events or non-events.
    """

    def summary(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
        y, p = check_binary(y_true, y_pred, metric="subgroup report")
        events = float(y.sum())
        enough = min(events, y.size - events) >= max(min_n, 1)
        at_threshold = threshold_metrics(y, p, threshold)
        return {
            "n": float(y.size),
            "n_events": events,
            "auroc": auroc(y, p) if enough else math.nan,
            "auprc": auprc(y, p) if enough else math.nan,
            "brier": brier(y, p),
            "calibration_slope": calibration_slope(y, p) if enough else math.nan,
            **{m: at_threshold[m] for m in THRESHOLD_METRICS},
        }

    return summary


def _metric_frame(
    y: FloatArray, p: FloatArray, labels: npt.NDArray[np.str_], name: str, threshold: float, min_n: int
) -> pd.DataFrame:
    """Per-group point values (one row per group) through fairlearn's MetricFrame."""
    frame = MetricFrame(
        metrics={"summary": _group_summary(threshold, min_n)},
        y_true=y,
        y_pred=p,
        sensitive_features=pd.Series(labels, name=name),
    )
    summaries = frame.by_group["summary"]
    return pd.DataFrame(list(summaries), index=summaries.index.astype(str))


def _bootstrap_groups(
    y: FloatArray,
    p: FloatArray,
    codes: npt.NDArray[np.intp],
    eligible: npt.NDArray[np.bool_],
    threshold: float,
    n_boot: int,
    seed: int | np.random.Generator,
) -> dict[str, FloatArray]:
    """Bootstrap draws (resamples x groups) of each gap metric, resampling within each group."""
    order = np.lexsort((p, y, codes))  # groups contiguous, and within each the layout the rank metrics want
    y, p, codes = y[order], p[order], codes[order]
    n_groups = int(codes.max()) + 1
    bounds = np.searchsorted(codes, np.arange(n_groups + 1))
    draws = {m: np.full((n_boot, n_groups), np.nan) for m in GAP_METRICS}
    row = 0
    with single_threaded_blas():
        for counts in resample_counts(y.size, n_boot, seed, strata=codes):
            rows = slice(row, row + counts.shape[0])
            for g in range(n_groups):
                cols = slice(bounds[g], bounds[g + 1])
                yg, pg, wg = y[cols], p[cols], counts[:, cols]
                draws["brier"][rows, g] = brier_weighted(yg, pg, wg)
                if not eligible[g]:
                    continue
                draws["auroc"][rows, g] = auroc_weighted(yg, pg, wg)
                draws["auprc"][rows, g] = auprc_weighted(yg, pg, wg)
                draws["calibration_slope"][rows, g] = calibration_slope_weighted(yg, pg, wg)
                for name, values in threshold_metrics_weighted(yg, pg, wg, threshold).items():
                    draws[name][rows, g] = values
            row += counts.shape[0]
    return draws


def gap_level(level: float, n_groups: int) -> float:
    """Level of the gap intervals: Bonferroni over the n(n-1)/2 pairs of groups, because the gap compares the
    two extreme groups, picked after looking; at the nominal level five equal groups were flagged often."""
    pairs = max(1, n_groups * (n_groups - 1) // 2)
    return 1.0 - (1.0 - level) / pairs


def _gaps(
    by_group: pd.DataFrame,
    eligible: npt.NDArray[np.bool_],
    draws: dict[str, FloatArray],
    level: float,
    n_boot: int,
    tolerance: Mapping[str, float],
) -> tuple[dict[str, Estimate], list[str]]:
    """Largest minus smallest group value of each metric, its interval, and the flagged metrics."""
    gaps: dict[str, Estimate] = {}
    flagged: list[str] = []
    for name in GAP_METRICS:
        values = by_group[name].to_numpy(dtype=float)
        usable = np.flatnonzero(eligible & np.isfinite(values))
        if usable.size < 2:
            continue
        hi = usable[np.argmax(values[usable])]
        lo = usable[np.argmin(values[usable])]
        # The interval is that of the difference between the two extreme groups, so it can include 0.
        low, high = percentile_interval(draws[name][:, hi] - draws[name][:, lo], level, n_boot)
        gaps[name] = Estimate(float(values[hi] - values[lo]), low, high)
        if name in tolerance and gaps[name].value > tolerance[name] and low > 0:
            flagged.append(name)
    return gaps, flagged


def _estimate(value: float, values: FloatArray, level: float, n_boot: int) -> Estimate | None:
    if not np.isfinite(value):
        return None
    return Estimate(float(value), *percentile_interval(values, level, n_boot))


def _float_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def subgroup_report(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    sensitive: pd.DataFrame,
    *,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    min_n: int = 10,
    level: float = 0.95,
    tolerance: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per sensitive attribute (a column of ``sensitive``, rows matched to predictions by position): each
    group's performance with intervals, the gaps between groups, and the flagged gaps.

    Groups with fewer than ``min_n`` events or non-events get a note, None for AUROC, AUPRC and calibration
    slope, and no part in the gaps. Gap intervals are at ``gap_level`` (Bonferroni over group pairs, reported
    as ``"gap_level"``). ``tolerance`` defaults to ``GAP_TOLERANCE``.
    """
    y, p = check_binary(y_true, y_prob, metric="subgroup report")
    if isinstance(sensitive, pd.Series):
        sensitive = sensitive.to_frame()
    if len(sensitive) != y.size:
        raise DataError(
            f"subgroup report: {len(sensitive)} rows of sensitive attributes for {y.size} predictions",
            "pass one row of sensitive attributes per prediction, in the same order",
        )
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"subgroup report: threshold {threshold} is not a risk in [0, 1]", "use e.g. the prevalence")
    tolerance = GAP_TOLERANCE if tolerance is None else tolerance
    seeds = np.random.SeedSequence(seed).spawn(len(sensitive.columns))
    report = []
    for column, seq in zip(sensitive.columns, seeds, strict=True):
        name = str(column)
        labels = group_labels(sensitive[column])
        by_group = _metric_frame(y, p, labels, name, threshold, min_n)
        groups = sorted(by_group.index.astype(str), key=lambda g: (g == UNKNOWN, g))
        by_group = by_group.loc[groups]
        events = by_group["n_events"].to_numpy(dtype=float)
        n = by_group["n"].to_numpy(dtype=float)
        eligible = np.minimum(events, n - events) >= max(min_n, 1)
        codes = pd.Categorical(labels, categories=groups).codes.astype(np.intp)
        draws = _bootstrap_groups(y, p, codes, eligible, threshold, n_boot, np.random.default_rng(seq))
        rows = []
        for g, group in enumerate(groups):
            v = by_group.loc[group]
            note = (
                ""
                if eligible[g]
                else (
                    f"too few to estimate discrimination or calibration: {int(events[g])} events and "
                    f"{int(n[g] - events[g])} non-events (at least {min_n} of each needed)"
                )
            )
            rows.append(
                {
                    "group": group,
                    "n": int(n[g]),
                    "n_events": int(events[g]),
                    "prevalence": float(events[g] / n[g]),
                    **{
                        m: _estimate(v[m] if eligible[g] else np.nan, draws[m][:, g], level, n_boot)
                        for m in RANK_METRICS
                    },
                    "brier": _estimate(v["brier"], draws["brier"][:, g], level, n_boot),
                    **{m: _float_or_none(v[m]) for m in THRESHOLD_METRICS},
                    "note": note,
                }
            )
        simultaneous = gap_level(level, int(eligible.sum()))
        gaps, flagged = _gaps(by_group, eligible, draws, simultaneous, n_boot, tolerance)
        report.append(
            {
                "attribute": name,
                "reference_threshold": float(threshold),
                "groups": rows,
                "gaps": gaps,
                "gap_level": simultaneous,
                "flagged": flagged,
            }
        )
    return report
