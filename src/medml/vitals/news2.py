"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, December 2017; Charts 1-3).

Each parameter scores 0-3 by its band on Chart 1; the aggregate is 0-20. Rounding: values are banded at the chart's
precision, rounded half up first: RR, SpO2, systolic BP and pulse to a whole number (RR 8.5 -> 9 scores 1; SBP 90.4
-> 90 scores 3), temperature to 0.1 degC (35.05 -> 35.1 scores 1; 38.04 -> 38.0 scores 0). Bands are inclusive.
SpO2 Scale 2 is for patients with a prescribed target of 88-92 % (e.g. hypercapnic respiratory failure): there, 93 %
or more scores 0 on air and 1-3 only on supplemental oxygen. A missing or stale parameter is named and not scored:
the total is then a lower bound and the result says ``complete=False``. Not validated under 16 years or in pregnancy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medml import __version__
from medml.errors import DataError
from medml.vitals.signs import (
    CONSCIOUSNESS,
    GCS,
    PARAMETERS,
    PULSE,
    RESPIRATORY_RATE,
    SPO2,
    SUPPLEMENTAL_OXYGEN,
    SYSTOLIC_BP,
    TEMPERATURE,
    VitalSigns,
    chart_integer,
    chart_tenths,
)

__all__ = [
    "BANDS",
    "NAME",
    "VERSION",
    "NEWS2Result",
    "clinical_risk",
    "consciousness_score",
    "news2",
    "oxygen_score",
    "pulse_score",
    "respiratory_rate_score",
    "response",
    "spo2_score",
    "systolic_bp_score",
    "temperature_score",
]

NAME = "NEWS2"
VERSION = "RCP 2017"
#: The clinical-risk bands of Chart 2, lowest first.
BANDS = ("low", "low-medium", "medium", "high")
#: Chart 3: the clinical response and the minimum frequency of monitoring for each band.
_RESPONSE = {
    "low": ("ward-based response: a registered nurse assesses the patient", "4-6-hourly"),
    "low-medium": ("urgent ward-based response: a registered nurse informs the medical team", "1-hourly"),
    "medium": (
        "key threshold for urgent response: urgent review by a clinician competent in acute illness",
        "1-hourly",
    ),
    "high": (
        "urgent or emergency response: emergency assessment by a team with critical-care competencies",
        "continuous",
    ),
}
_AGGREGATE_ZERO = ("ward-based response: continue routine monitoring", "12-hourly")


def respiratory_rate_score(per_min: float) -> int:
    """Chart 1, respiration rate: <=8: 3; 9-11: 1; 12-20: 0; 21-24: 2; >=25: 3."""
    v = chart_integer(per_min)
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    return 2 if v <= 24 else 3


def spo2_score(percent: float, scale: int = 1, on_oxygen: bool | None = None) -> int | None:
    """Chart 1, SpO2 Scale 1 (<=91: 3; 92-93: 2; 94-95: 1; >=96: 0) or Scale 2 (<=83: 3; 84-85: 2; 86-87: 1;
    88-92: 0; >=93: 0 on air, 93-94: 1, 95-96: 2, >=97: 3 on oxygen). ``None``: Scale 2, >=93 % and air/oxygen
    unknown."""
    v = chart_integer(percent)
    if scale == 1:
        if v <= 91:
            return 3
        if v <= 93:
            return 2
        return 1 if v <= 95 else 0
    if scale != 2:
        raise DataError(f"SpO2 scale {scale!r} does not exist", "use scale 1, or 2 for a prescribed target of 88-92 %")
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92:
        return 0
    if on_oxygen is None:
        return None
    if not on_oxygen:
        return 0
    if v <= 94:
        return 1
    return 2 if v <= 96 else 3


def oxygen_score(on_oxygen: bool) -> int:
    """Chart 1, air or oxygen: supplemental oxygen scores 2, air 0."""
    return 2 if on_oxygen else 0


def systolic_bp_score(mmhg: float) -> int:
    """Chart 1, systolic blood pressure: <=90: 3; 91-100: 2; 101-110: 1; 111-219: 0; >=220: 3."""
    v = chart_integer(mmhg)
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    return 0 if v <= 219 else 3


def pulse_score(per_min: float) -> int:
    """Chart 1, pulse: <=40: 3; 41-50: 1; 51-90: 0; 91-110: 1; 111-130: 2; >=131: 3."""
    v = chart_integer(per_min)
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    return 2 if v <= 130 else 3


def consciousness_score(acvpu: str) -> int:
    """Chart 1, consciousness: Alert 0; new Confusion, Voice, Pain or Unresponsive 3."""
    if acvpu == "A":
        return 0
    if acvpu in ("C", "V", "P", "U"):
        return 3
    raise DataError(f"consciousness {acvpu!r} is not an ACVPU letter", "use A, C, V, P or U")


def temperature_score(celsius: float) -> int:
    """Chart 1, temperature (degC, one decimal): <=35.0: 3; 35.1-36.0: 1; 36.1-38.0: 0; 38.1-39.0: 1; >=39.1: 2."""
    v = chart_tenths(celsius)
    if v <= 350:
        return 3
    if v <= 360:
        return 1
    if v <= 380:
        return 0
    return 1 if v <= 390 else 2


def clinical_risk(total: int, red: bool) -> str:
    """Chart 2: ``high`` (>=7), ``medium`` (5-6), ``low-medium`` (a single parameter scoring 3, total <5), else
    ``low``."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red else "low"


def response(band: str, total: int) -> tuple[str, str]:
    """Chart 3: the clinical response and the minimum monitoring frequency for ``band`` (total 0: 12-hourly)."""
    if band == "low" and total == 0:
        return _AGGREGATE_ZERO
    return _RESPONSE[band]


@dataclass(frozen=True)
class NEWS2Result:
    """A NEWS2 score: the total, each parameter's sub-score, the Chart 2 band and the Chart 3 response.

    ``complete`` is False when a parameter is missing or stale: ``total`` and ``band`` are then lower bounds.
    """

    total: int
    sub_scores: Mapping[str, int]
    band: str
    response: str
    monitoring: str
    spo2_scale: int
    complete: bool
    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    score: str = field(default=NAME)
    version: str = field(default=VERSION)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, naming the score, its version and the medml version that produced it."""
        return {
            "score": self.score,
            "version": self.version,
            "produced_by": f"medml {__version__}",
            "total": self.total,
            "band": self.band,
            "response": self.response,
            "monitoring": self.monitoring,
            "complete": self.complete,
            "missing": list(self.missing),
            "stale": list(self.stale),
            "sub_scores": dict(self.sub_scores),
            "spo2_scale": self.spo2_scale,
            "notes": list(self.notes),
        }


def news2(vitals: VitalSigns, spo2_scale: int = 1) -> NEWS2Result:
    """Score ``vitals`` on NEWS2; ``spo2_scale=2`` only for a prescribed SpO2 target of 88-92 %.

    Missing and stale parameters are named and left out; the result then says ``complete=False``.
    """
    if spo2_scale not in (1, 2):
        raise DataError(f"SpO2 scale {spo2_scale!r} does not exist", "use 1, or 2 for a prescribed target of 88-92 %")
    subs: dict[str, int] = {}
    notes: list[str] = []
    if vitals.respiratory_rate is not None:
        subs[RESPIRATORY_RATE] = respiratory_rate_score(vitals.respiratory_rate)
    if vitals.spo2 is not None:
        s = spo2_score(vitals.spo2, spo2_scale, vitals.supplemental_oxygen)
        if s is None:
            notes.append(f"SpO2 {vitals.spo2:g} % on Scale 2 is not scored: it needs to know air or oxygen")
        else:
            subs[SPO2] = s
    if vitals.supplemental_oxygen is not None:
        subs[SUPPLEMENTAL_OXYGEN] = oxygen_score(vitals.supplemental_oxygen)
    if vitals.systolic_bp is not None:
        subs[SYSTOLIC_BP] = systolic_bp_score(vitals.systolic_bp)
    if vitals.pulse is not None:
        subs[PULSE] = pulse_score(vitals.pulse)
    if vitals.consciousness is not None:
        subs[CONSCIOUSNESS] = consciousness_score(vitals.consciousness)
    elif vitals.gcs is not None:
        alert = chart_integer(vitals.gcs) >= 15
        subs[CONSCIOUSNESS] = 0 if alert else 3
        notes.append(f"consciousness from GCS {vitals.gcs:g} ({'alert' if alert else 'GCS < 15: not alert'})")
    if vitals.temperature is not None:
        subs[TEMPERATURE] = temperature_score(vitals.temperature)
    stale_names = set(vitals.stale)
    if GCS in stale_names:
        stale_names.add(CONSCIOUSNESS)
    unscored = [p for p in PARAMETERS if p not in subs]
    stale = tuple(p for p in unscored if p in stale_names)
    missing = tuple(p for p in unscored if p not in stale_names and not (p == SPO2 and vitals.spo2 is not None))
    total = sum(subs.values())
    band = clinical_risk(total, 3 in subs.values())
    action, monitoring = response(band, total)
    complete = not unscored
    if not complete:
        action += f"; partial score, a lower bound (not scored: {', '.join(unscored)})"
    return NEWS2Result(
        total=total,
        sub_scores=subs,
        band=band,
        response=action,
        monitoring=monitoring,
        spo2_scale=spo2_scale,
        complete=complete,
        missing=missing,
        stale=stale,
        notes=tuple(notes),
    )
