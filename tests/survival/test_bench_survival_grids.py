"""The benchmark's copy of xgbse's SUPPORT scoring (benchmarks/bench_survival.py): the grid of
``xgbse.non_parametric.get_time_bins`` and ``approx_brier_score`` in closed-form cases."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0:DeprecationWarning")


@functools.cache
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_survival.py"
    spec = importlib.util.spec_from_file_location("bench_survival", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_grid_is_get_time_bins() -> None:
    """get_time_bins: linspace(max(first censoring, first event) + 1, min(last censoring, last event) - 1, 30),
    cast to int."""
    t = np.array([2.0, 5.0, 9.0, 40.0, 300.0, 310.0])
    e = np.array([True, False, True, True, False, True])
    expected = np.linspace(5 + 1, 300 - 1, 30).astype(int)
    np.testing.assert_array_equal(bench().xgbse_grid(t, e), expected)


def test_ibs_without_censoring_is_the_plain_mean_brier() -> None:
    """No censoring: every weight is 1, so at each grid time the score is the share dead times S^2 plus the share
    alive times (1 - S)^2, and the "ibs" is the plain mean over the grid (not an integral)."""
    rng = np.random.default_rng(0)
    t = rng.uniform(1, 100, 200)
    e = np.ones(200, dtype=bool)
    grid = np.array([10.0, 30.0, 60.0, 90.0])
    p = 0.3
    surv = np.full((200, grid.size), p)
    dead = np.array([(t <= w).mean() for w in grid])
    expected = np.mean(dead * p**2 + (1 - dead) * (1 - p) ** 2)
    assert bench().xgbse_ibs(t, e, surv, grid) == pytest.approx(expected, rel=1e-12)
