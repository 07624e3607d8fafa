"""Pima Indians diabetes (NIDDK; Smith et al. 1988): diabetes in women of Pima Indian heritage.

Who: 768 women of Pima Indian heritage, aged 21 or older, living near Phoenix, Arizona, USA, examined in the
NIDDK's longitudinal study of the Gila River Indian Community; one row per woman (no id: the row is the woman).
Index time: the examination.
Outcome: diabetes by WHO criteria (2-hour post-load plasma glucose >= 200 mg/dL at any survey examination,
or found in routine care); 1 = diabetes (268 of 768). The glucose feature is the 2-hour glucose of the
examination, so the outcome is defined partly by a feature: expect optimistic discrimination.
Features: the 8 attributes; a 0 is missing in glucose, diastolic blood pressure, skin fold thickness, insulin and
BMI (physiologically impossible; the data's documentation says zeros encode missing values).
Sensitive: age band only (every woman is of the same sex and heritage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medml.data.cohort import Cohort
from medml.data.datasets._common import (
    age_band,
    id_array,
    provenance,
    resolve_data_root,
    sensitive_frame,
    source_file,
)
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import InputFileError

KEY = "pima"
SOURCE = "tabular/pima-diabetes/pima-indians-diabetes.csv"

FEATURES: dict[str, tuple[str, str]] = {
    "pregnancies": ("Number of pregnancies", "count"),
    "glucose": ("Plasma glucose 2 h after an oral glucose load", "mg/dL"),
    "blood_pressure": ("Diastolic blood pressure", "mmHg"),
    "skin_thickness": ("Triceps skin fold thickness", "mm"),
    "insulin": ("2-hour serum insulin", "uU/mL"),
    "bmi": ("Body mass index", "kg/m2"),
    "pedigree": ("Diabetes pedigree function", ""),
    "age": ("Age", "years"),
}
ZERO_IS_MISSING = ("glucose", "blood_pressure", "skin_thickness", "insulin", "bmi")
#: Inclusive plausible ranges in the units above (physiology; each encloses every recorded value): a value outside is
#: a recording or unit error, left out and named when a model scores a patient
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "pregnancies": (0, 25),
    "glucose": (20, 700),
    "blood_pressure": (20, 180),
    "skin_thickness": (2, 120),
    "insulin": (1, 1500),
    "bmi": (10, 90),
    "pedigree": (0, 5),
    "age": (10, 120),
}


def load_cohort(data_root: str | Path | None = None) -> Cohort:
    """The 768 rows (no header) with named columns and a ``patient_id`` per row."""
    root = resolve_data_root(data_root)
    path = source_file(root, SOURCE)
    try:
        table = pd.read_csv(path, header=None, names=[*FEATURES, "diabetes"], dtype=float)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "restore the original file (see SOURCE.txt)") from e
    table.insert(0, "patient_id", [f"pima-{i + 1}" for i in range(len(table))])
    return Cohort(
        name=KEY,
        table=table,
        patient_id="patient_id",
        unit_id="patient_id",
        provenance=provenance(root, SOURCE),
        units={c: u for c, (_, u) in FEATURES.items() if u},
    )


def diabetes_diagnosis(cohort: Cohort) -> TaskDataset:
    """Diabetes by WHO criteria (see the module docstring)."""
    t = cohort.table.reset_index(drop=True)
    X = t[list(FEATURES)].astype(float)
    for c in ZERO_IS_MISSING:
        X[c] = X[c].where(X[c] != 0)
    return TaskDataset(
        name=KEY,
        task="diabetes (WHO criteria)",
        X=X,
        y=BinaryTarget(t["diabetes"].to_numpy(dtype=np.int8), "diabetes (WHO criteria)"),
        groups=id_array(t["patient_id"]),
        features=infer_features(
            X,
            {c: u for c, (_, u) in FEATURES.items() if u},
            {c: lab for c, (lab, _) in FEATURES.items()},
            PLAUSIBLE,
        ),
        sensitive=sensitive_frame({"age_band": age_band(t["age"])}),
        ids=id_array(t["patient_id"]),
        population=(
            f"{len(t):,} women of Pima Indian heritage aged 21 or older near Phoenix, Arizona, USA "
            "(NIDDK longitudinal study, data published 1988)"
        ),
        provenance=cohort.provenance,
        excluded={"diabetes": "the outcome (last column of the file)"},
    )


def load(data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task: diabetes."""
    return diabetes_diagnosis(load_cohort(data_root))
