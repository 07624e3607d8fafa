"""Headline: the one typed summary of an evaluation that every view of a model reads, exact through JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evaluate_sim import simulate

from medml.data import Predictions
from medml.errors import DataError
from medml.evaluate import Estimate, EvaluationReport, Headline, evaluate_binary, headline


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    y, p, _ = simulate(3000, seed=5, shift=-1.5)
    pred = Predictions(ids=np.arange(3000).astype(object), y_true=y, scores=p, model="m@1")
    return evaluate_binary(pred, dataset="sim", split="test", population="adults", n_boot=100, seed=0)


def test_the_headline_is_the_reports_own_estimates(report: EvaluationReport) -> None:
    h = Headline.of(report)
    assert h.auroc is report.discrimination["auroc"] and h.calibration_slope is report.calibration["slope"]
    assert (h.n, h.n_events, h.split, h.population) == (3000, report.n_events, "test", "adults")
    assert h.event_rate == pytest.approx(report.prevalence)
    assert list(h.curve.predicted) == report.calibration["curve"]["predicted"]
    assert sum(h.curve.count) == 3000


def test_it_round_trips_through_json_exactly(report: EvaluationReport) -> None:
    h = Headline.of(report)
    again = Headline.from_dict(json.loads(json.dumps(h.to_dict(), allow_nan=False)))
    assert again.auroc == h.auroc and again.calibration_slope == h.calibration_slope and again.curve == h.curve
    assert again.ici == h.ici and (again.n, again.n_events) == (h.n, h.n_events)


def test_from_the_flat_metrics_of_older_bundles_it_gives_the_same_numbers(report: EvaluationReport) -> None:
    h = Headline.of(report)
    old = Headline.from_flat(json.loads(json.dumps(headline(report))), report.to_dict())
    assert (old.auroc, old.calibration_slope, old.calibration_intercept, old.brier) == (
        h.auroc,
        h.calibration_slope,
        h.calibration_intercept,
        h.brier,
    )
    assert (old.n, old.n_events, old.ici, old.curve) == (h.n, h.n_events, h.ici, h.curve)


def test_an_image_models_flat_auroc_wins_over_the_pooled_report(report: EvaluationReport) -> None:
    flat = {**headline(report), "auroc": 0.9, "auroc_low": 0.8, "auroc_high": 0.95, "n": 1000, "n_events": None}
    old = Headline.from_flat(flat, report.to_dict(), population="images")
    assert old.auroc == Estimate(0.9, 0.8, 0.95) and (old.n, old.n_events) == (1000, None)
    assert old.calibration_slope == report.calibration["slope"] and old.population == "images"


def test_a_bad_stored_headline_says_what_does_not_fit(report: EvaluationReport) -> None:
    d = Headline.of(report).to_dict()
    with pytest.raises(DataError, match="stored headline metrics are not valid"):
        Headline.from_dict({**d, "auroc": 0.9})
    with pytest.raises(DataError, match="is not a count"):
        Headline.from_dict({**d, "n": 2.5})
    assert math.isnan(Headline.from_dict({**d, "ici": None}).ici)
