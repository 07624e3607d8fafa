"""FHIR dates, dateTimes and times as FHIRPath compares them: partial precision, time zones, uncertain results."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

_TEMPORAL = re.compile(
    r"^(?:(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2}))?)?)?"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?$"
)


@dataclass(frozen=True, slots=True)
class FhirTemporal:
    """A date, dateTime or time to the precision it was written at. ``parts`` runs from the year (or, for a
    time, the hour) down; seconds carry their fraction. ``tz`` is the offset in minutes, None if not given."""

    text: str
    kind: str  # date | dateTime | time
    parts: tuple[float, ...]
    tz: int | None

    def compare(self, other: FhirTemporal) -> int | None:
        """-1, 0 or 1; None where FHIRPath's answer is empty (the values differ in precision but agree so far)."""
        if (self.kind == "time") != (other.kind == "time"):
            return None
        a, b = self.parts, other.parts
        if self.tz is not None and other.tz is not None and len(a) > 3 and len(b) > 3 and self.kind != "time":
            a, b = _utc(a, self.tz), _utc(b, other.tz)
        for x, y in zip(a, b, strict=False):
            if x != y:
                return -1 if x < y else 1
        return 0 if len(a) == len(b) else None


def _utc(parts: tuple[float, ...], tz: int) -> tuple[float, ...]:
    full = [int(p) for p in parts[:5]] + [0] * (5 - min(len(parts), 5))
    moment = datetime(full[0], full[1], full[2], full[3], full[4], tzinfo=timezone(timedelta(minutes=tz)))
    u = moment.astimezone(UTC)
    shifted = (float(u.year), float(u.month), float(u.day), float(u.hour), float(u.minute))
    return shifted[: len(parts)] + parts[5:]


def parse_temporal(text: str) -> FhirTemporal | None:
    """A FHIR or FHIRPath date/time literal (``2020-01-01``, ``2020-01-01T10:00:00Z``, ``T10:00``), or None."""
    m = _TEMPORAL.match(text)
    if m is None or (m.group("y") is None and m.group("h") is None):
        return None
    g = m.groupdict()
    tz = None
    if g["tz"]:
        tz = 0 if g["tz"] == "Z" else (1 if g["tz"][0] == "+" else -1) * (int(g["tz"][1:3]) * 60 + int(g["tz"][4:]))
    seconds = None if g["s"] is None else float(f"{g['s']}.{g['f'] or 0}")
    if g["y"] is None:
        parts = [float(g["h"])] + [float(v) for v in (g["mi"],) if v is not None]
        if seconds is not None:
            parts.append(seconds)
        return FhirTemporal(text, "time", tuple(parts), None)
    values = [g["y"], g["mo"], g["d"], g["h"], g["mi"]]
    parts = []
    for v in values:
        if v is None:
            break
        parts.append(float(v))
    if seconds is not None and len(parts) == 5:
        parts.append(seconds)
    kind = "dateTime" if g["h"] is not None or (tz is not None and len(parts) == 3) else "date"
    return FhirTemporal(text, kind, tuple(parts), tz)


__all__ = ["FhirTemporal", "parse_temporal"]
