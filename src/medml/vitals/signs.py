"""One set of vital signs in chart units, the plausible range of each, and the chart's rounding rule.

Both scores (:mod:`medml.vitals.news2`, :mod:`medml.vitals.qsofa`) read a :class:`VitalSigns`. A parameter that was not
measured, or whose last value is older than its validity window, is ``None`` and never scored as normal: the scores
name it and say they are partial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from medml.errors import DataError

__all__ = [
    "ACVPU",
    "ACVPU_WORDS",
    "CONSCIOUSNESS",
    "GCS",
    "PARAMETERS",
    "PLAUSIBLE",
    "PULSE",
    "RESPIRATORY_RATE",
    "SPO2",
    "SUPPLEMENTAL_OXYGEN",
    "SYSTOLIC_BP",
    "TEMPERATURE",
    "VALIDITY",
    "Reading",
    "VitalSigns",
    "acvpu_letter",
    "as_of",
    "chart_integer",
    "chart_tenths",
]

RESPIRATORY_RATE = "respiratory rate"
SPO2 = "SpO2"
SUPPLEMENTAL_OXYGEN = "supplemental oxygen"
SYSTOLIC_BP = "systolic blood pressure"
PULSE = "pulse"
CONSCIOUSNESS = "consciousness"
TEMPERATURE = "temperature"
GCS = "GCS"
#: The seven NEWS2 parameters, in the order of the RCP chart.
PARAMETERS = (RESPIRATORY_RATE, SPO2, SUPPLEMENTAL_OXYGEN, SYSTOLIC_BP, PULSE, CONSCIOUSNESS, TEMPERATURE)

#: Inclusive plausible ranges in chart units; a value outside is a recording or unit error, left out and counted.
PLAUSIBLE: Mapping[str, tuple[float, float]] = {
    RESPIRATORY_RATE: (0.0, 80.0),  # /min
    SPO2: (40.0, 100.0),  # %
    SYSTOLIC_BP: (40.0, 300.0),  # mmHg
    PULSE: (20.0, 300.0),  # /min
    TEMPERATURE: (25.0, 45.0),  # degC
    GCS: (3.0, 15.0),  # points
}

#: A NEWS2 parameter older than this (at the time of the score) is stale: named, not scored (RCP: 4-hourly at least).
VALIDITY = timedelta(hours=4)

#: ACVPU: Alert, new Confusion, responds to Voice, responds to Pain, Unresponsive.
ACVPU = ("A", "C", "V", "P", "U")
#: ACVPU answers, lower case -> letter.
ACVPU_WORDS: Mapping[str, str] = {
    "a": "A",
    "alert": "A",
    "c": "C",
    "confusion": "C",
    "new confusion": "C",
    "confused": "C",
    "new-onset confusion": "C",
    "v": "V",
    "voice": "V",
    "responds to voice": "V",
    "verbal": "V",
    "p": "P",
    "pain": "P",
    "responds to pain": "P",
    "u": "U",
    "unresponsive": "U",
}


def acvpu_letter(text: str) -> str:
    """The ACVPU letter of a letter or a word ("alert", "new confusion", "voice", "pain", "unresponsive").

    Raises ``ValueError`` for anything else, so that a reader can name the bad value.
    """
    letter = ACVPU_WORDS.get(" ".join(text.strip().lower().split()))
    if letter is None:
        raise ValueError(f"{text!r} is not an ACVPU level (A, C, V, P or U)")
    return letter


def chart_integer(value: float) -> int:
    """``value`` rounded to a whole number, half up (8.5 -> 9), as the RCP chart records RR, SpO2, SBP and pulse."""
    return math.floor(round(value, 6) + 0.5)


def chart_tenths(value: float) -> int:
    """``value`` in tenths, rounded half up (38.05 -> 381), as the chart records temperature (one decimal place).

    ``round(.., 6)`` first removes the binary noise arithmetic can leave (36.8 + 0.15 is 36.949999999999996), so
    a value meant to lie on a half rounds up as a person would.
    """
    return math.floor(round(value * 10.0, 6) + 0.5)


@dataclass(frozen=True, slots=True)
class VitalSigns:
    """One observation set: chart units (/min, %, mmHg, degC); ``None`` where not measured.

    ``consciousness`` is an ACVPU letter; ``gcs`` (3-15) stands in for it where ACVPU is not charted (GCS < 15 is
    taken as not alert). ``stale`` names parameters left out because their last value was too old.
    """

    respiratory_rate: float | None = None
    spo2: float | None = None
    supplemental_oxygen: bool | None = None
    systolic_bp: float | None = None
    pulse: float | None = None
    consciousness: str | None = None
    temperature: float | None = None
    gcs: float | None = None
    stale: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value in (
            (RESPIRATORY_RATE, self.respiratory_rate),
            (SPO2, self.spo2),
            (SYSTOLIC_BP, self.systolic_bp),
            (PULSE, self.pulse),
            (TEMPERATURE, self.temperature),
            (GCS, self.gcs),
        ):
            if value is None:
                continue
            lo, hi = PLAUSIBLE[name]
            if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
                raise DataError(
                    f"{name} {value!r} is outside its plausible range {lo:g}-{hi:g}",
                    "check the unit and the recording, or leave the value out (None)",
                )
        if self.consciousness is not None and self.consciousness not in ACVPU:
            raise DataError(
                f"consciousness {self.consciousness!r} is not an ACVPU letter", "use A, C, V, P or U (acvpu_letter)"
            )
        unknown = set(self.stale) - {*PARAMETERS, GCS}
        if unknown:
            raise DataError(f"stale names unknown parameters: {sorted(unknown)}", f"use names of {PARAMETERS}")


@dataclass(frozen=True, slots=True)
class Reading:
    """One parameter's value and when it was measured (timezone-aware)."""

    value: float | bool | str
    time: datetime


_FIELDS = {
    RESPIRATORY_RATE: "respiratory_rate",
    SPO2: "spo2",
    SUPPLEMENTAL_OXYGEN: "supplemental_oxygen",
    SYSTOLIC_BP: "systolic_bp",
    PULSE: "pulse",
    CONSCIOUSNESS: "consciousness",
    TEMPERATURE: "temperature",
    GCS: "gcs",
}


def as_of(readings: Mapping[str, Reading], at: datetime, validity: timedelta = VALIDITY) -> VitalSigns:
    """The vital signs at time ``at`` from each parameter's latest reading; readings older than ``validity`` (or
    later than ``at``) are left out, and the older ones named in ``stale``."""
    unknown = set(readings) - set(_FIELDS)
    if unknown:
        raise DataError(f"readings of unknown parameters: {sorted(unknown)}", f"use names of {tuple(_FIELDS)}")
    values: dict[str, float | bool | str] = {}
    stale: list[str] = []
    for name, reading in readings.items():
        if reading.time > at:
            continue
        if at - reading.time > validity:
            stale.append(name)
        else:
            values[_FIELDS[name]] = reading.value
    return VitalSigns(**values, stale=tuple(n for n in (*PARAMETERS, GCS) if n in stale))  # type: ignore[arg-type]
