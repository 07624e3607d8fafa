"""The plain-data objects evaluation produces: values with their interval, and the EvaluationReport.

Reports are data (JSON round-trip); rendering them as HTML lives in ``medml.report``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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


@dataclass(frozen=True)
class CalibrationCurve:
    """Bins of predicted risk (deciles by default): mean predicted risk, observed rate and patients in each."""

    predicted: tuple[float, ...] = ()
    observed: tuple[float, ...] = ()
    count: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.predicted) == len(self.observed) == len(self.count):
            raise DataError(
                f"calibration curve has {len(self.predicted)} predicted, {len(self.observed)} observed and "
                f"{len(self.count)} counts",
                "give one of each per bin",
            )

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"predicted": list(self.predicted), "observed": list(self.observed), "count": list(self.count)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationCurve:
        return cls(
            tuple(float(v) for v in d.get("predicted") or ()),
            tuple(float(v) for v in d.get("observed") or ()),
            tuple(int(v) for v in d.get("count") or ()),
        )


_HEADLINE_ESTIMATES = ("auroc", "auprc", "brier", "calibration_slope", "calibration_intercept")


@dataclass(frozen=True)
class Headline:
    """What every view of a model shows of its evaluation (the CDS card, the model page, ``medml predict``): on
    whom it was measured and how well it did, each number an :class:`Estimate` with its interval."""

    split: str
    population: str
    n: int
    n_events: int | None
    auroc: Estimate
    auprc: Estimate
    brier: Estimate
    calibration_slope: Estimate
    calibration_intercept: Estimate
    ici: float = math.nan
    curve: CalibrationCurve = field(default_factory=CalibrationCurve)

    @classmethod
    def of(cls, report: EvaluationReport) -> Headline:
        """The headline of a report: its estimates as they are, nothing recomputed."""
        d, c = report.discrimination, report.calibration
        return cls(
            split=report.split,
            population=report.population,
            n=int(report.n),
            n_events=int(report.n_events),
            auroc=_estimate(d.get("auroc")),
            auprc=_estimate(d.get("auprc")),
            brier=_estimate(c.get("brier")),
            calibration_slope=_estimate(c.get("slope")),
            calibration_intercept=_estimate(c.get("intercept")),
            ici=_number(c.get("ici")),
            curve=CalibrationCurve.from_dict(c.get("curve") or {}),
        )

    @property
    def event_rate(self) -> float | None:
        """Events per evaluated patient, when both are known."""
        return self.n_events / self.n if self.n_events is not None and self.n > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: Estimates as ``{"value", "low", "high"}`` (NaN as None), the curve as three lists."""
        out: dict[str, Any] = {"split": self.split, "population": self.population, "n": self.n}
        out["n_events"] = self.n_events
        out |= {k: getattr(self, k).to_dict() for k in _HEADLINE_ESTIMATES}
        out["ici"] = None if math.isnan(self.ici) else self.ici
        out["curve"] = self.curve.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Headline:
        """Read :meth:`to_dict`'s output; anything else is a DataError naming what does not fit."""
        try:
            n_events = d["n_events"]
            return cls(
                split=str(d["split"]),
                population=str(d["population"]),
                n=_count(d["n"]),
                n_events=None if n_events is None else _count(n_events),
                **{k: _stored_estimate(d[k]) for k in _HEADLINE_ESTIMATES},
                ici=_number(d.get("ici")),
                curve=CalibrationCurve.from_dict(d.get("curve") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"stored headline metrics are not valid ({type(e).__name__}: {e})") from None

    @classmethod
    def from_flat(cls, metrics: Mapping[str, Any], evaluation: Mapping[str, Any], population: str = "") -> Headline:
        """The headline of a bundle stored before headlines were typed: ``metrics`` as :func:`headline` wrote them
        (an image model's AUROC may be its macro AUROC there), the rest from the stored report.

        The intervals of the report are kept; its numbers are used where ``metrics`` has none.
        """
        d = _mapping(evaluation.get("discrimination"))
        c = _mapping(evaluation.get("calibration"))

        def pick(key: str, section: Mapping[str, Any], name: str) -> Estimate:
            if key == "auroc" and isinstance(metrics.get("auroc"), Mapping):
                return _estimate(metrics["auroc"])
            if key == "auroc" and metrics.get("auroc") is not None:
                return Estimate.from_dict(
                    {"value": metrics["auroc"], "low": metrics.get("auroc_low"), "high": metrics.get("auroc_high")}
                )
            stored = section.get(name)
            return _estimate(stored) if stored is not None else _estimate(metrics.get(key))

        n = metrics.get("n", evaluation.get("n"))
        events = metrics["n_events"] if "n_events" in metrics else evaluation.get("n_events")
        try:
            return cls(
                split=str(evaluation.get("split") or "test"),
                population=population or str(evaluation.get("population") or ""),
                n=_count(n),
                n_events=None if events is None else _count(events),
                auroc=pick("auroc", d, "auroc"),
                auprc=pick("auprc", d, "auprc"),
                brier=pick("brier", c, "brier"),
                calibration_slope=pick("calibration_slope", c, "slope"),
                calibration_intercept=pick("calibration_intercept", c, "intercept"),
                ici=_number(c.get("ici", metrics.get("ici"))),
                curve=CalibrationCurve.from_dict(_mapping(c.get("curve"))),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"stored metrics are not valid ({type(e).__name__}: {e})") from None


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _number(v: Any) -> float:
    if isinstance(v, Estimate):
        return v.value
    return math.nan if v is None else float(v)


def _count(v: Any) -> int:
    if isinstance(v, bool) or float(v) != int(v):
        raise ValueError(f"{v!r} is not a count")
    return int(v)


def _estimate(v: Any) -> Estimate:
    """An Estimate from an Estimate, its dict, a bare number or nothing (NaN)."""
    if isinstance(v, Estimate):
        return v
    if isinstance(v, Mapping):
        return Estimate.from_dict(dict(v))
    return Estimate(_number(v))


def _stored_estimate(v: Any) -> Estimate:
    if not isinstance(v, Mapping) or not set(v) <= _ESTIMATE_KEYS:
        raise ValueError(f"{v!r} is not a {{value, low, high}} estimate")
    return Estimate.from_dict(dict(v))


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
