"""Cohort: the one canonical shape that every source is mapped to before a task is defined on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from medml.errors import DataError


@dataclass(frozen=True)
class Cohort:
    """Per-patient records with units and provenance.

    ``table`` has one row per unit of analysis (an encounter, an ICU stay, a patient) and a ``patient_id``
    column. ``events`` optionally holds time-stamped measurements in long format with the columns
    ``stay_id, time, variable, value`` (``stay_id`` joins to ``table[unit_id]``); ``units`` maps a column or
    variable name to its UCUM-style unit.
    """

    name: str
    table: pd.DataFrame
    patient_id: str
    provenance: str
    units: Mapping[str, str] = field(default_factory=dict)
    events: pd.DataFrame | None = None
    unit_id: str | None = None

    def __post_init__(self) -> None:
        if self.patient_id not in self.table.columns:
            raise DataError(
                f"cohort '{self.name}' has no patient id column '{self.patient_id}'",
                f"columns are: {', '.join(map(str, self.table.columns[:20]))}",
            )

    @property
    def n_patients(self) -> int:
        return int(self.table[self.patient_id].nunique())

    def __len__(self) -> int:
        return len(self.table)
