"""The outside references of the vitals tests: the RCP 2017 NEWS2 chart and the Sepsis-3 qSOFA criteria, read from
../shared/data/clinical-scores, and a band lookup written from those tables alone (it shares no code with medml)."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from medml.config import get_settings

SCORES = get_settings().data_root / "clinical-scores"
NEWS2_FILE = SCORES / "news2_rcp2017.json"
QSOFA_FILE = SCORES / "qsofa_sepsis3.json"
MISSING = f"the clinical-scores tables are not at {SCORES} (set MEDML_DATA)"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


NEWS2 = load(NEWS2_FILE)
QSOFA = load(QSOFA_FILE)


def chart_value(value: float, places: int) -> Decimal:
    """The value at the chart's precision, rounded half up as the chart notes ask (Decimal: no binary noise)."""
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def band_score(bands: list[dict[str, Any]], value: float, places: int = 0) -> int:
    """The score of the inclusive band that holds ``value`` (rounded to the chart precision)."""
    v = chart_value(value, places)
    for band in bands:
        lo = Decimal(str(band["min"])) if "min" in band else None
        hi = Decimal(str(band["max"])) if "max" in band else None
        if (lo is None or v >= lo) and (hi is None or v <= hi):
            return int(band["score"])
    raise LookupError(f"no band holds {value}")


def band_or_none(bands: list[dict[str, Any]], value: float) -> int | None:
    try:
        return band_score(bands, value)
    except LookupError:
        return None


def spo2_reference(value: float, scale: int, on_oxygen: bool | None) -> int | None:
    """SpO2 sub-score from the chart: Scale 1, or Scale 2 whose upper bands depend on air or oxygen."""
    params = NEWS2["parameters"]
    if scale == 1:
        return band_score(params["spo2_scale1_percent"], value)
    s2 = params["spo2_scale2_percent"]
    score = band_or_none(s2["any_air_or_oxygen"], value)
    if score is not None:
        return score
    if on_oxygen is None:
        return None
    return band_score(s2["on_oxygen" if on_oxygen else "on_air"], value)


def risk_reference(total: int, red: bool) -> dict[str, Any]:
    """The row of clinical_risk_and_response that applies: the red-score row wins over 'low' when its rule holds."""
    rows = NEWS2["clinical_risk_and_response"]
    matches = []
    for row in rows:
        rule = row["rule"]
        if "red score" in rule:
            limit = int(re.search(r"aggregate < (\d+)", rule).group(1))  # type: ignore[union-attr]
            if red and total < limit:
                return row
            continue
        if m := re.fullmatch(r"aggregate == (\d+)", rule):
            ok = total == int(m.group(1))
        elif m := re.fullmatch(r"(\d+) <= aggregate <= (\d+)", rule):
            ok = int(m.group(1)) <= total <= int(m.group(2))
        elif m := re.fullmatch(r"aggregate >= (\d+)", rule):
            ok = total >= int(m.group(1))
        else:
            raise AssertionError(f"unknown rule {rule!r}")
        if ok:
            matches.append(row)
    assert len(matches) == 1, (total, red, matches)
    return matches[0]


def news2_reference(inp: dict[str, Any]) -> int:
    """A test vector's total from the chart tables (keys rr, spo2, scale, o2, sbp, pulse, acvpu, temp)."""
    p = NEWS2["parameters"]
    on_oxygen = inp["o2"] == "oxygen"
    parts = [
        band_score(p["respiration_rate_per_min"], inp["rr"]),
        spo2_reference(inp["spo2"], inp["scale"], on_oxygen),
        p["air_or_oxygen"][inp["o2"]],
        band_score(p["systolic_bp_mmHg"], inp["sbp"]),
        band_score(p["pulse_per_min"], inp["pulse"]),
        p["consciousness_acvpu"][inp["acvpu"]],
        band_score(p["temperature_celsius"], inp["temp"], places=1),
    ]
    assert all(x is not None for x in parts)
    return sum(int(x) for x in parts if x is not None)
