"""Leakage checks: each raises on a planted leak and passes on clean data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from medml.data import (
    FeatureSpec,
    Split,
    TaskDataset,
    check_feature_times,
    check_patient_overlap,
    check_target_not_in_features,
    check_task,
    patient_split,
)
from medml.errors import LeakageError


def test_patient_overlap_raises_on_a_shared_patient(diabetes: TaskDataset) -> None:
    g = diabetes.groups
    clean = patient_split(g, diabetes.binary_target.values, seed=0)
    check_patient_overlap(g, clean)
    # Plant a leak: one training patient's row also in the test part.
    leaky = Split(train=clean.train, calibration=clean.calibration, test=np.append(clean.test, clean.train[0]))
    with pytest.raises(LeakageError, match=r"1 patients are in both the train and test splits.*patient_split"):
        check_patient_overlap(g, leaky)


def test_row_split_of_repeat_patients_is_caught(diabetes: TaskDataset) -> None:
    n = len(diabetes)
    rows = np.random.default_rng(0).permutation(n)
    by_row = Split(train=rows[: n // 2], calibration=rows[n // 2 : 3 * n // 4], test=rows[3 * n // 4 :])
    with pytest.raises(LeakageError, match="patients are in both"):
        check_patient_overlap(diabetes.groups, by_row)


def test_feature_times_after_index_time_raise() -> None:
    index = np.array(["2024-01-02T00:00", "2024-01-05T00:00", "2024-01-09T00:00"], dtype="datetime64[m]")
    clean = pd.DataFrame({"lactate": pd.to_datetime(["2024-01-01", "2024-01-05", None])})
    check_feature_times(clean, index)
    late = pd.DataFrame({"lactate": pd.to_datetime(["2024-01-01", "2024-01-06", "2024-01-10"])})
    with pytest.raises(LeakageError, match="feature 'lactate' is dated after the index time in 2 samples"):
        check_feature_times(late, index)


def test_target_among_features_raises(pima: TaskDataset) -> None:
    y = pima.binary_target.values
    check_target_not_in_features(pima.X, y, pima.binary_target.name)
    with pytest.raises(LeakageError, match="is among the features"):
        check_target_not_in_features(pima.X.assign(outcome=y), y, "outcome")
    recoded = pima.X.assign(diagnosis_code=np.where(y == 1, "E11", "none"))
    with pytest.raises(LeakageError, match="feature 'diagnosis_code' is an exact recoding"):
        check_target_not_in_features(recoded, y, pima.binary_target.name)
    inverted = pima.X.assign(healthy=1 - y)
    with pytest.raises(LeakageError, match="'healthy' is an exact recoding"):
        check_target_not_in_features(inverted, y, pima.binary_target.name)


def test_check_task_on_real_data(support2: TaskDataset) -> None:
    split = patient_split(support2.groups, support2.binary_target.values, seed=0)
    check_task(support2, split)
    leaked = replace(
        support2,
        X=support2.X.assign(hospdead=support2.binary_target.values),
        features=(*support2.features, FeatureSpec("hospdead", "numeric")),
    )
    with pytest.raises(LeakageError, match="'hospdead' is an exact recoding"):
        check_task(leaked, split)
