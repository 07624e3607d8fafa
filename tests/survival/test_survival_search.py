"""The survival search: it scores the kind's defaults first, finds stronger shrinkage when noise predictors make
the default overfit, stays inside its trial cap, and refuses a bad budget at the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.data.task import infer_features
from medml.errors import ConfigError
from medml.models.survival import SURVIVAL_KINDS
from medml.models.survival_search import SEARCH_SPACES, search_survival
from medml.pipelines.survival import load_survival_dataset


def _with_noise(n_noise: int, n_rows: int, seed: int = 0):
    ds = load_survival_dataset("gbsg2")
    rng = np.random.default_rng(seed)
    ds = ds.subset(rng.choice(len(ds), n_rows, replace=False))
    noise = pd.DataFrame(rng.normal(size=(len(ds), n_noise)), columns=[f"noise{i}" for i in range(n_noise)])
    X = pd.concat([ds.X.reset_index(drop=True), noise], axis=1)
    return replace(ds, X=X, features=infer_features(X))


def test_every_kind_declares_a_search_space() -> None:
    assert set(SEARCH_SPACES) == set(SURVIVAL_KINDS)


def test_noise_predictors_make_the_search_shrink_the_cox_fit() -> None:
    """250 patients, 8 real and 60 pure-noise predictors: the default ridge penalty (alpha 1) overfits, and the
    search finds a larger penalty that scores a lower inner-validation IBS than the defaults."""
    ds = _with_noise(60, 250)
    result = search_survival("cox", ds, horizons=(365.0,), budget_seconds=60, max_trials=15, seed=0)
    assert result.history[0] == result.default_ibs  # the defaults are trial 0
    assert result.params["alpha"] > 1.0
    assert result.best_ibs < result.default_ibs - 0.005
    assert result.n_trials <= 15


def test_gbs_search_runs_within_its_cap() -> None:
    ds = load_survival_dataset("gbsg2")
    result = search_survival("gbs", ds, horizons=(365.0, 730.0), budget_seconds=60, max_trials=4, seed=1)
    assert result.n_trials == 4 and set(result.params) >= {"learning_rate", "num_leaves", "n_estimators"}
    assert result.best_ibs <= result.default_ibs


@pytest.mark.parametrize(
    ("kw", "message"), [({"budget_seconds": 0}, "budget_seconds"), ({"max_trials": 0}, "max_trials")]
)
def test_bad_search_settings_are_refused(kw: dict[str, float], message: str) -> None:
    ds = load_survival_dataset("gbsg2")
    args = {"budget_seconds": 10.0, "max_trials": 5, **kw}
    with pytest.raises(ConfigError, match=message):
        search_survival("cox", ds, horizons=(365.0,), **args)  # type: ignore[arg-type]


def test_a_negative_budget_at_the_command_line_is_one_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "MEDML_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    args = [sys.executable, "-m", "medml.cli", "survival", "train", "gbsg2", "--budget-seconds", "-5"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "--budget-seconds must be a positive number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "models").exists()


def test_a_validation_follow_up_past_the_fitting_parts_is_scored_not_refused() -> None:
    """veterans as `medml survival train` splits it: an event at 999 days falls in the inner validation part, past
    the fitting part's longest follow-up (991), and scikit-survival's IBS refused the search ("time must be smaller
    than largest observed time point"). Censoring such patients at 991 leaves the IBS on the grid (all before 991)
    as medml's own IPCW Brier, which takes later times, gives it on the uncensored data."""
    from sksurv.metrics import integrated_brier_score

    from medml.data import patient_split
    from medml.evaluate._survival_metrics import brier_scores, integrated_brier
    from medml.models.survival import survival_array

    ds = load_survival_dataset("veterans")
    split = patient_split(ds.groups, ds.y.event, fractions=(0.6, 0.15, 0.25), seed=0)
    train = ds.subset(np.sort(np.concatenate([split.train, split.calibration])))
    result = search_survival("cox", train, horizons=(30.0, 90.0, 180.0), budget_seconds=30, max_trials=1, seed=0)
    assert result.n_trials == 1 and 0 < result.best_ibs < 0.25

    rng = np.random.default_rng(3)
    t_fit, e_fit = rng.uniform(1, 100, 80).round(), rng.random(80) < 0.7
    t_val, e_val = (
        np.append(rng.uniform(1, 100, 30).round(), [130.0, 150.0]),
        np.append(rng.random(30) < 0.7, [True, True]),
    )
    grid = np.linspace(10, 80, 8)
    surv = np.exp(-np.outer(rng.uniform(0.5, 2, t_val.size), grid / 100))
    past = t_val > t_fit.max()
    clipped = survival_array(np.where(past, t_fit.max(), t_val), e_val & ~past)
    theirs = integrated_brier_score(survival_array(t_fit, e_fit), clipped, surv, grid)
    ours = integrated_brier(grid, brier_scores(t_val, e_val, surv, grid, train_time=t_fit, train_event=e_fit))
    assert theirs == pytest.approx(ours, rel=1e-12)
