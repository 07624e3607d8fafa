"""The catalogue of real datasets medml trains on: each entry holds its loader and, for a task that can be served
from FHIR, its serving contract, both imported like any other function.

The catalogue sits above :mod:`medml.data` (the table adapters) and :mod:`medml.fhir` (the same stays read
through FHIR, and the FHIR reading a deployed model scores with), because it names both. ``load_dataset`` hands
the task its serving contract, which the tabular pipeline writes into the model's bundle at training time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from medml.data.datasets import diabetes130, physionet2012, pima, support2, uci_heart
from medml.data.datasets._common import resolve_data_root
from medml.data.task import ServingContract, TaskDataset
from medml.errors import NotFoundError
from medml.fhir import tasks as fhir_tasks
from medml.vitals import ews

__all__ = ["DatasetInfo", "dataset_summary", "list_datasets", "load_dataset"]

#: reads a dataset's task from the shared data folder
Loader = Callable[[Path], TaskDataset]


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogued dataset: what it is, its source file, its loader, its external validation sets and, when a
    model of it can score a patient from FHIR, how (``serving``)."""

    key: str
    title: str
    task: str
    outcome: str
    source: str
    load: Loader
    external: tuple[str, ...] = ()
    serving: Callable[[], ServingContract] | None = None
    #: the key of the dataset this one re-reads through another path (the same patients and labels)
    derived_from: str = ""


_HEART_TASK = "coronary artery disease (> 50% narrowing on angiography)"
_HEART_OUTCOME = "num > 0"
_PHYSIONET_TASK = "in-hospital death, from the first 48 hours in the ICU"


def _heart(key: str, site: str, title: str, file: str, external: tuple[str, ...] = ()) -> DatasetInfo:
    load: Loader = partial(uci_heart.load, site)
    return DatasetInfo(key, title, _HEART_TASK, _HEART_OUTCOME, f"tabular/uci-heart-disease/{file}", load, external)


def _ews_load(root: Path) -> TaskDataset:
    return ews.early_warning_task(physionet2012.load_cohort(root))


_CATALOGUE: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "diabetes-130",
        "Diabetes 130-US hospitals, 1999-2008 (Strack et al. 2014)",
        "readmission within 30 days of discharge",
        "readmitted == '<30'",
        diabetes130.SOURCE,
        diabetes130.load,
    ),
    DatasetInfo(
        "support2",
        "SUPPORT2: seriously ill hospitalised adults (Knaus et al. 1995)",
        "in-hospital death, predicted at study day 3",
        "hospdead == 1",
        support2.SOURCE,
        support2.load,
    ),
    DatasetInfo(
        "physionet-2012",
        "PhysioNet/CinC Challenge 2012, set A: first 48 h of ICU stays",
        _PHYSIONET_TASK,
        "In-hospital_death == 1",
        physionet2012.SOURCE,
        physionet2012.load,
        # the same 225 features from FHIR (tests/fhir/test_features.py): a model of the table scores from FHIR
        serving=fhir_tasks.physionet_serving,
    ),
    DatasetInfo(
        "physionet-2012-fhir",
        "PhysioNet 2012 set A converted to FHIR R4, read through ViewDefinitions",
        f"{_PHYSIONET_TASK} (from FHIR)",
        "Encounter.hospitalization.dischargeDisposition == exp",
        physionet2012.SOURCE,
        fhir_tasks.load,
        serving=fhir_tasks.physionet_serving,
        derived_from="physionet-2012",
    ),
    DatasetInfo(
        ews.KEY,
        "PhysioNet 2012 set A replayed hourly: the vital signs so far at each hour of the first 48 h",
        "in-hospital death, scored at every hour of the first 48 hours in the ICU from vital signs",
        "In-hospital_death == 1",
        physionet2012.SOURCE,
        _ews_load,
    ),
    _heart(
        "heart-cleveland",
        "cleveland",
        "UCI heart disease: Cleveland Clinic (development site)",
        "processed.cleveland.data",
        ("heart-hungary", "heart-switzerland", "heart-va"),
    ),
    _heart(
        "heart-hungary",
        "hungary",
        "UCI heart disease: Hungarian Institute of Cardiology, Budapest",
        "processed.hungarian.data",
    ),
    _heart(
        "heart-switzerland",
        "switzerland",
        "UCI heart disease: University Hospitals of Zurich and Basel",
        "processed.switzerland.data",
    ),
    _heart("heart-va", "va", "UCI heart disease: VA Medical Center, Long Beach", "processed.va.data"),
    DatasetInfo(
        "pima",
        "Pima Indians diabetes (NIDDK)",
        "diabetes (WHO criteria)",
        "class == 1",
        pima.SOURCE,
        pima.load,
    ),
)


def list_datasets() -> list[DatasetInfo]:
    """The catalogued datasets, in a stable order."""
    return list(_CATALOGUE)


def dataset_info(key: str) -> DatasetInfo:
    """The catalogue entry of ``key``, or NotFoundError listing the keys there are."""
    for info in _CATALOGUE:
        if info.key == key:
            return info
    raise NotFoundError(
        f"unknown dataset '{key}'", f"use one of: {', '.join(i.key for i in _CATALOGUE)} (see `medml datasets`)"
    )


def load_dataset(key: str, data_root: str | Path | None = None) -> TaskDataset:
    """The catalogued task for ``key`` with its serving contract, read from ``data_root`` (default: the settings'
    shared data folder)."""
    info = dataset_info(key)
    ds = info.load(resolve_data_root(data_root))
    return ds if info.serving is None else dataclasses.replace(ds, serving=info.serving())


def dataset_summary(key: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """Rows, patients, prevalence and task of a catalogued dataset (it loads the data)."""
    ds = load_dataset(key, data_root)
    return {
        "rows": len(ds),
        "patients": int(np.unique(ds.groups).size),
        "prevalence": ds.binary_target.prevalence,
        "task": ds.task,
    }
