"""Leakage checks: a patient in two splits, a feature dated after the index time, the target among features."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.splits import Split
from medml.data.task import TaskDataset
from medml.errors import LeakageError


def check_patient_overlap(groups: npt.ArrayLike, split: Split) -> None:
    """Raise when any patient has rows in more than one part of ``split``."""
    g = np.asarray(groups)
    parts = {
        name: set(g[idx].tolist())
        for name, idx in (("train", split.train), ("calibration", split.calibration), ("test", split.test))
    }
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = parts[a] & parts[b]
            if both:
                example = sorted(map(str, both))[:3]
                raise LeakageError(
                    f"{len(both)} patients are in both the {a} and {b} splits (e.g. {', '.join(example)})",
                    "split by patient id (medml.data.splits.patient_split), not by row",
                )


def check_feature_times(feature_times: pd.DataFrame, index_time: npt.ArrayLike) -> None:
    """Raise when a feature was measured after its sample's index time (``feature_times``: one column a feature)."""
    idx = pd.to_datetime(pd.Series(np.asarray(index_time)))
    for col in feature_times.columns:
        t = pd.to_datetime(feature_times[col].reset_index(drop=True))
        late = (t > idx).fillna(False).to_numpy()
        if late.any():
            raise LeakageError(
                f"feature '{col}' is dated after the index time in {int(late.sum())} samples",
                "compute features only from data recorded up to the index time",
            )


def check_target_not_in_features(X: pd.DataFrame, y: npt.ArrayLike, target_name: str) -> None:
    """Raise when the target, or a column that is a copy or exact recoding of it, is among the features."""
    yv = np.asarray(y)
    if target_name in X.columns:
        raise LeakageError(f"the target '{target_name}' is among the features", "drop it from the feature columns")
    for col in X.columns:
        codes, uniques = pd.factorize(X[col], use_na_sentinel=True)
        if len(uniques) != 2 or (codes < 0).any():
            continue
        if (codes == yv).all() or (codes == 1 - yv).all():
            raise LeakageError(
                f"feature '{col}' is an exact recoding of the target '{target_name}'",
                "it leaks the outcome: drop it, or explain why it is known at prediction time",
            )


def check_task(ds: TaskDataset, split: Split) -> None:
    """All leakage checks that apply to ``ds`` under ``split``."""
    check_patient_overlap(ds.groups, split)
    check_target_not_in_features(ds.X, ds.binary_target.values, ds.binary_target.name)
