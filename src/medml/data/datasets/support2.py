"""SUPPORT2 (Knaus et al. 1995): death in hospital of seriously ill hospitalised adults.

Who: 9,105 adults in one of nine life-threatening disease groups (acute respiratory failure or multiple organ
system failure with sepsis or malignancy, coma, COPD, heart failure, cirrhosis, metastatic colon cancer,
non-small-cell lung cancer) at five US teaching hospitals, 1989-1994; one row per patient (``sno``).
Index time: study day 3. The physiology columns (meanbp ... urine, scoma, aps) and the ADL scores are the
study's day-3 values (Harrell's SUPPORT documentation: "Day 3"), the time the SUPPORT prognostic model itself
predicts at; every patient was still in hospital then (``slos`` >= 3 in all rows), so no one is excluded.
Outcome: death in hospital (``hospdead``); 1 = died in hospital.
Excluded: every column recorded after day 3 or derived from the outcome, the SUPPORT model's and the physicians'
own survival predictions, and DNR orders written after study entry (see ``EXCLUDED``). A DNR order written
before study entry is known at the index time and kept, as ``dnr_before_entry``.
Missing values stay missing (no Harrell-style normal-value imputation: that is the model's job).
Sensitive: sex, age band, race. Sex is also a feature; race is not (kept only for the fairness audit).
Survival task (``death_after_entry``): time to death (``death``, ``d.time``) from study entry, on the same
predictors or on DeepSurv's 14, with the same exclusions.
"""

from __future__ import annotations

from dataclasses import replace
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
from medml.data.targets import BinaryTarget, SurvivalTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import InputFileError

KEY = "support2"
SOURCE = "tabular/support2/support2.csv.gz"

EXCLUDED: dict[str, str] = {
    "sno": "patient identifier (TaskDataset.groups and ids), not a predictor",
    "hospdead": "the outcome",
    "death": "death at any time up to 31 Dec 1994: contains the outcome (every in-hospital death is a death)",
    "d.time": "days of follow-up to death or censoring: known only afterwards, and short for in-hospital deaths",
    "slos": "days from study entry to discharge: known only at discharge, a stay the death itself ends",
    "charges": "hospital charges: accumulated up to discharge, after the index time",
    "totcst": "total cost (ratio of cost to charges): accumulated up to discharge, after the index time",
    "totmcst": "total micro-cost: accumulated up to discharge, after the index time",
    "avtisst": "average TISS over days 3-25: mostly measured after the index time, over a stay the outcome shortens",
    "sfdm2": "functional disability at the 2-month follow-up; its level '<2 mo. follow-up' mostly means death",
    "surv2m": "the SUPPORT model's 2-month survival estimate: another model's prediction, fit on these patients",
    "surv6m": "the SUPPORT model's 6-month survival estimate: another model's prediction, fit on these patients",
    "sps": "the SUPPORT physiology score: the SUPPORT model's own score, its weights fit to these patients' survival",
    "prg2m": "the physician's 2-month survival estimate: a human prediction of the outcome, not a measurement",
    "prg6m": "the physician's 6-month survival estimate: a human prediction of the outcome, not a measurement",
    "dnr": "DNR order status including orders written after study entry (62% of those patients died in "
    "hospital, many orders just before death): kept only as dnr_before_entry",
    "dnrday": "day of the DNR order: most orders come after study entry, often just before death",
    "adlsc": "Harrell's imputed ADL calibrated to the surrogate: an imputation model's output; the raw "
    "adlp and adls are kept",
    "dzclass": "a coarser grouping of dzgroup, which is kept",
    "race": "sensitive attribute: kept in `sensitive` for the fairness audit, not used as a predictor",
}

_NUMERIC: dict[str, tuple[str, str]] = {
    "age": ("Age", "years"),
    "num.co": ("Number of comorbidities", "count"),
    "edu": ("Years of education", "years"),
    "scoma": ("SUPPORT coma score (Glasgow-based), day 3", "points (0-100)"),
    "aps": ("APACHE III acute physiology score, day 3", "points"),
    "hday": ("Day in hospital at study entry", "days"),
    "meanbp": ("Mean arterial blood pressure, day 3", "mmHg"),
    "wblc": ("White blood cell count, day 3", "10^3/uL"),
    "hrt": ("Heart rate, day 3", "bpm"),
    "resp": ("Respiratory rate, day 3", "breaths/min"),
    "temp": ("Temperature, day 3", "degC"),
    "pafi": ("PaO2/FiO2 ratio, day 3", "mmHg"),
    "alb": ("Serum albumin, day 3", "g/dL"),
    "bili": ("Bilirubin, day 3", "mg/dL"),
    "crea": ("Serum creatinine, day 3", "mg/dL"),
    "sod": ("Serum sodium, day 3", "mEq/L"),
    "ph": ("Arterial pH, day 3", ""),
    "glucose": ("Glucose, day 3", "mg/dL"),
    "bun": ("Blood urea nitrogen, day 3", "mg/dL"),
    "urine": ("Urine output, day 3", "mL/day"),
    "adlp": ("Activities of daily living, patient-reported, day 3", "index (0-7)"),
    "adls": ("Activities of daily living, surrogate-reported, day 3", "index (0-7)"),
}
#: Inclusive plausible ranges of the numeric inputs, in the units above (issue 13: every input has one). Each encloses
#: every value SUPPORT2 records, so training did not change; some recorded values inside look like errors or a 0 for
#: "not measured" to a clinician and are kept for the models trained on them: meanbp, hrt, wblc and glucose of 0,
#: an albumin of 29 g/dL.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "age": (18, 110),
    "num.co": (0, 20),
    "edu": (0, 35),
    "scoma": (0, 100),
    "aps": (0, 300),
    "hday": (1, 365),
    "meanbp": (0, 300),
    "wblc": (0, 500),
    "hrt": (0, 350),
    "resp": (0, 100),
    "temp": (25, 45),
    "pafi": (10, 1000),
    "alb": (0.3, 30),
    "bili": (0.05, 80),
    "crea": (0.05, 40),
    "sod": (80, 200),
    "ph": (6.5, 8.0),
    "glucose": (0, 3000),
    "bun": (0.5, 400),
    "urine": (0, 15000),
    "adlp": (0, 7),
    "adls": (0, 7),
}
_DZGROUP = ("ARF/MOSF w/Sepsis", "CHF", "COPD", "Cirrhosis", "Colon Cancer", "Coma", "Lung Cancer", "MOSF w/Malig")
_INCOME = ("under $11k", "$11-$25k", "$25-$50k", ">$50k")
_CATEGORICAL_LABELS = {
    "sex": "Sex",
    "dzgroup": "Disease group",
    "income": "Household income",
    "diabetes": "Diabetes",
    "dementia": "Dementia",
    "ca": "Cancer",
    "dnr_before_entry": "DNR order written before study entry",
}


def load_cohort(data_root: str | Path | None = None) -> Cohort:
    """The 9,105 patients as read from the gzipped CSV."""
    root = resolve_data_root(data_root)
    path = source_file(root, SOURCE)
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, EOFError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "restore the original file (see SOURCE.txt)") from e
    return Cohort(
        name=KEY,
        table=table,
        patient_id="sno",
        unit_id="sno",
        provenance=provenance(root, SOURCE),
        units={c: u for c, (_, u) in _NUMERIC.items() if u},
    )


def in_hospital_death(cohort: Cohort) -> TaskDataset:
    """Death in hospital, predicted at study day 3 (see the module docstring)."""
    t = cohort.table.reset_index(drop=True)
    yes_no = {0: "no", 1: "yes"}
    X = pd.DataFrame(
        {
            "age": t["age"].astype(float),
            "sex": categorical(t["sex"].str.capitalize(), SEX),
            "dzgroup": categorical(t["dzgroup"], _DZGROUP),
            "num.co": t["num.co"].astype(float),
            "edu": t["edu"].astype(float),
            "income": categorical(t["income"], _INCOME),
            "diabetes": categorical(t["diabetes"], ("no", "yes"), yes_no),
            "dementia": categorical(t["dementia"], ("no", "yes"), yes_no),
            "ca": categorical(t["ca"], ("no", "yes", "metastatic")),
            "hday": t["hday"].astype(float),
            "dnr_before_entry": categorical(
                t["dnr"], ("no", "yes"), {"dnr before sadm": "yes", "dnr after sadm": "no", "no dnr": "no"}
            ),
            **{c: t[c].astype(float) for c in _NUMERIC if c not in ("age", "num.co", "edu", "hday")},
        }
    )
    labels = {c: lab for c, (lab, _) in _NUMERIC.items()} | _CATEGORICAL_LABELS
    return TaskDataset(
        name=KEY,
        task="in-hospital death, predicted at study day 3",
        X=X,
        y=BinaryTarget(t["hospdead"].to_numpy(dtype=np.int8), "died in hospital"),
        groups=id_array(t["sno"]),
        features=infer_features(X, {c: u for c, (_, u) in _NUMERIC.items() if u}, labels, PLAUSIBLE),
        sensitive=sensitive_frame(
            {
                "sex": t["sex"].str.capitalize(),
                "age_band": age_band(t["age"]),
                "race": t["race"].str.capitalize(),
            }
        ),
        ids=id_array(t["sno"]),
        population=(
            f"{len(t):,} seriously ill adults in nine disease groups at five US teaching hospitals, "
            "1989-1994 (SUPPORT phases I and II), in hospital at study day 3"
        ),
        provenance=cohort.provenance,
        excluded=dict(EXCLUDED),
    )


def load(data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task: in-hospital death."""
    return in_hospital_death(load_cohort(data_root))


# --- survival: death at any time up to 31 Dec 1994 -------------------------------------------------------------

SURVIVAL_OUTCOME: dict[str, str] = {
    "death": "the outcome: death at any time up to 31 Dec 1994 (1) or alive when last followed (0)",
    "d.time": "the outcome: days from study entry to death or to the last follow-up",
    "hospdead": "death in hospital: part of the outcome (every death in hospital is a death)",
}

#: the 14 predictors of SUPPORT in DeepSurv (Katzman et al. 2018) and pycox (Kvamme et al. 2019), as columns here
DEEPSURV_FEATURES: tuple[str, ...] = (
    "age",
    "sex",
    "race",
    "num.co",
    "diabetes",
    "dementia",
    "ca",
    "meanbp",
    "hrt",
    "resp",
    "temp",
    "wblc",
    "sod",
    "crea",
)
_RACE = ("White", "Black", "Hispanic", "Asian", "Other")


def death_after_entry(cohort: Cohort, features: str = "full") -> TaskDataset:
    """Time to death (``d.time`` days from study entry, ``death``), from the same predictors as
    :func:`in_hospital_death` (``features="full"``) or DeepSurv's 14 (``features="deepsurv"``: race is one of
    them there, so it is a predictor as well as a sensitive attribute in that set).

    Time origin: study entry; the predictors are the day-3 values and every patient was alive on day 3
    (``d.time`` >= 3), so a horizon of 180 days is counted from study entry, 177 days after the index time.
    """
    if features not in ("full", "deepsurv"):
        raise ValueError(f"features must be 'full' or 'deepsurv', got {features!r}")
    base = in_hospital_death(cohort)
    t = cohort.table.reset_index(drop=True)
    X = base.X
    excluded = {**base.excluded, **SURVIVAL_OUTCOME}
    specs = base.features
    if features == "deepsurv":
        race = categorical(t["race"].str.capitalize(), _RACE)
        X = X.assign(race=race)[list(DEEPSURV_FEATURES)]
        race_spec = infer_features(X[["race"]], labels={"race": "Race"})[0]
        by_name = {f.name: f for f in specs} | {"race": race_spec}
        specs = tuple(by_name[c] for c in DEEPSURV_FEATURES)
        excluded.pop("race")
        excluded |= {c: "not among DeepSurv's 14 SUPPORT predictors" for c in base.X.columns if c not in X.columns}
    label = "DeepSurv's 14 predictors" if features == "deepsurv" else "the day-3 predictors"
    return replace(
        base,
        task=f"time to death after study entry, from {label}",
        X=X.reset_index(drop=True),
        y=SurvivalTarget(t["d.time"].to_numpy(dtype=float), t["death"].to_numpy() == 1, "death", "days"),
        features=specs,
        excluded=excluded,
    )


def load_survival(data_root: str | Path | None = None, features: str = "full") -> TaskDataset:
    """The survival task: time to death, on the full predictor set or DeepSurv's 14."""
    return death_after_entry(load_cohort(data_root), features)
