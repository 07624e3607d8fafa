"""The real survival datasets that ship inside the scikit-survival and lifelines wheels, as survival tasks.

Each is read from the copy in the installed wheel (nothing is downloaded); one row per patient, the row number as
the patient id. Following the adapters' rule, race/ethnicity is never a predictor: it stays in ``sensitive``.

- ``whas500``: Worcester Heart Attack Study (Hosmer, Lemeshow and May 2008), 500 patients after acute myocardial
  infarction; death (``fstat``) at ``lenfol`` days of follow-up from admission. 14 admission predictors.
- ``veterans``: the Veterans' Administration lung cancer trial (Kalbfleisch and Prentice 1980), 137 men with
  advanced inoperable lung cancer randomised to standard or test chemotherapy; death at ``Survival_in_days``.
- ``flchain``: serum free light chains in 7,874 residents of Olmsted County (Dispenzieri et al. 2012); death at
  ``futime`` days from sampling; the 3 who died on the day of sampling (``futime`` 0) are left out and counted.
  ``chapter`` (the ICD chapter of the cause of death) is dropped: it is known only for those who died, so it
  leaks the outcome.
- ``aids``: the AIDS Clinical Trials Group 320 study (Hosmer, Lemeshow and May 2008), 1,151 HIV-infected patients
  randomised to a three-drug regimen or two; AIDS diagnosis or death (``censor``) at ``time`` days. ``raceth`` is
  sensitive; ``txgrp`` is dropped as it restates ``tx`` with the CD4 stratum.
- ``rossi``: recidivism of 432 prisoners released from Maryland state prisons (Rossi, Berk and Lenihan 1980), from
  lifelines; re-arrest at ``week`` (time in weeks) over one year. ``race`` is sensitive. lifelines is a dev
  dependency: without it this set says how to install it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medml.data.datasets._common import age_band, id_array, sensitive_frame
from medml.data.targets import SurvivalTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import InputFileError


@dataclass(frozen=True)
class _Source:
    key: str
    task: str
    event_name: str
    population: str
    provenance: str
    time_unit: str
    excluded: Mapping[str, str]
    #: predictor -> (label, unit); units only for numbers
    labels: Mapping[str, tuple[str, str]]
    #: () -> (predictors and other columns, time, event)
    read: Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]]
    sensitive: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    age: str | None = "age"


def _sksurv(name: str, event: str, time: str) -> Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    def read() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        try:
            import sksurv.datasets as d
        except ImportError as e:  # a core dependency: only a broken install lacks it
            raise InputFileError(
                f"{name} ships with scikit-survival, which is not installed", "pip install medml"
            ) from e
        X, y = getattr(d, name)()
        return X.reset_index(drop=True), np.asarray(y[time], dtype=float), np.asarray(y[event], dtype=bool)

    return read


def _rossi() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    try:
        from lifelines.datasets import load_rossi
    except ImportError as e:
        raise InputFileError(
            "the rossi dataset ships with lifelines, which is not installed", "pip install 'medml[dev]' (or lifelines)"
        ) from e
    frame = load_rossi()
    return (
        frame.drop(columns=["week", "arrest"]).reset_index(drop=True),
        frame["week"].to_numpy(dtype=float),
        frame["arrest"].to_numpy().astype(bool),
    )


SOURCES: dict[str, _Source] = {
    "whas500": _Source(
        key="whas500",
        task="death after admission for acute myocardial infarction",
        event_name="death",
        population="500 patients admitted with acute myocardial infarction to hospitals in Worcester, MA (1975-2001)",
        provenance="sksurv.datasets.load_whas500 (Worcester Heart Attack Study; Hosmer, Lemeshow and May 2008)",
        time_unit="days",
        excluded={"lenfol": "the outcome: days of follow-up", "fstat": "the outcome: 1 = died"},
        labels={
            "age": ("Age", "years"),
            "bmi": ("Body mass index", "kg/m2"),
            "diasbp": ("Diastolic blood pressure", "mmHg"),
            "sysbp": ("Systolic blood pressure", "mmHg"),
            "hr": ("Heart rate", "/min"),
            "los": ("Length of stay", "days"),
            "afb": ("Atrial fibrillation", ""),
            "av3": ("Complete heart block", ""),
            "chf": ("Congestive heart failure", ""),
            "cvd": ("History of cardiovascular disease", ""),
            "gender": ("Sex (1 = female)", ""),
            "miord": ("Recurrent infarction", ""),
            "mitype": ("Q-wave infarction", ""),
            "sho": ("Cardiogenic shock", ""),
        },
        read=_sksurv("load_whas500", "fstat", "lenfol"),
    ),
    "veterans": _Source(
        key="veterans",
        task="death after randomisation in advanced lung cancer",
        event_name="death",
        population="137 men with advanced inoperable lung cancer in the Veterans' Administration trial",
        provenance="sksurv.datasets.load_veterans_lung_cancer (Kalbfleisch and Prentice 1980)",
        time_unit="days",
        excluded={"Survival_in_days": "the outcome: days to death or censoring", "Status": "the outcome: 1 = died"},
        labels={
            "Age_in_years": ("Age", "years"),
            "Karnofsky_score": ("Karnofsky performance score", "points"),
            "Months_from_Diagnosis": ("Months from diagnosis", "months"),
            "Celltype": ("Cell type", ""),
            "Prior_therapy": ("Prior therapy", ""),
            "Treatment": ("Treatment arm", ""),
        },
        age="Age_in_years",
        read=_sksurv("load_veterans_lung_cancer", "Status", "Survival_in_days"),
    ),
    "flchain": _Source(
        key="flchain",
        task="death after serum free light chain sampling",
        event_name="death",
        population="7,874 residents of Olmsted County, MN, aged 50 or more, sampled 1995-2003",
        provenance="sksurv.datasets.load_flchain (Dispenzieri et al., Mayo Clin Proc 2012)",
        time_unit="days",
        excluded={
            "futime": "the outcome: days to death or censoring",
            "death": "the outcome: 1 = died",
            "chapter": "the ICD chapter of the cause of death: known only for those who died (leaks the outcome)",
        },
        labels={
            "age": ("Age", "years"),
            "creatinine": ("Serum creatinine", "mg/dL"),
            "kappa": ("Free light chain kappa", "mg/dL"),
            "lambda": ("Free light chain lambda", "mg/dL"),
            "flc.grp": ("Free light chain decile group", ""),
            "mgus": ("Monoclonal gammopathy (MGUS)", ""),
            "sample.yr": ("Year of sampling", ""),
            "sex": ("Sex", ""),
        },
        drop=("chapter",),
        read=_sksurv("load_flchain", "death", "futime"),
    ),
    "aids": _Source(
        key="aids",
        task="AIDS diagnosis or death after randomisation",
        event_name="AIDS or death",
        population="1,151 HIV-infected patients in the ACTG 320 trial (1996-1997)",
        provenance="sksurv.datasets.load_aids (ACTG 320; Hosmer, Lemeshow and May 2008)",
        time_unit="days",
        excluded={
            "time": "the outcome: days to AIDS diagnosis, death or censoring",
            "censor": "the outcome: 1 = AIDS or death",
            "txgrp": "restates tx with the CD4 stratum (strat2)",
            "raceth": "race/ethnicity: sensitive attribute, not a predictor",
        },
        labels={
            "age": ("Age", "years"),
            "cd4": ("Baseline CD4 count", "cells/uL"),
            "priorzdv": ("Months of prior zidovudine", "months"),
            "hemophil": ("Haemophilia", ""),
            "ivdrug": ("Intravenous drug use (1 never, 2 current, 3 previous)", ""),
            "karnof": ("Karnofsky performance score", ""),
            "sex": ("Sex (1 = male)", ""),
            "strat2": ("CD4 stratum (1 = over 50)", ""),
            "tx": ("Three-drug regimen", ""),
        },
        sensitive=("raceth",),
        drop=("txgrp",),
        read=_sksurv("load_aids", "censor", "time"),
    ),
    "rossi": _Source(
        key="rossi",
        task="re-arrest after release from prison",
        event_name="re-arrest",
        population="432 men released from Maryland state prisons in the 1970s, followed for one year",
        provenance="lifelines.datasets.load_rossi (Rossi, Berk and Lenihan 1980)",
        time_unit="weeks",
        excluded={
            "week": "the outcome: weeks to re-arrest or censoring",
            "arrest": "the outcome: 1 = re-arrested",
            "race": "race: sensitive attribute, not a predictor",
        },
        labels={
            "age": ("Age at release", "years"),
            "prio": ("Prior convictions", "count"),
            "fin": ("Financial aid", ""),
            "wexp": ("Full-time work experience", ""),
            "mar": ("Married at release", ""),
            "paro": ("Released on parole", ""),
        },
        sensitive=("race",),
        read=_rossi,
    ),
}


def _column(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(col.astype(str), categories=[str(c) for c in col.cat.categories]))
    return col.astype(float)


def load(key: str) -> TaskDataset:
    """The dataset ``key`` (one of :data:`SOURCES`) as a survival task."""
    src = SOURCES[key]
    X0, time, event = src.read()
    population = src.population
    zero = time <= 0  # a follow-up of no time (FLCHAIN: 3 deaths on the day of sampling) is not a survival time
    if zero.any():
        keep = ~zero
        X0, time, event = X0.loc[keep].reset_index(drop=True), time[keep], event[keep]
        population += f"; {int(zero.sum())} with no follow-up time (event on the day of entry) left out"
    names = [c for c in X0.columns if c not in (*src.drop, *src.sensitive)]
    X = pd.DataFrame({c: _column(X0[c]) for c in names})
    ids = id_array(np.arange(1, len(X) + 1))
    sensitive: dict[str, Any] = {c: X0[c].astype(str) for c in src.sensitive}
    if src.age is not None:
        sensitive["age_band"] = age_band(X0[src.age])
    return TaskDataset(
        name=src.key,
        task=src.task,
        X=X,
        y=SurvivalTarget(time, event, src.event_name, src.time_unit),
        groups=ids,
        features=infer_features(
            X,
            {c: unit for c, (_, unit) in src.labels.items() if unit and pd.api.types.is_numeric_dtype(X[c])},
            {c: label for c, (label, _) in src.labels.items()},
        ),
        sensitive=sensitive_frame(sensitive),
        ids=ids,
        population=population,
        provenance=src.provenance,
        excluded=dict(src.excluded),
    )
