"""The plain-data objects evaluation produces: values with their interval, and the EvaluationReport.

Reports are data (JSON round-trip); rendering them as HTML lives in ``medml.report``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from medml.errors import DataError


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
      "gaps": {"auroc": Estimate, ...}, "gap_level": float, "flagged": ["auroc", ...]}`` where a gap is the
      largest minus the smallest group value with its bootstrap interval (at ``gap_level``, Bonferroni over
      the pairs of groups), flagged when above ``medml.evaluate.GAP_TOLERANCE`` and its interval excludes 0
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: Estimates as ``{"value", "low", "high"}``, NaN as None, numpy as Python."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationReport:
        """Inverse of ``to_dict``: every ``{"value", "low", "high"}`` dict becomes an :class:`Estimate`."""
        names = {f.name for f in fields(cls)}
        required = ("model", "dataset", "split", "population", "n", "n_events", "prevalence")
        missing = [k for k in required if k not in d]
        if missing:
            raise DataError(
                f"evaluation report is missing {', '.join(missing)}",
                "load a file written by EvaluationReport.to_json",
            )
        kwargs = {k: _restore(v) for k, v in d.items() if k in names}
        kwargs["prevalence"] = math.nan if d["prevalence"] is None else float(d["prevalence"])
        return cls(**kwargs)

    def to_json(self, indent: int | None = None) -> str:
        """The report as strict JSON text (no NaN or Infinity tokens)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """Read a report written by ``to_json``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"evaluation report is not valid JSON ({err})", "pass the text of to_json") from err
        if not isinstance(data, dict):
            raise DataError("evaluation report JSON must be an object", "pass the text of to_json")
        return cls.from_dict(data)


_ESTIMATE_KEYS = frozenset(("value", "low", "high"))


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-ready Python: Estimates to dicts, numpy to Python, NaN and infinities to None."""
    if isinstance(obj, Estimate):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _restore(obj: Any) -> Any:
    """Inverse of ``_plain`` up to NaN: dicts shaped like an Estimate become one."""
    if isinstance(obj, dict):
        if set(obj) == _ESTIMATE_KEYS:
            return Estimate.from_dict(obj)
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj
