"""Turning a feature schema into model-ready columns, identically at training and at serving time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medml.data.task import FeatureSpec, infer_features
from medml.errors import DataError


def resolve_features(X: pd.DataFrame, features: Sequence[FeatureSpec] | None) -> tuple[FeatureSpec, ...]:
    """The declared schema, or one inferred from ``X``; every declared feature must be a column of ``X``."""
    specs = tuple(features) if features is not None else infer_features(X)
    require_columns(X, specs)
    return specs


def require_columns(X: pd.DataFrame, specs: Sequence[FeatureSpec]) -> None:
    """Raise a clear error naming the feature columns ``X`` lacks."""
    missing = [f.name for f in specs if f.name not in X.columns]
    if missing:
        raise DataError(
            f"input lacks {len(missing)} feature columns the model needs: {', '.join(missing[:10])}",
            "pass a table with the same columns the model was trained on (see `medml models show`)",
        )


def typed_frame(X: pd.DataFrame, specs: Sequence[FeatureSpec]) -> pd.DataFrame:
    """The numeric features as float64 (:func:`numeric_frame`), then the categorical ones as strings
    (:func:`categorical_frame`): what the scikit-learn preprocessing of the linear and survival models reads."""
    require_columns(X, specs)
    num = [f for f in specs if f.kind == "numeric"]
    cat = [f for f in specs if f.kind == "categorical"]
    return pd.concat([numeric_frame(X, num), categorical_frame(X, cat)], axis=1)


def numeric_frame(X: pd.DataFrame, specs: Sequence[FeatureSpec]) -> pd.DataFrame:
    """Numeric features as float64, with a clear error when a cell holds text."""
    names = [f.name for f in specs]
    sub = X[names]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in sub.dtypes):
        # one conversion for the whole block: a single-row request with hundreds of columns pays per column otherwise
        return pd.DataFrame(sub.to_numpy(dtype="float64", na_value=np.nan), columns=names, index=X.index)
    out = {}
    for f in specs:
        col = X[f.name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            out[f.name] = col.astype("float64")
            continue
        conv = pd.to_numeric(col, errors="coerce")
        bad = conv.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"feature '{f.name}' should be numeric but row {row} holds '{col.iloc[row]}'",
                "fix or blank that value",
            )
        out[f.name] = conv.astype("float64")
    return pd.DataFrame(out, index=X.index)


def categorical_frame(X: pd.DataFrame, specs: Sequence[FeatureSpec]) -> pd.DataFrame:
    """Categorical features as object columns of strings, missing as NaN."""
    out = {}
    for f in specs:
        col = X[f.name]
        out[f.name] = (
            col.astype(object)
            .where(col.notna(), np.nan)
            .map(lambda v: v if isinstance(v, float) and np.isnan(v) else str(v))
        )
    return pd.DataFrame(out, index=X.index, dtype=object)
