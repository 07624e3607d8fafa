"""A random survival forest (scikit-survival's ``RandomSurvivalForest``) as a medml survival model kind.

Ishwaran et al. (2008): trees split on the log-rank statistic, each leaf holds the Nelson-Aalen cumulative hazard
and the Kaplan-Meier curve of its patients, and the forest averages the leaves a patient falls in. Unlike the two
proportional-hazards kinds in :mod:`medml.models.survival`, the curves of two patients may cross.

Kept affordable on 2 cores: 100 trees, leaves of at least 15 patients (scikit-survival's user guide) and one thread
by default. scikit-survival stores a curve over every distinct follow-up time in every node of every tree, so on
SUPPORT2 (1,614 distinct times in 6,800 training patients) such a forest took 0.55-1.1 GB pickled; its
``low_memory`` mode keeps only a risk score and cannot give curves. Instead the follow-up times are rounded up onto a
grid of at most ``max_times`` event-time quantiles that always holds the model's horizons (so the risk by each
horizon counts exactly the events up to it): on SUPPORT2 that is about 45 MB and 11-18 s a fit, and the rounding moved
the 5-fold C-index by 0.001 or less on GBSG2 and WHAS500. With fewer distinct times than ``max_times`` nothing is
rounded and the forest is scikit-survival's own (``tests/models/test_survival_rsf.py``).

Explanations are occlusion against a reference patient: a feature's contribution is the change in the risk by the
first horizon when that feature alone is set to the training median (numeric) or most frequent level
(categorical). It is exact for what it says (no sampling), costs one forest prediction per feature, and it is
not additive: the contributions need not sum to the risk minus the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

from medml.data.task import FeatureSpec
from medml.errors import ConfigError
from medml.models._survival_base import (
    DEFAULT_HORIZONS,
    FloatArray,
    check_fit_target,
    check_model_horizons,
    survival_array,
    time_event,
)
from medml.models.base import MissingData
from medml.models.features import resolve_features, typed_frame

#: rows per pass through the forest when reading survival at a few times
_CHUNK = 20_000


def time_grid(
    time: FloatArray, event: npt.NDArray[np.bool_], max_times: int, horizons: Sequence[float]
) -> FloatArray | None:
    """The grid follow-up times are rounded up to: ``max_times`` quantiles of the event times, the horizons and the
    longest follow-up; None when the data have no more than ``max_times`` distinct times (nothing to round)."""
    if np.unique(time).size <= max_times:
        return None
    quantiles = np.quantile(time[event], np.linspace(0.0, 1.0, max_times))
    return np.unique(np.concatenate([quantiles, np.asarray(horizons, dtype=float), [time.max()]]))


class RandomSurvivalForestModel(BaseEstimator):
    """scikit-survival's random survival forest on medml's features, with curves, risks at horizons and occlusion
    explanations (see the module docstring)."""

    kind: ClassVar[str] = "rsf"
    description: ClassVar[str] = "random survival forest (scikit-survival; log-rank splits, Nelson-Aalen leaves)"
    missing_data: ClassVar[MissingData] = MissingData(
        card="the model sends a missing input down the branch learned for missing values in training (the larger "
        "branch for an input never missing in training); no value is filled in",
        report="handled natively by the forest's trees (each split sends missing values to the side learned in "
        "training); categorical ones kept as their own level; no imputation",
    )
    preprocessing: ClassVar[str] = (
        "Random survival forest: numeric predictors used unscaled, categorical predictors one-hot encoded (rare "
        "levels pooled); follow-up times rounded up onto a grid of event-time quantiles and the horizons to keep "
        "the forest small; interactions, non-linear effects and crossing curves are learned."
    )
    explanation_method: ClassVar[str] = (
        "occlusion: the change in the risk by the first horizon when one input alone is set to the training "
        "median (numeric) or most frequent level (categorical); exact, not additive"
    )
    #: the scale of :meth:`contributions`, as the example patients' sentences name it
    contribution_scale: ClassVar[str] = "absolute risk by the first horizon"
    #: rows a global importance averages over: occlusion predicts once per feature per row
    importance_rows: ClassVar[int] = 1000

    def __init__(
        self,
        features: Sequence[FeatureSpec] | None = None,
        *,
        horizons: Sequence[float] = DEFAULT_HORIZONS,
        n_estimators: int = 100,
        min_samples_leaf: int = 15,
        max_features: float | str = "sqrt",
        max_times: int = 64,
        min_category_frequency: int = 10,
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.horizons = horizons
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_times = max_times
        self.min_category_frequency = min_category_frequency
        self.n_jobs = n_jobs
        self.seed = seed

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return typed_frame(X, self.features_)

    def _prep(self) -> ColumnTransformer:
        num = [f.name for f in self.features_ if f.kind == "numeric"]
        cat = [f.name for f in self.features_ if f.kind == "categorical"]
        transformers: list[tuple[str, Any, list[str]]] = []
        if num:
            transformers.append(("num", "passthrough", num))  # missing values stay missing: the trees route them
        if cat:
            fill = SimpleImputer(strategy="constant", fill_value="(missing)", keep_empty_features=True)
            onehot = OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=self.min_category_frequency, sparse_output=False
            )
            transformers.append(("cat", Pipeline([("impute", fill), ("onehot", onehot)]), cat))
        return ColumnTransformer(transformers, verbose_feature_names_out=True)

    def prepared(self, X: pd.DataFrame) -> FloatArray:
        """The matrix the forest sees: numeric columns as they are, categorical ones one-hot."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.prep_.transform(self._frame(X)), dtype=float)

    def fit(self, X: pd.DataFrame, y: Any) -> RandomSurvivalForestModel:
        """Validate and fit; ``y`` is a SurvivalTarget or a structured (event, time) array."""
        from sksurv.ensemble import RandomSurvivalForest

        time, event = time_event(y)
        check_fit_target(len(X), time, event)
        self.horizons_ = check_model_horizons(self.horizons)
        if isinstance(self.max_times, bool) or not isinstance(self.max_times, int) or self.max_times < 2:
            raise ConfigError(f"max_times must be a whole number of 2 or more, got {self.max_times!r}", "e.g. 64")
        self.features_ = resolve_features(X, self.features)
        self.prep_ = self._prep()
        Z = np.asarray(self.prep_.fit_transform(self._frame(X)), dtype=float)
        self.time_grid_ = time_grid(time, event, self.max_times, self.horizons_)
        fit_time = time if self.time_grid_ is None else self.time_grid_[np.searchsorted(self.time_grid_, time)]
        self.estimator_ = RandomSurvivalForest(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        ).fit(Z, survival_array(fit_time, event))
        self.event_times_ = np.asarray(self.estimator_.unique_times_, dtype=float)
        self.reference_ = self._reference(X)
        return self

    def _reference(self, X: pd.DataFrame) -> pd.DataFrame:
        """The occlusion reference: one row of training medians (numeric) and most frequent levels (categorical)."""
        frame = self._frame(X)
        row: dict[str, Any] = {}
        for f in self.features_:
            col = frame[f.name]
            if f.kind == "numeric":
                row[f.name] = float(col.median()) if col.notna().any() else np.nan
            else:
                counts = col.value_counts()
                row[f.name] = counts.index[0] if len(counts) else np.nan
        return pd.DataFrame([row])

    def predict(self, X: pd.DataFrame) -> FloatArray:
        """scikit-survival's risk score: the ensemble cumulative hazard summed over the event times (higher means
        an earlier event)."""
        return np.asarray(self.estimator_.predict(self.prepared(X)), dtype=float)

    def predict_survival(self, X: pd.DataFrame, times: npt.ArrayLike | None = None) -> FloatArray:
        """S(t | x) for each row at ``times`` (default: the forest's time axis, ``event_times_``), patients x
        times; 1 before the first time, the last value after the longest follow-up."""
        Z = self.prepared(X)
        if times is None:
            return np.asarray(self.estimator_.predict_survival_function(Z, return_array=True), dtype=float)
        idx = np.searchsorted(self.event_times_, np.asarray(times, dtype=float), side="right") - 1
        surv = self._survival_at(Z, np.clip(idx, 0, None))
        return np.where(idx >= 0, surv, 1.0)

    def _survival_at(self, Z: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
        """The forest's survival at the time-axis positions ``idx``, read from the leaves: the same sum over trees,
        in the same order, as scikit-survival's ``predict_survival_function``, but only at the times asked for."""
        out = np.zeros((Z.shape[0], idx.size))
        for start in range(0, Z.shape[0], _CHUNK):  # bounds the leaf-index matrix: rows x trees
            leaves = self.estimator_.apply(Z[start : start + _CHUNK])
            block = out[start : start + _CHUNK]
            for k, tree in enumerate(self.estimator_.estimators_):
                block += tree.tree_.value[leaves[:, k][:, None], idx[None, :], 1]
        return out / len(self.estimator_.estimators_)

    def predict_risk(self, X: pd.DataFrame, horizons: Sequence[float] | None = None) -> FloatArray:
        """The risk of the event by each horizon, 1 - S(horizon | x), patients x horizons."""
        check_is_fitted(self, "estimator_")
        hs = self.horizons_ if horizons is None else check_model_horizons(horizons)
        return 1.0 - self.predict_survival(X, hs)

    def predict_proba(self, X: pd.DataFrame) -> FloatArray:
        """The risk by the first horizon as ``[no event, event]`` columns (what a binary model's reader expects)."""
        check_is_fitted(self, "estimator_")
        risk = self.predict_risk(X, self.horizons_[:1])[:, 0]
        return np.column_stack([1.0 - risk, risk])

    def decision_function(self, X: pd.DataFrame) -> FloatArray:
        """The forest's risk score (as :meth:`predict`)."""
        return self.predict(X)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Occlusion contributions to the risk by the first horizon, one column per feature, and a ``bias`` column
        (the reference patient's risk): a feature's value is risk(x) - risk(x with that feature at the reference).
        All rows and their occluded copies go through the forest in one pass."""
        check_is_fitted(self, "estimator_")
        names = [f.name for f in self.features_]
        rows = self._frame(X).reset_index(drop=True)
        n = len(rows)
        copies = [rows]
        for name in names:
            occluded = rows.copy()
            occluded[name] = self.reference_[name].iloc[0]
            copies.append(occluded)
        copies.append(self.reference_[names])
        stacked = pd.concat(copies, ignore_index=True)
        risk = self._risk_first(stacked)
        base = risk[:n]
        per_feature = base[:, None] - risk[n : n * (len(names) + 1)].reshape(len(names), n).T
        out = pd.DataFrame(per_feature, columns=names, index=X.index)
        out["bias"] = float(risk[-1])
        return out

    def _risk_first(self, frame: pd.DataFrame) -> FloatArray:
        """The risk by the first horizon for rows already in :meth:`_frame`'s form."""
        Z = np.asarray(self.prep_.transform(frame), dtype=float)
        idx = np.searchsorted(self.event_times_, [self.horizons_[0]], side="right") - 1
        if idx[0] < 0:
            return np.zeros(len(frame))
        return 1.0 - self._survival_at(Z, idx)[:, 0]
