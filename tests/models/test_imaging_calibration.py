"""Platt scaling of image-model probabilities: recovers a known miscalibration, keeps the ranking."""

from __future__ import annotations

import numpy as np
import pytest

from medml.errors import DataError
from medml.evaluate.discrimination import auroc
from medml.models.imaging.calibration import PlattScaling


def test_platt_scaling_recovers_a_known_logistic_miscalibration() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, 200_000)
    true_logit = 2.0 * np.log(raw / (1 - raw)) - 1.0  # the outcome's real log-odds: slope 2, intercept -1
    y = rng.random(len(raw)) < 1 / (1 + np.exp(-true_logit))
    platt = PlattScaling.fit(raw, y)
    assert platt.slope == pytest.approx(2.0, abs=0.03) and platt.intercept == pytest.approx(-1.0, abs=0.03)
    calibrated = platt.apply(raw)
    assert auroc(y, calibrated) == pytest.approx(auroc(y, raw), abs=1e-12)  # monotone: same ranking
    # calibration-in-the-large: the mean calibrated risk is the event rate
    assert calibrated.mean() == pytest.approx(y.mean(), abs=0.005)
    assert PlattScaling.from_dict(platt.to_dict()) == platt


def test_platt_scaling_needs_both_classes() -> None:
    with pytest.raises(DataError, match="both classes"):
        PlattScaling.fit([0.2, 0.3], [1, 1])
