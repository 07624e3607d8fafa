"""A patient's NEWS2 chart from their vital-sign Observations: the score now, the value behind each sub-score, and the
score recomputed at each observation time of the last 24 hours (the trend a patient-view card shows).

The Observations are read as the stream reads them (:func:`medml.vitals.observations.read_observation`: LOINC codes,
units, plausible ranges); one that cannot be used is counted by reason, never guessed at. At each time the score
uses each parameter's latest value, if it is no older than the validity window (4 h): an older value is stale, a
parameter never measured is missing, and both are named and left out (:func:`medml.vitals.news2.news2`), so a
partial total is a lower bound. Consciousness is the later of ACVPU and GCS (< 15: not alert); supplemental oxygen
the later of oxygen flow (> 0 L/min) and FiO2 (> 21 %), as in the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from medml.vitals.news2 import NEWS2Result, news2
from medml.vitals.observations import (
    ACVPU_KIND,
    FIO2,
    OXYGEN_FLOW,
    ObservationProblem,
    VitalObservation,
    read_observation,
)
from medml.vitals.signs import CONSCIOUSNESS, GCS, SUPPLEMENTAL_OXYGEN, VALIDITY, Reading, as_of

__all__ = ["ANOTHER_PATIENT", "FUTURE", "TREND_WINDOW", "News2Chart", "TrendPoint", "news2_chart"]

TREND_WINDOW = timedelta(hours=24)
ANOTHER_PATIENT = "another patient's"
FUTURE = "time in the future"
#: how far ahead of the clock an observation may be dated (clock skew), as in the stream
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class TrendPoint:
    """NEWS2 at one observation time: the total (a lower bound when not ``complete``) and the band."""

    time: datetime
    total: int
    band: str
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return {"time": _iso(self.time), "total": self.total, "band": self.band, "complete": self.complete}


@dataclass(frozen=True)
class News2Chart:
    """One patient's NEWS2 at ``at``, the reading behind each parameter (also stale ones), the trend and what was
    not used (reason -> count)."""

    patient: str
    at: datetime
    result: NEWS2Result
    readings: Mapping[str, Reading]
    trend: tuple[TrendPoint, ...]
    not_used: Mapping[str, int] = field(default_factory=dict)
    window: timedelta = TREND_WINDOW

    @property
    def direction(self) -> str | None:
        """``up``, ``down`` or ``steady``: the last score of the window against the first; None with under two."""
        if len(self.trend) < 2:
            return None
        first, last = self.trend[0].total, self.trend[-1].total
        return "up" if last > first else "down" if last < first else "steady"

    def to_dict(self) -> dict[str, Any]:
        totals = [p.total for p in self.trend]
        return {
            "patient": self.patient,
            "at": _iso(self.at),
            "news2": self.result.to_dict(),
            "readings": {k: {"value": r.value, "time": _iso(r.time)} for k, r in self.readings.items()},
            "trend": {
                "window_hours": self.window.total_seconds() / 3600,
                "points": [p.to_dict() for p in self.trend],
                "min": min(totals) if totals else None,
                "max": max(totals) if totals else None,
                "last": totals[-1] if totals else None,
                "direction": self.direction,
            },
            "not_used": dict(self.not_used),
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parameter(obs: VitalObservation) -> tuple[str, float | bool | str]:
    """The NEWS2 parameter (or GCS) a measurement stands for, and its value there."""
    if obs.kind == ACVPU_KIND:
        return CONSCIOUSNESS, obs.value
    if obs.kind == OXYGEN_FLOW:
        return SUPPLEMENTAL_OXYGEN, float(obs.value) > 0
    if obs.kind == FIO2:
        return SUPPLEMENTAL_OXYGEN, float(obs.value) > 21
    return obs.kind, obs.value


def _same_patient(reference: str, patient: str) -> bool:
    """Whether a subject reference names ``patient`` (an id, ``Patient/<id>``, or an absolute URL ending so)."""
    wanted = patient.removeprefix("Patient/")
    return reference == wanted or reference == f"Patient/{wanted}" or reference.endswith(f"/Patient/{wanted}")


def _scored(readings: Mapping[str, Reading], at: datetime, validity: timedelta, scale: int) -> NEWS2Result:
    current = dict(readings)
    # consciousness: the later of ACVPU and GCS; as_of would prefer ACVPU whatever its age
    acvpu, gcs = current.get(CONSCIOUSNESS), current.get(GCS)
    if acvpu is not None and gcs is not None:
        del current[GCS if acvpu.time >= gcs.time else CONSCIOUSNESS]
    return news2(as_of(current, at, validity), spo2_scale=scale)


def news2_chart(
    resources: Iterable[Any],
    patient: str,
    at: datetime,
    *,
    validity: timedelta = VALIDITY,
    window: timedelta = TREND_WINDOW,
    spo2_scale: int = 1,
) -> News2Chart:
    """NEWS2 of ``patient`` at ``at`` (timezone-aware) from FHIR Observations (plain dicts), with the score at each
    observation time within ``window`` before ``at``."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    not_used: dict[str, int] = {}
    taken: list[tuple[float, int, str, float | bool | str]] = []
    horizon = (at + FUTURE_TOLERANCE).timestamp()
    for n, resource in enumerate(resources):
        try:
            obs = read_observation(resource)
        except ObservationProblem as p:
            not_used[p.kind] = not_used.get(p.kind, 0) + 1
            continue
        reason = ANOTHER_PATIENT if not _same_patient(obs.patient, patient) else FUTURE if obs.time > horizon else None
        if reason is not None:
            not_used[reason] = not_used.get(reason, 0) + 1
            continue
        name, value = _parameter(obs)
        taken.append((obs.time, n, name, value))
    taken.sort()  # by time; at one time, the later resource of the input wins (a correction)
    if taken and taken[-1][0] > at.timestamp():  # dated a little ahead of the clock (skew): score as of it
        at = datetime.fromtimestamp(taken[-1][0], UTC)
    readings: dict[str, Reading] = {}
    trend: list[TrendPoint] = []
    start = (at - window).timestamp()
    i = 0
    while i < len(taken):
        t = taken[i][0]
        while i < len(taken) and taken[i][0] == t:
            _, _, name, value = taken[i]
            readings[name] = Reading(value, datetime.fromtimestamp(t, UTC))
            i += 1
        if t >= start:
            moment = datetime.fromtimestamp(t, UTC)
            r = _scored(readings, moment, validity, spo2_scale)
            trend.append(TrendPoint(moment, r.total, r.band, r.complete))
    return News2Chart(
        patient=patient,
        at=at,
        result=_scored(readings, at, validity, spo2_scale),
        readings=readings,
        trend=tuple(trend),
        not_used=not_used,
        window=window,
    )
