"""Outcomes from files, for the monitoring store: a CSV table, or FHIR resources (NDJSON, a Bundle, one resource).

CSV: one row per outcome with columns ``patient``, ``value`` (1/0, true/false, or a number), and optionally
``encounter``, ``outcome`` (else ``--outcome`` names it) and ``time`` (ISO 8601).

FHIR, by ``rule`` (what in the record is the outcome):

- ``discharge``: each Encounter's ``hospitalization.dischargeDisposition``: 1 when one of its codes is in
  ``event_codes`` (default ``exp``, "expired", as PhysioNet 2012's conversion writes a death in hospital), else 0;
  joined by patient and encounter, at ``period.end``. An Encounter without a disposition is not yet an outcome.
- ``death``: each Patient's ``deceased[x]``: 1 with ``deceasedDateTime`` or ``deceasedBoolean`` true, 0 with
  ``deceasedBoolean`` false; a Patient that says nothing is left out (not known).
- ``observation:CODE`` (``CODE`` or ``SYSTEM|CODE``): each Observation of that code, its value (a quantity,
  integer, boolean, or a coded answer's presence as 1), at its effective time, joined to its encounter when it
  names one.
- ``condition:CODE``: each Condition of that code is an event (1) at its onset (or recorded date); the absence of
  a Condition is not read as 0, so give the 0s another way (a CSV) if the model needs them.

Times: all with a zone, or none with one and then ``timezone`` says which; a mix is refused (the file was put
together from sources that disagree). A date without a time is that day at 00:00 UTC, as FHIR reads a date.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from medml.errors import ConfigError, DataError, InputFileError, clip, quote
from medml.monitor.store import OutcomeRow

__all__ = ["RULES", "read_outcomes"]

RULES = ("discharge", "death", "observation:CODE", "condition:CODE")
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}


@dataclass
class _Time:
    """A time as read, before the file's time zone rule is applied: aware, naive, or a date."""

    text: str
    where: str
    value: datetime | None  # None: a date (no time part)
    day: date | None = None


def _parse_time(text: str, where: str) -> _Time:
    raw = text.strip()
    try:
        if len(raw) <= 10 and "T" not in raw and " " not in raw:
            if len(raw) == 4:  # a FHIR year
                return _Time(raw, where, None, date(int(raw), 1, 1))
            if len(raw) == 7:  # a FHIR year-month
                return _Time(raw, where, None, date(int(raw[:4]), int(raw[5:7]), 1))
            return _Time(raw, where, None, date.fromisoformat(raw))
        return _Time(raw, where, datetime.fromisoformat(raw))
    except ValueError:
        raise DataError(
            f"{where}: time {quote(raw)} is not an ISO 8601 date or time", "write e.g. 2024-05-01T08:30Z"
        ) from None


def _resolve_times(times: list[_Time | None], timezone: str | None, source: str) -> list[datetime | None]:
    """Aware UTC datetimes: the file's times all with a zone, or all without and ``timezone`` given."""
    timed = [t for t in times if t is not None and t.value is not None]
    aware = [t for t in timed if t.value is not None and t.value.tzinfo is not None]
    naive = [t for t in timed if t.value is not None and t.value.tzinfo is None]
    if aware and naive:
        raise DataError(
            f"{source} mixes times with a time zone ({aware[0].where}: {quote(aware[0].text)}) and without one "
            f"({naive[0].where}: {quote(naive[0].text)}; {len(naive):,} of {len(timed):,} times)",
            "give every time its zone (e.g. 2024-05-01T08:30:00Z); a time without one is ambiguous",
        )
    zone = None
    if naive:
        if timezone is None:
            raise DataError(
                f"{source}: the times have no time zone (e.g. {naive[0].where}: {quote(naive[0].text)})",
                "add the zone to each time, or name the zone they were written in with --timezone, e.g. "
                "--timezone Europe/Berlin",
            )
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {quote(timezone)}", "give an IANA name, e.g. Europe/Berlin") from None
    out: list[datetime | None] = []
    for t in times:
        if t is None:
            out.append(None)
        elif t.value is None:
            assert t.day is not None
            out.append(datetime(t.day.year, t.day.month, t.day.day, tzinfo=UTC))
        elif t.value.tzinfo is None:
            out.append(t.value.replace(tzinfo=zone).astimezone(UTC))
        else:
            out.append(t.value.astimezone(UTC))
    return out


def read_outcomes(
    path: Path,
    *,
    fmt: str | None = None,
    outcome: str | None = None,
    rule: str | None = None,
    event_codes: tuple[str, ...] = ("exp",),
    timezone: str | None = None,
) -> list[OutcomeRow]:
    """The outcomes in ``path`` (see the module docstring); ``fmt`` csv or fhir (default: from the suffix)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"no outcomes file at {path}", "give a CSV or FHIR (NDJSON or JSON) file")
    kind = fmt or ("csv" if path.suffix.lower() in (".csv", ".tsv") else "fhir")
    if kind not in ("csv", "fhir"):
        raise ConfigError(f"unknown outcomes format {quote(kind)}", "use csv or fhir")
    if kind == "csv":
        if rule is not None:
            raise ConfigError("--from reads FHIR resources; a CSV names its outcomes itself", "leave out --from")
        return _read_csv(path, outcome, timezone)
    return _read_fhir(path, rule or "discharge", outcome, event_codes, timezone)


# ---- CSV -----------------------------------------------------------------------------------------------------------


def _read_csv(path: Path, outcome: str | None, timezone: str | None) -> list[OutcomeRow]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
            reader = csv.DictReader(fh, dialect=dialect)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not UTF-8 text", "save the outcomes as a UTF-8 CSV") from None
    except csv.Error as e:
        raise InputFileError(f"{path} is not a readable CSV ({e})", "fix the file") from None
    if not sample.strip():
        raise InputFileError(f"{path} is empty", "give a header line and one row per outcome")
    needed = ["patient", "value"] + ([] if outcome else ["outcome"])
    absent = [c for c in needed if c not in columns]
    if absent:
        raise DataError(
            f"{path} has no column {', '.join(absent)} (columns: {clip(', '.join(columns))})",
            "give patient, value, and outcome (or --outcome NAME), optionally encounter and time",
        )
    if outcome and "outcome" in columns:
        raise ConfigError(f"{path} has an outcome column and --outcome was given", "use one or the other")
    if not rows:
        raise DataError(f"{path} has a header but no outcomes", "give one row per outcome")
    times: list[_Time | None] = []
    partial = []
    for i, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in raw.items()}
        where = f"{path.name}, line {i}"
        patient = row.get("patient", "")
        if not patient:
            raise DataError(f"{where}: no patient", "give the FHIR Patient id the service saw on every row")
        name = outcome or row.get("outcome", "")
        if not name:
            raise DataError(f"{where}: no outcome name", "fill the outcome column")
        partial.append((patient, row.get("encounter") or None, name, _value(row.get("value", ""), where)))
        times.append(_parse_time(row["time"], where) if row.get("time") else None)
    resolved = _resolve_times(times, timezone, str(path))
    return [
        OutcomeRow(patient=p, encounter=e, outcome=n, value=v, time=t, source=path.name)
        for (p, e, n, v), t in zip(partial, resolved, strict=True)
    ]


def _value(text: str, where: str) -> float:
    low = text.lower()
    if low in TRUE:
        return 1.0
    if low in FALSE:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{where}: value {quote(text)} is not 1/0 or a number", "give 1 for the event, 0 without it")
    return value


# ---- FHIR ----------------------------------------------------------------------------------------------------------


def _resources(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, resource) for every resource in an NDJSON file, a Bundle (its entries) or a single resource."""
    data = path.read_bytes()
    if not data.strip():
        raise InputFileError(f"{path} is empty", "give FHIR resources as NDJSON, a Bundle or one resource")
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        if whole.get("resourceType") == "Bundle":
            for i, entry in enumerate(whole.get("entry") or []):
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict):
                    yield f"{path.name}, entry {i}", res
            return
        yield path.name, whole
        return
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise InputFileError(
                f"{path.name}, line {n} is not JSON ({e})", "give one FHIR resource per line (NDJSON)"
            ) from None
        if not isinstance(res, dict) or "resourceType" not in res:
            raise InputFileError(f"{path.name}, line {n} is not a FHIR resource", "give one resource per line")
        if res["resourceType"] == "Bundle":
            for i, entry in enumerate(res.get("entry") or []):
                inner = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    yield f"{path.name}, line {n}, entry {i}", inner
        else:
            yield f"{path.name}, line {n}", res


def _ref_id(ref: Any, kind: str) -> str | None:
    """The id in a reference to ``kind`` (``Patient/123``, an absolute URL, or ``urn:uuid:...``)."""
    text = ref.get("reference") if isinstance(ref, Mapping) else None
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("urn:uuid:"):
        return text.removeprefix("urn:uuid:")
    parts = text.split("/")
    if len(parts) >= 2 and parts[-2] == kind:
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == kind and parts[-2] == "_history":
        return parts[-3]
    return None


def _codes(concept: Any) -> set[str]:
    """``code`` and ``system|code`` of every coding of a CodeableConcept."""
    out: set[str] = set()
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    for c in codings if isinstance(codings, list) else []:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            out.add(c["code"])
            if isinstance(c.get("system"), str):
                out.add(f"{c['system']}|{c['code']}")
    return out


def _read_fhir(
    path: Path, rule: str, outcome: str | None, event_codes: tuple[str, ...], timezone: str | None
) -> list[OutcomeRow]:
    kind, _, code = rule.partition(":")
    if kind not in ("discharge", "death", "observation", "condition") or (
        kind in ("observation", "condition") and not code
    ):
        raise ConfigError(f"unknown outcome rule {quote(rule)}", f"use one of {', '.join(RULES)}")
    name = (
        outcome
        or {
            "discharge": f"discharge disposition {'/'.join(event_codes)}",
            "death": "death",
            "observation": f"observation {code}",
            "condition": f"condition {code}",
        }[kind]
    )
    found: list[tuple[str, str | None, float, _Time | None]] = []
    resource_type = {"discharge": "Encounter", "death": "Patient", "observation": "Observation"}.get(kind, "Condition")
    seen_type = 0
    for where, res in _resources(path):
        if res.get("resourceType") != resource_type:
            continue
        seen_type += 1
        item = _RULES[kind](res, where, code, event_codes)
        if item is not None:
            found.append(item)
    if not found:
        what = f"{seen_type:,} {resource_type} resource(s), none with" if seen_type else f"no {resource_type} with"
        raise DataError(
            f"{path} holds {what} the outcome ({rule})",
            "check --from names what holds the outcome in these resources",
        )
    resolved = _resolve_times([t for *_, t in found], timezone, str(path))
    return [
        OutcomeRow(patient=p, encounter=e, outcome=name, value=v, time=t, source=path.name)
        for (p, e, v, _), t in zip(found, resolved, strict=True)
    ]


def _subject(res: Mapping[str, Any], where: str) -> str:
    patient = _ref_id(res.get("subject") or res.get("patient"), "Patient")
    if patient is None:
        raise DataError(f"{where}: {res.get('resourceType')}/{res.get('id')} names no Patient", "give its subject")
    return patient


def _discharge(
    res: Mapping[str, Any], where: str, code: str, event_codes: tuple[str, ...]
) -> tuple[str, str | None, float, _Time | None] | None:
    disposition = (res.get("hospitalization") or {}).get("dischargeDisposition")
    if not disposition:
        return None
    if not isinstance(res.get("id"), str):
        raise DataError(f"{where}: an Encounter without an id", "give each Encounter its id")
    end = (res.get("period") or {}).get("end")
    value = 1.0 if _codes(disposition) & set(event_codes) else 0.0
    return _subject(res, where), res["id"], value, _parse_time(end, where) if isinstance(end, str) else None


def _death(
    res: Mapping[str, Any], where: str, code: str, event_codes: tuple[str, ...]
) -> tuple[str, str | None, float, _Time | None] | None:
    if not isinstance(res.get("id"), str):
        raise DataError(f"{where}: a Patient without an id", "give each Patient its id")
    when = res.get("deceasedDateTime")
    if isinstance(when, str):
        return res["id"], None, 1.0, _parse_time(when, where)
    flag = res.get("deceasedBoolean")
    if isinstance(flag, bool):
        return res["id"], None, 1.0 if flag else 0.0, None
    return None


def _observation(
    res: Mapping[str, Any], where: str, code: str, event_codes: tuple[str, ...]
) -> tuple[str, str | None, float, _Time | None] | None:
    if code not in _codes(res.get("code")):
        return None
    if "valueQuantity" in res:
        value = (res.get("valueQuantity") or {}).get("value")
    elif "valueInteger" in res:
        value = res.get("valueInteger")
    elif "valueBoolean" in res:
        value = 1.0 if res.get("valueBoolean") else 0.0
    elif "valueCodeableConcept" in res:
        value = 1.0
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: Observation/{res.get('id')} has value {quote(value)}", "give a number")
    when = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("end") or res.get("issued")
    encounter = _ref_id(res.get("encounter"), "Encounter")
    return _subject(res, where), encounter, float(value), _parse_time(when, where) if isinstance(when, str) else None


def _condition(
    res: Mapping[str, Any], where: str, code: str, event_codes: tuple[str, ...]
) -> tuple[str, str | None, float, _Time | None] | None:
    if code not in _codes(res.get("code")):
        return None
    when = res.get("onsetDateTime") or res.get("recordedDate")
    encounter = _ref_id(res.get("encounter"), "Encounter")
    return _subject(res, where), encounter, 1.0, _parse_time(when, where) if isinstance(when, str) else None


_RULES = {"discharge": _discharge, "death": _death, "observation": _observation, "condition": _condition}
