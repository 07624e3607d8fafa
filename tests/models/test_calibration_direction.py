"""A calibration map never reverses a model's ranking: Platt scaling of scores that rank backwards is flat."""

from __future__ import annotations

import numpy as np

from medml.models.calibration import _apply_map, _fit_map


def test_platt_map_of_backward_scores_is_the_prevalence() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 400)
    y = (rng.random(400) < 1 - p).astype(int)  # the higher the score, the lower the risk
    q = _apply_map(_fit_map("sigmoid", p, y), p)
    np.testing.assert_allclose(q, y.mean(), atol=1e-9)
    forward = _apply_map(_fit_map("sigmoid", p, 1 - y), p)
    assert np.all(np.diff(forward[np.argsort(p)]) >= 0)  # forward scores keep their order
