"""``evaluate_binary``: every measurement of one set of binary predictions, as an EvaluationReport."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medml.data.predictions import Predictions
from medml.errors import DataError
from medml.evaluate._checks import check_binary
from medml.evaluate.bootstrap import bootstrap_many
from medml.evaluate.calibration import (
    brier,
    calibration_curve,
    calibration_intercept,
    calibration_slope,
    ece,
    ici,
    scaled_brier,
    smooth_calibration,
)
from medml.evaluate.discrimination import auprc, auroc, pr_curve, roc_curve
from medml.evaluate.fairness import subgroup_report
from medml.evaluate.schema import Estimate, EvaluationReport
from medml.evaluate.thresholds import decision_curve, threshold_metrics

# Operating points reported when none are given, besides the outcome prevalence (the risk above which a
# patient is at higher than average risk): 5%, 10%, 20% and 50% cover screening-like to treat-like decisions.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
# Decision curve thresholds: 1% to 99% in steps of 1%.
DECISION_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * k, 2) for k in range(1, 100))


def _none_if_nan(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def _operating_points(thresholds: Sequence[float] | None, prevalence: float) -> list[float]:
    chosen = [*DEFAULT_THRESHOLDS, prevalence] if thresholds is None else [float(t) for t in thresholds]
    bad = [t for t in chosen if not 0.0 <= t <= 1.0]
    if bad:
        raise DataError(f"thresholds must be risks in [0, 1], got {bad}", "pass e.g. thresholds=[0.1, 0.2]")
    return sorted(set(chosen))


def evaluate_binary(
    pred: Predictions,
    *,
    dataset: str,
    split: str,
    population: str,
    sensitive: pd.DataFrame | None = None,
    thresholds: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    reference_threshold: float | None = None,
) -> EvaluationReport:
    """Discrimination, calibration, operating points, curves, decision curve and subgroups of ``pred``.

    ``thresholds`` default to ``DEFAULT_THRESHOLDS`` plus the prevalence; subgroups are compared at
    ``reference_threshold``, the prevalence unless given. Intervals are percentile bootstrap (``n_boot``).
    """
    y, p = check_binary(pred.y_true, pred.scores, both_classes=True, metric="evaluation (AUROC)")
    n, n_events = int(y.size), int(y.sum())
    prevalence = n_events / n
    points = _operating_points(thresholds, prevalence)
    est = bootstrap_many(
        {
            "auroc": auroc,
            "auprc": auprc,
            "brier": brier,
            "scaled_brier": scaled_brier,
            "intercept": calibration_intercept,
            "slope": calibration_slope,
        },
        y,
        p,
        n_boot=n_boot,
        seed=seed,
        level=level,
    )
    subgroups: list[dict[str, Any]] = []
    if sensitive is not None:
        subgroups = subgroup_report(
            y,
            p,
            sensitive,
            threshold=prevalence if reference_threshold is None else reference_threshold,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
    return EvaluationReport(
        model=pred.model,
        dataset=dataset,
        split=split,
        population=population,
        n=n,
        n_events=n_events,
        prevalence=prevalence,
        discrimination={"auroc": est["auroc"], "auprc": est["auprc"]},
        calibration={
            **{k: est[k] for k in ("brier", "scaled_brier", "intercept", "slope")},
            "ici": ici(y, p),
            "ece": ece(y, p),
            "curve": calibration_curve(y, p),
            "smooth": smooth_calibration(y, p),
        },
        thresholds=[_none_if_nan(threshold_metrics(y, p, t)) for t in points],
        roc_curve=roc_curve(y, p),
        pr_curve=pr_curve(y, p),
        decision_curve=decision_curve(y, p, np.asarray(DECISION_THRESHOLDS)),
        subgroups=subgroups,
        bootstrap={"n": n_boot, "level": level, "seed": seed, "method": "percentile"},
    )


def _value(est: Any) -> float:
    return est.value if isinstance(est, Estimate) else math.nan


def headline(report: EvaluationReport) -> dict[str, float | int | None]:
    """The summary numbers of a report as flat numbers (None where not measured): a one-line table, the metrics
    MLflow logs. Views of a model read the typed :class:`~medml.evaluate.Headline` instead."""
    auroc_est = report.discrimination.get("auroc")
    cal = report.calibration
    row: dict[str, float | int | None] = {
        "auroc": _value(auroc_est),
        "auroc_low": auroc_est.low if isinstance(auroc_est, Estimate) else math.nan,
        "auroc_high": auroc_est.high if isinstance(auroc_est, Estimate) else math.nan,
        "auprc": _value(report.discrimination.get("auprc")),
        "brier": _value(cal.get("brier")),
        "scaled_brier": _value(cal.get("scaled_brier")),
        "calibration_slope": _value(cal.get("slope")),
        "calibration_intercept": _value(cal.get("intercept")),
        "ici": cal.get("ici", math.nan),
        "n": report.n,
        "n_events": report.n_events,
        "prevalence": report.prevalence,
    }
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
