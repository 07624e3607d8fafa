"""Riley et al.'s minimum sample size against the worked examples of the pmsampsize package's own test suite."""

from __future__ import annotations

import numpy as np
import pytest

from medml.errors import ConfigError
from medml.evaluate.sample_size import conservative_r2, cox_snell_r2, max_cox_snell_r2, riley_binary

# pmsampsize for R (CRAN; tests/testthat/test_bin.R, "Test 4.1"-"4.4"), which rounds the largest R2 to 2 decimals:
# (Cox-Snell R2, parameters, prevalence) -> sizes of criteria 1, 2, 3 and the final size, with the final EPP.
# 4.1 is the worked example of Riley et al., BMJ 2020 (368:m441), 623 participants from criterion 1.
PMSAMPSIZE_R = [
    ((0.288, 24, 0.174), (623, 668, 221, 668), 4.84),
    ((0.55, 24, 0.174), (255, 532, 221, 532), 3.86),
    ((0.288, 36, 0.174), (934, 1002, 221, 1002), 4.84),
    ((0.288, 24, 0.25), (623, 583, 289, 623), 6.49),
]


# pmsampsize 0.1.0 for Python (PyPI; it needs Python 3.12, so it is not a dependency here and was run once on
# the same inputs: pmsampsize(type="b", csrsquared=R2, parameters=P, prevalence=PREV)), which does not round.
PMSAMPSIZE_PY = [
    ((0.288, 24, 0.174), (623, 662, 221, 662), 4.8),
    ((0.55, 24, 0.174), (255, 532, 221, 532), 3.86),
    ((0.288, 36, 0.174), (934, 992, 221, 992), 4.79),
    ((0.288, 24, 0.25), (623, 590, 289, 623), 6.49),
]


@pytest.mark.parametrize(("inputs", "sizes", "epp"), PMSAMPSIZE_R)
def test_riley_binary_equals_pmsampsize_for_r(
    inputs: tuple[float, int, float], sizes: tuple[int, int, int, int], epp: float
) -> None:
    r2, parameters, prevalence = inputs
    ss = riley_binary(prevalence, parameters, r2, r_rounding=True)
    assert (ss.n_shrinkage, ss.n_optimism, ss.n_intercept, ss.required) == sizes
    assert round(ss.events_per_parameter, 2) == epp


@pytest.mark.parametrize(("inputs", "sizes", "epp"), PMSAMPSIZE_PY)
def test_riley_binary_equals_pmsampsize_for_python(
    inputs: tuple[float, int, float], sizes: tuple[int, int, int, int], epp: float
) -> None:
    r2, parameters, prevalence = inputs
    ss = riley_binary(prevalence, parameters, r2)
    assert (ss.n_shrinkage, ss.n_optimism, ss.n_intercept, ss.required) == sizes
    assert round(ss.events_per_parameter, 2) == epp


def test_binding_criterion_is_named() -> None:
    assert riley_binary(0.25, 24, 0.288).binding() == "shrinkage"
    assert riley_binary(0.174, 24, 0.288).binding() == "optimism"
    # one parameter and a strong model: only the precision of the overall risk matters
    assert riley_binary(0.5, 1, 0.5).binding() == "intercept"


def test_largest_cox_snell_r2_is_reached_by_perfect_predictions() -> None:
    y = np.array([1] * 3 + [0] * 7)
    assert cox_snell_r2(y, y.astype(float)) == pytest.approx(max_cox_snell_r2(0.3), abs=1e-9)
    assert cox_snell_r2(y, np.full(10, 0.3)) == pytest.approx(0.0, abs=1e-12)
    # Riley et al.: at prevalence 0.5 the largest Cox-Snell R2 is 0.75
    assert max_cox_snell_r2(0.5) == pytest.approx(0.75)
    assert conservative_r2(0.5) == pytest.approx(0.15 * 0.75)


@pytest.mark.parametrize(
    ("prevalence", "parameters", "r2"), [(0.0, 10, 0.1), (0.2, 0, 0.1), (0.2, 10, 0.0), (0.2, 10, 0.9)]
)
def test_impossible_inputs_are_refused(prevalence: float, parameters: int, r2: float) -> None:
    with pytest.raises(ConfigError):
        riley_binary(prevalence, parameters, r2)
