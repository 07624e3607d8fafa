"""Wearables for remote monitoring: a device's export read as FHIR Observations with the device recorded, and the
resting-heart-rate and SpO2 trend rules run over them.

Input, either:

- a CSV (``read_wearable_csv``), one row per time: ``time`` (ISO 8601; without an offset it is read in the
  ``timezone`` given) and any of ``heart_rate`` (/min), ``spo2`` (%), ``steps`` (steps since the previous row) and
  ``sleep`` (the night's sleep duration, min). A column may name its unit in brackets, ``spo2[%]``,
  ``heart_rate[bpm]``, ``sleep[h]``, ``spo2[1]`` (a fraction, converted to %); :data:`COLUMNS` lists what is
  accepted. Any other column is refused, by name, before anything is read;
- FHIR Observations (a Bundle or NDJSON, ``read_wearable_fhir``) that name their ``device``, with their Device.

Each measurement becomes an Observation (LOINC: heart rate 8867-4, SpO2 59408-5, steps 55423-8, sleep duration
93832-4; UCUM units) whose ``device`` references one Device resource for the export. Ids are derived from the device,
patient, code and time, so importing the same export twice stores it once. A row that cannot be parsed, a time in
the future (more than :data:`CLOCK_SKEW` ahead), or a value outside its plausible range in the column's unit (SpO2
0.97 in a % column: a fraction in the wrong unit) is counted, named by line, and left out; the rest goes on.

Rules (:func:`check_patient`, stated in :class:`Rules`):

- resting heart rate of a day: the lowest 5-minute mean heart rate of that calendar day (in the readings' own UTC
  offset), from days with at least ``min_bins`` 5-minute bins of readings;
- heart-rate alert: the mean resting heart rate of the last ``recent_days`` (3) days with one is more than
  ``rise_bpm`` (5) above the mean of the ``baseline_days`` (28) days before them (at least ``min_baseline_days``, 14);
- SpO2 alert: every reading below ``spo2_below`` (92 %) for at least ``sustained_minutes`` (15), with at least 3
  readings and no gap over ``sustained_minutes`` between them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from medml import __version__
from medml.errors import ConfigError, InputFileError

__all__ = [
    "COLUMNS",
    "LOINC",
    "RULES_NAME",
    "Device",
    "Rules",
    "WearableAlert",
    "WearableImport",
    "check_patient",
    "observations_by_patient",
    "read_wearable_csv",
    "read_wearable_fhir",
    "resting_heart_rate",
]

RULES_NAME = f"medml wearable rules@{__version__}"
INTENDED_USE = (
    "Remote-monitoring prompts from a consumer wearable, for a clinician to review: not a diagnosis, not validated "
    "as a medical device; consumer SpO2 and heart rate carry device error (SpO2 about +/- 2-4 %)."
)
CLOCK_SKEW = timedelta(minutes=5)
_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class Measure:
    """A wearable measurement: its LOINC code and display, UCUM unit, category and plausible range in that unit."""

    code: str
    display: str
    unit: str
    category: str
    plausible: tuple[float, float]


LOINC: Mapping[str, Measure] = {
    "heart_rate": Measure("8867-4", "Heart rate", "/min", "vital-signs", (25.0, 250.0)),
    "spo2": Measure(
        "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "vital-signs", (50.0, 100.0)
    ),
    "steps": Measure("55423-8", "Number of steps in unspecified time Pedometer", "{steps}", "activity", (0, 1e5)),
    "sleep": Measure("93832-4", "Sleep duration", "min", "activity", (0.0, 24 * 60.0)),
}
_CODES = {m.code: k for k, m in LOINC.items()} | {"2708-6": "spo2"}


def _identity(v: float) -> float:
    return v


#: column -> accepted units written in its header (``spo2[%]``) -> conversion to the stored unit; no unit: the first
COLUMNS: Mapping[str, Mapping[str, Callable[[float], float]]] = {
    "heart_rate": {"/min": _identity, "bpm": _identity, "{beats}/min": _identity},
    "spo2": {"%": _identity, "1": lambda v: v * 100.0},
    "steps": {"{steps}": _identity, "steps": _identity, "count": _identity},
    "sleep": {"min": _identity, "h": lambda v: v * 60.0},
}
_TIME_COLUMNS = ("time", "timestamp", "datetime")


@dataclass(frozen=True)
class Device:
    """The wearable as a FHIR Device: who made it, which model, its serial number (any may be empty)."""

    manufacturer: str = ""
    model: str = ""
    serial: str = ""

    @property
    def id(self) -> str:
        key = f"{self.manufacturer}|{self.model}|{self.serial}".encode()
        return "wearable-" + hashlib.sha256(key).hexdigest()[:16]

    def resource(self, patient: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Device",
            "id": self.id,
            "status": "active",
            "patient": {"reference": patient},
        }
        if self.manufacturer:
            res["manufacturer"] = self.manufacturer
        if self.model:
            res["deviceName"] = [{"name": self.model, "type": "model-name"}]
        if self.serial:
            res["serialNumber"] = self.serial
        res["type"] = {"text": "consumer wearable"}
        return res


@dataclass
class WearableImport:
    """What an export gave: the resources to store (the Device first), the measurements per kind, and each line
    left out with why (``problems``: ``(line, reason)``; ``counts``: reasons counted)."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    measurements: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[int, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lines: int = 0

    def problem(self, line: int, kind: str, detail: str) -> None:
        self.problems.append((line, f"{kind}: {detail}"))
        self.counts[kind] += 1


def _timezone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}", "give an IANA name, e.g. Europe/London, or UTC") from None


def _header(fields: list[str], path: str) -> tuple[int, dict[int, tuple[str, Callable[[float], float]]]]:
    """The time column's position and, per measurement column, (kind, conversion); unknown columns refused."""
    time_at = -1
    columns: dict[int, tuple[str, Callable[[float], float]]] = {}
    unknown: list[str] = []
    for i, raw in enumerate(fields):
        name = raw.strip()
        base, _, unit = name.partition("[")
        base, unit = base.strip().lower(), unit.rstrip("]").strip()
        if base in _TIME_COLUMNS and not unit:
            time_at = i
        elif base in COLUMNS and (not unit or unit in COLUMNS[base]):
            units = COLUMNS[base]
            columns[i] = (base, units[unit] if unit else next(iter(units.values())))
        else:
            unknown.append(name)
    if unknown:
        accepted = ", ".join(f"{c}[{'|'.join(u)}]" for c, u in COLUMNS.items())
        raise InputFileError(
            f"{path}: unknown column(s) {', '.join(repr(u) for u in unknown)}",
            f"a wearable CSV has a time column and any of: {accepted}",
        )
    if time_at < 0:
        raise InputFileError(f"{path}: no time column", f"name one of: {', '.join(_TIME_COLUMNS)}")
    if not columns:
        raise InputFileError(f"{path}: no measurement column", f"give any of: {', '.join(COLUMNS)}")
    return time_at, columns


def _observation(kind: str, value: float, when: datetime, patient: str, device: str) -> dict[str, Any]:
    m = LOINC[kind]
    instant = when.isoformat(timespec="seconds")
    key = f"{device}|{patient}|{m.code}|{when.astimezone(UTC).isoformat()}".encode()
    return {
        "resourceType": "Observation",
        "id": "wobs-" + hashlib.sha256(key).hexdigest()[:24],
        "status": "final",
        "category": [{"coding": [{"system": _CATEGORY, "code": m.category}]}],
        "code": {"coding": [{"system": _LOINC, "code": m.code, "display": m.display}], "text": m.display},
        "subject": {"reference": patient},
        "effectiveDateTime": instant,
        "valueQuantity": {"value": value, "unit": m.unit, "system": _UCUM, "code": m.unit},
        "device": {"reference": f"Device/{device}"},
    }


def _check_patient(patient: str) -> None:
    if not patient.startswith("Patient/") or len(patient) <= len("Patient/"):
        raise ConfigError(f"patient {patient!r} is not a reference", "give it as Patient/<id>, e.g. Patient/123")


def read_wearable_csv(
    path: str | Path,
    patient: str,
    device: Device,
    *,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> WearableImport:
    """The export at ``path`` as a Device and Observations for ``patient`` (``Patient/<id>``); see the module."""
    _check_patient(patient)
    zone = _timezone(timezone)
    latest = (now or datetime.now(UTC)) + CLOCK_SKEW
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {p}: {e}", "give a UTF-8 CSV export of the wearable") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise InputFileError(f"{p} is empty", "give a CSV with a header row")
    time_at, columns = _header(header, str(p))
    out = WearableImport(resources=[device.resource(patient)])
    for fields in rows:
        line = rows.line_num
        if not any(f.strip() for f in fields):
            continue
        out.lines += 1
        if len(fields) != len(header):
            out.problem(line, "not parseable", f"{len(fields)} fields, the header has {len(header)}")
            continue
        try:
            when = datetime.fromisoformat(fields[time_at].strip())
        except ValueError:
            out.problem(line, "not parseable", f"time {fields[time_at]!r} is not an ISO 8601 date-time")
            continue
        when = when if when.tzinfo is not None else when.replace(tzinfo=zone)
        if when > latest:
            out.problem(line, "time in the future", when.isoformat())
            continue
        for i, (kind, convert) in columns.items():
            cell = fields[i].strip()
            if not cell:
                continue
            try:
                value = convert(float(cell))
            except ValueError:
                out.problem(line, "not parseable", f"{header[i].strip()} {cell!r} is not a number")
                continue
            lo, hi = LOINC[kind].plausible
            if not (math.isfinite(value) and lo <= value <= hi):
                unit = LOINC[kind].unit
                out.problem(
                    line, "implausible or wrong unit", f"{header[i].strip()} {cell} (expected {lo:g}-{hi:g} {unit})"
                )
                continue
            out.resources.append(_observation(kind, value, when, patient, device.id))
            out.measurements[kind] += 1
    return out


def _fhir_resources(text: bytes, path: str) -> Iterable[tuple[int, Any]]:
    stripped = text.lstrip()
    if stripped[:1] == b"{":
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            if doc.get("resourceType") == "Bundle":
                for i, e in enumerate(doc.get("entry") or ()):
                    yield i + 1, e.get("resource") if isinstance(e, dict) else None
                return
            yield 1, doc
            return
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                yield i + 1, orjson.loads(line)
            except orjson.JSONDecodeError:
                yield i + 1, None


def read_wearable_fhir(path: str | Path, *, now: datetime | None = None) -> WearableImport:
    """Observations that name their ``device`` (and those Devices) from a FHIR Bundle or NDJSON; an Observation
    without a device, subject, known code, time or plausible value is counted and left out."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {p}: {e.strerror}", "give a FHIR Bundle or NDJSON file") from None
    latest = (now or datetime.now(UTC)) + CLOCK_SKEW
    out = WearableImport()
    devices: list[dict[str, Any]] = []
    for where, res in _fhir_resources(text, str(p)):
        out.lines += 1
        if not isinstance(res, dict) or "resourceType" not in res:
            out.problem(where, "not parseable", "not a FHIR resource (JSON object with resourceType)")
            continue
        if res["resourceType"] == "Device":
            devices.append(res)
            continue
        if res["resourceType"] != "Observation":
            out.problem(where, "not a wearable Observation", f"a {res['resourceType']}")
            continue
        kind = next(
            (_CODES[c.get("code")] for c in (res.get("code") or {}).get("coding") or () if c.get("code") in _CODES),
            None,
        )
        reason = _fhir_problem(res, kind, latest)
        if reason:
            out.problem(where, *reason)
            continue
        out.resources.append(res)
        out.measurements[str(kind)] += 1
    out.resources[:0] = devices
    return out


def _fhir_problem(res: dict[str, Any], kind: str | None, latest: datetime) -> tuple[str, str] | None:
    if kind is None:
        return "not a wearable Observation", "no LOINC code of heart rate, SpO2, steps or sleep duration"
    if not (res.get("device") or {}).get("reference"):
        return "no device", "the Observation names no device"
    if not str((res.get("subject") or {}).get("reference", "")).startswith("Patient/"):
        return "no subject", "the Observation names no Patient"
    try:
        when = datetime.fromisoformat(str(res.get("effectiveDateTime")))
    except ValueError:
        return "not parseable", f"time {res.get('effectiveDateTime')!r} is not an ISO 8601 date-time"
    if when.tzinfo is None:
        return "not parseable", "time has no UTC offset"
    if when > latest:
        return "time in the future", when.isoformat()
    q = res.get("valueQuantity") or {}
    m = LOINC[kind]
    unit = q.get("code", q.get("unit"))
    value = q.get("value")
    if unit != m.unit and not (kind == "sleep" and unit == "h"):
        return "implausible or wrong unit", f"{m.display} in {unit!r}, expected {m.unit!r}"
    if not isinstance(value, int | float) or not m.plausible[0] <= value * (60 if unit == "h" else 1) <= m.plausible[1]:
        return (
            "implausible or wrong unit",
            f"{m.display} {value!r} {unit} outside {m.plausible[0]:g}-{m.plausible[1]:g}",
        )
    return None


# --- rules ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The remote-monitoring rules and their settings (see the module docstring)."""

    recent_days: int = 3
    baseline_days: int = 28
    min_baseline_days: int = 14
    rise_bpm: float = 5.0
    min_bins: int = 12
    spo2_below: float = 92.0
    sustained_minutes: float = 15.0

    def describe(self) -> list[str]:
        return [
            f"resting heart rate: the lowest 5-minute mean of a day with at least {self.min_bins} 5-minute bins",
            f"heart-rate alert: mean resting heart rate of the last {self.recent_days} days more than "
            f"{self.rise_bpm:g} bpm above the mean of the {self.baseline_days} days before "
            f"(at least {self.min_baseline_days} of them)",
            f"SpO2 alert: every reading below {self.spo2_below:g} % for at least {self.sustained_minutes:g} min "
            "(3 readings or more, no gap longer than that)",
        ]


@dataclass(frozen=True)
class WearableAlert:
    """One rule that fired for a patient, with the numbers behind it and the rules that said so."""

    patient: str
    rule: str
    at: str
    detail: str
    source: str = RULES_NAME

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "rule": self.rule,
            "at": self.at,
            "detail": self.detail,
            "source": self.source,
            "intended_use": INTENDED_USE,
        }


def resting_heart_rate(readings: Iterable[tuple[datetime, float]], min_bins: int = 12) -> dict[date, float]:
    """Per calendar day (in each reading's own offset): the lowest mean of the heart rates in a 5-minute bin, from
    days with at least ``min_bins`` bins holding a reading."""
    bins: dict[date, dict[int, list[float]]] = {}
    for when, bpm in readings:
        minute = when.hour * 60 + when.minute
        bins.setdefault(when.date(), {}).setdefault(minute // 5, []).append(bpm)
    return {
        day: min(sum(v) / len(v) for v in by_bin.values())
        for day, by_bin in sorted(bins.items())
        if len(by_bin) >= min_bins
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def check_patient(
    patient: str, readings: Mapping[str, list[tuple[datetime, float]]], rules: Rules = Rules()
) -> tuple[list[WearableAlert], dict[str, Any]]:
    """The alerts for one patient's readings (``heart_rate``, ``spo2``: time-sorted (time, value)), and a summary:
    the days with a resting heart rate, the recent and baseline means, the lowest SpO2."""
    alerts: list[WearableAlert] = []
    rhr = resting_heart_rate(readings.get("heart_rate", []), rules.min_bins)
    days = sorted(rhr)
    summary: dict[str, Any] = {"patient": patient, "rhr_days": len(days)}
    if len(days) >= rules.recent_days:
        recent = days[-rules.recent_days :]
        start = recent[0] - timedelta(days=rules.baseline_days)
        base = [rhr[d] for d in days if start <= d < recent[0]]
        summary["rhr_recent"] = round(_mean([rhr[d] for d in recent]), 1)
        if len(base) >= rules.min_baseline_days:
            summary["rhr_baseline"] = round(_mean(base), 1)
            rise = summary["rhr_recent"] - summary["rhr_baseline"]
            if rise > rules.rise_bpm:
                alerts.append(
                    WearableAlert(
                        patient,
                        "resting heart rate rising",
                        recent[-1].isoformat(),
                        f"{rules.recent_days}-day mean {summary['rhr_recent']:.1f} bpm is {rise:.1f} bpm above the "
                        f"{len(base)}-day baseline {summary['rhr_baseline']:.1f} bpm (rule: > {rules.rise_bpm:g})",
                    )
                )
    spo2 = readings.get("spo2", [])
    if spo2:
        summary["spo2_lowest"] = min(v for _, v in spo2)
    run: list[tuple[datetime, float]] = []
    gap = timedelta(minutes=rules.sustained_minutes)
    for when, value in [*spo2, (datetime.max.replace(tzinfo=UTC), math.inf)]:
        if value < rules.spo2_below and (not run or when - run[-1][0] <= gap):
            run.append((when, value))
            continue
        if len(run) >= 3 and run[-1][0] - run[0][0] >= gap:
            minutes = (run[-1][0] - run[0][0]).total_seconds() / 60
            alerts.append(
                WearableAlert(
                    patient,
                    "SpO2 low, sustained",
                    run[0][0].isoformat(),
                    f"{len(run)} readings below {rules.spo2_below:g} % over {minutes:.0f} min "
                    f"(lowest {min(v for _, v in run):g} %)",
                )
            )
        run = [(when, value)] if value < rules.spo2_below else []
    return alerts, summary


def observations_by_patient(
    resources: Iterable[Mapping[str, Any]],
) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
    """Wearable Observations (with a device) grouped as patient -> kind -> time-sorted (time, value in the stored
    unit); others are passed over."""
    out: dict[str, dict[str, list[tuple[datetime, float]]]] = {}
    for res in resources:
        if not (res.get("device") or {}).get("reference"):
            continue
        codes = [c.get("code") for c in (res.get("code") or {}).get("coding") or ()]
        kind = next((_CODES[c] for c in codes if c in _CODES), None)
        value = (res.get("valueQuantity") or {}).get("value")
        patient = (res.get("subject") or {}).get("reference")
        if kind is None or not isinstance(value, int | float) or not patient:
            continue
        try:
            when = datetime.fromisoformat(str(res.get("effectiveDateTime")))
        except ValueError:
            continue
        if when.tzinfo is None:
            continue
        out.setdefault(patient, {}).setdefault(kind, []).append((when, float(value)))
    for kinds in out.values():
        for series in kinds.values():
            series.sort(key=lambda r: r[0])
    return out
