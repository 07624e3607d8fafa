"""TaskDataset: features, a typed target, patient groups and sensitive attributes, kept side by side."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.targets import BinaryTarget, Target
from medml.errors import DataError


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: its column, kind, unit and the words a clinician would use for it."""

    name: str
    kind: Literal["numeric", "categorical"]
    unit: str = ""
    label: str = ""
    #: the inclusive range of values that can be real, in ``unit`` (physiology and the unit); outside it a value is
    #: a recording or unit error: left out, and named, wherever the model reads it
    plausible: tuple[float, float] | None = None

    @property
    def clinical_name(self) -> str:
        return self.label or self.name

    def is_plausible(self, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True where a value is missing or inside the plausible range (and finite); False where it must be left out."""
        v = np.asarray(values, dtype=float)
        ok = np.isnan(v) | np.isfinite(v)
        if self.plausible is not None:
            lo, hi = self.plausible
            ok &= np.isnan(v) | ((v >= lo) & (v <= hi))
        return np.asarray(ok, dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "unit": self.unit, "label": self.label}
        if self.plausible is not None:
            d["plausible"] = [float(self.plausible[0]), float(self.plausible[1])]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        kind = d["kind"]
        if kind not in ("numeric", "categorical"):
            raise DataError(f"feature '{d['name']}' has unknown kind '{kind}'", "use numeric or categorical")
        rng = d.get("plausible")
        plausible = (float(rng[0]), float(rng[1])) if rng else None
        return cls(name=d["name"], kind=kind, unit=d.get("unit", ""), label=d.get("label", ""), plausible=plausible)


def infer_features(
    X: pd.DataFrame,
    units: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    plausible: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[FeatureSpec, ...]:
    """Numeric columns stay numeric, everything else is categorical; ``plausible`` ranges for the numeric ones."""
    units = units or {}
    labels = labels or {}
    plausible = plausible or {}
    return tuple(
        FeatureSpec(
            name=str(c),
            kind="numeric"
            if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])
            else "categorical",
            unit=units.get(str(c), ""),
            label=labels.get(str(c), ""),
            plausible=plausible.get(str(c)),
        )
        for c in X.columns
    )


def implausible(
    X: pd.DataFrame, features: tuple[FeatureSpec, ...] | list[FeatureSpec]
) -> dict[str, npt.NDArray[np.bool_]]:
    """Per numeric input with values outside its plausible range (or not finite): a mask of those rows."""
    out: dict[str, npt.NDArray[np.bool_]] = {}
    for f in features:
        if f.kind != "numeric" or f.name not in X.columns:
            continue
        bad = ~f.is_plausible(pd.to_numeric(X[f.name], errors="coerce").to_numpy(dtype=float))
        if bad.any():
            out[f.name] = bad
    return out


class ServingContract(Protocol):
    """How a model trained on a task is served, declared with the task and written into the model's bundle: for a
    model scored from FHIR its feature definition and index-time rule (:class:`medml.fhir.features.ServingSpec`)."""

    @property
    def kind(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TaskDataset:
    """What a model is trained and evaluated on.

    Rows are samples (an encounter, a stay); ``groups`` names the patient of each row so that splits never
    put one patient on both sides. ``sensitive`` holds attributes for fairness analysis (sex, age band,
    race) beside ``X``, never inside it. ``excluded`` names each source column left out and why. ``serving`` says
    how a model of this task reads a patient when deployed (None: it reads table columns only).
    """

    name: str
    task: str
    X: pd.DataFrame
    y: Target
    groups: npt.NDArray[np.object_]
    features: tuple[FeatureSpec, ...]
    sensitive: pd.DataFrame
    ids: npt.NDArray[np.object_]
    population: str = ""
    provenance: str = ""
    index_time: npt.NDArray[np.datetime64] | None = None
    excluded: Mapping[str, str] = field(default_factory=dict)
    serving: ServingContract | None = None

    def __post_init__(self) -> None:
        n = len(self.X)
        for what, size in (
            ("target", len(self.y)),
            ("groups", len(self.groups)),
            ("sensitive attributes", len(self.sensitive)),
            ("ids", len(self.ids)),
        ):
            if size != n:
                raise DataError(f"task '{self.name}': {what} has {size} rows but the features have {n}")
        if self.index_time is not None and len(self.index_time) != n:
            raise DataError(f"task '{self.name}': index times have {len(self.index_time)} rows, features {n}")
        names = [f.name for f in self.features]
        if names != [str(c) for c in self.X.columns]:
            raise DataError(f"task '{self.name}': feature specs do not match the feature columns")
        if n == 0:
            raise DataError(f"task '{self.name}' has no rows", "check the input file and the exclusions")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def binary_target(self) -> BinaryTarget:
        if not isinstance(self.y, BinaryTarget):
            raise DataError(f"task '{self.name}' has a survival target, a binary one is needed here")
        return self.y

    def subset(self, idx: npt.ArrayLike) -> TaskDataset:
        """Rows at positions ``idx`` (as from a split), everything else unchanged."""
        i = np.asarray(idx)
        return replace(
            self,
            X=self.X.iloc[i].reset_index(drop=True),
            y=self.y.subset(i),
            groups=self.groups[i],
            sensitive=self.sensitive.iloc[i].reset_index(drop=True),
            ids=self.ids[i],
            index_time=None if self.index_time is None else self.index_time[i],
        )

    def feature_schema(self) -> list[dict[str, str]]:
        return [f.to_dict() for f in self.features]
