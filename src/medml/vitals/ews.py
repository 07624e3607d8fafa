"""A learned early-warning task on the hourly PhysioNet 2012 replay: one row per ICU stay and hour.

At each whole hour ``h`` (1..``hours``) after ICU admission a row holds what a monitor knows then and nothing later:
events at minutes ``<= 60 h`` only. Per vital-sign channel (:data:`CHANNELS`, how set A's variables feed each): the
latest value, the hours since it was measured, the lowest and highest value and the change of the latest value over
the past :data:`TREND_HOURS` hours, and the measurements so far; the NEWS2 sub-scores of the values within the
validity window (4 h, as the replay scores; a missing or stale parameter's sub-score is missing, never 0), their
partial total and the number of parameters missing; the age and the hour itself. The outcome of every row is the
stay's in-hospital death; rows are grouped by stay (set A has no patient identifier: each stay is its own patient),
so a split never puts one stay's hours on both sides.

NEWS2 sub-scores use :mod:`medml.vitals.news2`'s chart functions on the replay's mapping
(:data:`medml.vitals.physionet.MAPPING`: SaO2 for SpO2 on Scale 1, GCS < 15 as not alert, MechVent or FiO2 > 0.21
as oxygen). Alerts are rising edges: an alert at the hour a score first reaches its threshold, again only after it
has fallen below it (:func:`rising_edges`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.cohort import Cohort
from medml.data.datasets import physionet2012
from medml.data.datasets._common import age_band, id_array, sensitive_frame
from medml.data.targets import BinaryTarget
from medml.data.task import FeatureSpec, TaskDataset
from medml.errors import DataError
from medml.vitals.news2 import (
    oxygen_score,
    pulse_score,
    respiratory_rate_score,
    spo2_score,
    systolic_bp_score,
    temperature_score,
)
from medml.vitals.observations import KIND_PLAUSIBLE
from medml.vitals.signs import GCS, PULSE, RESPIRATORY_RATE, SPO2, SYSTOLIC_BP, TEMPERATURE, VALIDITY

__all__ = [
    "CHANNELS",
    "KEY",
    "NEWS2_MEDIUM",
    "TREND_HOURS",
    "StayHours",
    "early_warning_task",
    "rising_edges",
    "stay_hours",
]

KEY = "physionet-2012-ews"
#: the NEWS2 total at which the RCP's "medium" band (key threshold for urgent response) starts
NEWS2_MEDIUM = 5
TREND_HOURS = 6


@dataclass(frozen=True)
class Channel:
    """A vital-sign input: set A's variables that feed it (a later one wins a tie), its label, unit and range."""

    variables: tuple[str, ...]
    label: str
    unit: str
    plausible: tuple[float, float]


#: channel -> set A variables. Ranges: the stream's plausible ranges for the NEWS2 parameters (as the replay drops),
#: the dataset adapter's cleaning ranges for the others.
CHANNELS: Mapping[str, Channel] = {
    "resp_rate": Channel(("RespRate",), "Respiratory rate", "/min", KIND_PLAUSIBLE[RESPIRATORY_RATE]),
    "spo2": Channel(("SaO2",), "Oxygen saturation (SaO2 for SpO2)", "%", KIND_PLAUSIBLE[SPO2]),
    "systolic_bp": Channel(("SysABP", "NISysABP"), "Systolic blood pressure", "mmHg", KIND_PLAUSIBLE[SYSTOLIC_BP]),
    "diastolic_bp": Channel(
        ("DiasABP", "NIDiasABP"), "Diastolic blood pressure", "mmHg", physionet2012.PLAUSIBLE["DiasABP"]
    ),
    "map": Channel(("MAP", "NIMAP"), "Mean arterial pressure", "mmHg", physionet2012.PLAUSIBLE["MAP"]),
    "pulse": Channel(("HR",), "Heart rate", "/min", KIND_PLAUSIBLE[PULSE]),
    "temperature": Channel(("Temp",), "Temperature", "degC", KIND_PLAUSIBLE[TEMPERATURE]),
    "gcs": Channel(("GCS",), "Glasgow Coma Scale", "points", KIND_PLAUSIBLE[GCS]),
    "fio2": Channel(("FiO2",), "Fraction of inspired oxygen", "fraction", (0.21, 1.0)),
    "urine": Channel(("Urine",), "Urine output per charting", "mL", physionet2012.PLAUSIBLE["Urine"]),
}
#: supplemental oxygen: 1 if MechVent = 1 or FiO2 > 0.21, 0 if FiO2 = 0.21 (the latest of the two)
_OXYGEN = ("MechVent", "FiO2")
_SUB_SCORES = ("rr", "spo2", "oxygen", "sbp", "pulse", "consciousness", "temperature")


@dataclass(frozen=True)
class StayHours:
    """The replay's stay-hours: ``frame`` holds ``stay_id, hour, died`` and the features (:data:`CHANNELS`, NEWS2
    sub-scores ``news2_<parameter>``, ``news2_partial``, ``news2_missing``, ``age``, ``hour``); ``features``
    describes the model inputs among its columns."""

    frame: pd.DataFrame
    features: tuple[FeatureSpec, ...]
    hours: int
    validity: timedelta


def _grid(events: pd.DataFrame, stay_index: pd.Index, variables: tuple[str, ...], hours: int) -> pd.DataFrame:
    """The events of ``variables`` up to ``hours`` as ``s`` (stay position), ``b`` (hour bucket 1..hours: minutes
    in ``(60(b-1), 60b]``, minute 0 in bucket 1), ``time``, ``value``; sorted by stay and time, ties in
    ``variables`` order (a later variable wins)."""
    parts = []
    for rank, variable in enumerate(variables):
        ev = events[(events["variable"] == variable).to_numpy() & (events["time"] <= hours * 60).to_numpy()]
        parts.append(
            pd.DataFrame(
                {
                    "s": stay_index.get_indexer(pd.Index(ev["stay_id"])),
                    "time": ev["time"].to_numpy(dtype=np.int64),
                    "rank": rank,
                    "value": ev["value"].to_numpy(dtype=float),
                    "variable": variable,
                }
            )
        )
    g = pd.concat(parts, ignore_index=True)
    g = g[g["s"] >= 0]
    g["b"] = np.maximum(1, -(-g["time"] // 60))
    return g.sort_values(["s", "time", "rank"], kind="stable").reset_index(drop=True)


def _ffill(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Carry the last non-NaN value forward along axis 1."""
    idx = np.where(np.isnan(a), 0, np.arange(a.shape[1]))
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = a[np.arange(a.shape[0])[:, None], idx]
    return np.asarray(out, dtype=float)


def _window(a: npt.NDArray[np.float64], width: int, reduce: np.ufunc) -> npt.NDArray[np.float64]:
    """``reduce`` (np.fmin or np.fmax: NaN only where every value is NaN) over the last ``width`` buckets."""
    padded = np.concatenate([np.full((a.shape[0], width - 1), np.nan), a], axis=1)
    view = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)
    return np.asarray(reduce.reduce(view, axis=2), dtype=float)


def _buckets(g: pd.DataFrame, n_stays: int, hours: int) -> dict[str, npt.NDArray[np.float64]]:
    """Per stay and hour bucket (column 0 unused): the last value and its minute, the min, max and count."""
    agg = g.groupby(["s", "b"], sort=False).agg(
        last=("value", "last"), at=("time", "last"), lo=("value", "min"), hi=("value", "max"), n=("value", "size")
    )
    s = agg.index.get_level_values("s").to_numpy()
    b = agg.index.get_level_values("b").to_numpy()
    out = {}
    for name in ("last", "at", "lo", "hi", "n"):
        arr = np.full((n_stays, hours + 1), np.nan)
        arr[s, b] = agg[name].to_numpy(dtype=float)
        out[name] = arr
    return out


def _vectorised(score: Callable[[float], int | None], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A NEWS2 chart function applied to each distinct value (NaN stays NaN)."""
    out = np.full(values.shape, np.nan)
    ok = ~np.isnan(values)
    uniq, inv = np.unique(values[ok], return_inverse=True)
    out[ok] = np.asarray([score(float(v)) for v in uniq], dtype=np.float64)[inv]
    return out


def stay_hours(cohort: Cohort, hours: int = 48, every: int = 1, validity: timedelta = VALIDITY) -> StayHours:
    """The features of every stay of ``cohort`` (from ``physionet2012.load_cohort``) at hours ``every``,
    ``2 every``, ... up to ``hours`` after ICU admission, each from the events up to that hour only."""
    if cohort.events is None or "has_time_series" not in cohort.table.columns:
        raise DataError("the cohort has no PhysioNet 2012 events", "build it with physionet2012.load_cohort")
    if not 1 <= hours <= 48:
        raise DataError(f"hours={hours} is outside 1-48", "set A holds the first 48 hours of each stay")
    if not 1 <= every <= hours:
        raise DataError(f"every={every} is outside 1-{hours}", "score every hour (1) or every few hours")
    table = cohort.table[cohort.table["has_time_series"]].reset_index(drop=True)
    stays = pd.Index(table["stay_id"].to_numpy(dtype=np.int64))
    n = len(stays)
    at_hour = np.arange(hours + 1, dtype=float)[None, :] * 60.0
    cols: dict[str, npt.NDArray[np.float64]] = {}
    specs: list[FeatureSpec] = []
    valid_min = validity.total_seconds() / 60.0
    fresh: dict[str, npt.NDArray[np.float64]] = {}
    for name, ch in CHANNELS.items():
        g = _grid(cohort.events, stays, ch.variables, hours)
        g = g[g["value"].between(*ch.plausible)]
        bk = _buckets(g, n, hours)
        last, when = _ffill(bk["last"]), _ffill(bk["at"])
        since = (at_hour - when) / 60.0
        count = np.cumsum(np.nan_to_num(bk["n"]), axis=1)
        earlier = np.full_like(last, np.nan)  # the value TREND_HOURS before; none in the first hours
        earlier[:, TREND_HOURS:] = last[:, : max(last.shape[1] - TREND_HOURS, 0)]
        cols |= {
            f"{name}_last": last,
            f"{name}_hours_since": since,
            f"{name}_min_{TREND_HOURS}h": _window(bk["lo"], TREND_HOURS, np.fmin),
            f"{name}_max_{TREND_HOURS}h": _window(bk["hi"], TREND_HOURS, np.fmax),
            f"{name}_change_{TREND_HOURS}h": last - earlier,
            f"{name}_count": count,
        }
        specs += [
            FeatureSpec(f"{name}_last", "numeric", ch.unit, f"{ch.label} (latest)", ch.plausible),
            FeatureSpec(f"{name}_hours_since", "numeric", "h", f"{ch.label}: hours since measured", (0.0, 48.0)),
            FeatureSpec(
                f"{name}_min_{TREND_HOURS}h", "numeric", ch.unit, f"{ch.label} (lowest, past 6 h)", ch.plausible
            ),
            FeatureSpec(
                f"{name}_max_{TREND_HOURS}h", "numeric", ch.unit, f"{ch.label} (highest, past 6 h)", ch.plausible
            ),
            FeatureSpec(f"{name}_change_{TREND_HOURS}h", "numeric", ch.unit, f"{ch.label} (change over 6 h)"),
            FeatureSpec(f"{name}_count", "numeric", "count", f"{ch.label}: measurements so far", (0.0, 1e6)),
        ]
        fresh[name] = np.where(since <= valid_min / 60.0, last, np.nan)
    g = _grid(cohort.events, stays, _OXYGEN, hours)
    g = g[
        ((g["variable"] == "MechVent") & (g["value"] == 1)) | ((g["variable"] == "FiO2") & g["value"].between(0.21, 1))
    ]
    g["value"] = np.where(g["variable"] == "MechVent", 1.0, (g["value"] > 0.21).astype(float))
    bk = _buckets(g, n, hours)
    on_o2, when = _ffill(bk["last"]), _ffill(bk["at"])
    cols["oxygen_last"] = on_o2
    specs.append(FeatureSpec("oxygen_last", "numeric", "", "On supplemental oxygen (latest; 1 = yes)", (0.0, 1.0)))
    fresh["oxygen"] = np.where((at_hour - when) <= valid_min, on_o2, np.nan)

    sub = {
        "rr": _vectorised(respiratory_rate_score, fresh["resp_rate"]),
        "spo2": _vectorised(spo2_score, fresh["spo2"]),
        "oxygen": _vectorised(lambda v: oxygen_score(bool(v)), fresh["oxygen"]),
        "sbp": _vectorised(systolic_bp_score, fresh["systolic_bp"]),
        "pulse": _vectorised(pulse_score, fresh["pulse"]),
        "consciousness": np.where(np.isnan(fresh["gcs"]), np.nan, np.where(fresh["gcs"] < 15, 3.0, 0.0)),
        "temperature": _vectorised(temperature_score, fresh["temperature"]),
    }
    for k in _SUB_SCORES:
        cols[f"news2_{k}"] = sub[k]
        specs.append(FeatureSpec(f"news2_{k}", "numeric", "points", f"NEWS2 sub-score: {k}", (0.0, 3.0)))
    stacked = np.stack([sub[k] for k in _SUB_SCORES])
    cols["news2_partial"] = np.nansum(stacked, axis=0)
    cols["news2_missing"] = np.isnan(stacked).sum(axis=0).astype(float)
    specs += [
        FeatureSpec("news2_partial", "numeric", "points", "NEWS2 (measured parameters only)", (0.0, 20.0)),
        FeatureSpec("news2_missing", "numeric", "count", "NEWS2 parameters missing or stale", (0.0, 7.0)),
    ]

    picked = np.arange(every, hours + 1, every)
    frame = pd.DataFrame(
        {
            "stay_id": np.repeat(stays.to_numpy(), len(picked)),
            "hour": np.tile(picked, n).astype(float),
            "died": np.repeat(table["In-hospital_death"].to_numpy(dtype=np.int8), len(picked)),
            "age": np.repeat(table["Age"].to_numpy(dtype=float), len(picked)),
        }
    )
    for name, arr in cols.items():
        frame[name] = arr[:, picked].reshape(-1)
    specs += [
        FeatureSpec("age", "numeric", "years", "Age", physionet2012.AGE_PLAUSIBLE),
        FeatureSpec("hour", "numeric", "h", "Hours since ICU admission", (0.0, 48.0)),
    ]
    order = [f.name for f in specs]
    return StayHours(frame[["stay_id", "died", *order]], tuple(specs), hours, validity)


def early_warning_task(cohort: Cohort, hours: int = 48, every: int = 1, validity: timedelta = VALIDITY) -> TaskDataset:
    """In-hospital death from each stay-hour's vital signs so far (see the module docstring)."""
    sh = stay_hours(cohort, hours, every, validity)
    f = sh.frame
    table = cohort.table.set_index("stay_id")
    gender = table["Gender"].reindex(f["stay_id"]).map({0.0: "Female", 1.0: "Male"}).reset_index(drop=True)
    ages = table["Age"].reindex(f["stay_id"]).reset_index(drop=True)
    names = [s.name for s in sh.features]
    excluded = {
        "stay_id": "identifies the stay (groups) and, with the hour, the row (ids)",
        "died": "the outcome: in-hospital death (Outcomes-a)",
        "SOFA, SAPS-I": "the organisers' scores: comparators beside the model, not inputs",
        "laboratory values": "a vital-sign model: bedside vital signs, GCS, oxygen, urine output and age only",
    }
    return TaskDataset(
        name=KEY,
        task=f"in-hospital death, scored every {every} h over the first {hours} h in the ICU from vital signs so far",
        X=f[names].reset_index(drop=True),
        y=BinaryTarget(f["died"].to_numpy(dtype=np.int8), "died in hospital"),
        groups=id_array(f["stay_id"]),
        features=sh.features,
        sensitive=sensitive_frame({"sex": gender, "age_band": age_band(ages)}),
        ids=np.array([f"{s}@{h:g}h" for s, h in zip(f["stay_id"], f["hour"], strict=True)], dtype=object),
        population=(
            f"{f['stay_id'].nunique():,} adult ICU stays of at least 48 hours (PhysioNet/CinC 2012 set A, "
            f"MIMIC-II, Beth Israel Deaconess Medical Center 2001-2008), each scored at hours {every}..{hours}"
        ),
        provenance=cohort.provenance,
        excluded=excluded,
    )


def rising_edges(stay: npt.ArrayLike, score: npt.ArrayLike, threshold: float) -> npt.NDArray[np.bool_]:
    """Where an alert fires: rows (sorted by stay, then hour) whose score reaches ``threshold`` while the stay's
    previous row was below it (or was not there): one alert per crossing, none while the score stays high."""
    s = np.asarray(stay)
    high = np.asarray(score, dtype=float) >= threshold
    prev = np.concatenate([[False], high[:-1]])
    first = np.concatenate([[True], s[1:] != s[:-1]])
    return np.asarray(high & (first | ~prev), dtype=bool)
