"""Performance while outcomes are unknown (estimated) and once they are in (realised), window by window.

Estimated: confidence-based performance estimation (CBPE; NannyML, "Estimating model performance without ground
truth", docs.nannyml.com, after Garg et al.): if the scores are calibrated on the population scored, each
patient is an event with probability equal to the score, so the confusion matrix at every threshold has an
expected value. The estimated AUROC is the area under the expected ROC curve (computed as NannyML's
``estimate_roc_auc``), the expected Brier score is the mean of ``p (1 - p)``, the expected PPV at the deployed
threshold the mean score of the flagged patients. The interval of each is where the realised value of the window
would fall (95%) if its outcomes were drawn from the scores: a normal interval, with the exact variance for the
Brier score, PPV and prevalence and the delta method for the AUROC; it is the uncertainty of a finite window, and it
assumes calibration. Where the
relation between features and outcome changes (concept shift) the estimate is wrong, and only realised performance
shows it. Scores can first be passed through the development data's isotonic calibration map (``calibration=``
the reference profile), as NannyML does when its calibration check asks for it.

Realised: the ``evaluate`` functions on the predictions whose outcomes have arrived, with percentile bootstrap
intervals, by window and by subgroup: AUROC, Brier score, PPV at the threshold, calibration slope and intercept
(logistic recalibration, Cox 1958) and expected against observed events (mean risk against the event rate). A
subgroup (in a window or over all of them) gets AUROC, slope and intercept only with ``min_events`` events and as
many non-events (10, as the development report's subgroup audit, :func:`medml.evaluate.subgroup_report`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from medml.errors import MonitorError
from medml.evaluate import (
    Estimate,
    auroc,
    bootstrap_many,
    brier,
    calibration_intercept,
    calibration_slope,
    ppv,
)
from medml.monitor.profile import ReferenceProfile
from medml.monitor.windows import DEFAULT_WINDOW, Windows, windows_of

__all__ = ["MIN_EVENTS", "EstimateResult", "RealisedResult", "auroc_sd", "cbpe_auroc", "estimate", "realised"]

#: events (and non-events) a subgroup needs for its AUROC and calibration: the development subgroup audit's minimum
MIN_EVENTS = 10
#: the realised metrics each row reports, each with ``_low`` and ``_high``
REALISED_METRICS = ("auroc", "brier", "ppv", "calibration_slope", "calibration_intercept")


@dataclass(frozen=True)
class EstimateResult:
    """Estimated AUROC, expected Brier score, PPV at ``threshold`` and expected prevalence per window, each an
    :class:`~medml.evaluate.Estimate` (value, low, high)."""

    windows: Windows
    threshold: float | None
    auroc: tuple[Estimate, ...]
    brier: tuple[Estimate, ...]
    ppv: tuple[Estimate, ...]
    prevalence: tuple[Estimate, ...]
    level: float

    def to_frame(self) -> pd.DataFrame:
        out = self.windows.frame()
        for name in ("auroc", "brier", "ppv", "prevalence"):
            ests: tuple[Estimate, ...] = getattr(self, name)
            out[name] = [e.value for e in ests]
            out[f"{name}_low"] = [e.low for e in ests]
            out[f"{name}_high"] = [e.high for e in ests]
        return out


@dataclass(frozen=True)
class RealisedResult:
    """Realised performance per window (``frame``), per subgroup over all windows (``subgroups``) and per subgroup
    in each window (``subgroups_by_window``, with a ``window`` column); the last two empty without subgroups."""

    frame: pd.DataFrame
    subgroups: pd.DataFrame
    subgroups_by_window: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_frame(self) -> pd.DataFrame:
        return self.frame


def cbpe_auroc(calibrated: npt.ArrayLike, scores: npt.ArrayLike | None = None) -> float:
    """CBPE's estimated AUROC: order patients by ``scores`` (the model's, default the calibrated ones), take the
    calibrated probabilities as expected true positives, and integrate the expected ROC curve (NannyML's
    ``estimate_roc_auc``; ties in the scores carry equal calibrated values, so their order does not matter)."""
    p = np.asarray(calibrated, dtype=float)
    s = p if scores is None else np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="stable")[::-1]
    tps = np.r_[0.0, np.cumsum(p[order])]
    fps = np.arange(p.size + 1) - tps
    if tps[-1] <= 0 or fps[-1] <= 0:
        return float("nan")
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def auroc_sd(calibrated: npt.ArrayLike, scores: npt.ArrayLike | None = None) -> float:
    """Standard deviation of the realised AUROC when each outcome is drawn from its calibrated probability: the
    delta method on ``U / (n1 n0)`` around ``Y = p``, each patient's weight ``dAUROC/dY_k`` from the expected
    non-events scored below and events scored above it (ties half), in O(n log n)."""
    p_all = np.asarray(calibrated, dtype=float)
    s_all = p_all if scores is None else np.asarray(scores, dtype=float)
    order = np.argsort(s_all, kind="stable")
    p, s = p_all[order], s_all[order]
    q = 1.0 - p
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    group = np.repeat(np.arange(start.size), counts)
    cq, cp = np.r_[0.0, np.cumsum(q)], np.r_[0.0, np.cumsum(p)]
    tie_q, tie_p = cq[start + counts] - cq[start], cp[start + counts] - cp[start]
    below = cq[start][group] + 0.5 * (tie_q[group] - q)  # expected non-events scored under each patient
    above = (cp[-1] - cp[start + counts])[group] + 0.5 * (tie_p[group] - p)  # expected events scored over
    events, non_events = p.sum(), q.sum()
    if events <= 0 or non_events <= 0:
        return float("nan")
    pairs = events * non_events
    weight = (below - above) / pairs - np.sum(p * below) * (non_events - events) / pairs**2
    return float(np.sqrt(np.sum(weight * weight * p * q)))


def _intervals(values: npt.NDArray[np.float64], sds: npt.NDArray[np.float64], level: float) -> list[Estimate]:
    """``value +- z sd`` for each, NaN bounds where either is not finite."""
    half = float(stats.norm.ppf(0.5 + level / 2.0)) * sds
    ok = np.isfinite(values) & np.isfinite(sds)
    low, high = np.where(ok, values - half, np.nan), np.where(ok, values + half, np.nan)
    return [Estimate(v, lo, hi) for v, lo, hi in zip(values.tolist(), low.tolist(), high.tolist(), strict=True)]


def _by_window(
    p: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    ids: npt.NDArray[np.intp],
    n_windows: int,
    threshold: float | None,
    level: float,
) -> dict[str, list[Estimate]]:
    """CBPE's values for every window at once, each with the normal interval of the realised value if outcomes
    follow ``p``: exact variances for the linear ones (Brier, PPV, prevalence), the delta method for the AUROC
    (:func:`cbpe_auroc` and :func:`auroc_sd` per window, computed over all windows in one sort)."""
    order = np.lexsort((s, ids))
    p, s, w = p[order], s[order], ids[order]
    q = 1.0 - p
    n = np.bincount(w, minlength=n_windows).astype(float)
    events, non_events = np.bincount(w, p, n_windows), np.bincount(w, q, n_windows)
    new = np.r_[True, (w[1:] != w[:-1]) | (s[1:] != s[:-1])]  # a tie group starts: new window or new score
    group = np.cumsum(new) - 1
    g_start = np.flatnonzero(new)
    g_end = np.r_[g_start[1:], p.size]
    cq, cp = np.r_[0.0, np.cumsum(q)], np.r_[0.0, np.cumsum(p)]
    w_start = np.r_[0, np.cumsum(n)[:-1]].astype(np.intp)
    w_end = np.cumsum(n).astype(np.intp)
    tie_q, tie_p = (cq[g_end] - cq[g_start])[group], (cp[g_end] - cp[g_start])[group]
    below = cq[g_start][group] - cq[w_start[w]] + 0.5 * (tie_q - q)  # expected non-events scored under each
    above = cp[w_end[w]] - cp[g_end][group] + 0.5 * (tie_p - p)  # expected events scored over each
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs = events * non_events
        value = np.bincount(w, q * (above + 0.5 * p), n_windows) / pairs
        u = np.bincount(w, p * below, n_windows)
        weight = (below - above) / pairs[w] - (u * (non_events - events) / pairs**2)[w]
        auroc_sd_ = np.sqrt(np.bincount(w, weight * weight * p * q, n_windows))
        var = p * q
        flagged = (s >= threshold).astype(float) if threshold is not None else np.zeros(p.size)
        n_flagged = np.bincount(w, flagged, n_windows)
        out = {
            "auroc": (np.where(pairs > 0, value, np.nan), auroc_sd_),
            "brier": (
                np.bincount(w, var, n_windows) / n,
                np.sqrt(np.bincount(w, (1 - 2 * p) ** 2 * var, n_windows)) / n,
            ),
            "ppv": (
                np.bincount(w, p * flagged, n_windows) / n_flagged,
                np.sqrt(np.bincount(w, var * flagged, n_windows)) / n_flagged,
            ),
            "prevalence": (events / n, np.sqrt(np.bincount(w, var, n_windows)) / n),
        }
    return {k: _intervals(v, sd, level) for k, (v, sd) in out.items()}


def _check_scores(scores: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise MonitorError(f"{what} needs a flat list of scores, got shape {s.shape}")
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        raise MonitorError(
            f"{what}: {int(bad.sum())} scores are not risks in [0, 1] (first at position {int(np.argmax(bad))})",
            "pass the model's calibrated risks",
        )
    return s


def estimate(
    scores: npt.ArrayLike,
    *,
    threshold: float | None,
    windows: int | str | Windows = DEFAULT_WINDOW,
    times: Any = None,
    calibration: ReferenceProfile | None = None,
    level: float = 0.95,
) -> EstimateResult:
    """CBPE per window of ``scores`` (see the module docstring); ``calibration``: a reference profile whose
    isotonic map first recalibrates the scores."""
    s = _check_scores(scores, "performance estimation")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MonitorError(f"the threshold must be a risk in [0, 1], got {threshold}")
    if not 0.0 < level < 1.0:
        raise MonitorError(f"the interval level must be between 0 and 1, got {level}", "use e.g. 0.95")
    p = s if calibration is None else calibration.recalibrate(s)
    win = windows_of(s.size, windows, times)
    res = _by_window(p, s, win.ids, len(win), threshold, level)
    return EstimateResult(
        win, threshold, tuple(res["auroc"]), tuple(res["brier"]), tuple(res["ppv"]), tuple(res["prevalence"]), level
    )


def _realised_row(
    y: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    threshold: float | None,
    n_boot: int,
    seed: int,
    level: float,
    min_events: int = 1,
) -> dict[str, Any]:
    """The realised metrics of the predictions with outcomes ``y``: AUROC, slope and intercept only with at least
    ``min_events`` events and non-events."""
    events = int(y.sum()) if y.size else 0
    row: dict[str, Any] = {"n_outcomes": int(y.size), "events": events}
    metrics: dict[str, Any] = {"brier": brier}
    if y.size and min(events, y.size - events) >= max(min_events, 1):
        metrics |= {
            "auroc": auroc,
            "calibration_slope": calibration_slope,
            "calibration_intercept": calibration_intercept,
        }
    if threshold is not None and np.any(s >= threshold):
        t = float(threshold)
        metrics["ppv"] = lambda yy, pp: ppv(yy, pp, t)
    est = bootstrap_many(metrics, y, s, n_boot=n_boot, seed=seed, level=level) if y.size else {}
    for name in REALISED_METRICS:
        e = est.get(name)
        row[name] = e.value if e else float("nan")
        row[f"{name}_low"] = e.low if e else float("nan")
        row[f"{name}_high"] = e.high if e else float("nan")
    row["prevalence"] = float(y.mean()) if y.size else float("nan")
    row["expected"] = float(s.mean()) if y.size else float("nan")  # mean risk of the patients with outcomes
    return row


def realised(
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    threshold: float | None,
    windows: int | str | Windows = DEFAULT_WINDOW,
    times: Any = None,
    subgroups: Mapping[str, npt.ArrayLike] | pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_events: int = MIN_EVENTS,
) -> RealisedResult:
    """Realised AUROC, Brier score, PPV at ``threshold``, calibration slope and intercept with bootstrap intervals,
    and expected against observed events, per window (windows cut on all predictions, so that they line up with
    the estimate's) and per subgroup (over all windows and in each), from the predictions whose outcome ``y`` has
    arrived (NaN: not yet). A subgroup with fewer than ``min_events`` events or non-events gets no AUROC, slope or
    intercept."""
    s = _check_scores(scores, "realised performance")
    yy = np.asarray(y, dtype=float)
    if yy.shape != s.shape:
        raise MonitorError(f"realised performance needs one outcome per score: {yy.size} outcomes, {s.size} scores")
    known = ~np.isnan(yy)
    if np.any(known & (yy != 0) & (yy != 1)):
        raise MonitorError("outcomes must be 0, 1 or missing (not yet known)")
    win = windows_of(s.size, windows, times)
    rows = []
    for w in range(len(win)):
        inside = (win.ids == w) & known
        rows.append(_realised_row(yy[inside], s[inside], threshold, n_boot, seed, level))
    frame = pd.concat([win.frame(), pd.DataFrame(rows)], axis=1)
    groups: list[dict[str, Any]] = []
    by_window: list[dict[str, Any]] = []
    if subgroups is not None:
        table = subgroups if isinstance(subgroups, pd.DataFrame) else pd.DataFrame(dict(subgroups))
        if len(table) != s.size:
            raise MonitorError(f"subgroups give {len(table)} rows for {s.size} predictions")
        for column in table.columns:
            values = table[column].astype("string").fillna("(missing)").to_numpy()
            for level_ in sorted(set(values)):
                member = values == level_
                inside = member & known
                key = {"attribute": str(column), "group": str(level_)}
                groups.append(
                    {
                        **key,
                        "n": int(member.sum()),
                        **_realised_row(yy[inside], s[inside], threshold, n_boot, seed, level, min_events),
                    }
                )
                for w in range(len(win)):
                    in_window = member & (win.ids == w)
                    cell = in_window & known
                    by_window.append(
                        {
                            "window": w,
                            **key,
                            "n": int(in_window.sum()),
                            **_realised_row(yy[cell], s[cell], threshold, n_boot, seed, level, min_events),
                        }
                    )
    return RealisedResult(frame, pd.DataFrame(groups), pd.DataFrame(by_window))
