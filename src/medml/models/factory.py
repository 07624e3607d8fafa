"""Models by name: the one place that maps a user's ``--model`` choice to an estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medml.data.task import FeatureSpec
from medml.errors import ConfigError
from medml.models.gbm import LightGBMRiskModel
from medml.models.logistic import LogisticRiskModel

MODEL_KINDS: dict[str, str] = {
    "logistic": "logistic regression (median imputation + missing flags, scaling, one-hot; L2)",
    "lgbm": "LightGBM gradient-boosted trees (native missing values and categories)",
}


def check_model_kind(kind: str) -> None:
    """Raise the one clear error for a model name medml does not know."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model '{kind}'", f"choose one of: {', '.join(MODEL_KINDS)}")


def make_model(
    kind: str, features: Sequence[FeatureSpec], params: Mapping[str, Any] | None = None, seed: int = 0
) -> LogisticRiskModel | LightGBMRiskModel:
    """A fresh, unfitted model of ``kind`` for ``features`` with ``params``."""
    check_model_kind(kind)
    params = dict(params or {})
    if kind == "logistic":
        return LogisticRiskModel(features=tuple(features), seed=seed, **params)
    return LightGBMRiskModel(features=tuple(features), seed=seed, **params)
