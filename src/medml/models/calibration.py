"""Probability calibration chosen on the calibration split: none, Platt (sigmoid) or isotonic."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.validation import check_is_fitted

from medml.errors import ConfigError, DataError

Method = Literal["auto", "none", "sigmoid", "isotonic"]
CANDIDATES: tuple[str, ...] = ("none", "sigmoid", "isotonic")
_EPS = 1e-6


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_map(method: str, p: npt.NDArray[np.float64], y: npt.NDArray[np.int_]) -> Any:
    if method == "none":
        return None
    if method == "sigmoid":
        platt = LogisticRegression(C=np.inf).fit(_logit(p)[:, None], y)
        if platt.coef_[0, 0] < 0:  # scores that rank backwards (a model of noise): a map must not reverse them
            platt.coef_[:] = 0.0
            platt.intercept_[:] = _logit(np.array([y.mean()]))[0]
        return platt
    return IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip").fit(p, y)


def _apply_map(mapper: Any, p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if mapper is None:
        return p
    if isinstance(mapper, LogisticRegression):
        return np.asarray(mapper.predict_proba(_logit(p)[:, None])[:, 1], dtype=float)
    return np.clip(np.asarray(mapper.predict(p), dtype=float), _EPS, 1 - _EPS)


def choose_method(
    p: npt.NDArray[np.float64],
    y: npt.NDArray[np.int_],
    groups: npt.ArrayLike | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
) -> tuple[str, dict[str, float]]:
    """Pick the calibration map with the lowest cross-validated log loss within the calibration split.

    Folds are grouped by patient. Returns the method and the mean out-of-fold log loss of each candidate.
    """
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    n_min = int(min(np.bincount(y, minlength=2)))
    k = max(2, min(folds, n_min, len(np.unique(g))))
    losses = {m: 0.0 for m in CANDIDATES}
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in cv.split(p[:, None], y, g):
        for m in CANDIDATES:
            q = _apply_map(_fit_map(m, p[tr], y[tr]), p[te])
            losses[m] += log_loss(y[te], q, labels=[0, 1]) * len(te) / len(y)
    return min(CANDIDATES, key=lambda m: (round(losses[m], 6), CANDIDATES.index(m))), losses


class CalibratedRiskModel(ClassifierMixin, BaseEstimator):
    """A fitted risk model plus a calibration map learned on data it was not trained on.

    ``fit`` learns only the map (the wrapped ``estimator`` stays frozen). With ``method="auto"`` the map is
    chosen by patient-grouped cross-validated log loss on the calibration data (``method_``, ``losses_``).
    """

    def __init__(self, estimator: Any, method: Method = "auto", seed: int = 0) -> None:
        self.estimator = estimator
        self.method = method
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike, groups: npt.ArrayLike | None = None) -> CalibratedRiskModel:
        if self.method not in ("auto", *CANDIDATES):
            raise ConfigError(f"unknown calibration method '{self.method}'", "use auto, none, sigmoid or isotonic")
        return self.fit_scores(self.estimator.predict_proba(X)[:, 1], y, groups)

    def fit_scores(
        self, p: npt.NDArray[np.float64], y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> CalibratedRiskModel:
        """Learn the map from scores ``p`` that the wrapped model's kind gave to patients it was not fitted on
        (cross-fitted, out-of-fold scores when the wrapped model was fitted on all the data)."""
        if self.method not in ("auto", *CANDIDATES):
            raise ConfigError(f"unknown calibration method '{self.method}'", "use auto, none, sigmoid or isotonic")
        yv = np.asarray(y).astype(int)
        if len(np.unique(yv)) < 2:
            raise DataError("the calibration split has only one outcome class", "use a larger or stratified split")
        p = np.asarray(p, dtype=float)
        if self.method == "auto":
            self.method_, self.losses_ = choose_method(p, yv, groups, seed=self.seed)
        else:
            self.method_, self.losses_ = self.method, {}
        self.map_ = _fit_map(self.method_, p, yv)
        self.classes_ = np.array([0, 1])
        self.features_ = self.estimator.features_
        return self

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        q = _apply_map(self.map_, self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1 - q, q])

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int_]:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The underlying model's log-odds, before calibration (what ``contributions`` add up to)."""
        return np.asarray(self.estimator.decision_function(X), dtype=float)

    @property
    def explanation_method(self) -> str:
        return str(self.estimator.explanation_method)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """The underlying model's contributions; calibration is monotone, so directions are preserved."""
        return self.estimator.contributions(X)

    def predict_proba_and_contributions(self, X: pd.DataFrame) -> tuple[npt.NDArray[np.float64], pd.DataFrame]:
        """``predict_proba`` and ``contributions`` with ``X`` converted once, when the wrapped model can (else the
        two calls): the same numbers either way."""
        check_is_fitted(self)
        both = getattr(self.estimator, "predict_proba_and_contributions", None)
        if both is None:
            p, contrib = self.estimator.predict_proba(X), self.estimator.contributions(X)
        else:
            p, contrib = both(X)
        q = _apply_map(self.map_, p[:, 1])
        return np.column_stack([1 - q, q]), contrib
