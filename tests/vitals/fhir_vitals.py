"""FHIR R4 vital-sign Observations for the vitals tests, written as a device or an EHR would send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

UCUM = "http://unitsofmeasure.org"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
#: a clock well after T0, so that nothing in the tests is "in the future" unless a test means it
LATER = (T0 + timedelta(days=1)).timestamp()
UNITS = {
    "9279-1": "/min",
    "59408-5": "%",
    "2708-6": "%",
    "8480-6": "mm[Hg]",
    "85354-9": "mm[Hg]",
    "8867-4": "/min",
    "8310-5": "Cel",
    "9269-2": "{score}",
    "3151-8": "L/min",
    "3150-0": "%",
}


def when(minutes: float = 0) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def observation(
    code: str,
    value: Any,
    *,
    patient: str = "Patient/1",
    minutes: float = 0,
    unit: str | None = None,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A vital-sign Observation; ACVPU (67775-7) takes a text answer as ``value``."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
        "effectiveDateTime": when(minutes),
    }
    if id is not None:
        obs["id"] = id
    if code == "67775-7":
        obs["valueCodeableConcept"] = {"text": value}
    else:
        obs["valueQuantity"] = {"value": value, "system": UCUM, "code": unit or UNITS[code]}
    obs.update(extra)
    return obs


def full_set(
    *,
    patient: str = "Patient/1",
    minutes: float = 0,
    rr: float = 16,
    spo2: float = 97,
    o2_flow: float = 0,
    sbp: float = 125,
    pulse: float = 72,
    acvpu: str = "Alert",
    temp: float = 36.8,
) -> list[dict[str, Any]]:
    """The seven NEWS2 parameters of one patient at one time (normal values unless given)."""
    kw: dict[str, Any] = {"patient": patient, "minutes": minutes}
    return [
        observation("9279-1", rr, **kw),
        observation("59408-5", spo2, **kw),
        observation("3151-8", o2_flow, **kw),
        observation("8480-6", sbp, **kw),
        observation("8867-4", pulse, **kw),
        observation("67775-7", acvpu, **kw),
        observation("8310-5", temp, **kw),
    ]
