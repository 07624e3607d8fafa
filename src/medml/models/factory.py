"""The one table of tabular model kinds: what ``--model`` names, and everything each kind declares in its class.

Factory, tuning, the CLI's check, the CDS card's missing-data text, the model card and the demo all read this
table; a new kind is a class declaring :class:`~medml.models.base.RiskModel`'s attributes, added here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medml.data.task import FeatureSpec
from medml.errors import ConfigError
from medml.models.base import RiskModel
from medml.models.gbm import LightGBMRiskModel
from medml.models.logistic import LogisticRiskModel
from medml.models.stack import StackedRiskModel

MODEL_KINDS: dict[str, type[RiskModel]] = {
    cls.kind: cls for cls in (LogisticRiskModel, LightGBMRiskModel, StackedRiskModel)
}


def find_model_kind(kind: str) -> type[RiskModel] | None:
    """The class of a model kind, or None for a kind medml does not train (an image network, another tool's)."""
    return MODEL_KINDS.get(kind)


def model_kind(kind: str) -> type[RiskModel]:
    """The class of a model kind, or the one clear error naming the kinds there are."""
    cls = find_model_kind(kind)
    if cls is None:
        raise ConfigError(f"unknown model '{kind}'", f"choose one of: {', '.join(MODEL_KINDS)}")
    return cls


def check_model_kind(kind: str) -> None:
    """Raise the one clear error for a model name medml does not know."""
    model_kind(kind)


def make_model(
    kind: str, features: Sequence[FeatureSpec], params: Mapping[str, Any] | None = None, seed: int = 0
) -> RiskModel:
    """A fresh, unfitted model of ``kind`` for ``features`` with ``params``."""
    return model_kind(kind)(features=tuple(features), seed=seed, **dict(params or {}))
