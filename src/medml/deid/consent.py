"""Patients whose FHIR ``Consent`` refuses research use: left out of every training cohort built from a store.

A Consent counts as a refusal of research use (FHIR R4, https://hl7.org/fhir/R4/consent.html) when all of:

- ``status`` is ``active`` (draft, proposed, rejected, inactive and entered-in-error ones refuse nothing);
- ``scope`` has the coding ``research`` of ``http://terminology.hl7.org/CodeSystem/consentscope``;
- its root ``provision.type`` is ``deny`` (the whole scope refused), and ``provision.period``, if given, has begun
  and not ended at the time asked about (a refusal for the coming year ends; an open one does not);
- ``patient`` refers to a Patient: ``Patient/<id>`` (relative, absolute or versioned) or ``urn:uuid:<id>``.

A patient with several active research Consents is decided by the latest (``dateTime``; a refusal wins a tie or
where dates are missing): a patient who refused and later agreed is in the cohort. A permit with nested deny
provisions (a refusal of some data or some purposes only) does not remove the patient: that shape restricts what is
shared, which is a de-identification configuration's job, not a cohort's.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from medml.fhir.store import FhirStore

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_PATIENT = re.compile(r"(?:^|/)Patient/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_UUID = "urn:uuid:"


@dataclass(frozen=True)
class ConsentDecision:
    """A patient's latest active research Consent: refused or not, and when it was given."""

    patient: str
    refused: bool
    consent_id: str
    recorded: str


def _patient_id(consent: dict[str, Any]) -> str:
    ref = (consent.get("patient") or {}).get("reference")
    if not isinstance(ref, str):
        return ""
    m = _PATIENT.search(ref)
    if m:
        return m.group("id")
    return ref[len(_UUID) :] if ref.startswith(_UUID) else ""


def _is_research(consent: dict[str, Any]) -> bool:
    scope = consent.get("scope")
    codings = scope.get("coding") if isinstance(scope, dict) else None
    return any(
        isinstance(c, dict) and c.get("system") == CONSENT_SCOPE and c.get("code") == "research" for c in codings or ()
    )


def _instant(text: Any, end: bool) -> datetime | None:
    """A FHIR date or dateTime as an aware instant (a bare date: its start, or with ``end`` its last moment)."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")]
            year = parts[0]
            month = parts[1] if len(parts) > 1 else (12 if end else 1)
            day = parts[2] if len(parts) > 2 else (calendar.monthrange(year, month)[1] if end else 1)
            if end:
                return datetime(year, month, day, 23, 59, 59, tzinfo=UTC)
            return datetime(year, month, day, tzinfo=UTC)
        t = datetime.fromisoformat(text)
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except ValueError:
        return None


def _denies_now(consent: dict[str, Any], at: datetime) -> bool:
    provision = consent.get("provision")
    if not isinstance(provision, dict) or provision.get("type") != "deny":
        return False
    period = provision.get("period")
    if isinstance(period, dict):
        start, end = _instant(period.get("start"), False), _instant(period.get("end"), True)
        if (start and start > at) or (end and end < at):
            return False
    return True


def decisions(consents: Iterable[dict[str, Any]], at: datetime | None = None) -> dict[str, ConsentDecision]:
    """Each patient's decision on research use from their Consents (see the module's rules), by patient id."""
    when = at or datetime.now(UTC)
    latest: dict[str, tuple[tuple[int, str, int], ConsentDecision]] = {}
    for consent in consents:
        if not isinstance(consent, dict) or consent.get("resourceType") != "Consent":
            continue
        if consent.get("status") != "active" or not _is_research(consent):
            continue
        patient = _patient_id(consent)
        if not patient:
            continue
        refused = _denies_now(consent, when)
        raw = consent.get("dateTime")
        recorded = raw if isinstance(raw, str) else ""
        stamp = _instant(recorded, False)
        # order: dated after undated, later after earlier, a refusal after an agreement given at the same time
        order = (1 if stamp else 0, stamp.isoformat() if stamp else "", int(refused))
        decision = ConsentDecision(patient, refused, str(consent.get("id", "")), recorded)
        if patient not in latest or order >= latest[patient][0]:
            latest[patient] = (order, decision)
    return {p: d for p, (_, d) in latest.items()}


def research_refusals(store: FhirStore, at: datetime | None = None) -> frozenset[str]:
    """The ids of the store's patients whose latest active research Consent refuses research use."""
    rows = store.con.execute("SELECT resource FROM resources WHERE resource_type = 'Consent'").fetchall()
    consents = (orjson.loads(r[0]) for r in rows)
    return frozenset(p for p, d in decisions(consents, at).items() if d.refused)


def leave_out_refusals(store: FhirStore, patients: Iterable[str], at: datetime | None = None) -> tuple[list[bool], int]:
    """For a cohort's patient ids (one per row): which rows to keep, and how many patients were left out."""
    refused = research_refusals(store, at)
    ids = list(patients)
    keep = [p not in refused for p in ids]
    return keep, len({p for p in ids if p in refused})


def left_out_note(n: int) -> str:
    """The sentence a cohort's population carries about the patients its Consents left out."""
    if n == 0:
        return "no patient left out for a Consent refusing research use"
    return f"{n:,} patient{'s' if n != 1 else ''} left out: their FHIR Consent refuses research use"


__all__ = [
    "CONSENT_SCOPE",
    "ConsentDecision",
    "decisions",
    "leave_out_refusals",
    "left_out_note",
    "research_refusals",
]
