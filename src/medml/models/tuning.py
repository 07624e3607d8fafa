"""Hyperparameter search with optuna inside a time budget; each model declares its search space."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.metrics import log_loss

from medml.data.splits import patient_split
from medml.data.task import TaskDataset
from medml.models.gbm import LightGBMRiskModel


def lgbm_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def logistic_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}


SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {"lgbm": lgbm_space, "logistic": logistic_space}


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
    is the same under ``seed`` (TPE sampler seeded; each model seeded). For LightGBM the number of trees is set
    by early stopping on the inner validation part.
    """
    from medml.models.factory import make_model

    y = train.binary_target.values
    inner = patient_split(train.groups, y, fractions=(0.75, 0.125, 0.125), seed=seed + 1)
    fit_idx, val_idx = inner.train, np.concatenate([inner.calibration, inner.test])
    X_fit, y_fit = train.X.iloc[fit_idx], y[fit_idx]
    X_val, y_val = train.X.iloc[val_idx], y[val_idx]
    history: list[float] = []
    trees: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        params = SPACES[kind](trial)
        model = make_model(kind, train.features, params, seed=seed)
        if isinstance(model, LightGBMRiskModel):
            model.set_params(n_estimators=2000)
            model.fit(X_fit, y_fit, eval_set=(X_val, y_val))
            trees[trial.number] = model.best_iteration_
        else:
            model.fit(X_fit, y_fit)
        loss = float(log_loss(y_val, model.predict_proba(X_val)[:, 1], labels=[0, 1]))
        history.append(loss)
        if on_trial:
            on_trial(trial.number + 1, loss)
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=max_trials, timeout=max(budget_seconds, 1e-3))
    params = dict(study.best_params)
    if kind == "lgbm":
        params["n_estimators"] = max(trees[study.best_trial.number], 10)
    return TuningResult(params, float(study.best_value), len(study.trials), time.perf_counter() - start, history)
