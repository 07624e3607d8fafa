"""The exact missing-rate test's hypergeometric tails against scipy's, out where the probability of the observed
count underflows: a lab feed that stops (every value of a window missing) must give a p-value of 0, not NaN."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medml.monitor.drift import hypergeom_tails


@pytest.mark.parametrize(
    ("x", "total", "marked", "drawn"),
    [(300, 2121, 302, 300), (5, 2121, 30, 300), (40, 2121, 60, 300), (0, 2121, 1500, 200)],
    ids=["feed stops", "near the mode", "far above", "none where most are"],
)
def test_tails_match_scipy_far_out(x: int, total: int, marked: int, drawn: int) -> None:
    upper, lower = hypergeom_tails(np.array([float(x)]), np.array([float(total)]), np.array([float(marked)]), drawn)
    assert np.isfinite(upper).all() and np.isfinite(lower).all()
    assert upper[0] == pytest.approx(stats.hypergeom.sf(x - 1, total, marked, drawn), rel=1e-9, abs=1e-300)
    assert lower[0] == pytest.approx(stats.hypergeom.cdf(x, total, marked, drawn), rel=1e-9, abs=1e-300)
