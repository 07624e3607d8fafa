"""Patient-grouped splits on the real diabetes-130 groups: no shared patient, kept prevalence, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medml.data import TaskDataset, check_patient_overlap, patient_kfold, patient_split
from medml.errors import DataError


@pytest.fixture(scope="module")
def split(diabetes: TaskDataset):
    return patient_split(diabetes.groups, diabetes.binary_target.values, seed=0)


def test_no_patient_in_two_parts(diabetes: TaskDataset, split) -> None:
    g = diabetes.groups
    parts = [set(g[split.train]), set(g[split.calibration]), set(g[split.test])]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    check_patient_overlap(g, split)


def test_every_row_in_exactly_one_part(diabetes: TaskDataset, split) -> None:
    rows = np.concatenate([split.train, split.calibration, split.test])
    assert np.array_equal(np.sort(rows), np.arange(len(diabetes)))


def test_patient_fractions_and_prevalence_are_kept(diabetes: TaskDataset, split) -> None:
    g, y = diabetes.groups, diabetes.binary_target.values
    n_patients = np.unique(g).size
    overall = y.mean()
    for idx, frac in ((split.train, 0.6), (split.calibration, 0.2), (split.test, 0.2)):
        assert np.unique(g[idx]).size / n_patients == pytest.approx(frac, abs=0.01)
        assert abs(y[idx].mean() - overall) < 0.01


def test_deterministic_under_seed(diabetes: TaskDataset, split) -> None:
    again = patient_split(diabetes.groups, diabetes.binary_target.values, seed=0)
    other = patient_split(diabetes.groups, diabetes.binary_target.values, seed=1)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            (split.train, split.calibration, split.test), (again.train, again.calibration, again.test), strict=True
        )
    )
    assert not np.array_equal(split.test, other.test)


def test_without_outcome_and_with_other_fractions(diabetes: TaskDataset) -> None:
    s = patient_split(diabetes.groups, fractions=(0.8, 0.1, 0.1), seed=3)
    check_patient_overlap(diabetes.groups, s)
    assert np.unique(diabetes.groups[s.train]).size / np.unique(diabetes.groups).size == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (1.0, 0.0, 0.0)])
def test_bad_fractions(fractions) -> None:
    with pytest.raises(DataError, match="fractions"):
        patient_split(np.arange(10), fractions=fractions)


def test_too_few_patients() -> None:
    with pytest.raises(DataError, match="only 2 patients"):
        patient_split(["a", "a", "b"])


def test_kfold_holds_each_row_out_once_and_never_splits_a_patient(diabetes: TaskDataset) -> None:
    # A subset of 2,000 patients: StratifiedGroupKFold takes ~30 s on all 69,990.
    keep = pd.Series(diabetes.groups).isin(set(np.unique(diabetes.groups)[:2000])).to_numpy()
    g, y = diabetes.groups[keep], diabetes.binary_target.values[keep]
    held = np.zeros(len(g), dtype=int)
    for train, test in patient_kfold(g, y, k=5, seed=0):
        assert not set(g[train]) & set(g[test])
        held[test] += 1
        assert abs(y[test].mean() - y.mean()) < 0.03
    assert (held == 1).all()
    first = [t.tolist() for _, t in patient_kfold(g, y, k=5, seed=0)]
    assert first == [t.tolist() for _, t in patient_kfold(g, y, k=5, seed=0)]


def test_kfold_needs_enough_patients() -> None:
    with pytest.raises(DataError, match="3 patients cannot make 5"):
        list(patient_kfold(["a", "b", "c", "a"], [0, 1, 0, 1], k=5))
