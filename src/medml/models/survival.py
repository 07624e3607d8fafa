"""Survival risk models: scikit-learn estimators that say when, not only whether.

Each kind fits on a feature table and a :class:`~medml.data.targets.SurvivalTarget` (or scikit-survival's
structured array) and predicts a risk score (``predict``), survival curves (``predict_survival``) and the risk of
the event by each horizon (``predict_risk``). ``predict_proba`` is the risk by the first horizon as two class
columns, so that the registry, MLflow's pyfunc and the service read a survival model like a binary one. The one
table of kinds is :data:`SURVIVAL_KINDS`: two proportional-hazards models here (scikit-survival's Cox fit; LightGBM's
trees on the Cox partial likelihood) with Breslow's baseline hazard, and the random survival forest
(:mod:`medml.models.survival_forest`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from medml.data.task import FeatureSpec
from medml.errors import ConfigError
from medml.models._survival_base import (
    DEFAULT_HORIZONS,
    FloatArray,
    check_fit_target,
    survival_array,
    time_event,
)
from medml.models._survival_base import check_model_horizons as _check_model_horizons
from medml.models.base import MissingData
from medml.models.features import categorical_frame, numeric_frame, require_columns, resolve_features, typed_frame
from medml.models.survival_forest import RandomSurvivalForestModel


class SurvivalModel(Protocol):
    """A survival model kind: what :data:`SURVIVAL_KINDS` reads from its class."""

    kind: ClassVar[str]
    description: ClassVar[str]
    missing_data: ClassVar[MissingData]
    preprocessing: ClassVar[str]
    explanation_method: ClassVar[str]
    horizons: Sequence[float]
    event_times_: FloatArray

    def fit(self, X: pd.DataFrame, y: Any) -> Any: ...

    def predict(self, X: pd.DataFrame) -> FloatArray: ...

    def predict_survival(self, X: pd.DataFrame, times: npt.ArrayLike | None = None) -> FloatArray: ...

    def predict_risk(self, X: pd.DataFrame, horizons: Sequence[float] | None = None) -> FloatArray: ...

    def predict_proba(self, X: pd.DataFrame) -> FloatArray: ...


def breslow(risk_score: FloatArray, time: FloatArray, event: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Breslow's cumulative baseline hazard at the distinct event times: H0(u) = sum over event times v <= u of
    (events at v) / (sum of exp(risk score) over patients still at risk at v)."""
    order = np.argsort(time, kind="mergesort")
    t, e, f = time[order], event[order], risk_score[order]
    shift = float(f.max())
    at_risk = np.cumsum(np.exp(f - shift)[::-1])[::-1]
    times, first = np.unique(t, return_index=True)
    deaths = np.bincount(np.searchsorted(times, t), weights=e, minlength=times.size)
    hazard = deaths / (at_risk[first] * np.exp(shift))
    keep = deaths > 0
    return times[keep], np.cumsum(hazard)[keep]


def cox_gradient(
    time: FloatArray, event: npt.NDArray[np.bool_]
) -> Callable[[FloatArray], tuple[FloatArray, FloatArray]]:
    """The gradient and diagonal Hessian of the negative Cox partial log-likelihood (Breslow ties) in each
    patient's risk score, as a function of the scores: the objective a gradient-boosting library minimises."""
    order = np.argsort(time, kind="mergesort")
    t, e = time[order], event[order].astype(float)
    times, first = np.unique(t, return_index=True)
    group = np.searchsorted(times, t)
    deaths = np.bincount(group, weights=e, minlength=times.size)

    def gradient(score: FloatArray) -> tuple[FloatArray, FloatArray]:
        f = np.asarray(score, dtype=float)[order]
        r = np.exp(f - f.max())  # ratios r_i / S are unchanged by the shift
        at_risk = np.cumsum(r[::-1])[::-1][first]
        a = np.cumsum(deaths / at_risk)[group]
        b = np.cumsum(deaths / np.square(at_risk))[group]
        grad, hess = np.empty_like(f), np.empty_like(f)
        grad[order] = r * a - e
        hess[order] = r * a - np.square(r) * b
        return grad, hess

    return gradient


def cox_partial_loglik(score: FloatArray, time: FloatArray, event: npt.NDArray[np.bool_]) -> float:
    """The Cox partial log-likelihood (Breslow ties) of risk scores, per event: the mean over events of
    f_i - log(sum over patients still at risk at t_i of exp(f_j)). What the inner validation part scores."""
    order = np.argsort(time, kind="mergesort")
    t, e, f = time[order], event[order], np.asarray(score, dtype=float)[order]
    shift = float(f.max())
    at_risk = np.cumsum(np.exp(f - shift)[::-1])[::-1]
    _, first = np.unique(t, return_index=True)
    log_at_risk = np.log(at_risk[first])[np.searchsorted(t[first], t)] + shift
    return float(np.sum((f - log_at_risk)[e]) / max(int(e.sum()), 1))


class _ProportionalHazards(BaseEstimator):
    """What both kinds share: S(t | x) = exp(-H0(t) exp(f(x))) with Breslow's H0 from the training data, read as a
    step function, and risks at horizons. Subclasses fit ``f`` (``_fit_score``) and give it (``predict``)."""

    kind: ClassVar[str]
    description: ClassVar[str]
    missing_data: ClassVar[MissingData]
    preprocessing: ClassVar[str]
    explanation_method: ClassVar[str]
    features: Sequence[FeatureSpec] | None
    horizons: Sequence[float]
    seed: int

    def _fit_score(self, X: pd.DataFrame, time: FloatArray, event: npt.NDArray[np.bool_]) -> None:
        raise NotImplementedError

    def predict(self, X: pd.DataFrame) -> FloatArray:
        """The risk score, a log hazard ratio: higher means an earlier event."""
        raise NotImplementedError

    def _training_score(self, X: pd.DataFrame) -> FloatArray:
        """The fitted score of the training rows (for Breslow's baseline); a kind may keep it from the fit."""
        return self.predict(X)

    def fit(self, X: pd.DataFrame, y: Any) -> _ProportionalHazards:
        """Validate and fit; ``y`` is a SurvivalTarget or a structured (event, time) array."""
        time, event = time_event(y)
        check_fit_target(len(X), time, event)
        self.horizons_ = _check_model_horizons(self.horizons)
        self.features_ = resolve_features(X, self.features)
        self._fit_score(X, time, event)
        self.event_times_, self.cumulative_baseline_hazard_ = breslow(self._training_score(X), time, event)
        return self

    def predict_survival(self, X: pd.DataFrame, times: npt.ArrayLike | None = None) -> FloatArray:
        """S(t | x) for each row at ``times`` (default: the training event times), patients x times."""
        check_is_fitted(self, "cumulative_baseline_hazard_")
        if times is None:
            h0 = self.cumulative_baseline_hazard_
        else:
            idx = np.searchsorted(self.event_times_, np.asarray(times, dtype=float), side="right") - 1
            h0 = np.where(idx >= 0, self.cumulative_baseline_hazard_[np.clip(idx, 0, None)], 0.0)
        return np.exp(-np.outer(np.exp(self.predict(X)), h0))

    def predict_risk(self, X: pd.DataFrame, horizons: Sequence[float] | None = None) -> FloatArray:
        """The risk of the event by each horizon, 1 - S(horizon | x), patients x horizons."""
        hs = self.horizons_ if horizons is None else _check_model_horizons(horizons)
        return 1.0 - self.predict_survival(X, hs)

    def predict_proba(self, X: pd.DataFrame) -> FloatArray:
        """The risk by the first horizon as ``[no event, event]`` columns (what a binary model's reader expects)."""
        risk = self.predict_risk(X, self.horizons_[:1])[:, 0]
        return np.column_stack([1.0 - risk, risk])

    def decision_function(self, X: pd.DataFrame) -> FloatArray:
        """The log hazard ratio (what ``contributions`` sums to)."""
        return self.predict(X)


class CoxSurvivalModel(_ProportionalHazards):
    """Cox proportional hazards with a small ridge penalty on standardised inputs (scikit-survival's
    ``CoxPHSurvivalAnalysis``, Breslow ties and baseline hazard).

    ``contributions`` splits each patient's log hazard ratio exactly into one term per source feature, relative to
    the mean training patient, plus a ``bias``: the model's own arithmetic, no approximation.
    """

    kind: ClassVar[str] = "cox"
    description: ClassVar[str] = "Cox proportional hazards (median imputation + missing flags, scaling, one-hot; ridge)"
    missing_data: ClassVar[MissingData] = MissingData(
        card="the model fills a missing input with the training median and adds a missing-input flag, as in training",
        report="imputed with the training median (numeric, with a missing-input flag) or kept as their own level "
        "(categorical) before the Cox model",
    )
    preprocessing: ClassVar[str] = (
        "Cox model: numeric predictors standardised and entered linearly (log hazard), categorical predictors "
        "one-hot encoded; a small ridge penalty keeps the fit stable."
    )
    explanation_method: ClassVar[str] = "exact: coefficient x (value - training mean), log hazard ratio"

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        *,
        horizons: Sequence[float] = DEFAULT_HORIZONS,
        alpha: float = 1.0,
        min_category_frequency: int = 10,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.horizons = horizons
        self.alpha = alpha
        self.min_category_frequency = min_category_frequency
        self.seed = seed

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return typed_frame(X, self.features_)

    def _prep(self) -> ColumnTransformer:
        num = [f.name for f in self.features_ if f.kind == "numeric"]
        cat = [f.name for f in self.features_ if f.kind == "categorical"]
        transformers: list[tuple[str, Any, list[str]]] = []
        if num:
            impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
            transformers.append(("num", Pipeline([("impute", impute), ("scale", StandardScaler())]), num))
        if cat:
            fill = SimpleImputer(strategy="constant", fill_value="(missing)", keep_empty_features=True)
            onehot = OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=self.min_category_frequency, sparse_output=False
            )
            transformers.append(("cat", Pipeline([("impute", fill), ("onehot", onehot)]), cat))
        return ColumnTransformer(transformers, verbose_feature_names_out=True)

    def _fit_score(self, X: pd.DataFrame, time: FloatArray, event: npt.NDArray[np.bool_]) -> None:
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        self.prep_ = self._prep()
        Z = np.asarray(self.prep_.fit_transform(self._frame(X)), dtype=float)
        # Newton's line search may try steps whose exp overflows before it backs off; the fit is unaffected
        with np.errstate(over="ignore"):
            self.estimator_ = CoxPHSurvivalAnalysis(alpha=self.alpha, ties="breslow").fit(
                Z, survival_array(time, event)
            )
        self.coef_ = np.asarray(self.estimator_.coef_, dtype=float)
        self.train_mean_ = Z.mean(axis=0)
        self.column_owner_ = self._owners()

    def _owners(self) -> list[str]:
        """The source feature behind each prepared column (one-hot levels and missing flags included)."""
        names = [str(n) for n in self.prep_.get_feature_names_out()]
        features = sorted((f.name for f in self.features_), key=len, reverse=True)
        owners = []
        for n in names:
            body = n.split("__", 1)[1].removeprefix("missingindicator_")
            owners.append(next(f for f in features if body == f or body.startswith(f + "_")))
        return owners

    def _prepared(self, X: pd.DataFrame) -> FloatArray:
        check_is_fitted(self, "coef_")
        return np.asarray(self.prep_.transform(self._frame(X)), dtype=float)

    def predict(self, X: pd.DataFrame) -> FloatArray:
        """The log hazard ratio relative to a patient whose prepared inputs are all zero."""
        return self._prepared(X) @ self.coef_

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature log hazard ratio terms and a ``bias`` column; each row sums to ``predict``."""
        Z = self._prepared(X)
        per_column = (Z - self.train_mean_) * self.coef_
        names = [f.name for f in self.features_]
        owner_of = np.zeros((len(self.column_owner_), len(names)))
        owner_of[np.arange(len(self.column_owner_)), [names.index(o) for o in self.column_owner_]] = 1.0
        out = pd.DataFrame(per_column @ owner_of, columns=names, index=X.index)
        out["bias"] = float(self.train_mean_ @ self.coef_)
        return out

    def hazard_ratios(self) -> pd.DataFrame:
        """Each prepared column's hazard ratio per unit (per standard deviation for numeric predictors)."""
        check_is_fitted(self, "coef_")
        return pd.DataFrame(
            {
                "column": [str(n).split("__", 1)[1] for n in self.prep_.get_feature_names_out()],
                "feature": self.column_owner_,
                "coefficient": self.coef_,
                "hazard_ratio": np.exp(self.coef_),
            }
        )


#: below this many events the boosted model's defaults are for small data (smaller trees, slower learning)
SMALL_EVENTS = 1000


class GradientBoostedSurvivalModel(_ProportionalHazards):
    """Gradient-boosted trees (LightGBM) on the Cox partial likelihood, given to LightGBM as a custom objective
    (:func:`cox_gradient`); Breslow's baseline hazard turns the score into curves.

    LightGBM has no Cox objective of its own, but its trees, native missing values and categories and its exact
    TreeSHAP (``contributions``, on the log hazard scale) are what the binary kind already uses, and it fits
    SUPPORT2 in about a second on 2 cores where scikit-survival's ``GradientBoostingSurvivalAnalysis`` took about
    two minutes. One thread by default: on a busy 2-core machine LightGBM's second OpenMP thread made a fit 25
    times slower (0.9 s against 23 s on SUPPORT2), and the trees are small.

    Defaults (``benchmarks/results-survival.md``, 5-fold CV): 500 rounds of extremely randomised trees (LightGBM's
    ``extra_trees``: one random threshold per candidate feature): on GBSG2 Harrell's C 0.699 and IBS 0.168, against
    0.688 and 0.172 for 300 rounds of the same trees with searched thresholds (1 x 5-fold CV); the tree size
    follows the data (``None``: 4 leaves, learning rate 0.02, leaves of 20 below :data:`SMALL_EVENTS` events, else
    8 leaves, 0.03 and 40): 8-leaf trees overfit GBSG2's 240 training events (C 0.672) and 4-leaf ones underfit
    SUPPORT2's 4,960 (C 0.617 against 0.622). ``validation_fraction`` > 0 chooses the number of rounds by early
    stopping on an inner validation part of the training rows; off by default, as on GBSG2 and SUPPORT2 it was no
    better than the fixed rounds and fitted the model twice.
    """

    kind: ClassVar[str] = "gbs"
    description: ClassVar[str] = "gradient-boosted survival trees (LightGBM on the Cox partial likelihood)"
    missing_data: ClassVar[MissingData] = MissingData(
        card="the model routes a missing input down the branch learned for missing values in training; "
        "no value is filled in",
        report="handled natively by LightGBM (each split sends missing values to the side learned in training); "
        "no imputation",
    )
    preprocessing: ClassVar[str] = (
        "Gradient-boosted trees on the Cox partial likelihood: numeric predictors used unscaled, categorical "
        "predictors handled natively; interactions and non-linear effects are learned."
    )
    explanation_method: ClassVar[str] = "TreeSHAP (LightGBM pred_contrib), log hazard ratio scale"

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        *,
        horizons: Sequence[float] = DEFAULT_HORIZONS,
        n_estimators: int = 500,
        learning_rate: float | None = None,
        num_leaves: int | None = None,
        min_child_samples: int | None = None,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        extra_trees: bool = True,
        validation_fraction: float = 0.0,
        early_stopping_rounds: int = 50,
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.horizons = horizons
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.extra_trees = extra_trees
        self.validation_fraction = validation_fraction
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.seed = seed

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        require_columns(X, self.features_)
        num = [f for f in self.features_ if f.kind == "numeric"]
        cat = [f for f in self.features_ if f.kind == "categorical"]
        frame = numeric_frame(X, num)
        cats = categorical_frame(X, cat)
        for f in cat:
            known = self.categories_[f.name]
            values = cats[f.name].where(cats[f.name].isin(known))  # unseen at fit time -> missing
            frame[f.name] = pd.Categorical(values, categories=known)
        return frame[[f.name for f in self.features_]]

    def _resolve(self, event: npt.NDArray[np.bool_]) -> None:
        """Fill the size-dependent defaults (None): below :data:`SMALL_EVENTS` events, 4-leaf trees, learning rate
        0.02 and leaves of 20 patients; otherwise 8 leaves, 0.03 and 40."""
        small = int(event.sum()) < SMALL_EVENTS
        self.num_leaves_ = self.num_leaves if self.num_leaves is not None else (4 if small else 8)
        self.learning_rate_ = self.learning_rate if self.learning_rate is not None else (0.02 if small else 0.03)
        self.min_child_samples_ = (
            self.min_child_samples if self.min_child_samples is not None else (20 if small else 40)
        )

    def _params(self, gradient: Callable[[FloatArray], tuple[FloatArray, FloatArray]]) -> dict[str, Any]:
        def objective(score: FloatArray, _data: Any) -> tuple[FloatArray, FloatArray]:
            return gradient(score)

        return {
            "objective": objective,
            "metric": "None",
            "learning_rate": self.learning_rate_,
            "num_leaves": self.num_leaves_,
            "min_child_samples": self.min_child_samples_,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "extra_trees": bool(self.extra_trees),
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def _rounds(self, frame: pd.DataFrame, time: FloatArray, event: npt.NDArray[np.bool_]) -> int:
        """How many rounds to boost: ``n_estimators``, or with ``validation_fraction`` > 0 the round that
        maximised the Cox partial likelihood of an inner validation part (stratified by event, taken from the
        training rows only) before ``early_stopping_rounds`` rounds without improvement, scaled up by the share
        of rows the final fit adds."""
        import lightgbm as lgb
        from sklearn.model_selection import train_test_split

        if not 0.0 < self.validation_fraction < 1.0:
            return int(self.n_estimators)
        idx = np.arange(len(frame))
        fit_idx, val_idx = train_test_split(
            idx, test_size=self.validation_fraction, stratify=event.astype(int), random_state=self.seed
        )
        t_val, e_val = time[val_idx], event[val_idx]

        def validation(score: FloatArray, _data: Any) -> tuple[str, float, bool]:
            return "cox_loglik", cox_partial_loglik(score, t_val, e_val), True

        fit_data = lgb.Dataset(frame.iloc[fit_idx], label=time[fit_idx], free_raw_data=True)
        val_data = lgb.Dataset(frame.iloc[val_idx], label=t_val, reference=fit_data, free_raw_data=True)
        booster = lgb.train(
            self._params(cox_gradient(time[fit_idx], event[fit_idx])),
            fit_data,
            num_boost_round=self.n_estimators,
            valid_sets=[val_data],
            feval=validation,
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        best = booster.best_iteration or self.n_estimators
        return int(min(self.n_estimators, max(1, round(best / (1.0 - self.validation_fraction)))))

    def _fit_score(self, X: pd.DataFrame, time: FloatArray, event: npt.NDArray[np.bool_]) -> None:
        import lightgbm as lgb

        cats = categorical_frame(X, [f for f in self.features_ if f.kind == "categorical"])
        self.categories_ = {c: sorted(cats[c].dropna().unique().tolist()) for c in cats.columns}
        frame = self._frame(X)
        self._resolve(event)
        self.n_rounds_ = self._rounds(frame, time, event)
        data = lgb.Dataset(frame, label=time, free_raw_data=True)
        self.booster_ = lgb.train(self._params(cox_gradient(time, event)), data, num_boost_round=self.n_rounds_)
        # the custom objective is a closure over the training data: drop it so the model pickles on its own
        self.booster_.params.pop("objective", None)
        self._train_score = np.asarray(self.booster_.predict(frame, raw_score=True), dtype=float)

    def _training_score(self, X: pd.DataFrame) -> FloatArray:
        score = self.__dict__.pop("_train_score", None)  # built once from the fit's own frame, then dropped
        return self.predict(X) if score is None else score

    def predict(self, X: pd.DataFrame) -> FloatArray:
        """The log hazard ratio (the sum of the trees' outputs)."""
        check_is_fitted(self, "booster_")
        return np.asarray(self.booster_.predict(self._frame(X), raw_score=True), dtype=float)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions per feature and a ``bias`` column; each row sums to ``predict``."""
        check_is_fitted(self, "booster_")
        contrib = self.booster_.predict(self._frame(X), pred_contrib=True)
        return pd.DataFrame(np.asarray(contrib), columns=[*(f.name for f in self.features_), "bias"], index=X.index)


#: the one table of survival model kinds: what ``--model`` names for ``medml survival train``
SURVIVAL_KINDS: dict[str, type[_ProportionalHazards] | type[RandomSurvivalForestModel]] = {
    cls.kind: cls for cls in (CoxSurvivalModel, GradientBoostedSurvivalModel, RandomSurvivalForestModel)
}


def survival_model_kind(kind: str) -> type[_ProportionalHazards] | type[RandomSurvivalForestModel]:
    """The class of a survival model kind, or the one clear error naming the kinds there are."""
    cls = SURVIVAL_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"unknown survival model '{kind}'", f"choose one of: {', '.join(SURVIVAL_KINDS)}")
    return cls


def make_survival_model(
    kind: str,
    features: Sequence[FeatureSpec],
    *,
    horizons: Sequence[float] = DEFAULT_HORIZONS,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> _ProportionalHazards | RandomSurvivalForestModel:
    """A fresh, unfitted survival model of ``kind`` for ``features``."""
    cls = survival_model_kind(kind)
    return cls(features=tuple(features), horizons=tuple(horizons), seed=seed, **dict(params or {}))
