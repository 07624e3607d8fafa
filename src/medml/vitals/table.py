"""Observation sets from a CSV file: one row per set, read into :class:`~medml.vitals.signs.VitalSigns`.

Columns (header row, any order): ``patient``, ``respiratory_rate`` (/min), ``spo2`` (%), ``supplemental_oxygen`` (air
or oxygen: ``air``/``oxygen``, ``no``/``yes``, ``0``/``1``), ``systolic_bp`` (mmHg), ``heart_rate`` (/min),
``temperature`` (degC), ``consciousness`` (ACVPU: A, C, V, P, U or the words); optional ``time`` (shown as given),
``spo2_scale`` (1, or 2 for a prescribed target of 88-92 %; empty = 1) and ``gcs`` (3-15, used for consciousness where
ACVPU is empty). An empty cell is a missing parameter. A cell that is not a value of its column, or a value outside
its plausible range, is reported, left out and named as missing; the other rows go on.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medml.errors import DataError, InputFileError
from medml.vitals.signs import (
    GCS,
    PLAUSIBLE,
    PULSE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    TEMPERATURE,
    VitalSigns,
    acvpu_letter,
)

__all__ = ["COLUMNS", "OPTIONAL", "REQUIRED", "ObservationSet", "read_observation_sets"]

#: column -> (VitalSigns field, parameter name for the plausible range, unit)
_NUMERIC = {
    "respiratory_rate": ("respiratory_rate", RESPIRATORY_RATE, "/min"),
    "spo2": ("spo2", SPO2, "%"),
    "systolic_bp": ("systolic_bp", SYSTOLIC_BP, "mmHg"),
    "heart_rate": ("pulse", PULSE, "/min"),
    "temperature": ("temperature", TEMPERATURE, "degC"),
    "gcs": ("gcs", GCS, "points"),
}
REQUIRED = (
    "patient",
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "systolic_bp",
    "heart_rate",
    "temperature",
    "consciousness",
)
OPTIONAL = ("time", "spo2_scale", "gcs")
COLUMNS = REQUIRED + OPTIONAL
_OXYGEN = {
    "air": False,
    "room air": False,
    "no": False,
    "false": False,
    "0": False,
    "oxygen": True,
    "o2": True,
    "yes": True,
    "true": True,
    "1": True,
}


@dataclass(frozen=True)
class ObservationSet:
    """One CSV row: the patient, its time as written, the vital signs, the SpO2 scale, and what was wrong in it."""

    row: int
    patient: str
    time: str
    vitals: VitalSigns
    spo2_scale: int
    problems: tuple[str, ...] = ()
    usable: bool = True


def _number(column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {text!r} is not a finite number")
    _, parameter, unit = _NUMERIC[column]
    lo, hi = PLAUSIBLE[parameter]
    if not lo <= value <= hi:
        hint = " (give degC)" if column == "temperature" and value > hi else ""
        raise ValueError(f"{column} {value:g} is outside {lo:g}-{hi:g} {unit}{hint}")
    return value


def _row(number: int, row: dict[str, str]) -> ObservationSet:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for column, (field, _, _) in _NUMERIC.items():
        text = (row.get(column) or "").strip()
        if not text:
            continue
        try:
            values[field] = _number(column, text)
        except ValueError as e:
            problems.append(f"{e}; scored as missing")
    oxygen = (row.get("supplemental_oxygen") or "").strip()
    if oxygen:
        on = _OXYGEN.get(oxygen.lower())
        if on is None:
            problems.append(f"supplemental_oxygen {oxygen!r} is not air or oxygen; scored as missing")
        else:
            values["supplemental_oxygen"] = on
    consciousness = (row.get("consciousness") or "").strip()
    if consciousness:
        try:
            values["consciousness"] = acvpu_letter(consciousness)
        except ValueError as e:
            problems.append(f"consciousness: {e}; scored as missing")
    if not (row.get("patient") or "").strip():
        problems.append("no patient id")
    scale_text = (row.get("spo2_scale") or "").strip()
    scale = 1
    if scale_text:
        if scale_text in ("1", "2"):
            scale = int(scale_text)
        else:
            problems.append(f"spo2_scale {scale_text!r} is not 1 or 2; Scale 1 used")
    return ObservationSet(
        row=number,
        patient=(row.get("patient") or "").strip(),
        time=(row.get("time") or "").strip(),
        vitals=VitalSigns(**values),
        spo2_scale=scale,
        problems=tuple(problems),
    )


def read_observation_sets(path: Path) -> Iterator[ObservationSet]:
    """Each row of the CSV at ``path``; a wrong header raises :class:`DataError` before any row is read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist", "give the path of a CSV file of observation sets") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "give a UTF-8 CSV file of observation sets") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or ()]
    if not header:
        raise DataError(f"{path} is empty", f"write a header row with the columns {', '.join(REQUIRED)}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise DataError(
            f"{path} has unknown column(s) {', '.join(map(repr, unknown))}",
            f"use only {', '.join(COLUMNS)} (see `medml vitals score --help`)",
        )
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(
            f"{path} lacks the required column(s) {', '.join(missing)}",
            "add them (an empty cell is a missing value); see `medml vitals score --help`",
        )
    reader.fieldnames = header
    for i, row in enumerate(reader, start=2):
        if None in row:
            problem = f"more cells than the {len(header)} columns; row skipped"
            yield ObservationSet(i, (row.get("patient") or "").strip(), "", VitalSigns(), 1, (problem,), usable=False)
            continue
        yield _row(i, row)
