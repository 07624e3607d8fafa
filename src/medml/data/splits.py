"""Patient-grouped splits: no patient is ever on both sides of a split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedGroupKFold

from medml.errors import DataError

Index = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Split:
    """Row positions of the train, calibration and test parts."""

    train: Index
    calibration: Index
    test: Index

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "calibration": len(self.calibration), "test": len(self.test)}


def patient_split(
    groups: npt.ArrayLike,
    y: npt.ArrayLike | None = None,
    *,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> Split:
    """Assign whole patients to train / calibration / test in the given fractions of patients.

    With ``y``, patients are stratified by whether any of their rows is positive, so each part keeps about the
    cohort's prevalence. Deterministic under ``seed``.
    """
    g = np.asarray(groups)
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise DataError(f"split fractions {fractions} must be three positive numbers summing to 1")
    patients, inverse = np.unique(g, return_inverse=True)
    if len(patients) < 3:
        raise DataError(f"only {len(patients)} patients: at least 3 are needed for a train/calibration/test split")
    rng = np.random.default_rng(seed)
    if y is None:
        strata = np.zeros(len(patients), dtype=int)
    else:
        strata = np.zeros(len(patients), dtype=int)
        np.maximum.at(strata, inverse, np.asarray(y).astype(int))
    part = np.empty(len(patients), dtype=int)
    cuts = np.cumsum(fractions)[:2]
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        rng.shuffle(members)
        pos = (np.arange(len(members)) + 0.5) / len(members)
        part[members] = np.searchsorted(cuts, pos, side="right")
    row_part = part[inverse]
    return Split(*(np.flatnonzero(row_part == k) for k in range(3)))


def patient_kfold(
    groups: npt.ArrayLike, y: npt.ArrayLike, *, k: int = 5, seed: int = 0
) -> Iterator[tuple[Index, Index]]:
    """k folds of (train rows, held-out rows), stratified by outcome and grouped by patient."""
    g = np.asarray(groups)
    if len(np.unique(g)) < k:
        raise DataError(f"{len(np.unique(g))} patients cannot make {k} patient-grouped folds", "use fewer folds")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    yield from cv.split(np.zeros(len(g)), np.asarray(y), g)
