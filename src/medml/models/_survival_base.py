"""What every survival model kind shares: the target's two shapes, and the horizons it reports.

A module of its own so that :mod:`medml.models.survival` (the table of kinds) and the kinds kept in their own
modules (:mod:`medml.models.survival_forest`) both build on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from medml.data.targets import SurvivalTarget
from medml.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]

#: the horizons (days) a model reports when none are given: six months, one year, two years
DEFAULT_HORIZONS: tuple[float, ...] = (180.0, 365.0, 730.0)


def survival_array(time: npt.ArrayLike, event: npt.ArrayLike) -> npt.NDArray[np.void]:
    """scikit-survival's structured target: ``event`` (bool) and ``time`` (float) per patient."""
    t = np.asarray(time, dtype=float)
    y = np.empty(t.size, dtype=[("event", bool), ("time", float)])
    y["event"] = np.asarray(event).astype(bool)
    y["time"] = t
    return y


def time_event(y: Any) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(time, event)`` of a SurvivalTarget or of a structured array with one bool and one float field."""
    if isinstance(y, SurvivalTarget):
        return y.time, y.event
    arr = np.asarray(y)
    names = arr.dtype.names or ()
    bools = [n for n in names if arr.dtype[n] == np.bool_]
    floats = [n for n in names if np.issubdtype(arr.dtype[n], np.number) and arr.dtype[n] != np.bool_]
    if len(bools) != 1 or len(floats) != 1:
        raise DataError(
            "a survival model is fitted on a SurvivalTarget(time, event) or a structured array (event, time)",
            "pass task.y, or medml.models.survival.survival_array(time, event)",
        )
    return arr[floats[0]].astype(float), arr[bools[0]].astype(bool)


def check_fit_target(n_rows: int, time: FloatArray, event: npt.NDArray[np.bool_]) -> None:
    """One time per row, and at least one event to learn from: else DataError."""
    if len(time) != n_rows:
        raise DataError(f"{n_rows} rows of features but {len(time)} survival times")
    if not event.any():
        raise DataError("every patient is censored: no event to learn from", "check the event column")


def check_model_horizons(horizons: Sequence[float]) -> tuple[float, ...]:
    """The horizons as floats above zero, or a ConfigError."""
    try:
        hs = tuple(float(h) for h in horizons)
    except (TypeError, ValueError):
        raise ConfigError(f"horizons must be numbers of days, got {horizons!r}", "pass e.g. (180, 365, 730)") from None
    if not hs or any(not np.isfinite(h) or h <= 0 for h in hs):
        raise ConfigError(f"horizons must be days above zero, got {horizons!r}", "pass e.g. (180, 365, 730)")
    return hs
