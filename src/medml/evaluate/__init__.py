"""Evaluation of predictions as plain functions on arrays: discrimination, calibration, operating points,
decision curves, bootstrap intervals and subgroup fairness, gathered by ``evaluate_binary`` into an
:class:`EvaluationReport`. Imports no model code."""

from medml.evaluate.binary import DECISION_THRESHOLDS, DEFAULT_THRESHOLDS, evaluate_binary, headline
from medml.evaluate.bootstrap import bootstrap_ci, bootstrap_many
from medml.evaluate.calibration import (
    CalibrationFit,
    brier,
    calibration_curve,
    calibration_intercept,
    calibration_intercept_slope,
    calibration_slope,
    ece,
    ici,
    scaled_brier,
    smooth_calibration,
)
from medml.evaluate.discrimination import auprc, auroc, pr_curve, roc_curve
from medml.evaluate.fairness import GAP_TOLERANCE, subgroup_report
from medml.evaluate.schema import CalibrationCurve, Estimate, EvaluationReport, Headline
from medml.evaluate.thresholds import (
    decision_curve,
    net_benefit,
    ppv,
    sensitivity,
    specificity,
    threshold_metrics,
)

__all__ = [
    "DECISION_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
    "GAP_TOLERANCE",
    "CalibrationCurve",
    "CalibrationFit",
    "Estimate",
    "EvaluationReport",
    "Headline",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "bootstrap_many",
    "brier",
    "calibration_curve",
    "calibration_intercept",
    "calibration_intercept_slope",
    "calibration_slope",
    "decision_curve",
    "ece",
    "evaluate_binary",
    "headline",
    "ici",
    "net_benefit",
    "ppv",
    "pr_curve",
    "roc_curve",
    "scaled_brier",
    "sensitivity",
    "smooth_calibration",
    "specificity",
    "subgroup_report",
    "threshold_metrics",
]
