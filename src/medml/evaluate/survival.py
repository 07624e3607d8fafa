"""Survival metrics as plain functions on arrays: Kaplan-Meier, Harrell's and Uno's C, the time-dependent AUC,
the Brier score and its integral, calibration at a horizon (Kaplan-Meier by risk group, the ICI) and
D-calibration, gathered by :func:`evaluate_survival` into an :class:`~medml.evaluate.schema.EvaluationReport`.

Conventions are scikit-survival's (``sksurv.metrics``), against which the tests check each function: a pair is
comparable when the earlier time is an event (an event and a censoring at the same time included), tied risks
count one half, and the censoring distribution ``G`` is the reverse Kaplan-Meier of the training data, read as a
right-continuous step function. Bootstrap intervals use one count matrix (resamples x patients) for every metric;
pair metrics are then one matrix product per block of patients. Imports no model code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.errors import DataError
from medml.evaluate._survival_metrics import (
    IBS_PERCENTILES,
    BoolArray,
    DCalibration,
    FloatArray,
    KaplanMeier,
    SmoothCalibration,
    _brier_losses,
    _censoring_weights,
    _concordance,
    _cumulative_auc,
    _safe_g,
    _uno_weights,
    brier_grid,
    brier_scores,
    check_horizons,
    check_survival,
    d_calibration,
    harrell_c,
    integrated_brier,
    kaplan_meier,
    km_by_risk_group,
    km_calibration,
    smooth_calibration,
    time_dependent_auc,
    uno_c,
)
from medml.evaluate.bootstrap import percentile_interval, resample_counts, single_threaded_blas
from medml.evaluate.schema import Estimate, EvaluationReport

__all__ = [
    "IBS_PERCENTILES",
    "DCalibration",
    "KaplanMeier",
    "SmoothCalibration",
    "SurvivalPredictions",
    "brier_grid",
    "brier_scores",
    "check_horizons",
    "check_survival",
    "d_calibration",
    "evaluate_survival",
    "harrell_c",
    "integrated_brier",
    "kaplan_meier",
    "km_by_risk_group",
    "km_calibration",
    "smooth_calibration",
    "subgroup_concordance",
    "time_dependent_auc",
    "uno_c",
]


# --- everything at once --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurvivalPredictions:
    """What a survival model says about the evaluated patients: a risk score (higher = earlier event), the
    survival curves on ``curve_times`` (patients x times), and their observed ``time`` and ``event``."""

    ids: npt.NDArray[np.object_]
    time: FloatArray
    event: BoolArray
    risk: FloatArray
    curve_times: FloatArray
    survival: FloatArray
    model: str = ""

    def __post_init__(self) -> None:
        t, e = check_survival(self.time, self.event, what="survival predictions")
        s = np.asarray(self.survival, dtype=float)
        grid = np.asarray(self.curve_times, dtype=float)
        if s.shape != (t.size, grid.size):
            raise DataError(
                f"survival predictions: curves of shape {s.shape} for {t.size} patients x {grid.size} times"
            )
        if not np.isfinite(s).all() or not np.isfinite(np.asarray(self.risk, dtype=float)).all():
            raise DataError("survival predictions contain missing values", "check the model's input")
        object.__setattr__(self, "time", t)
        object.__setattr__(self, "event", e)
        object.__setattr__(self, "risk", np.asarray(self.risk, dtype=float))
        object.__setattr__(self, "curve_times", grid)
        object.__setattr__(self, "survival", s)

    def survival_at(self, times: npt.ArrayLike) -> FloatArray:
        """S(t | x) at ``times`` for every patient (patients x times), reading the curves as step functions."""
        idx = np.searchsorted(self.curve_times, np.asarray(times, dtype=float), side="right") - 1
        out = self.survival[:, np.clip(idx, 0, None)]
        return np.where(idx[None, :] >= 0, out, 1.0)

    def survival_at_own_time(self) -> FloatArray:
        idx = np.searchsorted(self.curve_times, self.time, side="right") - 1
        got = self.survival[np.arange(self.time.size), np.clip(idx, 0, None)]
        return np.where(idx >= 0, got, 1.0)


def evaluate_survival(
    pred: SurvivalPredictions,
    *,
    train_time: npt.ArrayLike,
    train_event: npt.ArrayLike,
    horizons: Sequence[float],
    dataset: str,
    split: str,
    population: str,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    groups: int = 10,
    sensitive: pd.DataFrame | None = None,
) -> EvaluationReport:
    """Every measurement of one set of survival predictions, as an EvaluationReport.

    ``discrimination``: ``harrell_c``, ``uno_c`` (truncated at the last horizon), ``auroc`` (the time-dependent
    AUC at the first horizon, so the headline reads like a binary model's), ``td_auc`` (one per horizon) and
    ``km_by_risk_group``. ``calibration``: ``brier`` (at the first horizon), ``ibs`` and its grid, ``ici`` and
    ``curve`` (at the first horizon), ``horizons`` (per horizon: Brier, ICI, E50, E90, the Kaplan-Meier groups and
    the smooth curve) and ``d_calibration``. ``subgroups``: Harrell's C within each group of each ``sensitive``
    attribute (:func:`subgroup_concordance`). Intervals: percentile bootstrap over patients, G held fixed.
    """
    t, e = pred.time, pred.event
    tt, te = check_survival(train_time, train_event, what="training data")
    hs = check_horizons(horizons, t, what=f"the {split} split")
    check_horizons(hs, tt, what="the training split")
    risk_h = 1.0 - pred.survival_at(hs)
    grid = brier_grid(t)
    grid = grid[grid < min(t.max(), tt.max())]
    g_time, g_grid, g_h = _safe_g(tt, te, t), _safe_g(tt, te, grid), _safe_g(tt, te, np.asarray(hs))
    brier_loss = _brier_losses(t, e, pred.survival_at(grid), grid, g_time, g_grid)
    horizon_loss = _brier_losses(t, e, 1.0 - risk_h, np.asarray(hs), g_time, g_h)
    ibs_loss = np.trapezoid(brier_loss, grid, axis=1) / (grid[-1] - grid[0])
    uno_w = _uno_weights(t, e, tt, te, hs[-1])
    g_at_t = _censoring_weights(tt, te, t)

    def measure(counts: FloatArray) -> dict[str, FloatArray]:
        n = counts.sum(axis=1)
        out = {
            "harrell_c": _concordance(t, e, pred.risk, np.ones_like(t), counts),
            "uno_c": _concordance(t, e, pred.risk, uno_w, counts),
            "ibs": counts @ ibs_loss / n,
        }
        for k, h in enumerate(hs):
            out[f"auc@{h:g}"] = _cumulative_auc(t, e, risk_h[:, k], g_at_t, h, counts)
            out[f"brier@{h:g}"] = counts @ horizon_loss[:, k] / n
        return out

    with single_threaded_blas():
        point = {k: float(v[0]) for k, v in measure(np.ones((1, t.size))).items()}
        draws: dict[str, list[FloatArray]] = {k: [] for k in point}
        for counts in resample_counts(t.size, n_boot, seed) if n_boot else ():
            for k, v in measure(counts).items():
                draws[k].append(v)
    est = {
        k: Estimate(v, *percentile_interval(np.concatenate(draws[k]) if n_boot else np.empty(0), level, n_boot))
        for k, v in point.items()
    }
    per_horizon = []
    for j, h in enumerate(hs):
        smooth = smooth_calibration(t, e, risk_h[:, j], h)
        per_horizon.append(
            {
                "horizon": h,
                "auc": est[f"auc@{h:g}"],
                "brier": est[f"brier@{h:g}"],
                "mean_predicted": float(risk_h[:, j].mean()),
                "observed": float(1.0 - kaplan_meier(t, e).at(h)[()]),
                **smooth.to_dict(),
                "groups": km_calibration(t, e, risk_h[:, j], h, groups=groups),
            }
        )
    first = per_horizon[0]
    dcal = d_calibration(t, e, pred.survival_at_own_time())
    return EvaluationReport(
        model=pred.model,
        dataset=dataset,
        split=split,
        population=population,
        n=int(t.size),
        n_events=int(e.sum()),
        prevalence=float(e.mean()),
        discrimination={
            "harrell_c": est["harrell_c"],
            "uno_c": est["uno_c"],
            "uno_tau": hs[-1],
            "auroc": first["auc"],
            "td_auc": [{"horizon": p["horizon"], "auc": p["auc"]} for p in per_horizon],
            "km_by_risk_group": km_by_risk_group(t, e, pred.risk),
        },
        calibration={
            "horizon": hs[0],
            "brier": first["brier"],
            "ici": first["ici"],
            "curve": {k: first["groups"][k] for k in ("predicted", "observed", "count")},
            "ibs": est["ibs"],
            "ibs_grid": [float(g) for g in grid],
            "brier_curve": [float(v) for v in brier_loss.mean(axis=0)],
            "horizons": per_horizon,
            "d_calibration": dcal.to_dict(),
        },
        subgroups=[]
        if sensitive is None
        else subgroup_concordance(t, e, pred.risk, sensitive, n_boot=n_boot, seed=seed, level=level),
        bootstrap={"n": n_boot, "level": level, "seed": seed, "method": "percentile"},
    )


#: a group needs this many events for its concordance to be shown
MIN_GROUP_EVENTS = 10


def subgroup_concordance(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    risk: npt.ArrayLike,
    sensitive: pd.DataFrame,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Harrell's C within each group of each sensitive attribute, with bootstrap intervals drawn within the group,
    and the gap (largest minus smallest group value) with its interval from the same resamples. Groups with fewer
    than :data:`MIN_GROUP_EVENTS` events get a note and no estimate."""
    t, e = check_survival(time, event, what="subgroups")
    r = np.asarray(risk, dtype=float)
    if len(sensitive) != t.size:
        raise DataError(f"subgroups: {len(sensitive)} rows of sensitive attributes for {t.size} patients")
    out = []
    for attribute in sensitive.columns:
        labels = sensitive[attribute].astype(str).to_numpy()
        rows: list[dict[str, Any]] = []
        values, draws = [], []
        for k, g in enumerate(sorted(set(labels))):
            m = labels == g
            row: dict[str, Any] = {"group": g, "n": int(m.sum()), "n_events": int(e[m].sum()), "harrell_c": None}
            if row["n_events"] < MIN_GROUP_EVENTS:
                rows.append(row | {"note": f"fewer than {MIN_GROUP_EVENTS} events"})
                continue
            tm, em, rm = t[m], e[m], r[m]
            point = float(_concordance(tm, em, rm, np.ones_like(tm), np.ones((1, tm.size)))[0])
            with single_threaded_blas():
                boot = [
                    _concordance(tm, em, rm, np.ones_like(tm), c) for c in resample_counts(tm.size, n_boot, seed + k)
                ]
            sample = np.concatenate(boot) if boot else np.empty(0)
            rows.append(row | {"harrell_c": Estimate(point, *percentile_interval(sample, level, n_boot)), "note": ""})
            values.append(point)
            draws.append(sample)
        gaps: dict[str, Estimate] = {}
        if len(values) >= 2:
            spread = np.max(draws, axis=0) - np.min(draws, axis=0) if n_boot else np.empty(0)
            gaps["harrell_c"] = Estimate(max(values) - min(values), *percentile_interval(spread, level, n_boot))
        out.append({"attribute": str(attribute), "groups": rows, "gaps": gaps})
    return out
