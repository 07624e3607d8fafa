"""Diabetes 130-US hospitals (Strack et al. 2014): readmission within 30 days of a diabetic inpatient encounter.

Who: inpatient encounters of 1-14 days at 130 US hospitals, 1999-2008, in which diabetes was among the
diagnoses and laboratory tests and medications were recorded: 101,766 encounters of 71,518 patients.
Index time: discharge from the encounter (every feature is known by then).
Outcome: readmitted within 30 days of discharge (``readmitted == "<30"``); 1 = readmitted.
Exclusions: encounters whose discharge disposition is death or hospice (``discharge_disposition_id`` 11, 13,
14, 19, 20, 21 in IDs_mapping.csv: "Expired...", "Hospice / ..."), as Strack et al. 2014 do, since those
patients cannot be readmitted: 2,423 encounters, leaving 99,343 encounters of 69,990 patients, 11,314 (11.4%)
readmitted within 30 days. Unlike Strack et al. we keep every encounter, not only each patient's first, and
``groups`` = ``patient_nbr`` so that no patient is on both sides of a split.
Features: ``?`` is missing; admission type, discharge disposition and admission source are their
IDs_mapping.csv descriptions ("NULL", "Not Available", "Not Mapped", "Unknown/Invalid" -> missing); diag_1..3
are ICD-9 codes grouped into the Strack et al. clinical categories (:func:`icd9_groups`); ``age`` is the
midpoint of its 10-year bracket ("[70-80)" -> 75); max_glu_serum and A1Cresult "None" mean "Not measured".
Sensitive: race, sex, age band. Sex is also a feature (a biological covariate of readmission risk); race is not,
so that the model does not encode a social category, and stays available for the fairness audit.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

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
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import DataError, InputFileError

KEY = "diabetes-130"
SOURCE = "tabular/diabetes-130-us-hospitals/dataset_diabetes.zip"
_DATA_MEMBER = "diabetic_data.csv"
_MAPPING_MEMBER = "IDs_mapping.csv"

DEATH_OR_HOSPICE = (11, 13, 14, 19, 20, 21)
"""discharge_disposition_id codes meaning expired or discharged to hospice (IDs_mapping.csv)."""

ICD9_GROUPS = (
    "Circulatory",
    "Respiratory",
    "Digestive",
    "Diabetes",
    "Injury",
    "Musculoskeletal",
    "Genitourinary",
    "Neoplasms",
    "Other",
)

_MISSING_DESCRIPTIONS = {"NULL", "Not Available", "Not Mapped", "Unknown/Invalid", ""}
_ID_COLUMNS = ("admission_type_id", "discharge_disposition_id", "admission_source_id")
_DRUGS = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)
_CONSTANT_DRUGS = ("examide", "citoglipton")
_DOSE = ("No", "Steady", "Up", "Down")
_COUNTS = (
    "num_lab_procedures",
    "num_procedures",
    "num_medications",
    "number_outpatient",
    "number_emergency",
    "number_inpatient",
)
#: Inclusive plausible ranges of the numeric inputs (issue 13): the age bracket's midpoint in years, days in hospital
#: (the study took stays of 1-14 days), and counts within one encounter or the year before it; each encloses every
#: recorded value
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "age": (0, 110),
    "time_in_hospital": (1, 14),
    "num_lab_procedures": (0, 300),
    "num_procedures": (0, 50),
    "num_medications": (0, 200),
    "number_outpatient": (0, 365),
    "number_emergency": (0, 365),
    "number_inpatient": (0, 365),
    "number_diagnoses": (0, 50),
}
_AGE_BRACKETS = tuple(f"[{lo}-{lo + 10})" for lo in range(0, 100, 10))

_LABELS: dict[str, tuple[str, str]] = {
    "gender": ("Sex", ""),
    "age": ("Age (midpoint of 10-year bracket)", "years"),
    "admission_type_id": ("Admission type", ""),
    "discharge_disposition_id": ("Discharge disposition", ""),
    "admission_source_id": ("Admission source", ""),
    "time_in_hospital": ("Length of stay", "days"),
    "medical_specialty": ("Specialty of the admitting physician", ""),
    "num_lab_procedures": ("Laboratory tests during the encounter", "count"),
    "num_procedures": ("Procedures other than laboratory tests", "count"),
    "num_medications": ("Distinct medications given", "count"),
    "number_outpatient": ("Outpatient visits in the preceding year", "count"),
    "number_emergency": ("Emergency visits in the preceding year", "count"),
    "number_inpatient": ("Inpatient admissions in the preceding year", "count"),
    "diag_1": ("Primary diagnosis (ICD-9 group)", ""),
    "diag_2": ("Secondary diagnosis (ICD-9 group)", ""),
    "diag_3": ("Additional secondary diagnosis (ICD-9 group)", ""),
    "number_diagnoses": ("Diagnoses entered", "count"),
    "max_glu_serum": ("Maximum serum glucose", "mg/dL"),
    "A1Cresult": ("HbA1c result", "%"),
    "change": ("Diabetes medication changed", ""),
    "diabetesMed": ("Any diabetes medication prescribed", ""),
    **{d: (f"{d.replace('-', ' + ').capitalize()} (dose during the encounter)", "") for d in _DRUGS},
}


def icd9_groups(codes: pd.Series) -> pd.Series:
    """ICD-9 codes -> the clinical categories of Strack et al. 2014 (Table 2), as a categorical column.

    Circulatory 390-459, 785; respiratory 460-519, 786; digestive 520-579, 787; diabetes 250.xx; injury 800-999;
    musculoskeletal 710-739; genitourinary 580-629, 788; neoplasms 140-239; everything else, V and E codes
    included, is Other. Missing codes stay missing.
    """
    text = codes.astype("string").str.strip()
    supplementary = text.str.upper().str.match(r"^[VE]").fillna(False).to_numpy(dtype=bool)
    number = np.floor(pd.to_numeric(text.where(~supplementary), errors="coerce").to_numpy(dtype=float))
    conditions = [
        ((number >= 390) & (number <= 459)) | (number == 785),
        ((number >= 460) & (number <= 519)) | (number == 786),
        ((number >= 520) & (number <= 579)) | (number == 787),
        number == 250,
        (number >= 800) & (number <= 999),
        (number >= 710) & (number <= 739),
        ((number >= 580) & (number <= 629)) | (number == 788),
        (number >= 140) & (number <= 239),
    ]
    present = text.notna().to_numpy(dtype=bool)
    groups = np.select(conditions, list(ICD9_GROUPS[:-1]), default="Other").astype(object)
    groups[~present] = None
    return pd.Series(pd.Categorical(groups, categories=list(ICD9_GROUPS)), index=codes.index, name=codes.name)


def icd9_group(code: str | None) -> str | None:
    """One ICD-9 code's Strack et al. category (see :func:`icd9_groups`)."""
    value = icd9_groups(pd.Series([code], dtype=object)).iloc[0]
    return None if pd.isna(value) else str(value)


def read_id_mapping(text: str) -> dict[str, dict[int, str]]:
    """IDs_mapping.csv: three ``<column>,description`` sections separated by ``,`` lines -> code -> text."""
    sections: dict[str, dict[int, str]] = {}
    current: dict[int, str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row or not any(cell.strip() for cell in row):
            current = None
            continue
        head, desc = row[0].strip(), ",".join(row[1:]).strip()
        if current is None:
            current = sections.setdefault(head, {})
            continue
        current[int(head)] = desc
    return sections


def load_cohort(data_root: str | Path | None = None) -> Cohort:
    """The 101,766 encounters as read from the zip (in place), with the id codes' descriptions beside them."""
    root = resolve_data_root(data_root)
    path = source_file(root, SOURCE)
    try:
        with zipfile.ZipFile(path) as z:
            members = {Path(n).name: n for n in z.namelist()}
            if _DATA_MEMBER not in members or _MAPPING_MEMBER not in members:
                raise InputFileError(
                    f"{path} lacks {_DATA_MEMBER} or {_MAPPING_MEMBER}", "restore the original zip (see SOURCE.txt)"
                )
            mapping = read_id_mapping(z.read(members[_MAPPING_MEMBER]).decode("utf-8"))
            with z.open(members[_DATA_MEMBER]) as f:
                table = pd.read_csv(
                    f,
                    keep_default_na=False,
                    na_values=["?"],
                    low_memory=False,
                    dtype={
                        "payer_code": "string",
                        "diag_1": "string",
                        "diag_2": "string",
                        "diag_3": "string",
                        "medical_specialty": "string",
                    },
                )
    except zipfile.BadZipFile as e:
        raise InputFileError(f"{path} is not a readable zip ({e})", "restore the original file") from e
    for col in _ID_COLUMNS:
        codes = mapping.get(col, {})
        desc = {k: (None if v in _MISSING_DESCRIPTIONS else v) for k, v in codes.items()}
        table[f"{col}_description"] = table[col].map(desc)
    return Cohort(
        name=KEY,
        table=table,
        patient_id="patient_nbr",
        unit_id="encounter_id",
        provenance=provenance(root, SOURCE),
        units={"time_in_hospital": "days", "age": "years"},
    )


def readmission_within(cohort: Cohort, days: int = 30) -> TaskDataset:
    """Readmission within ``days`` of discharge, one sample per encounter (see the module docstring)."""
    if days != 30:
        raise DataError(
            f"this source records readmission only as '<30' days, '>30' days or 'NO', not within {days} days",
            "use days=30",
        )
    full = cohort.table
    died = full["discharge_disposition_id"].isin(DEATH_OR_HOSPICE)
    t = full.loc[~died].reset_index(drop=True)
    y = np.asarray(t["readmitted"] == "<30", dtype=np.int8)

    def levels(col: str) -> list[str]:
        # Categories from the whole cohort, so that the schema does not depend on the exclusions.
        return sorted(full[col].dropna().astype(str).unique())

    age = t["age"].str.extract(r"\[(\d+)-", expand=False).astype(float) + 5.0
    X = pd.DataFrame(
        {
            "gender": categorical(t["gender"], SEX),
            "age": age,
            **{c: categorical(t[f"{c}_description"], levels(f"{c}_description")) for c in _ID_COLUMNS},
            "time_in_hospital": t["time_in_hospital"].astype(float),
            "medical_specialty": categorical(t["medical_specialty"], levels("medical_specialty")),
            **{c: t[c].astype(float) for c in _COUNTS},
            **{c: icd9_groups(t[c]) for c in ("diag_1", "diag_2", "diag_3")},
            "number_diagnoses": t["number_diagnoses"].astype(float),
            "max_glu_serum": categorical(
                t["max_glu_serum"].replace("None", "Not measured"), ("Not measured", "Norm", ">200", ">300")
            ),
            "A1Cresult": categorical(
                t["A1Cresult"].replace("None", "Not measured"), ("Not measured", "Norm", ">7", ">8")
            ),
            **{d: categorical(t[d], _DOSE) for d in _DRUGS if d not in _CONSTANT_DRUGS},
            "change": categorical(t["change"], ("No", "Changed"), {"No": "No", "Ch": "Changed"}),
            "diabetesMed": categorical(t["diabetesMed"], ("No", "Yes")),
        }
    )
    excluded = {
        "encounter_id": "identifies the encounter (TaskDataset.ids), not a predictor",
        "patient_nbr": "identifies the patient (TaskDataset.groups), not a predictor",
        "readmitted": "the outcome",
        "race": "sensitive attribute: kept in `sensitive` for the fairness audit, not used as a predictor",
        "weight": "missing in 97% of encounters (Strack et al. 2014 dropped it too)",
        "payer_code": "insurance payer: missing in 40% and not a clinical predictor (dropped by Strack et al. 2014)",
        **{d: "constant: 'No' in every encounter" for d in _CONSTANT_DRUGS},
    }
    return TaskDataset(
        name=KEY,
        task=f"readmission within {days} days of discharge",
        X=X,
        y=BinaryTarget(y, f"readmitted within {days} days"),
        groups=id_array(t["patient_nbr"]),
        features=infer_features(
            X, {c: u for c, (_, u) in _LABELS.items() if u}, {c: lab for c, (lab, _) in _LABELS.items()}, PLAUSIBLE
        ),
        sensitive=sensitive_frame(
            {
                "race": t["race"].replace("AfricanAmerican", "African American"),
                "sex": t["gender"].where(t["gender"].isin(SEX)),
                "age_band": age_band(age),
            }
        ),
        ids=id_array(t["encounter_id"]),
        population=(
            f"{len(t):,} inpatient encounters of {t['patient_nbr'].nunique():,} patients with diabetes at "
            f"130 US hospitals, 1999-2008, discharged alive and not to hospice "
            f"({int(died.sum()):,} encounters ending in death or hospice were left out)"
        ),
        provenance=cohort.provenance,
        excluded=excluded,
    )


def load(data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task: readmission within 30 days."""
    return readmission_within(load_cohort(data_root), days=30)
