"""AUROC, AUPRC and curves against scikit-learn, including tied scores and bootstrap weights."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_sim import simulate
from sklearn import metrics as skm

from medml.errors import DataError
from medml.evaluate import auprc, auroc, pr_curve, roc_curve
from medml.evaluate.discrimination import auprc_weighted, auroc_weighted


@pytest.mark.parametrize("decimals", [None, 2, 1])
def test_auroc_and_auprc_equal_sklearn(decimals: int | None) -> None:
    y, p, _ = simulate(3000, seed=2)
    if decimals is not None:  # ties within and across classes
        p = np.round(p, decimals)
    assert auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_rank_metrics_accept_raw_scores_in_any_order() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = rng.normal(size=500) * 10 + y * 5
    assert auroc(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert auprc(y, score) == pytest.approx(skm.average_precision_score(y, score))


def test_weighted_twins_equal_sklearn_on_the_repeated_sample() -> None:
    """A row of bootstrap counts must score the same as the resample it stands for."""
    rng = np.random.default_rng(4)
    y, p, _ = simulate(400, seed=4)
    p = np.round(p, 2).astype(float)
    counts = rng.multinomial(400, np.full(400, 1 / 400), size=5).astype(float)
    got_roc = auroc_weighted(y.astype(float), p, counts)
    got_ap = auprc_weighted(y.astype(float), p, counts)
    for row, r_roc, r_ap in zip(counts, got_roc, got_ap, strict=True):
        idx = np.repeat(np.arange(400), row.astype(int))
        assert r_roc == pytest.approx(skm.roc_auc_score(y[idx], p[idx]), abs=1e-12)
        assert r_ap == pytest.approx(skm.average_precision_score(y[idx], p[idx]), abs=1e-12)


def test_weighted_twin_is_nan_for_a_resample_of_one_class() -> None:
    y = np.array([0.0, 0.0, 1.0, 1.0])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    counts = np.array([[2.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert np.isnan(auroc_weighted(y, p, counts)[0])
    assert auroc_weighted(y, p, counts)[1] == 1.0


def test_roc_curve_is_sklearns_curve_thinned() -> None:
    y, p, _ = simulate(20000, seed=5)
    curve = roc_curve(y, p)
    assert 10 < len(curve["fpr"]) <= 200
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    # every kept point lies on scikit-learn's (full) curve, and the thinned area is close to the AUROC
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    on_curve = {(round(a, 12), round(b, 12)) for a, b in zip(fpr, tpr, strict=True)}
    assert all((round(a, 12), round(b, 12)) in on_curve for a, b in zip(curve["fpr"], curve["tpr"], strict=True))
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(skm.roc_auc_score(y, p), abs=0.002)


def test_pr_curve_points_are_sklearns() -> None:
    y, p, _ = simulate(300, seed=6)
    p = np.round(p, 2)
    curve = pr_curve(y, p, max_points=10_000)
    precision, recall, _ = skm.precision_recall_curve(y, p)
    np.testing.assert_allclose(curve["recall"], recall[::-1])
    np.testing.assert_allclose(curve["precision"], precision[::-1])
    assert len(pr_curve(y, p, max_points=50)["recall"]) <= 50


def test_one_class_says_auroc_is_undefined() -> None:
    with pytest.raises(DataError, match="AUROC is undefined.*only non-events"):
        auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="both events and non-events"):
        auprc([1, 1], [0.1, 0.2])


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "3 outcomes but 2 scores"),
        ([0, 1], [0.1, np.nan], "missing or infinite scores"),
        ([0, 2], [0.1, 0.2], "must be 0/1"),
        ([0, np.nan], [0.1, 0.2], "missing outcomes"),
        ([], [], "no samples"),
    ],
)
def test_bad_input_raises_data_error(y: list[float], p: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        auroc(y, p)
