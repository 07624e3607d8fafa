"""Logistic regression baseline: median imputation with missing indicators, scaling, one-hot encoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from medml.data.task import FeatureSpec
from medml.models.base import MissingData
from medml.models.features import resolve_features, typed_frame

if TYPE_CHECKING:
    import optuna


class LogisticRiskModel(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression on imputed, scaled and one-hot encoded features.

    ``contributions`` decomposes each patient's log-odds exactly into one term per source feature
    (relative to the training mean) plus a bias, so explanations are the model's own arithmetic.
    """

    explanation_card: ClassVar[str] = "exact terms of the logistic model"
    explanation_method = "exact: coefficient x (value - training mean), log-odds scale"
    kind: ClassVar[str] = "logistic"
    description: ClassVar[str] = "logistic regression (median imputation + missing flags, scaling, one-hot; L2)"
    missing_data: ClassVar[MissingData] = MissingData(
        card="the model fills a missing input with the training median and adds a missing-input flag, as in training",
        report="imputed before the logistic regression, with the imputation learned on the training data",
    )
    preprocessing: ClassVar[str] = (
        "Logistic regression: numeric predictors standardised and entered linearly; categorical predictors one-hot "
        "encoded."
    )
    #: one hyperparameter: a third of a search budget is plenty
    search_budget_share: ClassVar[float] = 1 / 3

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        C: float = 1.0,
        max_iter: int = 2000,
        min_category_frequency: int = 10,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.C = C
        self.max_iter = max_iter
        self.min_category_frequency = min_category_frequency
        self.seed = seed

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}

    def fit_trial(self, X: pd.DataFrame, y: npt.ArrayLike, X_val: pd.DataFrame, y_val: npt.ArrayLike) -> dict[str, Any]:
        """A plain fit: nothing is learned from ``X_val``."""
        self.fit(X, y)
        return {}

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return typed_frame(X, self.features_)

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike) -> LogisticRiskModel:
        self.features_ = resolve_features(X, self.features)
        num = [f.name for f in self.features_ if f.kind == "numeric"]
        cat = [f.name for f in self.features_ if f.kind == "categorical"]
        frame = self._frame(X)
        transformers = self._numeric_transformers(frame, num)
        if cat:
            transformers.append(
                (
                    "cat",
                    Pipeline(
                        [
                            (
                                "impute",
                                SimpleImputer(strategy="constant", fill_value="(missing)", keep_empty_features=True),
                            ),
                            (
                                "onehot",
                                OneHotEncoder(
                                    handle_unknown="infrequent_if_exist",
                                    min_frequency=self.min_category_frequency,
                                    sparse_output=False,
                                ),
                            ),
                        ]
                    ),
                    cat,
                )
            )
        self.pipeline_ = Pipeline(
            [
                ("prep", ColumnTransformer(transformers, verbose_feature_names_out=True)),
                ("clf", LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)),
            ]
        )
        self.pipeline_.fit(frame, np.asarray(y))
        self.classes_ = self.pipeline_.classes_
        Z = self.pipeline_[:-1].transform(frame)
        self.train_mean_ = np.asarray(Z.mean(axis=0)).ravel()
        self.column_owner_ = self._owners()
        return self

    def _numeric_transformers(self, frame: pd.DataFrame, num: list[str]) -> list[tuple[str, Any, list[str]]]:
        """Numeric inputs entered linearly: median imputation with missing flags, then scaling (a subclass may
        enter them otherwise; every transformed column's name starts with its source feature's)."""
        if not num:
            return []
        steps = [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
        return [("num", Pipeline(steps), num)]

    def _owners(self) -> list[str]:
        """The source feature behind each transformed column (one-hot levels and missing flags included)."""
        names = [str(n) for n in self.pipeline_[:-1].get_feature_names_out()]
        features = sorted((f.name for f in self.features_), key=len, reverse=True)
        owners = []
        for n in names:
            body = n.split("__", 1)[1]
            if body.startswith("missingindicator_"):
                body = body[len("missingindicator_") :]
            owners.append(next(f for f in features if body == f or body.startswith(f + "_")))
        return owners

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        return np.asarray(self.pipeline_.decision_function(self._frame(X)), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        return np.asarray(self.pipeline_.predict_proba(self._frame(X)), dtype=float)

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int_]:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature log-odds contributions and a ``bias`` column; each row sums to ``decision_function``."""
        check_is_fitted(self)
        return self._contributions(self.pipeline_[:-1].transform(self._frame(X)))

    def predict_proba_and_contributions(self, X: pd.DataFrame) -> tuple[npt.NDArray[np.float64], pd.DataFrame]:
        """``predict_proba`` and ``contributions`` of the same rows, with ``X`` converted and transformed once (a
        served score and its reasons): the same numbers as the two calls (a Pipeline predicts on its transform)."""
        check_is_fitted(self)
        Zt = self.pipeline_[:-1].transform(self._frame(X))
        return np.asarray(self.pipeline_[-1].predict_proba(Zt), dtype=float), self._contributions(Zt)

    def _contributions(self, Zt: Any) -> pd.DataFrame:
        Z = np.asarray(Zt, dtype=float)
        clf = self.pipeline_[-1]
        w = clf.coef_.ravel()
        per_column = (Z - self.train_mean_) * w
        names = [f.name for f in self.features_]
        owner_of = np.zeros((len(self.column_owner_), len(names)))
        owner_of[np.arange(len(self.column_owner_)), [names.index(o) for o in self.column_owner_]] = 1.0
        out = pd.DataFrame(per_column @ owner_of, columns=names)
        out["bias"] = float(clf.intercept_[0] + self.train_mean_ @ w)
        return out
