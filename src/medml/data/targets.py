"""Typed targets: what a model predicts, never a bare column of numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medml.errors import DataError


@dataclass(frozen=True)
class BinaryTarget:
    """A yes/no outcome per sample: ``values`` are 0/1, ``name`` says what 1 means in clinical words."""

    values: npt.NDArray[np.int8]
    name: str

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.ndim != 1:
            raise DataError(f"target '{self.name}' must be one value per sample, got shape {v.shape}")
        if v.size and not np.isin(v, (0, 1)).all():
            bad = sorted({str(x) for x in v[~np.isin(v, (0, 1))][:3]})
            raise DataError(
                f"target '{self.name}' must be 0/1, found {', '.join(bad)}",
                "map the outcome to 0 (no) and 1 (yes) before building the task",
            )
        object.__setattr__(self, "values", v.astype(np.int8))

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def prevalence(self) -> float:
        return float(self.values.mean()) if self.values.size else float("nan")

    def subset(self, idx: npt.ArrayLike) -> BinaryTarget:
        return BinaryTarget(self.values[np.asarray(idx)], self.name)


@dataclass(frozen=True)
class SurvivalTarget:
    """Time to an event with right censoring: ``event`` is True where the event was observed at ``time``."""

    time: npt.NDArray[np.float64]
    event: npt.NDArray[np.bool_]
    name: str
    time_unit: str = "days"

    def __post_init__(self) -> None:
        t = np.asarray(self.time, dtype=float)
        e = np.asarray(self.event).astype(bool)
        if t.shape != e.shape or t.ndim != 1:
            raise DataError(f"survival target '{self.name}': time and event must be 1-D of equal length")
        if np.isnan(t).any() or (t < 0).any():
            raise DataError(f"survival target '{self.name}': times must be present and non-negative")
        object.__setattr__(self, "time", t)
        object.__setattr__(self, "event", e)

    def __len__(self) -> int:
        return int(self.time.size)

    def subset(self, idx: npt.ArrayLike) -> SurvivalTarget:
        i = np.asarray(idx)
        return SurvivalTarget(self.time[i], self.event[i], self.name, self.time_unit)


Target = BinaryTarget | SurvivalTarget
