"""PhysioNet/CinC 2012 set A replayed hourly: the worst NEWS2 and qSOFA of each ICU stay's first 24 hours.

The stays and their cleaned events come from :func:`medml.data.datasets.physionet2012.load_cohort`. At each whole
hour 1..``hours`` after ICU admission every parameter takes its latest value within the validity window (4 h by
default); older values are stale, absent ones missing, and neither is scored (the score is then partial: a lower
bound). How the set's variables stand for the NEWS2 parameters is :data:`MAPPING`; values outside the stream's
plausible ranges (:data:`~medml.vitals.observations.KIND_PLAUSIBLE`) are left out. No SpO2 scale is documented in
the set, so every stay is scored on Scale 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from medml.data.cohort import Cohort
from medml.errors import DataError
from medml.vitals.news2 import news2
from medml.vitals.observations import KIND_PLAUSIBLE
from medml.vitals.qsofa import qsofa
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
)

__all__ = ["MAPPING", "PhysioNetReplay", "replay_physionet2012"]

#: NEWS2 parameter -> how set A's variables stand for it.
MAPPING: Mapping[str, str] = {
    RESPIRATORY_RATE: "RespRate (/min); absent in most stays, which are then partial",
    SPO2: "SaO2, the arterial saturation of blood gases (set A has no pulse oximetry SpO2); Scale 1",
    SUPPLEMENTAL_OXYGEN: "oxygen if MechVent = 1 or FiO2 > 0.21, air if FiO2 = 0.21; the latest of the two",
    SYSTOLIC_BP: "SysABP (invasive) or NISysABP (cuff), whichever is later",
    PULSE: "HR (/min)",
    CONSCIOUSNESS: "GCS as the proxy: GCS < 15 -> not alert (3 points); qSOFA: GCS < 15 -> altered mentation",
    TEMPERATURE: "Temp (degC)",
}
#: set A variable -> (replay column, plausible range in set A's unit)
_SOURCES: Mapping[str, tuple[str, tuple[float, float]]] = {
    "RespRate": ("respiratory_rate", KIND_PLAUSIBLE[RESPIRATORY_RATE]),
    "SaO2": ("spo2", KIND_PLAUSIBLE[SPO2]),
    "SysABP": ("systolic_bp", KIND_PLAUSIBLE[SYSTOLIC_BP]),
    "NISysABP": ("systolic_bp", KIND_PLAUSIBLE[SYSTOLIC_BP]),
    "HR": ("pulse", KIND_PLAUSIBLE[PULSE]),
    "Temp": ("temperature", KIND_PLAUSIBLE[TEMPERATURE]),
    "GCS": ("gcs", KIND_PLAUSIBLE[GCS]),
    "MechVent": ("supplemental_oxygen", (1.0, 1.0)),
    "FiO2": ("supplemental_oxygen", (0.21, 1.0)),
}
_COLUMNS = ("respiratory_rate", "spo2", "supplemental_oxygen", "systolic_bp", "pulse", "gcs", "temperature")
_PARAMETER_OF = {
    "respiratory_rate": RESPIRATORY_RATE,
    "spo2": SPO2,
    "supplemental_oxygen": SUPPLEMENTAL_OXYGEN,
    "systolic_bp": SYSTOLIC_BP,
    "pulse": PULSE,
    "gcs": CONSCIOUSNESS,
    "temperature": TEMPERATURE,
}


@dataclass(frozen=True)
class PhysioNetReplay:
    """Per stay (``stays``): the outcome, SOFA and SAPS-I of Outcomes-a (-1 -> missing), the worst NEWS2 and qSOFA
    over all hours (partial scores count, as lower bounds) and over the hours with a complete score (NaN if none).

    ``coverage``: the share of stays with at least one usable value of each parameter in the window;
    ``dropped``: values left out as implausible, per set A variable.
    """

    stays: pd.DataFrame
    coverage: Mapping[str, float]
    dropped: Mapping[str, int]
    hours: int
    validity: timedelta
    mapping: Mapping[str, str]


def _measurements(events: pd.DataFrame, hours: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """The mapped events of the window as ``stay_id, time, column, value``, implausible values dropped."""
    window = events[(events["time"] <= hours * 60) & events["variable"].isin(list(_SOURCES))]
    parts = []
    dropped: dict[str, int] = {}
    for variable, (column, (lo, hi)) in _SOURCES.items():
        ev = window[window["variable"] == variable]
        ok = ev["value"].between(lo, hi)
        dropped[variable] = int((~ok).sum())
        ev = ev[ok]
        value = ev["value"].to_numpy(dtype=float)
        if variable == "MechVent":
            value = np.ones(len(ev))
        elif variable == "FiO2":
            value = (value > 0.21).astype(float)
        parts.append(
            pd.DataFrame(
                {"stay_id": ev["stay_id"].to_numpy(), "time": ev["time"].to_numpy(), "column": column, "value": value}
            )
        )
    return pd.concat(parts, ignore_index=True), dropped


def _latest(grid: pd.DataFrame, m: pd.DataFrame, column: str, validity_min: int) -> tuple[np.ndarray, np.ndarray]:
    """For each grid row: the latest value of ``column`` within the validity window (NaN if none) and whether an
    older one exists (stale)."""
    ev = m[m["column"] == column][["stay_id", "time", "value"]].sort_values("time", kind="stable")
    left = grid[["stay_id", "time"]]
    fresh = pd.merge_asof(left, ev, on="time", by="stay_id", direction="backward", tolerance=validity_min)
    ever = pd.merge_asof(left, ev, on="time", by="stay_id", direction="backward")
    value = fresh["value"].to_numpy(dtype=float)
    return value, np.isnan(value) & ~np.isnan(ever["value"].to_numpy(dtype=float))


def replay_physionet2012(cohort: Cohort, hours: int = 24, validity: timedelta = VALIDITY) -> PhysioNetReplay:
    """Score every stay of ``cohort`` (from ``physionet2012.load_cohort``) hourly over its first ``hours`` hours."""
    if cohort.events is None or "has_time_series" not in cohort.table.columns:
        raise DataError("the cohort has no PhysioNet 2012 events", "build it with physionet2012.load_cohort")
    if not 1 <= hours <= 48:
        raise DataError(f"hours={hours} is outside 1-48", "set A holds the first 48 hours of each stay")
    table = cohort.table[cohort.table["has_time_series"]].reset_index(drop=True)
    stays = table["stay_id"].to_numpy(dtype=np.int64)
    m, dropped = _measurements(cohort.events, hours)
    validity_min = int(validity.total_seconds() // 60)
    grid = pd.DataFrame(
        {
            "stay_id": np.repeat(stays, hours),
            "time": np.tile(np.arange(1, hours + 1, dtype=np.int32) * 60, len(stays)),
        }
    ).sort_values("time", kind="stable")
    values: dict[str, np.ndarray] = {}
    stale: dict[str, np.ndarray] = {}
    for column in _COLUMNS:
        values[column], stale[column] = _latest(grid, m, column, validity_min)
    news, news_complete, q, q_complete = [], [], [], []
    for i in range(len(grid)):
        kwargs = {c: values[c][i] for c in _COLUMNS if not np.isnan(values[c][i])}
        if "supplemental_oxygen" in kwargs:
            kwargs["supplemental_oxygen"] = bool(kwargs["supplemental_oxygen"])
        vitals = VitalSigns(**kwargs, stale=tuple(_PARAMETER_OF[c] for c in _COLUMNS if stale[c][i]))
        n, s = news2(vitals), qsofa(vitals)
        news.append(n.total)
        news_complete.append(n.complete)
        q.append(s.total)
        q_complete.append(s.complete)
    scored = grid.assign(news2=news, news2_complete=news_complete, qsofa=q, qsofa_complete=q_complete)
    scored["news2_if_complete"] = scored["news2"].where(scored["news2_complete"])
    scored["qsofa_if_complete"] = scored["qsofa"].where(scored["qsofa_complete"])
    worst = scored.groupby("stay_id").agg(
        worst_news2=("news2", "max"),
        worst_complete_news2=("news2_if_complete", "max"),
        complete_news2_hours=("news2_complete", "sum"),
        worst_qsofa=("qsofa", "max"),
        worst_complete_qsofa=("qsofa_if_complete", "max"),
        complete_qsofa_hours=("qsofa_complete", "sum"),
    )
    out = pd.DataFrame(
        {
            "stay_id": stays,
            "died": table["In-hospital_death"].to_numpy(dtype=np.int8),
            "SOFA": table["SOFA"].where(table["SOFA"] >= 0).to_numpy(dtype=float),
            "SAPS-I": table["SAPS-I"].where(table["SAPS-I"] >= 0).to_numpy(dtype=float),
        }
    ).join(worst, on="stay_id")
    seen = m.groupby("column")["stay_id"].nunique()
    coverage = {_PARAMETER_OF[c]: float(seen.get(c, 0)) / len(stays) for c in _COLUMNS}
    return PhysioNetReplay(out, coverage, dropped, hours, validity, dict(MAPPING))
