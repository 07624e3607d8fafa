"""Hyperparameter search with optuna inside a time budget; each model kind declares its space and its search fit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.metrics import log_loss

from medml.data.splits import patient_split
from medml.data.task import TaskDataset
from medml.errors import ConfigError


@dataclass(frozen=True)
class TuningResult:
    """The best parameters, their inner-validation log loss, and how the search went."""

    params: dict[str, Any]
    best_loss: float
    n_trials: int
    seconds: float
    history: list[float] = field(default_factory=list)


def tune(
    kind: str,
    train: TaskDataset,
    *,
    budget_seconds: float,
    seed: int = 0,
    max_trials: int = 60,
    on_trial: Callable[[int, float], None] | None = None,
) -> TuningResult:
    """Search ``kind``'s space, scoring log loss on a patient-grouped inner validation part of ``train``.

    Stops at ``budget_seconds`` or ``max_trials``, whichever comes first. With the same trials run, the result
    is the same under ``seed`` (TPE sampler seeded; each model seeded). What a kind learns while fitting a trial
    (LightGBM's number of trees, by early stopping on the inner validation part) joins the best parameters.
    """
    from medml.models.factory import make_model, model_kind

    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be 1 or more, got {max_trials!r}", "e.g. 60 trials")
    if not (isinstance(budget_seconds, int | float) and math.isfinite(budget_seconds) and budget_seconds > 0):
        raise ConfigError(f"budget_seconds must be a positive number, got {budget_seconds!r}", "e.g. 60 seconds")
    space = model_kind(kind).search_space

    y = train.binary_target.values
    inner = patient_split(train.groups, y, fractions=(0.75, 0.125, 0.125), seed=seed + 1)
    fit_idx, val_idx = inner.train, np.concatenate([inner.calibration, inner.test])
    X_fit, y_fit = train.X.iloc[fit_idx], y[fit_idx]
    X_val, y_val = train.X.iloc[val_idx], y[val_idx]
    history: list[float] = []
    learned: dict[int, dict[str, Any]] = {}

    def objective(trial: optuna.Trial) -> float:
        model = make_model(kind, train.features, space(trial), seed=seed)
        learned[trial.number] = model.fit_trial(X_fit, y_fit, X_val, y_val)
        loss = float(log_loss(y_val, model.predict_proba(X_val)[:, 1], labels=[0, 1]))
        history.append(loss)
        if on_trial:
            on_trial(trial.number + 1, loss)
        return loss

    with _optuna_quiet():
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        start = time.perf_counter()
        study.optimize(objective, n_trials=max_trials, timeout=max(budget_seconds, 1e-3))
    params = {**study.best_params, **learned[study.best_trial.number]}
    return TuningResult(params, float(study.best_value), len(study.trials), time.perf_counter() - start, history)


@contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's log at ERROR meanwhile: it would print a trial's failure (Ctrl-C included) with its traceback
    before re-raising it, and the error that ends the search is the caller's to report, once."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
