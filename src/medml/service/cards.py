"""CDS Hooks cards a clinician can act on, and the FHIR RiskAssessment they offer to record.

A card says the risk and its category in the summary, and in the detail: the patient's top factors in clinical
words, the inputs that were missing (and what the model does about them), how well the model did on whom, its
calibration near this patient's risk, the model name and version, its intended use, and a link to its model card.

``RiskAssessment.prediction.probabilityDecimal`` is the calibrated probability as a fraction between 0 and 1
(0.18 means 18 %), never a percentage; the resource's note says so too.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from medml.evaluate.schema import CalibrationCurve, Headline
from medml.models.factory import find_model_kind
from medml.service import survival
from medml.service.deploy import Deployment
from medml.service.scoring import NotScored, Scored

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
MODEL_SYSTEM = "urn:medml:model"
OVERRIDE_SYSTEM = "urn:medml:cds:override-reason"
OVERRIDE_REASONS = (
    ("already-aware", "Already aware of this risk; care plan in place"),
    ("not-applicable", "Model does not apply to this patient (outside its intended population)"),
    ("data-wrong", "The inputs shown are wrong or out of date"),
    ("disagree", "Clinical judgement differs from the estimate"),
)
QUALITATIVE = {
    "info": ("low", "Low likelihood"),
    "warning": ("moderate", "Moderate likelihood"),
    "critical": ("high", "High likelihood"),
}


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 else "<1%"


def _num(v: Any, fmt: str = ".2f") -> str:
    return format(float(v), fmt) if isinstance(v, int | float) and math.isfinite(float(v)) else "n/a"


def summary(dep: Deployment, s: Scored) -> str:
    """Fewer than 140 characters, as CDS Hooks requires."""
    if s.horizons is not None:
        return survival.summary(dep, s, s.horizons)
    word = {"info": "below the warning threshold", "warning": "raised", "critical": "high"}[s.category]
    text = f"Risk of {dep.serving.outcome}: {_pct(s.risk)} ({word})"
    return text if len(text) < 140 else text[:138] + "…"


def detail(dep: Deployment, s: Scored, model_kind: str, *, authenticated: bool) -> str:
    """The card's markdown detail."""
    spec = dep.serving
    ev = dep.headline
    lines = []
    when = s.index_time.strftime("%Y-%m-%d %H:%M UTC")
    hr = s.horizons
    what = (
        f"calibrated risk of {spec.outcome}"
        if hr is None
        else f"risk of {spec.outcome} by {hr.model.label(hr.model.horizons[0])}"
    )
    if s.hours_observed is not None:
        lines.append(
            f"**{_pct(s.risk)}** {what}, from the first "
            f"{s.hours_observed:.0f} h of encounter {s.encounter_id} (results up to {when}; "
            f"{s.results_used} results used)."
        )
        if s.hours_observed < spec.hours:
            lines.append(
                f"\n**Early estimate:** only {s.hours_observed:.0f} h of the {spec.hours:g} h the model was "
                "built for have passed; fewer results than the model expects, and the risk may change."
            )
    else:
        lines.append(f"**{_pct(s.risk)}** {what} (results up to {when}; {s.results_used} results used).")
    if hr is not None:
        lines.extend(survival.detail_lines(dep, hr))
    if s.factors:
        kind = find_model_kind(model_kind)
        named = kind.explanation_card if kind is not None else "the model's contributions"
        if hr is not None:
            named = hr.model.explanation
        lines.append(f"\n**Top factors for this patient** ({named}):")
        for f in s.factors:
            unit = "" if f.value == "missing" or f.unit in ("", "count") else f" {f.unit}"
            lines.append(f"- {f.label}: {f.value}{unit} ({f.direction})")
    if s.missing:
        kind = find_model_kind(model_kind)
        how = kind.missing_data.card if kind is not None else "handled as in training"
        lines.append(
            f"\n**Missing inputs** ({len(s.missing)}, no result in the window): {', '.join(s.missing)}. "
            f"For these, {how}."
        )
    if s.dropped:
        lines.append(
            "\n**Results left out** (unit not accepted, or implausible value): "
            + ", ".join(f"{k}: {v}" for k, v in s.dropped.items())
            + "."
        )
    if hr is None:  # a survival model's evaluation is in its horizon lines
        lines.append(_how_the_model_did(ev, s.risk))
    lines.append(f"\n**Evaluation population:** {ev.population if ev else 'not recorded'}")
    lines.append(
        f"\n**Indicator:** warning from {_pct(dep.thresholds[0])}, critical from {_pct(dep.thresholds[1])}: "
        f"{dep.thresholds_note}."
    )
    lines.append(f"\n**Model** {dep.model} — intended use: {dep.intended_use}")
    lines.append(
        "\n*Decision support, not a diagnosis.*"
        + ("" if authenticated else " *Unauthenticated demo service: not for clinical use.*")
    )
    return "\n".join(lines)


def _how_the_model_did(ev: Headline | None, risk: float) -> str:
    """The evaluation line: on whom, AUROC and calibration with their intervals, and patients near this risk."""
    if ev is None:
        return "\n**How the model did:** not stored with this deployment; see the model card."
    auroc, slope = ev.auroc, ev.calibration_slope
    return (
        f"\n**How the model did** on {ev.n} {ev.split} patients "
        f"({ev.n_events} events): AUROC {_num(auroc.value, '.3f')} (95% CI {_num(auroc.low, '.3f')}–"
        f"{_num(auroc.high, '.3f')}); calibration slope {_num(slope.value)} (95% CI {_num(slope.low)}–"
        f"{_num(slope.high)}), intercept {_num(ev.calibration_intercept.value)}. {near_this_risk(ev.curve, risk)}"
    )


def near_this_risk(curve: CalibrationCurve, risk: float) -> str:
    """What happened in the test set to patients whose predicted risk was near this one (the decile curve)."""
    predicted, observed, count = curve.predicted, curve.observed, curve.count
    if not predicted:
        return ""
    i = min(range(len(predicted)), key=lambda j: abs(float(predicted[j]) - risk))
    n = int(count[i])
    events = round(float(observed[i]) * n)
    return (
        f"In the test set, of {n} patients with a mean predicted risk of {_pct(float(predicted[i]))}, "
        f"{events} ({_pct(float(observed[i]))}) had the outcome."
    )


def risk_assessment(dep: Deployment, s: Scored, patient_id: str) -> dict[str, Any]:
    """A FHIR R4 RiskAssessment of this score (status preliminary while the model's window is not complete)."""
    code, display = QUALITATIVE[s.category]
    complete = s.hours_observed is None or s.hours_observed >= dep.serving.hours
    res: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final" if complete else "preliminary",
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": s.index_time.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": dep.model, "display": dep.title}],
            "text": f"medml model {dep.model}",
        },
        "prediction": [
            {
                "outcome": {"text": dep.serving.outcome},
                "probabilityDecimal": round(s.risk, 4),
                "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY, "code": code, "display": display}]},
                "rationale": "; ".join(f.sentence() for f in s.factors[:3]) or "no single factor stood out",
            }
        ],
        "note": [
            {
                "text": "probabilityDecimal is the calibrated probability as a fraction between 0 and 1 "
                f"(0.18 means 18%), not a percentage. Model {dep.model}; intended use: {dep.intended_use}. "
                "Decision support, not a diagnosis."
            }
        ],
    }
    if s.horizons is not None:  # a survival model: one prediction per horizon
        res["prediction"] = survival.predictions(dep, s, s.horizons, res["prediction"][0]["qualitativeRisk"])
        res["note"] = [{"text": survival.note(dep, s.horizons)}]
    if s.encounter_id:
        res["encounter"] = {"reference": f"Encounter/{s.encounter_id}"}
        res["basis"] = [{"reference": f"Encounter/{s.encounter_id}"}]
    return res


def card(
    dep: Deployment, s: Scored, patient_id: str, *, model_kind: str, model_card_url: str, authenticated: bool
) -> dict[str, Any]:
    """One card; the RiskAssessment rides along as a suggestion when the deployment says so."""
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(dep, s),
        "indicator": s.category,
        "detail": detail(dep, s, model_kind, authenticated=authenticated),
        "source": {
            "label": f"medml · {dep.model}",
            "url": model_card_url,
            "topic": {"system": MODEL_SYSTEM, "code": dep.model, "display": dep.title},
        },
        "links": [
            {
                "label": f"Model card: {dep.model} (calibration, evaluation population)",
                "url": model_card_url,
                "type": "absolute",
            }
        ],
        "overrideReasons": [{"code": c, "system": OVERRIDE_SYSTEM, "display": d} for c, d in OVERRIDE_REASONS],
    }
    if dep.risk_assessment == "suggestion":
        out["suggestions"] = [
            {
                "label": "Record this risk assessment in the chart",
                "uuid": str(uuid.uuid4()),
                "isRecommended": False,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Create a RiskAssessment from {dep.model}",
                        "resource": risk_assessment(dep, s, patient_id),
                    }
                ],
            }
        ]
        out["selectionBehavior"] = "at-most-one"
    return out


def not_scored_card(dep: Deployment, why: NotScored, *, model_card_url: str, authenticated: bool) -> dict[str, Any]:
    """The card that says the model cannot score this patient (too few usable results), instead of a risk."""
    about = f" for encounter {why.encounter_id}" if why.encounter_id else ""
    lines = [
        f"**No risk computed{about}:** {why.reason}. A score from so little would be the evaluation population's "
        "average, not this patient's risk.",
    ]
    if why.missing:
        lines.append(f"\n**Missing inputs** ({len(why.missing)}, no usable result in the window):")
        lines.extend(f"- {name}" for name in why.missing)
    if why.dropped:
        lines.append(
            "\n**Results left out** (unit not accepted, or implausible value): "
            + ", ".join(f"{k}: {v}" for k, v in why.dropped.items())
            + "."
        )
    lines.append(f"\n**Model** {dep.model} — intended use: {dep.intended_use}")
    lines.append(
        "\n*Decision support, not a diagnosis.*"
        + ("" if authenticated else " *Unauthenticated demo service: not for clinical use.*")
    )
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"{dep.title}: not scored, too few results"[:140],
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": {
            "label": f"medml · {dep.model}",
            "url": model_card_url,
            "topic": {"system": MODEL_SYSTEM, "code": dep.model, "display": dep.title},
        },
        "links": [
            {
                "label": f"Model card: {dep.model} (calibration, evaluation population)",
                "url": model_card_url,
                "type": "absolute",
            }
        ],
        "overrideReasons": [{"code": c, "system": OVERRIDE_SYSTEM, "display": d} for c, d in OVERRIDE_REASONS],
    }


def system_actions(dep: Deployment, s: Scored, patient_id: str) -> list[dict[str, Any]]:
    """The RiskAssessment as a system action, for deployments that record every score."""
    if dep.risk_assessment != "system-action":
        return []
    return [
        {
            "type": "create",
            "description": f"Record the RiskAssessment from {dep.model}",
            "resource": risk_assessment(dep, s, patient_id),
        }
    ]
