"""evaluate_binary fills the EvaluationReport contract; the report round-trips through JSON; bad input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from evaluate_sim import simulate
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from medml.data import Predictions
from medml.errors import DataError
from medml.evaluate import (
    DEFAULT_THRESHOLDS,
    Estimate,
    EvaluationReport,
    evaluate_binary,
    headline,
)

THRESHOLD_KEYS = {"threshold", "sensitivity", "specificity", "ppv", "npv", "flagged_fraction", "tp", "fp", "tn", "fn"}
GROUP_KEYS = {
    "group", "n", "n_events", "prevalence", "auroc", "auprc", "brier", "calibration_slope",
    "sensitivity", "specificity", "ppv", "note",
}  # fmt: skip


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    y, p, _ = simulate(5000, seed=11, shift=-1.2)
    rng = np.random.default_rng(11)
    sex = rng.choice(["F", "M"], 5000).astype(object)
    sex[:50] = None
    sensitive = pd.DataFrame({"sex": sex, "age": rng.choice(["<65", ">=65"], 5000)})
    pred = Predictions(ids=np.arange(5000).astype(object), y_true=y, scores=p, model="logistic@1")
    return evaluate_binary(pred, dataset="sim", split="test", population="adults", sensitive=sensitive, n_boot=200)


def test_report_fills_every_documented_key(report: EvaluationReport) -> None:
    y, p, _ = simulate(5000, seed=11, shift=-1.2)
    assert (report.model, report.n, report.n_events) == ("logistic@1", 5000, int(y.sum()))
    assert report.prevalence == pytest.approx(y.mean())
    assert set(report.discrimination) == {"auroc", "auprc"}
    assert report.discrimination["auroc"].value == pytest.approx(roc_auc_score(y, p))
    assert report.discrimination["auprc"].value == pytest.approx(average_precision_score(y, p))
    assert report.calibration["brier"].value == pytest.approx(brier_score_loss(y, p))
    assert set(report.calibration) == {"brier", "scaled_brier", "intercept", "slope", "ici", "ece", "curve", "smooth"}
    for key in ("brier", "scaled_brier", "intercept", "slope"):
        est = report.calibration[key]
        assert isinstance(est, Estimate) and est.low <= est.value <= est.high
    assert set(report.calibration["curve"]) == {"predicted", "observed", "count"}
    assert set(report.calibration["smooth"]) == {"predicted", "observed"}
    assert all(set(row) == THRESHOLD_KEYS for row in report.thresholds)
    assert [row["threshold"] for row in report.thresholds] == sorted([*DEFAULT_THRESHOLDS, report.prevalence])
    assert set(report.roc_curve) == {"fpr", "tpr"} and len(report.roc_curve["fpr"]) <= 200
    assert set(report.pr_curve) == {"recall", "precision"} and len(report.pr_curve["recall"]) <= 200
    assert set(report.decision_curve) == {"threshold", "model", "treat_all", "treat_none"}
    assert report.decision_curve["threshold"][0] == 0.01 and report.decision_curve["threshold"][-1] == 0.99
    assert report.bootstrap == {"n": 200, "level": 0.95, "seed": 0, "method": "percentile"}
    assert [s["attribute"] for s in report.subgroups] == ["sex", "age"]
    for section in report.subgroups:
        assert section["reference_threshold"] == pytest.approx(report.prevalence)
        assert {"attribute", "reference_threshold", "groups", "gaps", "flagged"} <= set(section)
        assert all(set(g) == GROUP_KEYS for g in section["groups"])
    assert [g["group"] for g in report.subgroups[0]["groups"]] == ["F", "M", "Unknown"]


def test_report_round_trips_through_json(report: EvaluationReport) -> None:
    text = report.to_json()
    data = json.loads(text)  # strict JSON: NaN became null
    assert data["discrimination"]["auroc"].keys() == {"value", "low", "high"}
    back = EvaluationReport.from_json(text)
    assert back.to_dict() == report.to_dict()
    assert isinstance(back.discrimination["auroc"], Estimate)
    assert isinstance(back.subgroups[0]["gaps"]["auroc"], Estimate)
    assert back.discrimination["auroc"] == report.discrimination["auroc"]


def test_to_dict_converts_numpy_and_nan() -> None:
    r = EvaluationReport(model="m", dataset="d", split="s", population="p", n=3, n_events=1, prevalence=1 / 3)
    r.calibration = {"ici": np.float64(0.5), "slope": Estimate(1.0), "curve": {"count": np.array([1, 2])}}
    r.thresholds = [{"ppv": math.nan, "tp": np.int64(0)}]
    d = r.to_dict()
    assert d["calibration"] == {
        "ici": 0.5,
        "slope": {"value": 1.0, "low": None, "high": None},
        "curve": {"count": [1, 2]},
    }
    assert d["thresholds"] == [{"ppv": None, "tp": 0}]
    assert type(d["calibration"]["ici"]) is float and type(d["thresholds"][0]["tp"]) is int
    assert EvaluationReport.from_dict(d).to_dict() == d


def test_headline(report: EvaluationReport) -> None:
    row = headline(report)
    assert list(row) == [
        "auroc", "auroc_low", "auroc_high", "auprc", "brier", "scaled_brier",
        "calibration_slope", "calibration_intercept", "ici", "n", "n_events", "prevalence",
    ]  # fmt: skip
    assert row["auroc"] == report.discrimination["auroc"].value and row["n"] == 5000
    assert row["auroc_low"] < row["auroc"] < row["auroc_high"]
    assert headline(EvaluationReport.from_json(report.to_json())) == row


def test_one_class_and_bad_thresholds_raise() -> None:
    pred = Predictions(ids=np.arange(4).astype(object), y_true=np.zeros(4), scores=np.full(4, 0.2))
    with pytest.raises(DataError, match="AUROC.*undefined.*only non-events"):
        evaluate_binary(pred, dataset="d", split="s", population="p", n_boot=10)
    y, p, _ = simulate(300, seed=1)
    pred = Predictions(ids=np.arange(300).astype(object), y_true=y, scores=p)
    with pytest.raises(DataError, match="thresholds must be risks"):
        evaluate_binary(pred, dataset="d", split="s", population="p", thresholds=[1.5], n_boot=10)
    with pytest.raises(DataError, match="3 rows of sensitive attributes for 300"):
        evaluate_binary(pred, dataset="d", split="s", population="p", sensitive=pd.DataFrame({"a": [1, 2, 3]}))


def test_from_dict_reports_missing_fields() -> None:
    with pytest.raises(DataError, match="missing model"):
        EvaluationReport.from_dict({"dataset": "d"})
    with pytest.raises(DataError, match="not valid JSON"):
        EvaluationReport.from_json("{")
