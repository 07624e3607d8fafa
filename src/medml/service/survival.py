"""A deployed survival model at the bedside: the risk of the event by each of its horizons, on the card and as one
FHIR ``RiskAssessment.prediction`` per horizon.

A survival bundle (``medml survival train``) says in its metadata (``extra["survival"]``) its horizons, their unit
and the outcome, and its model gives ``predict_risk`` (patients x horizons); the service reads nothing else of
survival code. Time runs from the task's time zero: the encounter's start for a model anchored to an encounter
(PhysioNet 2012: ICU admission, as the survival times were counted in training), else the time of the request.
Each prediction's ``whenPeriod`` runs from that time zero to time zero + the horizon, so "30 days" means what it
meant in training; the card says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from medml.errors import ConfigError
from medml.registry import ModelBundle

if TYPE_CHECKING:
    from medml.service.deploy import Deployment
    from medml.service.scoring import Scored

#: the time units a served survival model may count in, in days
UNIT_DAYS: dict[str, float] = {"days": 1.0, "weeks": 7.0}


@dataclass(frozen=True)
class SurvivalServing:
    """What the card and the RiskAssessment say of a survival model, read once from its bundle: horizons and their
    unit, the outcome, the censoring, how its factors are computed, and its held-out evaluation per horizon."""

    horizons: tuple[float, ...]
    time_unit: str
    outcome: str
    censoring: str
    explanation: str
    scale: str
    harrell_c: Mapping[str, Any]
    ibs: Mapping[str, Any]
    per_horizon: tuple[Mapping[str, Any], ...]

    def label(self, horizon: float) -> str:
        return f"{horizon:g} {self.time_unit}"


@dataclass(frozen=True)
class HorizonRisks:
    """One patient's risk of the event by each horizon, counted from ``origin`` (the task's time zero)."""

    model: SurvivalServing
    risks: tuple[float, ...]
    origin: datetime


def is_survival(bundle: ModelBundle) -> bool:
    """Whether a bundle is a survival model (trained by ``medml survival train``)."""
    return isinstance(bundle.metadata.extra.get("survival"), Mapping)


def survival_serving(bundle: ModelBundle) -> SurvivalServing | None:
    """The survival facts of a bundle, or None for a binary model; a ConfigError when they cannot be served."""
    if not is_survival(bundle):
        return None
    md = bundle.metadata
    info = md.extra["survival"]
    horizons = tuple(float(h) for h in info.get("horizons", ()))
    unit = str(info.get("time_unit", "days"))
    if not horizons or unit not in UNIT_DAYS:
        raise ConfigError(
            f"{bundle.ref} counts time in {unit!r} with horizons {list(horizons)}: the service serves horizons in "
            f"{' or '.join(UNIT_DAYS)}",
            "retrain it with horizons in days (medml survival train --horizons 30,90,180)",
        )
    evaluation = md.evaluation or {}
    per = (evaluation.get("calibration") or {}).get("horizons") or []
    by_h = {float(h["horizon"]): h for h in per if isinstance(h, Mapping) and "horizon" in h}
    n, events = md.metrics.get("n"), md.metrics.get("n_events")
    censoring = info.get("censoring") or (
        f"{n - events:,} of {n:,} test patients had no {info.get('outcome', 'event')} during follow-up (censored)"
        if isinstance(n, int) and isinstance(events, int)
        else "censored patients counted by inverse probability of censoring weights"
    )
    model = bundle.model
    return SurvivalServing(
        horizons=horizons,
        time_unit=unit,
        outcome=str(info.get("outcome", "the event")),
        censoring=str(censoring),
        explanation=str(md.extra.get("explanation_method") or getattr(model, "explanation_method", "")),
        scale=str(getattr(model, "contribution_scale", "log hazard ratio")),
        harrell_c=md.metrics.get("harrell_c") or {},
        ibs=md.metrics.get("ibs") or {},
        per_horizon=tuple(by_h.get(h, {}) for h in horizons),
    )


def survival_thresholds(m: SurvivalServing) -> tuple[tuple[float, float], str]:
    """The card's indicator follows the risk by the first horizon: warning at the test set's Kaplan-Meier risk by
    then (above-average risk), critical at three times it (at most 0.5), as binary models use their event rate;
    medml's defaults where that risk is not known or not below 0.3. (The headline's event rate counts events over
    the whole follow-up, not by the first horizon.)"""
    observed = m.per_horizon[0].get("observed") if m.per_horizon else None
    if not isinstance(observed, int | float) or not 0 < observed < 0.3:
        return (0.15, 0.40), "medml's defaults: the model's evaluation has no usable risk by its first horizon"
    return (round(observed, 2), round(min(3 * observed, 0.5), 2)), (
        f"warning at the observed (Kaplan-Meier) risk by {m.label(m.horizons[0])} in the model's test set "
        "(above-average risk), critical at three times it"
    )


def risks_by_horizon(model: Any, X: Any) -> Any:
    """patients x horizons: the risk of the event by each of the model's horizons."""
    return model.predict_risk(X)


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 else "<1%"


def _est(d: Any, fmt: str = ".3f") -> str:
    if not isinstance(d, Mapping) or not isinstance(d.get("value"), int | float) or math.isnan(d["value"]):
        return "n/a"
    low, high = d.get("low"), d.get("high")
    ci = f" (95% CI {low:{fmt}}–{high:{fmt}})" if isinstance(low, int | float) and isinstance(high, int | float) else ""
    return f"{d['value']:{fmt}}{ci}"


def summary(dep: Deployment, s: Scored, hr: HorizonRisks) -> str:
    """Fewer than 140 characters: the risk by each horizon."""
    m = hr.model
    parts = ", ".join(f"{_pct(r)} by {m.label(h)}" for h, r in zip(m.horizons, hr.risks, strict=True))
    text = f"Risk of {m.outcome}: {parts}"
    return text if len(text) < 140 else text[:138] + "…"


def detail_lines(dep: Deployment, hr: HorizonRisks) -> list[str]:
    """The card's survival lines: a table of the risk by each horizon, from when, and how the model did there."""
    m = hr.model
    origin = hr.origin.strftime("%Y-%m-%d %H:%M UTC")
    start = "the encounter's start" if dep.serving.anchor == "encounter-start" else "now"
    lines = [
        f"**Risk of {m.outcome} by each horizon**, counted from {start} ({origin}), as in training:",
        "",
        "| within | risk | time-dependent AUC (test) | observed in test (Kaplan-Meier) vs predicted |",
        "|---|---|---|---|",
    ]
    for h, r, ev in zip(m.horizons, hr.risks, m.per_horizon, strict=True):
        observed = ev.get("observed")
        predicted = ev.get("mean_predicted")
        seen = (
            f"{_pct(float(observed))} vs {_pct(float(predicted))}"
            if isinstance(observed, int | float) and isinstance(predicted, int | float)
            else "n/a"
        )
        lines.append(f"| {m.label(h)} | **{_pct(r)}** | {_est(ev.get('auc'))} | {seen} |")
    lines.append(
        f"\n**How the model did:** Harrell's C {_est(m.harrell_c)}, integrated Brier score {_est(m.ibs)}. "
        f"**Censoring:** {m.censoring}. The indicator follows the risk by {m.label(m.horizons[0])}."
    )
    return lines


def predictions(dep: Deployment, s: Scored, hr: HorizonRisks, qualitative: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``RiskAssessment.prediction`` per horizon: ``whenPeriod`` from time zero to time zero + horizon, the
    probability as a fraction, and the patient's top factors on the model's own scale."""
    m = hr.model
    rationale = "; ".join(
        f"{f.label} {f.value}{'' if not f.unit or f.value == 'missing' else ' ' + f.unit}: {f.direction} "
        f"({f.contribution:+.2f} {m.scale})"
        for f in s.factors[:3]
    )
    out = []
    for h, r in zip(m.horizons, hr.risks, strict=True):
        end = hr.origin + timedelta(days=h * UNIT_DAYS[m.time_unit])
        entry: dict[str, Any] = {
            "outcome": {"text": f"{m.outcome} within {m.label(h)}"},
            "probabilityDecimal": round(r, 4),
            "whenPeriod": {"start": _instant(hr.origin), "end": _instant(end)},
            "rationale": rationale or "no single factor stood out",
        }
        if h == m.horizons[0]:
            entry["qualitativeRisk"] = qualitative
        out.append(entry)
    return out


def note(dep: Deployment, hr: HorizonRisks) -> str:
    m = hr.model
    return (
        f"One prediction per horizon ({', '.join(m.label(h) for h in m.horizons)}), each the risk of {m.outcome} "
        "from whenPeriod.start to whenPeriod.end. probabilityDecimal is the probability as a fraction between 0 "
        f"and 1 (0.18 means 18%), not a percentage. Censoring: {m.censoring}. Model {dep.model}; intended use: "
        f"{dep.intended_use}. Decision support, not a diagnosis."
    )


def _instant(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")
