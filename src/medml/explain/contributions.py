"""Attributions in clinical words: global importance and each patient's top contributing factors.

Works on any model that follows :class:`ContributionModel`; it knows no concrete model class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from medml.data.task import FeatureSpec


class ContributionModel(Protocol):
    """A fitted model that splits its log-odds into one term per feature plus a ``bias`` column."""

    features_: tuple[FeatureSpec, ...]
    explanation_method: str

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame: ...

    def decision_function(self, X: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class Factor:
    """One feature's push on one patient's risk, on the log-odds scale."""

    feature: str
    label: str
    value: str
    unit: str
    contribution: float

    @property
    def direction(self) -> str:
        return "raises risk" if self.contribution > 0 else "lowers risk"

    def sentence(self) -> str:
        unit = f" {self.unit}" if self.unit and self.value != "missing" else ""
        return f"{self.label} {self.value}{unit}: {self.direction} ({self.contribution:+.2f} log-odds)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "direction": self.direction, "text": self.sentence()}


def _display(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "missing"
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)


def global_importance(
    model: ContributionModel, X: pd.DataFrame, *, max_rows: int = 5000, seed: int = 0
) -> list[dict[str, Any]]:
    """Mean absolute contribution of each feature (log-odds), largest first, on up to ``max_rows`` rows."""
    if len(X) > max_rows:
        X = X.sample(max_rows, random_state=seed)
    contrib = model.contributions(X).drop(columns="bias")
    imp = contrib.abs().mean(axis=0)
    specs = {f.name: f for f in model.features_}
    rows = [
        {
            "feature": str(name),
            "label": specs[str(name)].clinical_name,
            "unit": specs[str(name)].unit,
            "importance": float(value),
        }
        for name, value in imp.items()
    ]
    return sorted(rows, key=lambda r: -r["importance"])


def top_factors(
    model: ContributionModel, X: pd.DataFrame, *, k: int = 5, contributions: pd.DataFrame | None = None
) -> list[list[Factor]]:
    """For each row of ``X``, the ``k`` features with the largest absolute contribution, in clinical words
    (``contributions``: the model's for ``X``, when the caller has them already)."""
    contrib = (model.contributions(X) if contributions is None else contributions).drop(columns="bias")
    specs = {f.name: f for f in model.features_}
    values = contrib.to_numpy()
    out = []
    for i in range(len(X)):
        order = np.argsort(-np.abs(values[i]))[:k]
        factors = []
        for j in order:
            name = str(contrib.columns[j])
            if values[i, j] == 0:
                continue
            spec = specs[name]
            # the cell by column then position: X.iloc[i] would build the whole row (hundreds of columns) first
            factors.append(Factor(name, spec.clinical_name, _display(X[name].iat[i]), spec.unit, float(values[i, j])))
        out.append(factors)
    return out
