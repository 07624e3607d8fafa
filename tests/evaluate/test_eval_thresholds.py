"""Operating points against scikit-learn's confusion matrix; net benefit against hand and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from evaluate_sim import simulate
from sklearn.metrics import confusion_matrix

from medml.errors import DataError
from medml.evaluate import decision_curve, net_benefit, threshold_metrics


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5])
def test_threshold_metrics_equal_confusion_matrix(threshold: float) -> None:
    y, p, _ = simulate(3000, seed=1)
    p = np.round(p, 2)  # some risks fall exactly on the threshold: those are flagged
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
    got = threshold_metrics(y, p, threshold)
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
    assert got["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert got["specificity"] == pytest.approx(tn / (tn + fp))
    assert got["ppv"] == pytest.approx(tp / (tp + fp))
    assert got["npv"] == pytest.approx(tn / (tn + fn))
    assert got["flagged_fraction"] == pytest.approx((tp + fp) / 3000)


def test_zero_denominators_give_nan_not_an_error() -> None:
    got = threshold_metrics([0, 1, 0], [0.1, 0.2, 0.3], threshold=0.9)
    assert math.isnan(got["ppv"]) and got["flagged_fraction"] == 0.0 and got["npv"] == pytest.approx(2 / 3)
    assert math.isnan(threshold_metrics([0, 0], [0.5, 0.6], 0.5)["sensitivity"])


def test_net_benefit_hand_computed() -> None:
    # t = 0.25: flagged are p >= 0.25 -> samples 2..5: TP = 3 (y=1 at 2, 4, 5), FP = 1 (sample 3); n = 6.
    y = [0, 1, 1, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
    assert net_benefit(y, p, 0.25) == pytest.approx(3 / 6 - 1 / 6 * (0.25 / 0.75))


def test_decision_curve_treat_all_closed_form_and_treat_none_zero() -> None:
    y, p, _ = simulate(2000, seed=2)
    t = np.arange(1, 100) / 100
    curve = decision_curve(y, p, t)
    prevalence = y.mean()
    np.testing.assert_allclose(curve["treat_all"], prevalence - (1 - prevalence) * t / (1 - t))
    assert curve["treat_none"] == [0.0] * 99
    # a model that flags everyone at a threshold is treat-all there
    low = decision_curve(y, np.clip(p, 0.5, 1.0), [0.5])
    assert low["model"][0] == pytest.approx(low["treat_all"][0])
    expected = [net_benefit(y, p, x) for x in (0.1, 0.3)]
    assert decision_curve(y, p, [0.1, 0.3])["model"] == pytest.approx(expected)


def test_net_benefit_rejects_thresholds_outside_open_unit_interval() -> None:
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        net_benefit([0, 1], [0.2, 0.8], 1.0)
