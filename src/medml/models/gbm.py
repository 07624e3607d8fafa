"""LightGBM gradient boosting with native handling of missing values and categories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from medml.data.task import FeatureSpec
from medml.models.base import MissingData
from medml.models.features import categorical_frame, numeric_frame, require_columns, resolve_features

if TYPE_CHECKING:
    import optuna


class LightGBMRiskModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (LightGBM). Categories are fixed at fit time so serving sees the same codes.

    Deterministic under ``seed`` (LightGBM's deterministic mode, row-wise histograms, fixed threads).
    ``contributions`` is LightGBM's exact TreeSHAP (``pred_contrib``) on the log-odds scale.
    """

    explanation_card: ClassVar[str] = "TreeSHAP contributions"
    explanation_method = "TreeSHAP (LightGBM pred_contrib), log-odds scale"
    kind: ClassVar[str] = "lgbm"
    description: ClassVar[str] = "LightGBM gradient-boosted trees (native missing values and categories)"
    missing_data: ClassVar[MissingData] = MissingData(
        card="the model routes a missing input down the branch learned for missing values in training; "
        "no value is filled in",
        report="handled natively by LightGBM (each split sends missing values to the side learned in training); "
        "no imputation",
    )
    preprocessing: ClassVar[str] = (
        "Gradient-boosted trees: numeric predictors used unscaled (trees are invariant to monotone transforms); "
        "categorical predictors handled natively."
    )
    search_budget_share: ClassVar[float] = 1.0
    #: the most trees a search trial grows; early stopping on the trial's validation part picks the number
    SEARCH_MAX_TREES: ClassVar[int] = 2000

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        n_jobs: int = 2,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.seed = seed

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        }

    def fit_trial(self, X: pd.DataFrame, y: npt.ArrayLike, X_val: pd.DataFrame, y_val: npt.ArrayLike) -> dict[str, Any]:
        """Grow up to ``SEARCH_MAX_TREES`` trees, stopping early on ``X_val``: the number of trees is learned."""
        self.set_params(n_estimators=self.SEARCH_MAX_TREES)
        self.fit(X, y, eval_set=(X_val, y_val))
        return {"n_estimators": max(self.best_iteration_, 10)}

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

    def _booster_params(self) -> dict[str, Any]:
        return dict(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            n_jobs=self.n_jobs,
            random_state=self.seed,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )

    def fit(
        self,
        X: pd.DataFrame,
        y: npt.ArrayLike,
        eval_set: tuple[pd.DataFrame, npt.ArrayLike] | None = None,
        early_stopping_rounds: int = 50,
    ) -> LightGBMRiskModel:
        """Fit; with ``eval_set``, stop when its log loss has not improved for ``early_stopping_rounds``."""
        self.features_ = resolve_features(X, self.features)
        cats = categorical_frame(X, [f for f in self.features_ if f.kind == "categorical"])
        self.categories_ = {c: sorted(cats[c].dropna().unique().tolist()) for c in cats.columns}
        self.model_ = lgb.LGBMClassifier(**self._booster_params())
        kwargs: dict[str, Any] = {}
        if eval_set is not None:
            kwargs["eval_X"] = (self._frame(eval_set[0]),)
            kwargs["eval_y"] = (np.asarray(eval_set[1]),)
            kwargs["callbacks"] = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
        self.model_.fit(self._frame(X), np.asarray(y), **kwargs)
        self.best_iteration_ = int(self.model_.best_iteration_ or self.n_estimators)
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        return np.asarray(self.model_.predict(self._frame(X), raw_score=True), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        return np.asarray(self.model_.predict_proba(self._frame(X)), dtype=float)

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int_]:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions per feature and a ``bias`` column; each row sums to ``decision_function``."""
        check_is_fitted(self)
        return self._contributions(self._frame(X))

    def predict_proba_and_contributions(self, X: pd.DataFrame) -> tuple[npt.NDArray[np.float64], pd.DataFrame]:
        """``predict_proba`` and ``contributions`` of the same rows, with ``X`` converted once (a served score and
        its reasons): the same numbers as the two calls.

        The rows go to the booster as the float matrix LightGBM itself would build from ``_frame`` (``_matrix``), on
        one thread: for the one-row request of a CDS hook, pandas' conversions cost ten times the trees."""
        check_is_fitted(self)
        matrix = self._matrix(X)
        booster = self.model_.booster_
        threads = 1 if len(matrix) < 1000 else self.n_jobs
        p = np.asarray(booster.predict(matrix, num_threads=threads), dtype=float)
        contrib = np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=threads))
        names = [*(f.name for f in self.features_), "bias"]
        return np.column_stack([1.0 - p, p]), pd.DataFrame(contrib, columns=names, index=range(len(matrix)))

    def _matrix(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """``X`` as the float64 matrix LightGBM builds from ``_frame(X)`` before it predicts: numeric features as
        they are, a category as its position in the categories seen at fit time (LightGBM's codes for the pandas
        categories it stored), missing or unseen as NaN. Checked equal to the pandas route in the tests."""
        require_columns(X, self.features_)
        num = [f for f in self.features_ if f.kind == "numeric"]
        out = np.empty((len(X), len(self.features_)), dtype=np.float64)
        if num:
            where = [j for j, f in enumerate(self.features_) if f.kind == "numeric"]
            out[:, where] = numeric_frame(X, num).to_numpy(dtype=np.float64)
        for j, f in enumerate(self.features_):
            if f.kind == "categorical":
                codes = {c: float(k) for k, c in enumerate(self.categories_[f.name])}
                values = X[f.name].to_numpy(dtype=object)
                out[:, j] = [np.nan if pd.isna(v) else codes.get(str(v), np.nan) for v in values]
        return out

    def _contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        contrib = self.model_.predict(frame, pred_contrib=True)
        return pd.DataFrame(np.asarray(contrib), columns=[*(f.name for f in self.features_), "bias"])
