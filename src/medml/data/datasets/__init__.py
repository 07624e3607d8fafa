"""The real datasets medml ships adapters for, and a user's own tables.

Each adapter module maps its source to a :class:`~medml.data.Cohort`, defines its task as one function with a
clinical name (``readmission_within``, ``in_hospital_death``, ...) and documents who is in it, the index time,
the outcome and the exclusions in its docstring. The files are read in place from the shared data folder
(``get_settings().data_root``, ``MEDML_DATA``); nothing is downloaded or copied.

Across the adapters: sex is a feature where the data has it (a biological covariate); race/ethnicity never is,
and stays in ``sensitive`` for the fairness audit; age bands are "<40", "40-59", "60-79", "80+" ("Unknown"
when missing).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medml.data.datasets._common import resolve_data_root
from medml.data.datasets._tableio import read_table
from medml.data.datasets.table import TableSpec, load_spec_yaml, load_table
from medml.data.task import TaskDataset
from medml.errors import NotFoundError

__all__ = [
    "DatasetInfo",
    "TableSpec",
    "dataset_summary",
    "list_datasets",
    "load_dataset",
    "load_spec_yaml",
    "load_table",
    "read_table",
]


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogued dataset: its key, what it is, its task, its source file and its external validation sets."""

    key: str
    title: str
    task: str
    outcome: str
    source: str
    external: tuple[str, ...]
    module: str
    #: the key of the dataset this one re-reads through another path (the same patients and labels)
    derived_from: str = ""


_HEART_SITES = {
    "heart-cleveland": "cleveland",
    "heart-hungary": "hungary",
    "heart-switzerland": "switzerland",
    "heart-va": "va",
}
_HEART_TASK = "coronary artery disease (> 50% narrowing on angiography)"
_HEART_OUTCOME = "num > 0"
_HEART_MODULE = "medml.data.datasets.uci_heart"

_CATALOGUE: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "diabetes-130",
        "Diabetes 130-US hospitals, 1999-2008 (Strack et al. 2014)",
        "readmission within 30 days of discharge",
        "readmitted == '<30'",
        "tabular/diabetes-130-us-hospitals/dataset_diabetes.zip",
        (),
        "medml.data.datasets.diabetes130",
    ),
    DatasetInfo(
        "support2",
        "SUPPORT2: seriously ill hospitalised adults (Knaus et al. 1995)",
        "in-hospital death, predicted at study day 3",
        "hospdead == 1",
        "tabular/support2/support2.csv.gz",
        (),
        "medml.data.datasets.support2",
    ),
    DatasetInfo(
        "physionet-2012",
        "PhysioNet/CinC Challenge 2012, set A: first 48 h of ICU stays",
        "in-hospital death, from the first 48 hours in the ICU",
        "In-hospital_death == 1",
        "icu/physionet-2012-set-a/set-a.tar.gz",
        (),
        "medml.data.datasets.physionet2012",
    ),
    DatasetInfo(
        "physionet-2012-fhir",
        "PhysioNet 2012 set A converted to FHIR R4, read through ViewDefinitions",
        "in-hospital death, from the first 48 hours in the ICU (from FHIR)",
        "Encounter.hospitalization.dischargeDisposition == exp",
        "icu/physionet-2012-set-a/set-a.tar.gz",
        (),
        "medml.fhir.tasks",
        derived_from="physionet-2012",
    ),
    DatasetInfo(
        "heart-cleveland",
        "UCI heart disease: Cleveland Clinic (development site)",
        _HEART_TASK,
        _HEART_OUTCOME,
        "tabular/uci-heart-disease/processed.cleveland.data",
        ("heart-hungary", "heart-switzerland", "heart-va"),
        _HEART_MODULE,
    ),
    DatasetInfo(
        "heart-hungary",
        "UCI heart disease: Hungarian Institute of Cardiology, Budapest",
        _HEART_TASK,
        _HEART_OUTCOME,
        "tabular/uci-heart-disease/processed.hungarian.data",
        (),
        _HEART_MODULE,
    ),
    DatasetInfo(
        "heart-switzerland",
        "UCI heart disease: University Hospitals of Zurich and Basel",
        _HEART_TASK,
        _HEART_OUTCOME,
        "tabular/uci-heart-disease/processed.switzerland.data",
        (),
        _HEART_MODULE,
    ),
    DatasetInfo(
        "heart-va",
        "UCI heart disease: VA Medical Center, Long Beach",
        _HEART_TASK,
        _HEART_OUTCOME,
        "tabular/uci-heart-disease/processed.va.data",
        (),
        _HEART_MODULE,
    ),
    DatasetInfo(
        "pima",
        "Pima Indians diabetes (NIDDK)",
        "diabetes (WHO criteria)",
        "class == 1",
        "tabular/pima-diabetes/pima-indians-diabetes.csv",
        (),
        "medml.data.datasets.pima",
    ),
)


def list_datasets() -> list[DatasetInfo]:
    """The catalogued datasets, in a stable order."""
    return list(_CATALOGUE)


def _info(key: str) -> DatasetInfo:
    for info in _CATALOGUE:
        if info.key == key:
            return info
    raise NotFoundError(
        f"unknown dataset '{key}'", f"use one of: {', '.join(i.key for i in _CATALOGUE)} (see `medml datasets`)"
    )


def load_dataset(key: str, data_root: str | Path | None = None) -> TaskDataset:
    """The catalogued task for ``key``, read from ``data_root`` (default: the settings' shared data folder)."""
    info = _info(key)
    root = resolve_data_root(data_root)
    module: Any = importlib.import_module(info.module)
    if key in _HEART_SITES:
        return module.load(_HEART_SITES[key], root)
    return module.load(root)


def dataset_summary(key: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """Rows, patients, prevalence and task of a catalogued dataset (it loads the data)."""
    ds = load_dataset(key, data_root)
    return {
        "rows": len(ds),
        "patients": int(np.unique(ds.groups).size),
        "prevalence": ds.binary_target.prevalence,
        "task": ds.task,
    }
