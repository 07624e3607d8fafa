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
