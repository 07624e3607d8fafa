"""Table 1: the cohort's characteristics overall and by outcome, as plain data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.task import FeatureSpec
from medml.errors import DataError

GROUPS = ("overall", "no", "yes")
GROUP_LABELS = {"overall": "Overall", "no": "Outcome = no", "yes": "Outcome = yes"}
OTHER = "other"
MISSING = "missing"


def table_one(
    X: pd.DataFrame, y: npt.ArrayLike, features: Sequence[FeatureSpec], max_levels: int = 5
) -> dict[str, Any]:
    """Characteristics overall and by outcome (no / yes): numeric as median [IQR] with % missing,
    categorical as n (%) per level (the ``max_levels`` commonest, the rest as "other", missing as its own level),
    with the standardised mean difference between outcome groups (Yang & Dalton's for categorical).

    Quartiles are pandas' (linear interpolation); percentages are of all rows in the column's group.
    """
    yv = _binary_outcome(y, len(X))
    absent = [f.name for f in features if f.name not in X.columns]
    if absent:
        raise DataError(
            f"table one: feature column(s) {', '.join(absent)} not in the data",
            "pass the same frame the features were defined on",
        )
    masks = {"overall": np.ones(len(X), dtype=bool), "no": yv == 0, "yes": yv == 1}
    variables = []
    for f in features:
        col = X[f.name]
        if f.kind == "numeric":
            variables.append(_numeric(f, _as_float(col, f.name), masks))
        else:
            variables.append(_categorical(f, col, masks, max_levels))
    return {
        "groups": list(GROUPS),
        "group_labels": dict(GROUP_LABELS),
        "n": {g: int(m.sum()) for g, m in masks.items()},
        "variables": variables,
    }


def _binary_outcome(y: npt.ArrayLike, n: int) -> npt.NDArray[np.int8]:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size != n:
        raise DataError(f"table one: {arr.size} outcomes for {n} rows", "pass one 0/1 outcome per row of X")
    try:
        values = arr.astype(float)
    except (TypeError, ValueError) as e:
        raise DataError("table one: the outcome is not numeric", "pass the outcome as 0/1") from e
    if not np.isin(values, (0.0, 1.0)).all():
        raise DataError("table one: the outcome has values other than 0 and 1", "pass a binary 0/1 outcome")
    return values.astype(np.int8)


def _as_float(col: pd.Series, name: str) -> npt.NDArray[np.float64]:
    if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"table one: numeric feature '{name}' has dtype {col.dtype}", "declare it categorical")
    try:
        return pd.to_numeric(col).to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise DataError(
            f"table one: numeric feature '{name}' has non-numeric values",
            "clean the column or declare the feature categorical",
        ) from e


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _numeric(f: FeatureSpec, x: npt.NDArray[np.float64], masks: dict[str, npt.NDArray[np.bool_]]) -> dict:
    stats = {}
    for g, m in masks.items():
        s = pd.Series(x[m])
        present = s.dropna()
        q = present.quantile([0.25, 0.5, 0.75]) if len(present) else pd.Series([np.nan] * 3)
        n_missing = int(s.isna().sum())
        stats[g] = {
            "n": len(present),
            "median": _none_if_nan(float(q.iloc[1])),
            "q1": _none_if_nan(float(q.iloc[0])),
            "q3": _none_if_nan(float(q.iloc[2])),
            "missing": n_missing,
            "missing_pct": 100.0 * n_missing / len(s) if len(s) else None,
        }
    a, b = x[masks["yes"]], x[masks["no"]]
    return {
        "name": f.name,
        "label": f.clinical_name,
        "unit": f.unit,
        "kind": "numeric",
        "stats": stats,
        "smd": _smd_numeric(a[~np.isnan(a)], b[~np.isnan(b)]),
    }


def _smd_numeric(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
    """(mean_yes - mean_no) / sqrt((var_yes + var_no) / 2), sample variances."""
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled == 0:
        return 0.0 if a.mean() == b.mean() else None
    return float((a.mean() - b.mean()) / pooled)


def _categorical(f: FeatureSpec, col: pd.Series, masks: dict[str, npt.NDArray[np.bool_]], max_levels: int) -> dict:
    missing = col.isna().to_numpy()
    text = col.astype(object).where(~missing, None).map(lambda v: None if v is None else str(v))
    counts = text.dropna().value_counts(sort=True)
    top = [str(v) for v in counts.index[:max_levels]]
    # all rows land in exactly one level: a top level, "other" or "missing"
    level = text.where(text.isin(top) | text.isna(), OTHER).where(~missing, MISSING).to_numpy()
    order = top + [lv for lv in (OTHER, MISSING) if (level == lv).any()]
    levels = []
    for lv in order:
        stats = {}
        for g, m in masks.items():
            n_group = int(m.sum())
            n_level = int((level[m] == lv).sum())
            stats[g] = {"n": n_level, "pct": 100.0 * n_level / n_group if n_group else None}
        levels.append({"level": lv, "stats": stats})
    return {
        "name": f.name,
        "label": f.clinical_name,
        "unit": f.unit,
        "kind": "categorical",
        "levels": levels,
        "smd": _smd_categorical(level[masks["yes"]], level[masks["no"]], order),
    }


def _smd_categorical(a: npt.NDArray[Any], b: npt.NDArray[Any], levels: list[str]) -> float | None:
    """Yang & Dalton (2012): sqrt(T' S^-1 T) over the level proportions, the first level dropped."""
    if len(a) == 0 or len(b) == 0 or len(levels) < 2:
        return None
    p1 = np.array([(a == lv).mean() for lv in levels[1:]])
    p0 = np.array([(b == lv).mean() for lv in levels[1:]])
    t = p1 - p0

    def cov(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.diag(p) - np.outer(p, p)

    s = (cov(p1) + cov(p0)) / 2
    value = float(t @ np.linalg.pinv(s) @ t)
    return math.sqrt(max(value, 0.0))
