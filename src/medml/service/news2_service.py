"""The NEWS2 patient-view service (id ``news2``): a card with the patient's NEWS2 (RCP 2017) from the vital-sign
Observations the EHR prefetches (or the service fetches from ``fhirServer``).

It needs no model and no deployment: ``news2_service: true`` in service.yaml offers it. The card gives the score on
each parameter's latest valid value (:func:`medml.vitals.trend.news2_chart`), each parameter's value, time and
sub-score, the RCP clinical-risk band and response (Charts 2 and 3), and the trend over the last 24 h (the score
recomputed at each observation time: its values, min, max, last and direction). A parameter never measured or
measured more than 4 h ago is named as missing or stale and not scored: the total is then a lower bound and the card
says so. SpO2 is scored on Scale 1: a CDS Hooks request does not say whether a clinician prescribed a target of
88-92 % (Scale 2), and the card says that too. The full result is in the card's ``extension`` for machines.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from medml.service import vitals_audit
from medml.service.auth import Caller
from medml.service.config import ServiceConfig
from medml.service.core import HookError, HookRequest, ServiceState
from medml.service.fhir_client import FhirFetchError, fetch_prefetch
from medml.service.patient_view import fhir_server_refused
from medml.vitals.news2 import response
from medml.vitals.observations import LOINC
from medml.vitals.signs import (
    CONSCIOUSNESS,
    GCS,
    PARAMETERS,
    PULSE,
    RESPIRATORY_RATE,
    SPO2,
    SUPPLEMENTAL_OXYGEN,
    SYSTOLIC_BP,
    TEMPERATURE,
    VALIDITY,
    Reading,
)
from medml.vitals.trend import News2Chart, news2_chart

__all__ = ["HOOK", "SERVICE_ID", "answer", "card", "discovery_entry", "offered"]

SERVICE_ID = "news2"
HOOK = "patient-view"
MODEL = vitals_audit.NEWS2_MODEL
#: the extension key of the card's machine-readable result
EXTENSION = "org.medml.news2"
RCP_URL = "https://www.rcp.ac.uk/improving-care/resources/national-early-warning-score-news-2/"
PREFETCH = {
    "observations": "Observation?patient={{context.patientId}}&code="
    + ",".join(f"http://loinc.org|{c}" for c in sorted(LOINC)),
}
_UNIT = {
    RESPIRATORY_RATE: "/min",
    SPO2: "%",
    SYSTOLIC_BP: "mmHg",
    PULSE: "/min",
    TEMPERATURE: "°C",
}
_ARROW = {"up": "↑ rising", "down": "↓ falling", "steady": "→ steady"}


def offered(config: ServiceConfig, service_id: str | None = None) -> bool:
    """Whether the service is on (``news2_service`` in service.yaml); with ``service_id``, whether it is this one."""
    return bool(getattr(config, "news2_service", False)) and (service_id is None or service_id == SERVICE_ID)


def discovery_entry() -> dict[str, Any]:
    return {
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "NEWS2 early warning score (RCP 2017)",
        "description": "The National Early Warning Score 2 on the patient's latest vital signs: each parameter's "
        "sub-score, the clinical-risk band and response, and the trend over the last 24 hours. Decision support, "
        "not a diagnosis.",
        "prefetch": PREFETCH,
        "usageRequirements": "Needs the patient's vital-sign Observations (LOINC codes of the prefetch) of at least "
        "the last 24 hours; without prefetch, a fhirServer and fhirAuthorization with read access to them.",
    }


# ---- the call -------------------------------------------------------------------------------------------------------


async def answer(
    state: ServiceState, body: dict[str, Any], now: datetime, caller: Caller | None = None
) -> tuple[dict[str, Any], str]:
    """The card for one patient-view request, and the audit's model label."""
    req = HookRequest.parse(body, HOOK, SERVICE_ID)
    given = req.prefetch.get("observations")
    if given is None or (isinstance(given, dict) and given.get("resourceType") == "OperationOutcome"):
        given = (await _fetch(state, req, caller))["observations"]
    chart = news2_chart(_resources(given), req.patient_id, now)
    return {"cards": [card(chart, authenticated=state.config.auth == "jwt")]}, MODEL


def _resources(bundle: Any) -> list[Any]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise HookError(
            400, "prefetch.observations must be a FHIR Bundle (the searchset of the discovery document's query)"
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise HookError(400, "prefetch.observations.entry must be a list of Bundle entries")
    return [e.get("resource") for e in entries if isinstance(e, dict)]


async def _fetch(state: ServiceState, req: HookRequest, caller: Caller | None) -> dict[str, Any]:
    """The vital signs from the EHR's FHIR server when they were not prefetched (the same rules as a model's)."""
    if not req.fhir_server:
        raise HookError(
            412,
            "prefetch lacks 'observations' and the request names no fhirServer to fetch them from; send the "
            "prefetch of the discovery document, or fhirServer and fhirAuthorization",
        )
    why_not = fhir_server_refused(state.config, caller, req.fhir_server)
    if why_not is not None:
        raise HookError(412, why_not)
    query = PREFETCH["observations"].replace("{{context.patientId}}", req.patient_id)
    assert state.http is not None
    try:
        return await fetch_prefetch(state.http, req.fhir_server, req.access_token, {"observations": query})
    except FhirFetchError as e:
        raise HookError(412, f"could not fetch the vital signs from fhirServer: {e}") from None


# ---- the card -------------------------------------------------------------------------------------------------------


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _value(name: str, reading: Reading) -> str:
    v = reading.value
    if name == SUPPLEMENTAL_OXYGEN:
        return "oxygen" if v else "air"
    if name == CONSCIOUSNESS:
        return f"{v} (ACVPU)"
    if name == GCS:
        return f"GCS {float(v):g}"
    return f"{float(v):g} {_UNIT[name]}"


def _reading(chart: News2Chart, name: str) -> tuple[str, Reading] | None:
    """The reading behind a parameter: for consciousness the later of ACVPU and GCS (ACVPU on a tie), as scored."""
    keys = (CONSCIOUSNESS, GCS) if name == CONSCIOUSNESS else (name,)
    found = [(k, chart.readings[k]) for k in keys if k in chart.readings]
    return max(found, key=lambda kr: kr[1].time) if found else None


def _row(chart: News2Chart, name: str) -> str:
    n = chart.result
    got = _reading(chart, name)
    shown = "—" if got is None else _value(got[0], got[1])
    measured = "—" if got is None else _when(got[1].time)
    if name in n.sub_scores:
        score = f"**{n.sub_scores[name]}**"
    elif name in n.stale:
        score = "stale: not scored"
    elif name in n.missing:
        score = "missing: not scored"
    else:
        score = "not scored (see the notes)"  # SpO2 on Scale 2 without air or oxygen
    return f"| {name} | {shown} | {measured} | {score} |"


def _trend(chart: News2Chart) -> str:
    points = chart.trend
    if not points:
        return "**Trend, last 24 h:** no observation in the last 24 hours."
    shown = points[-12:]
    path = " → ".join(f"{p.total}{'' if p.complete else '+'}" for p in shown)
    more = f"… (the last 12 of {len(points)}) " if len(points) > len(shown) else ""
    totals = [p.total for p in points]
    arrow = _ARROW.get(chart.direction or "", "one score only")
    return (
        f"**Trend, last 24 h** (the score at each observation time, from {_when(points[0].time)}): {more}{path}. "
        f"Min {min(totals)}, max {max(totals)}, last {totals[-1]}: {arrow}."
        + (" (+: partial, a lower bound.)" if not all(p.complete for p in points) else "")
    )


def _summary(chart: News2Chart) -> str:
    n = chart.result
    unscored = [p for p in PARAMETERS if p not in n.sub_scores]
    if not n.sub_scores:
        why = "every parameter is stale (over 4 h old)" if chart.readings else "no vital signs recorded"
        return f"NEWS2 not scored: {why}; measure the patient's observations"
    arrow = {"up": ", rising", "down": ", falling"}.get(chart.direction or "", "")
    if not unscored:
        text = f"NEWS2 {n.total}: {n.band} clinical risk{arrow}"
    else:
        text = f"NEWS2 at least {n.total} ({len(unscored)} of 7 not scored): {n.band} clinical risk{arrow}"
    return text if len(text) < 140 else text[:138] + "…"


def card(chart: News2Chart, *, authenticated: bool) -> dict[str, Any]:
    """The patient-view card of a :class:`News2Chart`."""
    n = chart.result
    action, monitoring = response(n.band, n.total)
    partial = not n.complete
    lines = [
        f"**NEWS2 (RCP 2017)** at {_when(chart.at)}, SpO2 Scale {n.spo2_scale}: **{n.total}"
        f"{' (a lower bound)' if partial else ''}, {n.band} clinical risk**.",
        "",
        f"**Response** (RCP Chart 3): {action}; monitoring at least {monitoring}.",
        "",
        "| parameter | value | measured | sub-score |",
        "|---|---|---|---|",
        *(_row(chart, p) for p in PARAMETERS),
        "",
        _trend(chart),
    ]
    if n.missing or n.stale:
        named = [*(f"{p} (missing)" for p in n.missing), *(f"{p} (stale: older than 4 h)" for p in n.stale)]
        lines += [
            "",
            f"**Not scored:** {', '.join(named)}. A missing or stale parameter is never scored as normal: the total "
            "and band are lower bounds until it is measured.",
        ]
    if n.notes:
        lines += ["", "**Notes:** " + "; ".join(n.notes) + "."]
    if chart.not_used:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(chart.not_used.items()))
        lines += ["", f"*Observations not used: {sum(chart.not_used.values())} ({reasons}).*"]
    lines += [
        "",
        f"*Decision support, not a diagnosis: NEWS2 (Royal College of Physicians, 2017) by medml; a clinician "
        f"assesses the patient. Each parameter's latest value within {VALIDITY.total_seconds() / 3600:g} h. "
        "Scored on SpO2 Scale 1: Scale 2 applies only to a prescribed target of 88-92 %, which this request does "
        "not say. Not validated under 16 years or in pregnancy.*"
        + ("" if authenticated else " *Unauthenticated demo service: not for clinical use.*"),
    ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(chart),
        "indicator": "warning" if not n.sub_scores and chart.readings else vitals_audit.indicator(n.band),
        "detail": "\n".join(lines),
        "source": {"label": f"medml · {MODEL}", "url": RCP_URL},
        "extension": {EXTENSION: chart.to_dict()},
    }
