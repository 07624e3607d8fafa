"""Streaming early warning: vital-sign Observations in, NEWS2 on every new observation, an alert on escalation.

Per patient the stream keeps the latest valid value of each measurement and scores NEWS2 at the patient's newest
observation time; a value older than ``validity`` then is stale (named, not scored). An alert is raised when the
band rises above the previous score's band (a new patient starts at ``low``), unless the same band was alerted for
that patient less than ``repeat_after`` ago (by observation time). Bad records never stop the stream; each is
counted, and those a sender must fix (not JSON, no subject, no usable time, in the future, unit refused,
implausible value) are also reported on one line each. Observations older than the latest of their measurement are
counted as out of order and not used; the same id (and ``meta.versionId``), or the same measurement, time and
value again, is a duplicate; the same measurement and time with another value is a correction and replaces it.
"""

from __future__ import annotations

import time as _time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from medml import __version__
from medml.errors import ConfigError, NotFoundError
from medml.vitals.news2 import (
    BANDS,
    NEWS2Result,
    clinical_risk,
    consciousness_score,
    news2,
    pulse_score,
    respiratory_rate_score,
    spo2_score,
    systolic_bp_score,
    temperature_score,
)
from medml.vitals.observations import (
    ACVPU_KIND,
    FIO2,
    IMPLAUSIBLE,
    NO_SUBJECT,
    NO_TIME,
    OXYGEN_FLOW,
    UNIT,
    ObservationProblem,
    VitalObservation,
    parse_instant,
    read_observation,
)
from medml.vitals.qsofa import QSOFAResult, qsofa
from medml.vitals.signs import (
    CONSCIOUSNESS,
    GCS,
    PULSE,
    RESPIRATORY_RATE,
    SPO2,
    SUPPLEMENTAL_OXYGEN,
    SYSTOLIC_BP,
    TEMPERATURE,
    VALIDITY,
    VitalSigns,
    chart_integer,
)

__all__ = [
    "COUNTS",
    "Assessment",
    "EarlyWarningStream",
    "StreamConfig",
]

NOT_JSON = "not JSON"
FUTURE = "time in the future"
DUPLICATE = "duplicate"
OUT_OF_ORDER = "out of order (older than the latest of its measurement)"
CORRECTED = "corrected (same measurement and time, new value)"
USED = "observations used"
ALERTS = "alerts raised"
HELD_BACK = "alerts held back (same band alerted within the repeat window)"
LINES = "lines read"
#: The problems a sender must fix: each is reported on one line, besides being counted.
REPORTED = frozenset({NOT_JSON, NO_SUBJECT, NO_TIME, FUTURE, UNIT, IMPLAUSIBLE})
#: Every count of :meth:`EarlyWarningStream.counts`, in the order a summary shows them.
COUNTS = (LINES, USED, ALERTS, HELD_BACK, DUPLICATE, OUT_OF_ORDER, CORRECTED, NOT_JSON)

# Measurement slots of a patient's state.
_RR, _SPO2, _FLOW, _FIO2, _SBP, _PULSE, _ACVPU, _GCS, _TEMP = range(9)
_SLOT = {
    RESPIRATORY_RATE: _RR,
    SPO2: _SPO2,
    OXYGEN_FLOW: _FLOW,
    FIO2: _FIO2,
    SYSTOLIC_BP: _SBP,
    PULSE: _PULSE,
    ACVPU_KIND: _ACVPU,
    GCS: _GCS,
    TEMPERATURE: _TEMP,
}
_NEVER = float("-inf")
_RANK = {b: i for i, b in enumerate(BANDS)}


def _sub_score(slot: int, value: Any) -> int:
    """The sub-score a measurement carries on its own (SpO2's depends on the scale and oxygen: scored later)."""
    if slot == _RR:
        return respiratory_rate_score(value)
    if slot == _SBP:
        return systolic_bp_score(value)
    if slot == _PULSE:
        return pulse_score(value)
    if slot == _TEMP:
        return temperature_score(value)
    if slot == _ACVPU:
        return consciousness_score(value)
    if slot == _GCS:
        return 0 if chart_integer(value) >= 15 else 3
    if slot == _FLOW:
        return 2 if value > 0 else 0
    if slot == _FIO2:
        return 2 if value > 21 else 0
    return 0


@dataclass(frozen=True)
class StreamConfig:
    """How the stream scores and alerts.

    ``validity``: a parameter older than this is stale (RCP: observations at least 4-hourly); ``repeat_after``: no
    second alert for the same band of the same patient within this time; ``future_tolerance``: how far ahead of the
    clock an observation time may be (clock skew); ``spo2_scale2``: patients with a prescribed SpO2 target of
    88-92 %; ``every_score``: also yield a score (not only alerts) for every used observation.
    """

    validity: timedelta = VALIDITY
    repeat_after: timedelta = timedelta(hours=1)
    future_tolerance: timedelta = timedelta(minutes=5)
    spo2_scale2: frozenset[str] = frozenset()
    every_score: bool = False
    max_remembered_ids: int = 1_000_000
    max_messages_per_kind: int = 20

    def __post_init__(self) -> None:
        for name in ("validity", "repeat_after", "future_tolerance"):
            if getattr(self, name) < timedelta(0):
                raise ConfigError(f"{name} is negative", "give a duration of zero or more")
        if self.max_remembered_ids < 1:
            raise ConfigError("max_remembered_ids must be at least 1", "give a positive number")


@dataclass(frozen=True)
class Assessment:
    """A patient's NEWS2 and qSOFA at one time, the values used, and whether it is an alert (an escalation)."""

    patient: str
    time: datetime
    news2: NEWS2Result
    qsofa: QSOFAResult
    parameters: Mapping[str, Mapping[str, Any]]
    alert: bool
    previous_band: str
    source: str = field(default="medml.vitals.stream")

    def to_dict(self) -> dict[str, Any]:
        """One JSON line: the patient, time, score, band, sub-scores and the parameters used."""
        n = self.news2
        return {
            "type": "NEWS2 alert" if self.alert else "NEWS2 score",
            "patient": self.patient,
            "time": _iso(self.time.timestamp()),
            "score": n.score,
            "version": n.version,
            "total": n.total,
            "band": n.band,
            "previous_band": self.previous_band,
            "response": n.response,
            "monitoring": n.monitoring,
            "complete": n.complete,
            "missing": list(n.missing),
            "stale": list(n.stale),
            "sub_scores": dict(n.sub_scores),
            "spo2_scale": n.spo2_scale,
            "notes": list(n.notes),
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "qsofa": self.qsofa.to_dict(),
            "produced_by": f"medml {__version__} ({self.source})",
            "intended_use": "decision support, not a diagnosis: a clinician reviews the patient",
        }


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class _Patient:
    """One patient's latest measurements (value, time, sub-score per slot), current band and alert times."""

    __slots__ = ("alerted", "band", "latest", "subs", "times", "units", "values")

    def __init__(self) -> None:
        self.values: list[Any] = [None] * 9
        self.times: list[float] = [_NEVER] * 9
        self.subs: list[int] = [0] * 9
        self.units: list[str] = [""] * 9
        self.latest = _NEVER
        self.band = 0
        self.alerted: dict[int, float] = {}


class EarlyWarningStream:
    """The per-patient scorer: :meth:`add` one Observation dict, or :meth:`feed` one NDJSON line.

    ``clock`` gives the current time (seconds since the epoch) for the future-time check; ``on_problem`` receives
    one line for each reported problem (see the module docstring).
    """

    def __init__(
        self,
        config: StreamConfig | None = None,
        *,
        clock: Callable[[], float] = _time.time,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or StreamConfig()
        self._clock = clock
        self._on_problem = on_problem
        self._validity = self.config.validity.total_seconds()
        self._repeat = self.config.repeat_after.total_seconds()
        self._tolerance = self.config.future_tolerance.total_seconds()
        self._patients: dict[str, _Patient] = {}
        self._scale2 = set(self.config.spo2_scale2)
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self._messages: dict[str, int] = {}
        self._instants: dict[str, float] = {}

    # ------------------------------------------------------------------ input

    def feed(self, line: bytes | str, number: int | None = None) -> list[Assessment]:
        """One NDJSON line (an Observation, or a Bundle of them); a line that is not JSON is reported and counted."""
        self._counts[LINES] += 1
        if not line.strip():
            return []
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            self._problem(NOT_JSON, f"not JSON ({str(e).split(':')[0]}); each line must be one FHIR resource", number)
            return []
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            return self.add_bundle(resource, number)
        a = self.add(resource, number)
        return [] if a is None else [a]

    def add_bundle(self, bundle: Mapping[str, Any], number: int | None = None) -> list[Assessment]:
        """Every Observation of a Bundle, then one score per patient in it: a set sent together alerts once."""
        touched: list[str] = []
        for entry in bundle.get("entry") or ():
            resource = entry.get("resource") if isinstance(entry, dict) else None
            obs = self._read(resource, number)
            if obs is not None and self.add_measurement(obs) and obs.patient not in touched:
                touched.append(obs.patient)
        out = []
        for name in touched:
            a = self._score(name, self._patients[name])
            if a is not None:
                out.append(a)
        return out

    def add(self, resource: Any, number: int | None = None) -> Assessment | None:
        """One Observation (a plain dict): an :class:`Assessment` when it raises an alert (or ``every_score``)."""
        obs = self._read(resource, number)
        if obs is None:
            return None
        return self._score(obs.patient, self._patients[obs.patient]) if self.add_measurement(obs) else None

    def _read(self, resource: Any, number: int | None) -> VitalObservation | None:
        try:
            obs = read_observation(resource, self._instant)
        except ObservationProblem as p:
            self._problem(p.kind, str(p), number)
            return None
        if obs.time > self._clock() + self._tolerance:
            self._problem(FUTURE, f"{obs.kind} of {obs.patient} at {_iso(obs.time)} is in the future", number)
            return None
        return obs

    def add_measurement(self, obs: VitalObservation) -> bool:
        """Take one measurement already read into its patient's state (duplicates and order checked); True when
        it was used. The caller scores the patient (:meth:`add` does)."""
        counts = self._counts
        if obs.id is not None:
            seen = self._seen
            if obs.id in seen:
                counts[DUPLICATE] += 1
                return False
            seen.add(obs.id)
            order = self._seen_order
            order.append(obs.id)
            if len(order) > self.config.max_remembered_ids:
                seen.discard(order.popleft())
        patient = self._patients.get(obs.patient)
        if patient is None:
            patient = self._patients[obs.patient] = _Patient()
        slot = _SLOT[obs.kind]
        last = patient.times[slot]
        if obs.time < last:
            counts[OUT_OF_ORDER] += 1
            return False
        if obs.time == last:
            if obs.value == patient.values[slot]:
                counts[DUPLICATE] += 1
                return False
            counts[CORRECTED] += 1
        patient.values[slot] = obs.value
        patient.times[slot] = obs.time
        patient.units[slot] = obs.unit
        patient.subs[slot] = _sub_score(slot, obs.value)
        if obs.time > patient.latest:
            patient.latest = obs.time
        counts[USED] += 1
        return True

    def set_spo2_scale(self, patient: str, scale: int) -> None:
        """Score ``patient``'s SpO2 on Scale 2 (a prescribed target of 88-92 %) or back on Scale 1."""
        if scale not in (1, 2):
            raise ConfigError(f"SpO2 scale {scale!r} does not exist", "use 1, or 2 for a prescribed target of 88-92 %")
        if scale == 2:
            self._scale2.add(patient)
        else:
            self._scale2.discard(patient)

    # ------------------------------------------------------------------ scoring

    def _score(self, name: str, p: _Patient) -> Assessment | None:
        """NEWS2 at the patient's newest time from the valid slots; an alert on a rise to a band not alerted
        within the repeat window."""
        now = p.latest
        cut = now - self._validity
        times = p.times
        subs = p.subs
        total = 0
        red = False
        for slot in (_RR, _SBP, _PULSE, _TEMP):
            if times[slot] >= cut:
                s = subs[slot]
                total += s
                red = red or s == 3
        o2 = _FLOW if times[_FLOW] >= times[_FIO2] else _FIO2
        on_oxygen = subs[o2] == 2 if times[o2] >= cut else None
        if on_oxygen:
            total += 2
        consc = _ACVPU if times[_ACVPU] >= times[_GCS] else _GCS
        if times[consc] >= cut:
            s = subs[consc]
            total += s
            red = red or s == 3
        if times[_SPO2] >= cut:
            s2 = spo2_score(p.values[_SPO2], 2 if name in self._scale2 else 1, on_oxygen)
            if s2 is not None:
                total += s2
                red = red or s2 == 3
        rank = _RANK[clinical_risk(total, red)]
        previous = p.band
        p.band = rank
        alert = False
        if rank > previous:
            last = p.alerted.get(rank)
            if last is not None and now - last < self._repeat:
                self._counts[HELD_BACK] += 1
            else:
                p.alerted[rank] = now
                self._counts[ALERTS] += 1
                alert = True
        if alert or self.config.every_score:
            return self._assess(name, p, alert, BANDS[previous])
        return None

    def _vitals(self, name: str, p: _Patient) -> tuple[VitalSigns, dict[str, dict[str, Any]]]:
        """The valid values as :class:`VitalSigns` (stale ones named) and the parameters used, for the record."""
        cut = p.latest - self._validity
        values: dict[str, Any] = {}
        used: dict[str, dict[str, Any]] = {}
        stale: list[str] = []

        def take(parameter: str, slot: int, field_name: str, value: Any, unit: str, measured: str = "") -> None:
            t = p.times[slot]
            if t == _NEVER:
                return
            if t < cut:
                stale.append(parameter)
                return
            values[field_name] = value
            used[parameter] = {"value": value, "unit": unit, "time": _iso(t)}
            if measured:
                used[parameter]["measured"] = measured

        v = p.values
        take(RESPIRATORY_RATE, _RR, "respiratory_rate", v[_RR], "/min")
        take(SPO2, _SPO2, "spo2", v[_SPO2], "%")
        o2 = _FLOW if p.times[_FLOW] >= p.times[_FIO2] else _FIO2
        shown = "" if v[o2] is None else f"oxygen flow {v[o2]:g} L/min" if o2 == _FLOW else f"FiO2 {v[o2]:g} %"
        take(SUPPLEMENTAL_OXYGEN, o2, "supplemental_oxygen", p.subs[o2] == 2, "", shown)
        take(SYSTOLIC_BP, _SBP, "systolic_bp", v[_SBP], "mmHg")
        take(PULSE, _PULSE, "pulse", v[_PULSE], "/min")
        if p.times[_ACVPU] >= p.times[_GCS]:
            take(CONSCIOUSNESS, _ACVPU, "consciousness", v[_ACVPU], "ACVPU")
        else:
            take(CONSCIOUSNESS, _GCS, "gcs", v[_GCS], "GCS", "GCS (< 15: not alert)")
        fahrenheit = p.units[_TEMP] in ("[degF]", "°F")
        take(TEMPERATURE, _TEMP, "temperature", v[_TEMP], "degC", "converted from degF" if fahrenheit else "")
        return VitalSigns(**values, stale=tuple(stale)), used

    def _assess(self, name: str, p: _Patient, alert: bool, previous: str) -> Assessment:
        vitals, used = self._vitals(name, p)
        return Assessment(
            patient=name,
            time=datetime.fromtimestamp(p.latest, UTC),
            news2=news2(vitals, spo2_scale=2 if name in self._scale2 else 1),
            qsofa=qsofa(vitals),
            parameters=used,
            alert=alert,
            previous_band=previous,
        )

    def current(self, patient: str) -> Assessment:
        """``patient``'s NEWS2 and qSOFA now (at their newest observation), as an assessment that is not an alert."""
        p = self._patients.get(patient)
        if p is None:
            raise NotFoundError(f"no observation of {patient!r} was used", "give a patient of patients()")
        return self._assess(patient, p, False, BANDS[p.band])

    def patients(self) -> Iterator[str]:
        """The patients seen, in order of their first used observation."""
        return iter(self._patients)

    # ------------------------------------------------------------------ bookkeeping

    def counts(self) -> dict[str, int]:
        """Every count so far (those of :data:`COUNTS` always, problems as they occurred)."""
        return dict(self._counts)

    def _instant(self, text: Any) -> float:
        cached = self._instants.get(text) if isinstance(text, str) else None
        if cached is not None:
            return cached
        value = parse_instant(text)
        if len(self._instants) > 4096:
            self._instants.clear()
        self._instants[text] = value
        return value

    def _problem(self, kind: str, message: str, number: int | None) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if kind not in REPORTED or self._on_problem is None:
            return
        shown = self._messages.get(kind, 0)
        limit = self.config.max_messages_per_kind
        if shown < limit:
            where = f"line {number}: " if number is not None else ""
            self._on_problem(f"{where}{message}")
        elif shown == limit:
            self._on_problem(f"more lines with '{kind}': counted in the summary, no longer reported one by one")
        self._messages[kind] = shown + 1
