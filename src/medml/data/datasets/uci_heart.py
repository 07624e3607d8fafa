"""UCI heart disease (Detrano et al. 1989): coronary artery disease on angiography, at four sites.

Who: patients referred for coronary angiography. Cleveland Clinic Foundation, Ohio, USA, 1981-1984 (303,
the development site); Hungarian Institute of Cardiology, Budapest, 1983-1987 (294); University Hospitals of
Zurich and Basel, Switzerland, 1985 (123); Veterans Administration Medical Center, Long Beach, California,
1984-1987 (200). One row per patient; the files carry no id, so each row is its own patient.
Index time: before angiography (the 13 attributes come from history, resting tests and the exercise test).
Outcome: angiographic disease, > 50% diameter narrowing in any major vessel (``num`` > 0); 1 = disease.
Features: the 13 standard attributes with the same columns and category levels at every site, so that the
three other sites are true external validation sets with a real site shift (Switzerland: 94% prevalence and
no cholesterol; VA: 75%). ``?`` is missing; a serum cholesterol or resting blood pressure of 0 is impossible and
is missing too (all 123 Swiss and 49 VA cholesterols, one VA blood pressure).
Sensitive: sex and age band. Sex is also a feature (a classic risk factor in this data); there is no race.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medml.data.cohort import Cohort
from medml.data.datasets._common import (
    age_band,
    categorical,
    id_array,
    provenance,
    resolve_data_root,
    sensitive_frame,
    source_file,
)
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import InputFileError, NotFoundError

FOLDER = "tabular/uci-heart-disease"
SITES: dict[str, tuple[str, str]] = {
    "cleveland": (
        "processed.cleveland.data",
        "patients referred for coronary angiography at the Cleveland Clinic Foundation, Cleveland, "
        "Ohio, USA, 1981-1984",
    ),
    "hungary": (
        "processed.hungarian.data",
        "patients referred for coronary angiography at the Hungarian Institute of Cardiology, "
        "Budapest, Hungary, 1983-1987",
    ),
    "switzerland": (
        "processed.switzerland.data",
        "patients referred for coronary angiography at the University Hospitals of Zurich and Basel, Switzerland, 1985",
    ),
    "va": (
        "processed.va.data",
        "patients referred for coronary angiography at the Veterans Administration Medical Center, "
        "Long Beach, California, USA, 1984-1987",
    ),
}
COLUMNS = (
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
)

_NUMERIC: dict[str, tuple[str, str]] = {
    "age": ("Age", "years"),
    "trestbps": ("Resting blood pressure on admission", "mmHg"),
    "chol": ("Serum cholesterol", "mg/dL"),
    "thalach": ("Maximum heart rate achieved on exercise", "bpm"),
    "oldpeak": ("ST depression induced by exercise relative to rest", "mm"),
}
#: Inclusive plausible ranges of the numeric inputs (physiology, in the units above): a value outside is a recording
#: or unit error, left out and named when a model scores a patient
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "age": (18, 110),
    "trestbps": (50, 260),
    "chol": (50, 700),
    "thalach": (40, 250),
    "oldpeak": (-5, 10),
}
_CATEGORICAL: dict[str, tuple[str, dict[float, str]]] = {
    "sex": ("Sex", {0: "Female", 1: "Male"}),
    "cp": ("Chest pain type", {1: "typical angina", 2: "atypical angina", 3: "non-anginal pain", 4: "asymptomatic"}),
    "fbs": ("Fasting blood sugar > 120 mg/dL", {0: "no", 1: "yes"}),
    "restecg": ("Resting ECG", {0: "normal", 1: "ST-T wave abnormality", 2: "left ventricular hypertrophy (Estes)"}),
    "exang": ("Exercise-induced angina", {0: "no", 1: "yes"}),
    "slope": ("Slope of the peak exercise ST segment", {1: "upsloping", 2: "flat", 3: "downsloping"}),
    "ca": ("Major vessels coloured by fluoroscopy", {0: "0", 1: "1", 2: "2", 3: "3"}),
    "thal": ("Thallium stress test", {3: "normal", 6: "fixed defect", 7: "reversible defect"}),
}
_ZERO_IS_MISSING = ("chol", "trestbps")


def load_cohort(site: str = "cleveland", data_root: str | Path | None = None) -> Cohort:
    """One site's processed file (``?`` -> missing), with a ``patient_id`` per row."""
    if site not in SITES:
        raise NotFoundError(f"unknown heart disease site '{site}'", f"use one of: {', '.join(SITES)}")
    root = resolve_data_root(data_root)
    rel = f"{FOLDER}/{SITES[site][0]}"
    path = source_file(root, rel)
    try:
        table = pd.read_csv(path, header=None, names=list(COLUMNS), na_values=["?"], dtype=float)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "restore the original file (see SOURCE.txt)") from e
    table.insert(0, "patient_id", [f"{site}-{i + 1}" for i in range(len(table))])
    return Cohort(
        name=f"heart-{site}",
        table=table,
        patient_id="patient_id",
        unit_id="patient_id",
        provenance=provenance(root, rel),
        units={c: u for c, (_, u) in _NUMERIC.items()},
    )


def coronary_artery_disease(cohort: Cohort) -> TaskDataset:
    """Angiographic coronary artery disease (``num`` > 0), see the module docstring."""
    t = cohort.table.reset_index(drop=True)
    site = cohort.name.removeprefix("heart-")
    num = t[list(_NUMERIC)].copy()
    for c in _ZERO_IS_MISSING:
        num[c] = num[c].where(num[c] != 0)
    X = pd.DataFrame(
        {
            c: (num[c] if c in _NUMERIC else categorical(t[c], list(_CATEGORICAL[c][1].values()), _CATEGORICAL[c][1]))
            for c in COLUMNS[:-1]
        }
    )
    labels = {c: lab for c, (lab, _) in _NUMERIC.items()} | {c: lab for c, (lab, _) in _CATEGORICAL.items()}
    return TaskDataset(
        name=cohort.name,
        task="coronary artery disease (> 50% narrowing on angiography)",
        X=X,
        y=BinaryTarget(np.asarray(t["num"] > 0, dtype=np.int8), "coronary artery disease on angiography"),
        groups=id_array(t["patient_id"]),
        features=infer_features(X, {c: u for c, (_, u) in _NUMERIC.items()}, labels, PLAUSIBLE),
        sensitive=sensitive_frame({"sex": t["sex"].map({0: "Female", 1: "Male"}), "age_band": age_band(t["age"])}),
        ids=id_array(t["patient_id"]),
        population=f"{len(t):,} {SITES[site][1]}" if site in SITES else f"{len(t):,} patients ({cohort.name})",
        provenance=cohort.provenance,
        excluded={"num": "the outcome (0 = no disease, 1-4 = disease), as num > 0"},
    )


def load(site: str = "cleveland", data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task for one site."""
    return coronary_artery_disease(load_cohort(site, data_root))
