"""What every real-data adapter promises: features only in X, typed target, patient groups, sensitive attributes
beside X, every source column accounted for. The catalogue itself: tests/pipelines/test_catalogue.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.data import BinaryTarget, TaskDataset
from medml.data.datasets import diabetes130, pima, support2, uci_heart

#: read from their own sources here; physionet-2012-fhir (the same stays through FHIR) is tested in tests/fhir
TABULAR_KEYS = [
    "diabetes-130",
    "support2",
    "physionet-2012",
    "heart-cleveland",
    "heart-hungary",
    "heart-switzerland",
    "heart-va",
    "pima",
]


@pytest.mark.parametrize("key", TABULAR_KEYS)
def test_task_dataset_contract(key: str, all_datasets: dict[str, TaskDataset]) -> None:
    ds = all_datasets[key]
    assert ds.name == key
    assert isinstance(ds.y, BinaryTarget) and ds.y.name
    assert 0 < ds.y.prevalence < 1
    assert len(ds.groups) == len(ds.ids) == len(ds.sensitive) == len(ds.X)
    assert pd.Series(ds.ids).is_unique
    assert all(isinstance(g, str) for g in ds.groups[:50])
    # Features only: no identifiers, no outcome, no excluded column; of the sensitive attributes only sex,
    # a documented biological covariate, is also a feature, never race or the age band.
    assert not set(ds.X.columns) & set(ds.excluded)
    assert set(ds.X.columns) & set(ds.sensitive.columns) <= {"sex"}
    assert "race" not in ds.X.columns
    assert [f.name for f in ds.features] == list(ds.X.columns)
    for f in ds.features:
        assert f.label, f"{key}: feature {f.name} has no clinical label"
        assert (f.kind == "numeric") == pd.api.types.is_numeric_dtype(ds.X[f.name])
    # Sensitive attributes are text, never missing; age bands use the four standard bands.
    assert "age_band" in ds.sensitive.columns
    assert set(ds.sensitive["age_band"]) <= {"<40", "40-59", "60-79", "80+", "Unknown"}
    assert not ds.sensitive.isna().any().any()
    assert ds.population and ds.provenance and "SOURCE.txt" in ds.provenance
    for reason in ds.excluded.values():
        assert len(reason) > 8


@pytest.mark.parametrize("key", ["diabetes-130", "support2", "heart-va", "pima"])
def test_every_source_column_is_a_feature_or_excluded(
    key: str, data_root: Path, all_datasets: dict[str, TaskDataset]
) -> None:
    adapters = {"diabetes-130": diabetes130, "support2": support2, "pima": pima}
    cohort = uci_heart.load_cohort("va", data_root) if key == "heart-va" else adapters[key].load_cohort(data_root)
    ds = all_datasets[key]
    derived = {"dnr_before_entry"}
    source = (
        set(cohort.table.columns) - {"patient_id"} - {c for c in cohort.table.columns if c.endswith("_description")}
    )
    assert source <= set(ds.X.columns) | set(ds.excluded)
    assert set(ds.X.columns) - derived <= source


def test_target_is_not_recoverable_from_a_single_feature(all_datasets: dict[str, TaskDataset]) -> None:
    from medml.data import check_target_not_in_features

    for ds in all_datasets.values():
        check_target_not_in_features(ds.X, ds.binary_target.values, ds.binary_target.name)


def test_heart_sites_share_one_schema(heart: dict[str, TaskDataset]) -> None:
    dev = heart["heart-cleveland"]
    for key, ds in heart.items():
        assert ds.features == dev.features, key
        for c in dev.X.columns:
            assert ds.X[c].dtype == dev.X[c].dtype, (key, c)


def test_sensitive_values_are_clinical_words(all_datasets: dict[str, TaskDataset]) -> None:
    for key, ds in all_datasets.items():
        if "sex" in ds.sensitive:
            assert set(ds.sensitive["sex"]) <= {"Female", "Male", "Unknown"}, key
    assert set(all_datasets["support2"].sensitive.columns) == {"sex", "age_band", "race"}
    assert set(all_datasets["diabetes-130"].sensitive.columns) == {"sex", "age_band", "race"}
    assert list(all_datasets["pima"].sensitive.columns) == ["age_band"]
    groups = np.unique(all_datasets["diabetes-130"].sensitive["race"])
    assert "Unknown" in groups and "African American" in groups
