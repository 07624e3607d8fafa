"""The plain-data objects evaluation produces: values with their interval, and the EvaluationReport.

Reports are data (JSON round-trip); rendering them as HTML lives in ``medml.report``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """A value with its (by default bootstrap 95%) interval; ``low``/``high`` are NaN when not computed."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None or math.isnan(v) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        def f(v: Any) -> float:
            return math.nan if v is None else float(v)

        return cls(f(d.get("value")), f(d.get("low")), f(d.get("high")))

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.value:.3f}"
        return f"{self.value:.3f} ({self.low:.3f}-{self.high:.3f})"


@dataclass
class EvaluationReport:
    """Everything measured on one set of predictions. All fields are JSON-serialisable via ``to_dict``.

    In memory, interval-carrying values are :class:`Estimate`; in ``to_dict`` output they are
    ``{"value", "low", "high"}`` dicts. Sections:

    - ``discrimination``: ``{"auroc": Estimate, "auprc": Estimate}``
    - ``calibration``: ``{"brier", "scaled_brier", "intercept", "slope": Estimate, "ici": float, "ece": float,
      "curve": {"predicted": [...], "observed": [...], "count": [...]}`` (bins of predicted risk),
      ``"smooth": {"predicted": [...], "observed": [...]}}`` (loess-smoothed calibration curve)
    - ``thresholds``: one dict per operating point ``{"threshold", "sensitivity", "specificity", "ppv", "npv",
      "flagged_fraction", "tp", "fp", "tn", "fn"}``
    - ``roc_curve``: ``{"fpr": [...], "tpr": [...]}``; ``pr_curve``: ``{"recall": [...], "precision": [...]}``
      (each at most a few hundred points)
    - ``decision_curve``: ``{"threshold": [...], "model": [...], "treat_all": [...], "treat_none": [...]}``
      (net benefit)
    - ``subgroups``: one dict per sensitive attribute ``{"attribute": "sex", "reference_threshold": t,
      "groups": [{"group", "n", "n_events", "prevalence", "auroc": Estimate|None, "auprc", "brier",
      "calibration_slope": Estimate|None, "sensitivity", "specificity", "ppv": float, "note": str}],
      "gaps": {"auroc": Estimate, ...}, "flagged": ["auroc", ...]}`` where a gap is the largest minus the
      smallest group value with its bootstrap interval, flagged when large and its interval excludes 0
    - ``bootstrap``: ``{"n": int, "level": 0.95, "seed": int, "method": "percentile"}``
    """

    model: str
    dataset: str
    split: str
    population: str
    n: int
    n_events: int
    prevalence: float
    discrimination: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    roc_curve: dict[str, list[float]] = field(default_factory=dict)
    pr_curve: dict[str, list[float]] = field(default_factory=dict)
    decision_curve: dict[str, list[float]] = field(default_factory=dict)
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=dict)
