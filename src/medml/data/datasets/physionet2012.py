"""PhysioNet/CinC Challenge 2012, set A: in-hospital death from the first 48 hours of an ICU stay.

Who: adult ICU stays of at least 48 hours (medical, surgical, cardiac surgery and coronary care units) at
Beth Israel Deaconess Medical Center, Boston (MIMIC-II, 2001-2008): the 4,000 stays of Outcomes-a.txt, of which
the 3,996 with a time-series file are used; the 4 without one (139060, 140501, 140936, 141264, per SOURCE.txt;
none of them died) are left out and counted in ``population``. No patient identifier exists, so each stay is
its own patient.
Index time: ICU admission + ``hours`` (48 by default; every measurement lies in 00:00-48:00).
Outcome: death in hospital (``In-hospital_death`` of Outcomes-a.txt); 1 = died.
Features: for each of the 37 time-series variables, first/last/min/max/mean/count of its values up to the index
time (``count`` is 0 when there is none), plus the static Age, Gender and Height (``Weight_first`` is the
admission weight). ICUType would be a categorical feature, but this copy of set A has no ICUType line in any
record, so it is listed in ``excluded`` (it is used where present).
Events (``Cohort.events``): long format ``stay_id, time`` (minutes from ICU admission), ``variable, value``.
Cleaning, on this copy of set A: -1 is the missing sentinel and is dropped (3 Gender, 1,890 Height and 322
Weight lines). Values outside physiological limits (``PLAUSIBLE``) are recording errors and are dropped: 0 (or
below 1) mmHg blood pressures and 0 bpm heart rates in patients charted alive, typically line flushes or
disconnections (SysABP 685, DiasABP 681, NISysABP 174, NIDiasABP 103, NIMAP 45, MAP 31, HR 11); 232 weights
below 1 kg (184 of them 0); 16 heights outside 100-250 cm; 130 temperatures below 25 degC (0, -17.8, 1-3.6);
11 pH values outside 6.5-8.0 (735, 100, 1); one PaO2 of 0. An Age of 200 or more (58 lines, 55 stays) is
MIMIC-II's de-identification code for "over 89" and becomes 90. Where a record repeats Age (381 records,
differing by about a year), the first value is used.
Units follow the challenge documentation, except Mg: it lists mmol/L, but the values (median 2.0, as charted
in MIMIC-II) are mg/dL, and we label them so.
The parsed long table is cached as Parquet under ``MEDML_HOME/cache``, keyed by the archive's size and mtime.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from medml.config import get_settings
from medml.data.cohort import Cohort
from medml.data.datasets._common import (
    SEX,
    age_band,
    categorical,
    id_array,
    provenance,
    resolve_data_root,
    sensitive_frame,
    source_file,
)
from medml.data.targets import BinaryTarget, SurvivalTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import DataError, InputFileError

KEY = "physionet-2012"
SOURCE = "icu/physionet-2012-set-a/set-a.tar.gz"
OUTCOMES = "icu/physionet-2012-set-a/Outcomes-a.txt"
_CACHE_VERSION = 2

#: The 37 time-series variables: (clinical label, unit) from the challenge documentation.
VARIABLES: dict[str, tuple[str, str]] = {
    "Albumin": ("Albumin", "g/dL"),
    "ALP": ("Alkaline phosphatase", "IU/L"),
    "ALT": ("Alanine transaminase", "IU/L"),
    "AST": ("Aspartate transaminase", "IU/L"),
    "Bilirubin": ("Bilirubin", "mg/dL"),
    "BUN": ("Blood urea nitrogen", "mg/dL"),
    "Cholesterol": ("Cholesterol", "mg/dL"),
    "Creatinine": ("Serum creatinine", "mg/dL"),
    "DiasABP": ("Invasive diastolic arterial blood pressure", "mmHg"),
    "FiO2": ("Fraction of inspired oxygen", "fraction (0-1)"),
    "GCS": ("Glasgow Coma Scale", "points (3-15)"),
    "Glucose": ("Glucose", "mg/dL"),
    "HCO3": ("Serum bicarbonate", "mmol/L"),
    "HCT": ("Haematocrit", "%"),
    "HR": ("Heart rate", "bpm"),
    "K": ("Serum potassium", "mEq/L"),
    "Lactate": ("Lactate", "mmol/L"),
    "Mg": ("Serum magnesium", "mg/dL"),
    "MAP": ("Invasive mean arterial blood pressure", "mmHg"),
    "MechVent": ("Mechanical ventilation (1 = on)", ""),
    "Na": ("Serum sodium", "mEq/L"),
    "NIDiasABP": ("Non-invasive diastolic arterial blood pressure", "mmHg"),
    "NIMAP": ("Non-invasive mean arterial blood pressure", "mmHg"),
    "NISysABP": ("Non-invasive systolic arterial blood pressure", "mmHg"),
    "PaCO2": ("Arterial partial pressure of CO2", "mmHg"),
    "PaO2": ("Arterial partial pressure of O2", "mmHg"),
    "pH": ("Arterial pH", ""),
    "Platelets": ("Platelets", "cells/nL"),
    "RespRate": ("Respiratory rate", "breaths/min"),
    "SaO2": ("Arterial O2 saturation", "%"),
    "SysABP": ("Invasive systolic arterial blood pressure", "mmHg"),
    "Temp": ("Temperature", "degC"),
    "TroponinI": ("Troponin I", "ug/L"),
    "TroponinT": ("Troponin T", "ug/L"),
    "Urine": ("Urine output", "mL"),
    "WBC": ("White blood cell count", "cells/nL"),
    "Weight": ("Weight", "kg"),
}
STATIC: dict[str, tuple[str, str]] = {
    "Age": ("Age", "years"),
    "Gender": ("Sex", ""),
    "Height": ("Height", "cm"),
    "ICUType": ("ICU type", ""),
}
AGGREGATES = ("first", "last", "min", "max", "mean", "count")
ICU_TYPES = {1: "Coronary care unit", 2: "Cardiac surgery recovery unit", 3: "Medical ICU", 4: "Surgical ICU"}

#: Inclusive physiological limits per variable, in set A's units; values outside are recording (or unit) errors and
#: are dropped from training, and left out and named when a model scores a patient (issue 13: every input has one).
#: The bounds are wide: each encloses every value recorded in set A, so the training data did not change when the
#: ranges were completed. A few recorded values inside them look like errors to a clinician and are kept for the
#: model trained on them: BUN 0 mg/dL, PaCO2 0.3 mmHg, HR 3.5/min, K 22.9 mEq/L (haemolysis?).
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "Albumin": (0.5, 8.0),
    "ALP": (1, 5000),
    "ALT": (1, 20000),
    "AST": (1, 30000),
    "Bilirubin": (0.05, 80),
    "BUN": (0, 400),
    "Cholesterol": (10, 1000),
    "Creatinine": (0.05, 40),
    "DiasABP": (1, 350),
    "FiO2": (0.21, 1.0),
    "GCS": (3, 15),
    "Glucose": (5, 3000),
    "HCO3": (1, 70),
    "HCT": (5, 80),
    "HR": (1, 350),
    "K": (1.0, 25),
    "Lactate": (0.1, 40),
    "Mg": (0.3, 12),
    "MAP": (1, 350),
    "MechVent": (0, 1),
    "Na": (80, 200),
    "NIDiasABP": (1, 350),
    "NIMAP": (1, 350),
    "NISysABP": (1, 350),
    "PaCO2": (0.1, 250),
    "PaO2": (1, 800),
    "pH": (6.5, 8.0),
    "Platelets": (1, 3000),
    "RespRate": (0, 100),
    "SaO2": (10, 100),
    "SysABP": (1, 350),
    "Temp": (25, 45),
    "TroponinI": (0, 500),
    "TroponinT": (0, 100),
    "Urine": (0, 15000),
    "WBC": (0.05, 500),
    "Weight": (1, 500),
    "Height": (100, 250),
}
#: Age in years after de-identification (recorded >= 200 means over 89, set to 90): anything else is an error
AGE_PLAUSIBLE = (0.0, 120.0)
_MISSING_SENTINEL = -1.0
_AGE_DEIDENTIFIED = 200
_AGE_TOP = 90.0


def _parse_archive(path: Path) -> pd.DataFrame:
    """Every record's lines as one long table: stay_id, time (minutes), variable, value.

    All members are read into one buffer and parsed once; ``stay_id`` comes from each member's file name.
    """
    chunks: list[bytes] = []
    ids: list[int] = []
    counts: list[int] = []
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                stem = Path(member.name).stem
                if not (member.isfile() and member.name.endswith(".txt") and stem.isdigit()):
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                data = f.read()
                if data.startswith(b"Time"):
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""
                data = data.rstrip(b"\r\n")
                if not data:
                    continue
                chunks.append(data + b"\n")
                ids.append(int(stem))
                counts.append(data.count(b"\n") + 1)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "restore the original archive (see SOURCE.txt)") from e
    if not chunks:
        raise InputFileError(f"{path} holds no record files", "restore the original archive (see SOURCE.txt)")
    # The time "HH:MM" is the only field with a colon: splitting it there gives hours and minutes as numbers.
    buffer = io.BytesIO(b"".join(chunks).replace(b":", b","))
    dtypes: dict[str, Any] = {"hours": float, "minutes": float, "variable": "category", "value": float}
    try:
        raw = pd.read_csv(buffer, header=None, names=list(dtypes), dtype=dtypes, skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise InputFileError(
            f"cannot parse the records in {path}: {e}",
            "each line must read HH:MM,Parameter,Value; restore the original archive",
        ) from e
    raw.insert(0, "stay_id", np.repeat(np.asarray(ids, dtype=np.int64), counts))
    raw = raw[raw["variable"].notna().to_numpy()]
    return pd.DataFrame(
        {
            "stay_id": raw["stay_id"].to_numpy(),
            "time": (raw["hours"] * 60 + raw["minutes"]).to_numpy(dtype=np.int32),
            "variable": raw["variable"].cat.remove_unused_categories().to_numpy(),
            "value": raw["value"].to_numpy(dtype=float),
        }
    )


def _cached_long_table(path: Path) -> pd.DataFrame:
    """The parsed archive, from the Parquet cache when the archive's size and mtime match."""
    st = path.stat()
    cache_dir = get_settings().home / "cache"
    key = f"{path.name.split('.')[0]}-{st.st_size}-{st.st_mtime_ns}-v{_CACHE_VERSION}"
    cache = cache_dir / f"physionet2012-{key}.parquet"
    if cache.is_file():
        try:
            return pd.read_parquet(cache)
        except (OSError, ValueError):  # a damaged cache file: parse the archive again and rewrite it
            pass
    long = _parse_archive(path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".physionet2012-", suffix=".tmp")
        os.close(fd)
        try:
            long.to_parquet(tmp, index=False)
            os.replace(tmp, cache)  # mkstemp's 0600: everything under MEDML_HOME is owner-only
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:  # the cache only saves time; a read-only MEDML_HOME must not stop the load
        pass
    return long


def feature_ranges() -> dict[str, tuple[float, float]]:
    """The plausible range of each model input: a variable's range for its first/last/min/max/mean, Age's own."""
    ranges = {f"{var}_{a}": PLAUSIBLE[var] for var in VARIABLES for a in AGGREGATES if a != "count"}
    ranges.update(Age=AGE_PLAUSIBLE, Height=PLAUSIBLE["Height"])
    return ranges


def clean_events(long: pd.DataFrame) -> pd.DataFrame:
    """Drop the -1 missing sentinel and values outside ``PLAUSIBLE`` (see the module docstring)."""
    keep = long["value"].notna() & (long["value"] != _MISSING_SENTINEL)
    for var, (lo, hi) in PLAUSIBLE.items():
        is_var = (long["variable"] == var).to_numpy()
        v = long["value"].to_numpy()
        keep &= ~(is_var & ((v < lo) | (v > hi)))
    return long.loc[keep].reset_index(drop=True)


def _static(clean: pd.DataFrame, stays: pd.Index) -> pd.DataFrame:
    """First Age, Gender, Height, ICUType per stay (Age >= 200 -> 90)."""
    desc = clean[clean["variable"].isin(list(STATIC))]
    first = desc.groupby(["stay_id", "variable"], sort=False)["value"].first().unstack()
    first = first.reindex(index=stays, columns=list(STATIC))
    first["Age"] = first["Age"].where(first["Age"] < _AGE_DEIDENTIFIED, _AGE_TOP)
    return first


def load_cohort(data_root: str | Path | None = None) -> Cohort:
    """All 4,000 stays of Outcomes-a.txt (``has_time_series`` marks the 3,996 with a file) and their events."""
    root = resolve_data_root(data_root)
    archive = source_file(root, SOURCE)
    outcomes_path = source_file(root, OUTCOMES)
    try:
        outcomes = pd.read_csv(outcomes_path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {outcomes_path}: {e}", "restore the original file") from e
    needed = {"RecordID", "In-hospital_death"}
    if not needed <= set(outcomes.columns):
        raise InputFileError(
            f"{outcomes_path} lacks {', '.join(sorted(needed - set(outcomes.columns)))}",
            f"its columns are {', '.join(outcomes.columns)}; restore the original file",
        )
    long = clean_events(_cached_long_table(archive))
    stays = pd.Index(outcomes["RecordID"].astype(np.int64), name="stay_id")
    static = _static(long, stays)
    present = set(long["stay_id"].unique().tolist())
    table = outcomes.rename(columns={"RecordID": "stay_id"})
    table.insert(1, "patient_id", table["stay_id"])
    table["has_time_series"] = table["stay_id"].isin(present)
    table = table.join(static, on="stay_id")
    events = long[long["variable"].isin(list(VARIABLES))].sort_values(["stay_id", "time"], kind="stable")
    events = events.reset_index(drop=True)
    events["variable"] = events["variable"].astype(pd.CategoricalDtype(list(VARIABLES)))
    units = {v: u for v, (_, u) in (VARIABLES | STATIC).items() if u}
    return Cohort(
        name=KEY,
        table=table,
        patient_id="patient_id",
        unit_id="stay_id",
        events=events,
        units=units,
        provenance=provenance(root, SOURCE, OUTCOMES),
    )


def aggregate_events(events: pd.DataFrame, stays: pd.Index, hours: float) -> pd.DataFrame:
    """first/last/min/max/mean/count of each variable up to ``hours`` after admission, one row per stay."""
    window = events[events["time"] <= hours * 60]
    agg = window.groupby(["stay_id", "variable"], observed=True, sort=True)["value"].agg(list(AGGREGATES))
    wide = cast(pd.DataFrame, agg.unstack("variable"))
    pairs = cast(list[tuple[str, str]], list(wide.columns))
    wide.columns = pd.Index([f"{var}_{a}" for a, var in pairs])
    ordered = [f"{var}_{a}" for var in VARIABLES for a in AGGREGATES]
    out = wide.reindex(index=stays, columns=ordered).astype(float)
    counts = [f"{var}_count" for var in VARIABLES]
    out[counts] = out[counts].fillna(0.0)
    return out.reset_index(drop=True)


def in_hospital_death(cohort: Cohort, hours: float = 48) -> TaskDataset:
    """In-hospital death, from the first ``hours`` of the ICU stay (see the module docstring)."""
    if not 0 < hours <= 48:
        raise DataError(
            f"the records cover the first 48 hours of each stay; hours={hours} is outside (0, 48]",
            "choose a window of at most 48 hours",
        )
    if cohort.events is None:
        raise DataError("the PhysioNet 2012 cohort has no events", "build it with physionet2012.load_cohort")
    full = cohort.table
    t = full[full["has_time_series"]].reset_index(drop=True)
    stays = pd.Index(t["stay_id"], name="stay_id")
    agg = aggregate_events(cohort.events, stays, hours)
    has_icu_type = t["ICUType"].notna().any()
    static = pd.DataFrame(
        {
            "Age": t["Age"].astype(float),
            "Gender": categorical(t["Gender"], SEX, {0.0: "Female", 1.0: "Male"}),
            "Height": t["Height"].astype(float),
        }
    )
    if has_icu_type:
        static["ICUType"] = categorical(t["ICUType"], list(ICU_TYPES.values()), ICU_TYPES)
    X = static.join(agg)
    labels: dict[str, str] = {k: lab for k, (lab, _) in STATIC.items()}
    units: dict[str, str] = {k: u for k, (_, u) in STATIC.items() if u}
    for var, (lab, unit) in VARIABLES.items():
        for a in AGGREGATES:
            counting = a == "count"
            labels[f"{var}_{a}"] = f"{lab}: measurements in {hours:g} h" if counting else f"{lab} ({a} in {hours:g} h)"
            units[f"{var}_{a}"] = "count" if counting else unit
    excluded = {
        "RecordID": "identifies the stay (TaskDataset.ids and groups), not a predictor",
        "In-hospital_death": "the outcome",
        "Survival": "days from ICU admission to death: known only after the outcome",
        "Length_of_stay": "length of stay: known only at discharge, and ended by the death itself",
        "SAPS-I": "the organisers' SAPS-I severity score: another model's score, a baseline rather than a feature",
        "SOFA": "the organisers' SOFA score: another model's score, a baseline rather than a feature",
    }
    if not has_icu_type:
        excluded["ICUType"] = "absent from this copy of set A: no record has an ICUType line"
    n_missing = int((~full["has_time_series"]).sum())
    deaths_missing = int(full.loc[~full["has_time_series"], "In-hospital_death"].sum())
    return TaskDataset(
        name=KEY,
        task=f"in-hospital death, from the first {hours:g} hours in the ICU",
        X=X,
        y=BinaryTarget(t["In-hospital_death"].to_numpy(dtype=np.int8), "died in hospital"),
        groups=id_array(t["patient_id"]),
        features=infer_features(X, units, labels, feature_ranges()),
        sensitive=sensitive_frame(
            {
                "sex": t["Gender"].map({0.0: "Female", 1.0: "Male"}),
                "age_band": age_band(t["Age"]),
            }
        ),
        ids=id_array(t["stay_id"]),
        population=(
            f"{len(t):,} adult ICU stays of at least 48 hours at Beth Israel Deaconess Medical Center, "
            f"Boston (MIMIC-II, 2001-2008; PhysioNet/CinC Challenge 2012 set A); {n_missing} stays of "
            f"Outcomes-a.txt without a time-series file ({deaths_missing} of them deaths) were left out"
        ),
        provenance=cohort.provenance,
        excluded=excluded,
    )


#: the follow-up assumed for stays with no recorded death (see :func:`death_after_admission`)
FOLLOW_UP_DAYS = 365.0


def death_after_admission(cohort: Cohort, hours: float = 48, follow_up_days: float = FOLLOW_UP_DAYS) -> TaskDataset:
    """Time to death from ICU admission (days), from the first ``hours`` of the stay: the survival task.

    Outcomes-a.txt gives ``Survival``, the days from ICU admission to death, for the 1,474 stays with a recorded
    death (in hospital or after discharge, MIMIC-II's linkage to the US Social Security death records), and -1 for
    the 2,526 without one. Those have no follow-up time of their own: they are censored at ``follow_up_days``
    (365), which assumes the death linkage covered every patient for a year after admission (MIMIC-II's record
    linkage ran years past its last admission). Deaths after ``follow_up_days`` are censored there too, so the task
    is death within a year, and horizons past it are refused. The features and the stays are those of
    :func:`in_hospital_death`.
    """
    binary = in_hospital_death(cohort, hours)
    full = cohort.table
    t = full[full["has_time_series"]].reset_index(drop=True)
    if "Survival" not in t.columns:
        raise DataError("Outcomes-a.txt has no Survival column", "restore the original file")
    days = pd.to_numeric(t["Survival"], errors="coerce").to_numpy(dtype=float)
    died = days > 0
    event = died & (days <= follow_up_days)
    time = np.where(event, days, follow_up_days)
    censored = int((~died).sum())
    later = int((died & ~event).sum())
    excluded = {k: v for k, v in binary.excluded.items() if k != "Survival"}
    excluded["Survival"] = "the outcome: days from ICU admission to death (-1: no death recorded, censored)"
    excluded["In-hospital_death"] = "an outcome: death in hospital, inside the survival outcome"
    return replace(
        binary,
        task=f"death within {follow_up_days:g} days of ICU admission, from the first {hours:g} hours in the ICU",
        y=SurvivalTarget(time, event, "death", "days"),
        population=binary.population
        + f"; {censored:,} stays with no recorded death censored at {follow_up_days:g} days"
        + (f", {later:,} deaths after {follow_up_days:g} days censored there" if later else ""),
        excluded=excluded,
    )


def load_survival(data_root: str | Path | None = None) -> TaskDataset:
    """The survival task: death within a year of ICU admission, from the first 48 hours."""
    return death_after_admission(load_cohort(data_root), hours=48)


def load(data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task: in-hospital death from the first 48 hours."""
    return in_hospital_death(load_cohort(data_root), hours=48)
