"""A stronger search: logistic regression with spline terms, LightGBM, and their log-odds average, the weight chosen
on the same patient-grouped inner validation part the hyperparameters are.

A weight of 1 is the spline logistic model alone and 0 LightGBM alone, so the search picks a family or a blend of the
two. Averaging on the log-odds scale keeps the explanation exact: each member splits its log-odds into per-feature
terms, and the stack's terms are the same weighted sum of theirs, so they add up to the stack's own log-odds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

from medml.data.task import FeatureSpec
from medml.models.base import MissingData
from medml.models.gbm import LightGBMRiskModel
from medml.models.logistic import LogisticRiskModel

if TYPE_CHECKING:
    import optuna

#: the weights of the spline logistic member tried on the inner validation part (0: LightGBM alone, 1: logistic alone)
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


class SplineLogisticRiskModel(LogisticRiskModel):
    """L2-penalised logistic regression with each continuous input entered as a natural cubic-like B-spline
    (knots at quantiles of the training values, linear beyond them) plus a missing flag.

    Inputs with fewer distinct values than ``MIN_DISTINCT`` (binary and ordinal codes) are entered linearly.
    ``contributions`` stays exact: a feature's term is the sum over its spline columns.
    """

    explanation_card: ClassVar[str] = "exact terms of the spline logistic model"
    explanation_method = "exact: sum over a feature's spline terms of coefficient x (basis - training mean), log-odds"
    kind: ClassVar[str] = "spline-logistic"
    description: ClassVar[str] = "logistic regression with B-spline terms for continuous inputs (L2)"
    preprocessing: ClassVar[str] = (
        "Spline logistic regression: continuous predictors as cubic B-splines with knots at training quantiles "
        "(linear beyond the outer knots), standardised, with a missing flag; binary and ordinal codes linear; "
        "categorical predictors one-hot encoded."
    )
    #: fewer distinct training values than this: entered linearly
    MIN_DISTINCT: ClassVar[int] = 8

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        C: float = 1.0,
        n_knots: int = 4,
        max_iter: int = 2000,
        min_category_frequency: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(
            features=features, C=C, max_iter=max_iter, min_category_frequency=min_category_frequency, seed=seed
        )
        self.n_knots = n_knots

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        return {
            "C": trial.suggest_float("C", 1e-3, 10.0, log=True),
            "n_knots": trial.suggest_int("n_knots", 3, 6),
        }

    def _numeric_transformers(self, frame: pd.DataFrame, num: list[str]) -> list[tuple[str, Any, list[str]]]:
        out: list[tuple[str, Any, list[str]]] = []
        straight = []
        for name in num:
            values = frame[name].dropna().to_numpy()
            if len(np.unique(values)) < self.MIN_DISTINCT:
                straight.append(name)
                continue
            knots = np.unique(np.quantile(values, np.linspace(0, 1, self.n_knots)))
            if len(knots) < 3:
                straight.append(name)
                continue
            spline = SplineTransformer(knots=knots[:, None], degree=3, extrapolation="linear")
            steps = [("impute", SimpleImputer(strategy="median")), ("spline", spline), ("scale", StandardScaler())]
            out.append((f"spline-{name}", Pipeline(steps), [name]))
            out.append((f"missing-{name}", MissingIndicator(features="all"), [name]))
        return super()._numeric_transformers(frame, straight) + out


class StackedRiskModel(ClassifierMixin, BaseEstimator):
    """``weight`` x spline logistic log-odds + (1 - ``weight``) x LightGBM log-odds.

    The parameters are the two members' (their names do not clash), flat so that the search, ``get_params`` and
    ``clone`` see them all; ``weight`` and LightGBM's number of trees are learned while fitting a search trial.
    """

    explanation_card: ClassVar[str] = "weighted terms of the spline logistic model and TreeSHAP"
    kind: ClassVar[str] = "stack"
    description: ClassVar[str] = (
        "spline logistic regression and LightGBM averaged on the log-odds scale, the weight chosen on the inner "
        "validation part (0 or 1 picks one family)"
    )
    missing_data: ClassVar[MissingData] = MissingData(
        card="the logistic part fills a missing input with the training median and a missing flag, and the "
        "boosted trees route it down the branch learned for missing values",
        report="median-imputed with a missing flag in the spline logistic member and handled natively by "
        "LightGBM's splits in the boosted member",
    )
    preprocessing: ClassVar[str] = (
        f"{SplineLogisticRiskModel.preprocessing} {LightGBMRiskModel.preprocessing} The two members' log-odds are "
        "averaged with a weight learned on the inner validation part."
    )
    search_budget_share: ClassVar[float] = 1.0

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        weight: float = 0.5,
        C: float = 1.0,
        n_knots: int = 4,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.weight = weight
        self.C = C
        self.n_knots = n_knots
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.seed = seed

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        return {**SplineLogisticRiskModel.search_space(trial), **LightGBMRiskModel.search_space(trial)}

    def _members(self) -> tuple[SplineLogisticRiskModel, LightGBMRiskModel]:
        linear = SplineLogisticRiskModel(features=self.features, C=self.C, n_knots=self.n_knots, seed=self.seed)
        trees = LightGBMRiskModel(
            features=self.features,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            seed=self.seed,
        )
        return linear, trees

    def fit_trial(self, X: pd.DataFrame, y: npt.ArrayLike, X_val: pd.DataFrame, y_val: npt.ArrayLike) -> dict[str, Any]:
        """Fit both members (LightGBM stopping early on ``X_val``), then the weight with the least log loss on it."""
        linear, trees = self._members()
        linear.fit(X, y)
        learned = trees.fit_trial(X, y, X_val, y_val)
        z_linear, z_trees = linear.decision_function(X_val), trees.decision_function(X_val)
        losses = [
            log_loss(y_val, _sigmoid(w * z_linear + (1 - w) * z_trees), labels=[0, 1]) for w in WEIGHT_GRID.tolist()
        ]
        weight = float(WEIGHT_GRID[int(np.argmin(losses))])
        self.set_params(weight=weight, **learned)
        self._adopt(linear, trees)
        return {**learned, "weight": weight}

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike) -> StackedRiskModel:
        linear, trees = self._members()
        self._adopt(linear.fit(X, y), trees.fit(X, y))
        return self

    def _adopt(self, linear: SplineLogisticRiskModel, trees: LightGBMRiskModel) -> None:
        self.linear_, self.trees_ = linear, trees
        self.features_ = linear.features_
        self.classes_ = np.array([0, 1])

    @property
    def explanation_method(self) -> str:
        w = self.weight
        return (
            f"exact: {w:g} x the spline logistic model's terms + {1 - w:g} x LightGBM's TreeSHAP, log-odds scale "
            "(they add up to the stack's log-odds)"
        )

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        w = self.weight
        return np.asarray(w * self.linear_.decision_function(X) + (1 - w) * self.trees_.decision_function(X))

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int_]:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """The members' per-feature terms and ``bias``, weighted as their log-odds are: rows sum to the stack's."""
        check_is_fitted(self)
        w = self.weight
        linear = self.linear_.contributions(X)
        trees = self.trees_.contributions(X)[linear.columns]
        return w * linear + (1 - w) * trees


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=float)
