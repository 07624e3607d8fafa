"""FHIR R4 vital-sign Observations (plain dicts) -> one measurement each, in chart units, or the reason it is refused.

The LOINC mapping (``code.coding`` with system ``http://loinc.org``, or no system):

==============================  ===================================  ==========================================
measurement                     LOINC                                accepted units (UCUM ``code``, else ``unit``)
==============================  ===================================  ==========================================
respiratory rate                9279-1                               /min, {breaths}/min
SpO2                            59408-5 (pulse oximetry), 2708-6     %
systolic blood pressure         8480-6, or the 8480-6 component of   mm[Hg]
                                a blood pressure panel 85354-9
pulse                           8867-4 (heart rate)                  /min, {beats}/min
temperature                     8310-5 (body), 8331-1 (oral),        Cel; [degF] converted to degC
                                8328-7 (axillary), 8333-7 (tympanic)
ACVPU                           67775-7 (level of responsiveness)    a coded or text answer: Alert, new
                                                                     Confusion, Voice, Pain, Unresponsive
GCS                             9269-2 (Glasgow coma score total)    {score}, 1 or none; GCS < 15 -> not alert
oxygen flow                     3151-8 (inhaled O2 flow rate)        L/min; > 0 -> on supplemental oxygen
FiO2                            3150-0 (inhaled O2 concentration)    %, or 1 (a fraction); > 21 % -> on oxygen
==============================  ===================================  ==========================================

Times: ``effectiveDateTime``, ``effectiveInstant`` or ``effectivePeriod.start``, with a time of day and a time zone
(FHIR requires one when a time is given). Status ``final``, ``amended``, ``corrected``, ``preliminary`` (or none) is
used; ``registered``, ``cancelled``, ``entered-in-error`` and ``unknown`` are not. The patient is
``subject.reference`` (or ``subject.identifier``'s ``system|value``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from medml.vitals.signs import (
    ACVPU_WORDS,
    GCS,
    PLAUSIBLE,
    PULSE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    TEMPERATURE,
    acvpu_letter,
)

__all__ = [
    "ACVPU_KIND",
    "FIO2",
    "IMPLAUSIBLE",
    "KIND_PLAUSIBLE",
    "LOINC",
    "NOT_USABLE",
    "NOT_VITAL",
    "NO_SUBJECT",
    "NO_TIME",
    "NO_VALUE",
    "OXYGEN_FLOW",
    "UNIT",
    "ObservationProblem",
    "VitalObservation",
    "parse_instant",
    "read_observation",
]

ACVPU_KIND = "ACVPU"
OXYGEN_FLOW = "oxygen flow"
FIO2 = "FiO2"
_BP_PANEL = "85354-9"
LOINC: Mapping[str, str] = {
    "9279-1": RESPIRATORY_RATE,
    "59408-5": SPO2,
    "2708-6": SPO2,
    "8480-6": SYSTOLIC_BP,
    _BP_PANEL: SYSTOLIC_BP,
    "8867-4": PULSE,
    "8310-5": TEMPERATURE,
    "8331-1": TEMPERATURE,
    "8328-7": TEMPERATURE,
    "8333-7": TEMPERATURE,
    "67775-7": ACVPU_KIND,
    "9269-2": GCS,
    "3151-8": OXYGEN_FLOW,
    "3150-0": FIO2,
}
_LOINC_SYSTEM = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"

#: Inclusive plausible ranges of each measurement in its chart unit (oxygen flow in L/min, FiO2 in %).
KIND_PLAUSIBLE: Mapping[str, tuple[float, float]] = {**PLAUSIBLE, OXYGEN_FLOW: (0.0, 70.0), FIO2: (21.0, 100.0)}


def _f_to_c(v: float) -> float:
    return round((v - 32.0) * 5.0 / 9.0, 2)  # 98.6 degF -> 37.0, not 36.99999999999999


def _fraction_to_percent(v: float) -> float:
    return v * 100.0


_PER_MIN = {"/min": None, "1/min": None}
_REFUSED = object()
#: Accepted units of each measurement: the UCUM code (or a common printed form) -> conversion to the chart unit
#: (None: none needed).
UNITS: Mapping[str, Mapping[str, Any]] = {
    RESPIRATORY_RATE: {**_PER_MIN, "{breaths}/min": None, "{Breaths}/min": None, "breaths/min": None},
    SPO2: {"%": None},
    SYSTOLIC_BP: {"mm[Hg]": None, "mmHg": None},
    PULSE: {**_PER_MIN, "{beats}/min": None, "{Beats}/min": None, "beats/min": None, "bpm": None},
    TEMPERATURE: {"Cel": None, "°C": None, "[degF]": _f_to_c, "°F": _f_to_c},
    GCS: {"{score}": None, "1": None, "{points}": None, "": None},
    OXYGEN_FLOW: {"L/min": None, "l/min": None},
    FIO2: {"%": None, "1": _fraction_to_percent, "{fraction}": _fraction_to_percent},
}
#: ACVPU answers as they are usually written (Alert, ALERT, New confusion, ...) -> letter, looked up before any parsing
_ANSWERS = {
    f: letter for word, letter in ACVPU_WORDS.items() for f in (word, word.capitalize(), word.title(), word.upper())
}
_USABLE_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})

NOT_VITAL = "not a vital-sign Observation (ignored)"
NOT_USABLE = "status not usable (registered, cancelled, entered-in-error, unknown)"
NO_SUBJECT = "no subject"
NO_TIME = "no usable time"
NO_VALUE = "no value"
UNIT = "unit refused"
IMPLAUSIBLE = "implausible value"


class ObservationProblem(ValueError):
    """Why an Observation is not used: ``kind`` is the count it goes to, the message says what was wrong."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class VitalObservation(NamedTuple):
    """One measurement: the patient, what was measured, its value in chart units (an ACVPU letter for ACVPU) and
    when (seconds since the epoch, UTC). A named tuple: the stream makes one per observation."""

    patient: str
    kind: str
    value: float | str
    time: float
    id: str | None = None
    unit: str = ""


def parse_instant(text: Any) -> float:
    """An ISO 8601 date-time with time of day and offset -> seconds since the epoch; ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"time {text!r} is not a date-time text")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not an ISO 8601 date-time") from None
    if len(text) <= 10:
        raise ValueError(f"time {text!r} has no time of day")
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone (FHIR requires one, e.g. Z or +01:00)")
    return moment.timestamp()


def _kind(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """(measurement, LOINC code) of the first known LOINC coding, or None."""
    code = resource.get("code")
    if not isinstance(code, dict):
        return None
    for coding in code.get("coding") or ():
        if not isinstance(coding, dict):
            continue
        system = coding.get("system")
        if system is not None and system != _LOINC_SYSTEM:
            continue
        value = coding.get("code")
        if isinstance(value, str) and value in LOINC:
            return LOINC[value], value
    return None


def _patient(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject")
    if not isinstance(subject, dict):
        return None
    ref = subject.get("reference")
    if isinstance(ref, str) and ref.strip():
        return ref.strip()
    ident = subject.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
        return f"{ident.get('system') or ''}|{ident['value'].strip()}"
    return None


def _time_text(resource: Mapping[str, Any]) -> Any:
    t = resource.get("effectiveDateTime")
    if t is None:
        t = resource.get("effectiveInstant")
    if t is None:
        period = resource.get("effectivePeriod")
        if isinstance(period, dict):
            t = period.get("start")
    return t


def _identity(resource: Mapping[str, Any]) -> str | None:
    """``id``, with ``meta.versionId`` where given: an amended version of an Observation is not a duplicate."""
    rid = resource.get("id")
    if not isinstance(rid, str):
        return None
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return f"{rid}/_history/{version}" if isinstance(version, str) else rid


def _systolic_component(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for comp in resource.get("component") or ():
        if not isinstance(comp, dict):
            continue
        for coding in (comp.get("code") or {}).get("coding") or ():
            if isinstance(coding, dict) and coding.get("code") == "8480-6":
                return comp
    return None


def _quantity(kind: str, holder: Mapping[str, Any]) -> tuple[float, str]:
    """The value of ``valueQuantity`` (or ``valueInteger`` for GCS) in the chart unit, and the unit it came in."""
    q = holder.get("valueQuantity")
    if q is None and kind == GCS and isinstance(holder.get("valueInteger"), int):
        return float(holder["valueInteger"]), ""
    if not isinstance(q, dict) or q.get("value") is None:
        raise ObservationProblem(NO_VALUE, f"{kind}: no valueQuantity value")
    value = q["value"]
    if (type(value) is not float and type(value) is not int) or not math.isfinite(value):  # bool is not a number
        raise ObservationProblem(NO_VALUE, f"{kind}: value {value!r} is not a number")
    unit = q.get("code")
    system = q.get("system")
    if unit is None or (system is not None and system != _UCUM):
        unit = q.get("unit")
    unit = "" if unit is None else str(unit)
    convert = UNITS[kind].get(unit, _REFUSED)
    if convert is _REFUSED:
        raise ObservationProblem(
            UNIT, f"{kind} in unit {unit or '(none)'!r} is refused; send UCUM {', '.join(k for k in UNITS[kind] if k)}"
        )
    return (float(value) if convert is None else convert(float(value))), unit


def _acvpu(holder: Mapping[str, Any]) -> str:
    concept = holder.get("valueCodeableConcept")
    text = concept.get("text") if isinstance(concept, dict) else holder.get("valueString")
    letter = _ANSWERS.get(text) if isinstance(text, str) else None  # the common case: a known answer as sent
    if letter is not None:
        return letter
    texts: list[str] = []
    if isinstance(concept, dict):
        texts.append(str(concept.get("text")))
        texts += [
            str(c.get(k)) for c in concept.get("coding") or () if isinstance(c, dict) for k in ("display", "code")
        ]
    elif isinstance(holder.get("valueString"), str):
        texts.append(holder["valueString"])
    else:
        raise ObservationProblem(NO_VALUE, "ACVPU: no valueCodeableConcept or valueString")
    for t in texts:
        try:
            return acvpu_letter(t)
        except ValueError:
            continue
    shown = next((t for t in texts if t != "None"), "")
    raise ObservationProblem(
        IMPLAUSIBLE, f"ACVPU answer {shown!r} is not Alert, Confusion, Voice, Pain or Unresponsive"
    )


def read_observation(resource: Mapping[str, Any], instant: Any = parse_instant) -> VitalObservation:
    """The measurement of one vital-sign Observation; raises :class:`ObservationProblem` naming what was wrong.

    ``instant`` parses the time text (the stream passes a caching one).
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise ObservationProblem(NOT_VITAL, "not an Observation")
    found = _kind(resource)
    if found is None:
        raise ObservationProblem(NOT_VITAL, "no vital-sign LOINC code")
    kind, code = found
    status = resource.get("status")
    if status is not None and status not in _USABLE_STATUS:
        raise ObservationProblem(NOT_USABLE, f"{kind}: status {status!r} is not usable")
    patient = _patient(resource)
    if patient is None:
        raise ObservationProblem(NO_SUBJECT, f"{kind} Observation has no subject; give subject.reference")
    text = _time_text(resource)
    if text is None:
        raise ObservationProblem(NO_TIME, f"{kind} of {patient} has no effectiveDateTime")
    try:
        time = instant(text)
    except ValueError as e:
        raise ObservationProblem(NO_TIME, f"{kind} of {patient}: {e}") from None
    holder: Mapping[str, Any] = resource
    if code == _BP_PANEL:
        comp = _systolic_component(resource)
        if comp is None:
            raise ObservationProblem(NO_VALUE, f"blood pressure panel of {patient} has no systolic (8480-6) component")
        holder = comp
    if holder.get("dataAbsentReason") is not None and "valueQuantity" not in holder:
        raise ObservationProblem(NO_VALUE, f"{kind} of {patient}: value absent (dataAbsentReason)")
    rid = _identity(resource)
    if kind == ACVPU_KIND:
        return VitalObservation(patient, kind, _acvpu(holder), time, rid)
    value, unit = _quantity(kind, holder)
    lo, hi = KIND_PLAUSIBLE[kind]
    if not lo <= value <= hi:
        shown = f"{value:.1f} degC from {unit}" if unit in ("[degF]", "°F") else f"{value:g} {unit}".rstrip()
        raise ObservationProblem(IMPLAUSIBLE, f"{kind} {shown} of {patient} is outside {lo:g}-{hi:g}; left out")
    return VitalObservation(patient, kind, value, time, rid, unit)
