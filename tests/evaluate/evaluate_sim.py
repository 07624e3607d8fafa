"""Simulated predictions with known properties, shared by the evaluate tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def simulate(
    n: int, *, seed: int = 0, shift: float = -1.5, miscalibration: float = 1.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Outcomes drawn from true risks; predictions = sigmoid(miscalibration * logit(true risk))."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(size=n) + shift
    risk = 1.0 / (1.0 + np.exp(-true_logit))
    y = (rng.random(n) < risk).astype(np.int64)
    pred = 1.0 / (1.0 + np.exp(-miscalibration * true_logit))
    return y, pred, risk
