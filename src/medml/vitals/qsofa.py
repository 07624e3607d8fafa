"""qSOFA, the quick Sequential Organ Failure Assessment of Sepsis-3 (Seymour et al., JAMA 2016;315:762-774).

One point each for respiratory rate >= 22/min, altered mentation (GCS < 15, or an ACVPU level other than Alert where
no GCS is charted) and systolic blood pressure <= 100 mmHg; 2 or more is positive. Values are rounded half up to whole
numbers first, as for NEWS2 (RR 21.5 -> 22 meets the criterion). Outside the ICU, a positive score prompts assessment
for organ dysfunction; it is not a diagnostic criterion for sepsis, and the Surviving Sepsis Campaign 2021 advises
against it as a single screening tool. A missing criterion is named, never taken as normal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medml import __version__
from medml.vitals.signs import CONSCIOUSNESS, GCS, RESPIRATORY_RATE, SYSTOLIC_BP, VitalSigns, chart_integer

__all__ = ["ALTERED_MENTATION", "CRITERIA", "NAME", "VERSION", "QSOFAResult", "qsofa"]

NAME = "qSOFA"
VERSION = "Sepsis-3 (Seymour 2016)"
ALTERED_MENTATION = "altered mentation"
#: The three criteria, in the order of Sepsis-3.
CRITERIA = (RESPIRATORY_RATE, ALTERED_MENTATION, SYSTOLIC_BP)
_POSITIVE = (
    "qSOFA positive: assess for organ dysfunction and consider sepsis; not a diagnostic criterion by itself "
    "(Sepsis-3), and not to be used as the only screening tool (Surviving Sepsis Campaign 2021)"
)
_NEGATIVE = "qSOFA negative: does not rule out sepsis; keep assessing with NEWS2 and the clinical picture"
_UNDETERMINED = "qSOFA undetermined: too few criteria measured to tell; record the missing ones"


@dataclass(frozen=True)
class QSOFAResult:
    """A qSOFA score: points for the criteria that could be assessed, and whether it is positive (>= 2).

    ``positive`` is ``None`` when missing criteria could still decide it.
    """

    total: int
    criteria: Mapping[str, int]
    positive: bool | None
    response: str
    complete: bool
    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    score: str = field(default=NAME)
    version: str = field(default=VERSION)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, naming the score, its version and the medml version that produced it."""
        return {
            "score": self.score,
            "version": self.version,
            "produced_by": f"medml {__version__}",
            "total": self.total,
            "positive": self.positive,
            "response": self.response,
            "complete": self.complete,
            "missing": list(self.missing),
            "stale": list(self.stale),
            "criteria": dict(self.criteria),
        }


def qsofa(vitals: VitalSigns) -> QSOFAResult:
    """Score ``vitals`` on qSOFA; unassessed criteria are named in ``missing`` or ``stale``."""
    points: dict[str, int] = {}
    if vitals.respiratory_rate is not None:
        points[RESPIRATORY_RATE] = int(chart_integer(vitals.respiratory_rate) >= 22)
    if vitals.gcs is not None:
        points[ALTERED_MENTATION] = int(chart_integer(vitals.gcs) < 15)
    elif vitals.consciousness is not None:
        points[ALTERED_MENTATION] = int(vitals.consciousness != "A")
    if vitals.systolic_bp is not None:
        points[SYSTOLIC_BP] = int(chart_integer(vitals.systolic_bp) <= 100)
    stale_names = set(vitals.stale)
    if stale_names & {GCS, CONSCIOUSNESS}:
        stale_names.add(ALTERED_MENTATION)
    unassessed = [c for c in CRITERIA if c not in points]
    total = sum(points.values())
    positive: bool | None
    if total >= 2:
        positive = True
    elif total + len(unassessed) < 2:
        positive = False
    else:
        positive = None
    text = _POSITIVE if positive else _NEGATIVE if positive is False else _UNDETERMINED
    return QSOFAResult(
        total=total,
        criteria=points,
        positive=positive,
        response=text,
        complete=not unassessed,
        missing=tuple(c for c in unassessed if c not in stale_names),
        stale=tuple(c for c in unassessed if c in stale_names),
    )
