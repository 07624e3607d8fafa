"""A time-budgeted search for survival models: each kind declares its space, optuna's TPE searches it.

As for the binary kinds (:mod:`medml.models.tuning`): the training patients are split once more, by patient and
stratified by event, into a fitting part (75%) and an inner validation part (25%); each trial fits on the first and
is scored on the second; the search stops at the time budget or the trial cap, and the best parameters are refitted
on all the training patients by the caller. The score is the integrated Brier score (Graf et al. 1999, inverse
probability of censoring weights; scikit-survival's ``integrated_brier_score``) over scikit-survival's grid
(percentiles 5-81 of the validation times): a proper scoring rule, so it rewards calibrated curves as well as the
ranking that Harrell's C alone would measure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import optuna

from medml.data.splits import patient_split
from medml.data.task import TaskDataset
from medml.errors import ConfigError

#: kind -> the space a trial samples: parameter -> value
SEARCH_SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    # the ridge penalty of the Cox fit, on standardised inputs: from almost none to strong shrinkage
    "cox": lambda trial: {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)},
    # LightGBM on the Cox partial likelihood: small trees, slow learning, row/column subsampling, L2
    "gbs": lambda trial: {
        "n_estimators": trial.suggest_int("n_estimators", 100, 800, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 32, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    },
    # the random survival forest, capped to stay affordable on 2 cores: at most 200 trees, leaves of 5 or more;
    # candidates per split: the default sqrt(features) or a share of them (a categorical: trial 0 is the default)
    "rsf": lambda trial: {
        "n_estimators": trial.suggest_int("n_estimators", 50, 200, step=50),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 80, log=True),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", 0.2, 0.33, 0.5]),
    },
}


@dataclass(frozen=True)
class SurvivalSearch:
    """The best parameters, their inner-validation IBS, the IBS of the kind's defaults, and how the search went."""

    params: dict[str, Any]
    best_ibs: float
    default_ibs: float
    n_trials: int
    seconds: float
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "best_ibs": self.best_ibs,
            "default_ibs": self.default_ibs,
            "n_trials": self.n_trials,
            "seconds": round(self.seconds, 3),
            "score": "integrated Brier score on a patient-grouped inner validation part (25% of training)",
        }


def search_survival(
    kind: str,
    train: TaskDataset,
    *,
    horizons: Sequence[float],
    budget_seconds: float,
    max_trials: int = 40,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    on_trial: Callable[[int, float], None] | None = None,
) -> SurvivalSearch:
    """Search ``kind``'s space (:data:`SEARCH_SPACES`) within ``budget_seconds`` or ``max_trials``.

    The kind's defaults are scored first (trial 0, enqueued), so the search never returns parameters that did
    worse than the defaults on the inner validation part. ``fixed`` parameters are passed to every trial.
    """
    from sksurv.metrics import integrated_brier_score

    from medml.models.survival import make_survival_model, survival_array, survival_model_kind

    cls = survival_model_kind(kind)
    if kind not in SEARCH_SPACES:
        raise ConfigError(
            f"survival model '{kind}' declares no search space", f"search one of {', '.join(SEARCH_SPACES)}"
        )
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be 1 or more, got {max_trials!r}", "e.g. 40 trials")
    if not (isinstance(budget_seconds, int | float) and math.isfinite(budget_seconds) and budget_seconds > 0):
        raise ConfigError(f"budget_seconds must be a positive number, got {budget_seconds!r}", "e.g. 60 seconds")
    y = train.y
    time_all, event_all = np.asarray(y.time, dtype=float), np.asarray(y.event, dtype=bool)  # type: ignore[union-attr]
    inner = patient_split(train.groups, event_all.astype(int), fractions=(0.75, 0.125, 0.125), seed=seed + 1)
    fit_idx, val_idx = inner.train, np.concatenate([inner.calibration, inner.test])
    fit_ds, val_ds = train.subset(fit_idx), train.subset(val_idx)
    t_fit, e_fit = time_all[fit_idx], event_all[fit_idx]
    t_val, e_val = time_all[val_idx], event_all[val_idx]
    # scikit-survival's user-guide grid: percentiles 5-81 of the validation times, inside both follow-ups
    grid = np.unique(np.percentile(t_val, np.linspace(5, 81, 15)))
    grid = grid[(grid < min(t_val.max(), t_fit.max())) & (grid >= t_val.min())]
    # the censoring weights come from the fitting part, whose Kaplan-Meier ends at its longest follow-up: validation
    # patients followed past it are censored there (scikit-survival refuses later event times). Every grid time lies
    # before it, where such a patient counts as a survivor either way: the score is unchanged.
    past = t_val > t_fit.max()
    t_ipcw, e_ipcw = np.where(past, t_fit.max(), t_val), e_val & ~past
    y_fit, y_val = survival_array(t_fit, e_fit), survival_array(t_ipcw, e_ipcw)
    space = SEARCH_SPACES[kind]
    defaults = {k: v for k, v in cls(features=None).get_params(deep=False).items() if k not in ("features", "seed")}
    history: list[float] = []

    names = list(space(cast(optuna.Trial, _Recorder())).keys())
    # trial 0 is the kind's defaults as they are (a None default is resolved by the model from the data)
    trial0 = {n: defaults[n] for n in names if n in defaults}

    def objective(trial: optuna.Trial) -> float:
        sampled = space(trial)
        params = {**dict(fixed or {}), **(trial0 if trial.number == 0 else sampled)}
        model = make_survival_model(kind, train.features, horizons=horizons, params=params, seed=seed)
        model.fit(fit_ds.X, fit_ds.y)
        surv = model.predict_survival(val_ds.X, grid)
        ibs = float(integrated_brier_score(y_fit, y_val, surv, grid))
        history.append(ibs)
        if on_trial:
            on_trial(trial.number + 1, ibs)
        return ibs

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.enqueue_trial({n: v for n, v in trial0.items() if v is not None})
        start = time.perf_counter()
        study.optimize(objective, n_trials=max_trials, timeout=max(budget_seconds, 1e-3))
    finally:
        optuna.logging.set_verbosity(before)
    best = {**dict(fixed or {}), **(trial0 if study.best_trial.number == 0 else study.best_params)}
    return SurvivalSearch(
        best, float(study.best_value), history[0], len(study.trials), time.perf_counter() - start, history
    )


class _Recorder:
    """A stand-in trial that answers every ``suggest_*`` with its low end (first choice): only to learn a space's
    parameter names."""

    def suggest_float(self, _name: str, low: float, _high: float, **_kw: Any) -> float:
        return low

    def suggest_int(self, _name: str, low: int, _high: int, **_kw: Any) -> int:
        return low

    def suggest_categorical(self, _name: str, choices: Sequence[Any]) -> Any:
        return choices[0]
