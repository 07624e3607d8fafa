"""A user's own table (CSV or Parquet) plus a small spec -> TaskDataset.

Who: the rows of the file that have a target value (rows without one are left out and counted).
Outcome: ``target`` mapped to 0/1: a 0/1 or boolean column as it is; any other two values by ``positive``, or
else by the one value that reads as yes (``POSITIVE_WORDS``: yes, true, 1, positive, dead, ...).
Patients: ``id`` names the patient id column; without one, each row is taken to be a different patient.
Features: ``features`` or, by default, every column but the target, the id, the sensitive and the dropped ones.
Sensitive columns are kept beside ``X`` (missing -> "Unknown"; a numeric column named age -> age bands), not
inside it unless also listed as features. ``plausible`` gives numeric features a range (``lactate: [0, 30]``):
training refuses values outside it and scoring leaves them out, as for the bundled datasets' ranges.
How numbers are told from text: :mod:`._tableio`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medml.data.datasets._common import UNKNOWN, age_band, id_array
from medml.data.datasets._tableio import MISSING_TOKENS, as_numeric_if_numeric, is_text, names_list, read_table
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import ConfigError, DataError, InputFileError, clip, quote

POSITIVE_WORDS = frozenset(
    {
        "1",
        "yes",
        "y",
        "true",
        "t",
        "positive",
        "pos",
        "present",
        "case",
        "event",
        "dead",
        "died",
        "death",
        "deceased",
        "disease",
        "abnormal",
    }
)
_TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE_WORDS = frozenset({"0", "no", "n", "false", "f", "off"})
_AGE_NAMES = frozenset({"age", "age_years", "age_at_index"})


def _names(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(
        f"spec entry '{key}' must be a column name or a list of column names, got {quote(value)}",
        f"write {key}: [col_a, col_b]",
    )


@dataclass(frozen=True)
class TableSpec:
    """Which column is the outcome, which the patient id, which the features and sensitive attributes."""

    target: str
    id: str | None = None
    features: tuple[str, ...] | None = None
    sensitive: tuple[str, ...] = ()
    positive: str | int | float | bool | None = None
    name: str | None = None
    task: str | None = None
    drop: tuple[str, ...] = ()
    #: column -> (lowest, highest) plausible value of a numeric feature
    plausible: Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ConfigError(
                f"the spec's target must be a column name, got {quote(self.target)}",
                "name the outcome column, e.g. target: died",
            )
        for key in ("id", "name", "task"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"spec entry '{key}' must be text, got {quote(value)}")
        if self.features is not None:
            object.__setattr__(self, "features", _names(self.features, "features"))
        object.__setattr__(self, "sensitive", _names(self.sensitive, "sensitive"))
        object.__setattr__(self, "drop", _names(self.drop, "drop"))
        if self.positive is not None and not isinstance(self.positive, str | int | float | bool):
            raise ConfigError(f"spec entry 'positive' must be one value, got {quote(self.positive)}")
        if self.plausible is not None:
            object.__setattr__(self, "plausible", _ranges(self.plausible))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "the spec") -> TableSpec:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{where} has unknown entries: {', '.join(unknown)}", f"the entries are: table, {', '.join(allowed)}"
            )
        if "target" not in d:
            raise ConfigError(f"{where} has no 'target' entry", "add target: <outcome column>")
        return cls(**{k: d[k] for k in allowed if k in d})


def load_spec_yaml(path: str | Path) -> tuple[Path, TableSpec]:
    """A YAML spec -> (the table's path, resolved against the YAML's folder; the TableSpec).

    ``table: patients.csv``, ``target: died``, and optionally ``id``, ``features``, ``sensitive``, ``positive``,
    ``name``, ``task``, ``drop``, ``plausible``.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no spec file at {p}", "check the path of the YAML spec")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{p} is not valid YAML{at}: {problem}", "fix the YAML syntax (key: value lines)") from e
    except UnicodeDecodeError as e:
        raise InputFileError(f"{p} is not UTF-8 text", "save the spec as UTF-8") from e
    if doc is None:
        raise ConfigError(f"{p} is empty", "write at least 'table: <file>' and 'target: <outcome column>'")
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{p} must be a mapping of key: value entries, got {type(doc).__name__}",
            "write e.g. 'table: patients.csv' and 'target: died' on separate lines",
        )
    doc = dict(doc)
    table = doc.pop("table", None)
    if not isinstance(table, str) or not table.strip():
        raise ConfigError(f"{p} has no 'table' entry naming the data file", "add table: <file>.csv (or .parquet)")
    table_path = Path(table)
    if not table_path.is_absolute():
        table_path = p.parent / table_path
    return table_path, TableSpec.from_dict(doc, where=str(p))


def _ranges(value: object) -> dict[str, tuple[float, float]]:
    """``plausible:`` as column -> (low, high), or a ConfigError saying how to write it."""
    how = "write plausible: {lactate: [0, 30], age: [18, 110]} (a column and its lowest and highest value)"
    if not isinstance(value, Mapping):
        raise ConfigError(f"spec entry 'plausible' must map columns to [low, high], got {quote(value)}", how)
    out: dict[str, tuple[float, float]] = {}
    for name, rng in value.items():
        ok = (
            isinstance(rng, Sequence)
            and not isinstance(rng, str)
            and len(rng) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in rng)
        )
        if not ok or not (np.isfinite(rng[0]) and np.isfinite(rng[1]) and rng[0] < rng[1]):
            raise ConfigError(
                f"plausible range of {quote(name)} must be two finite numbers, low < high, got {quote(rng)}", how
            )
        out[str(name)] = (float(rng[0]), float(rng[1]))
    return out


def _label(v: object, parse_text: bool = True) -> str:
    """A value as text: booleans as true/false, whole numbers without '.0' (and, with ``parse_text``, number
    text such as '1.0' too; ids keep their text, leading zeros included)."""
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    text = str(v).strip()
    if not parse_text:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _positive_value(values: list[str], spec: TableSpec) -> str:
    a, b = values
    if spec.positive is not None:
        if isinstance(spec.positive, bool):
            words = _TRUE_WORDS if spec.positive else _FALSE_WORDS
            hits = [v for v in values if v.lower() in words]
        else:
            want = _label(spec.positive)
            hits = [v for v in values if v == want or v.lower() == want.lower()]
            if not hits:
                hits = [v for v in values if _same_number(v, want)]
        if len(hits) != 1:
            raise DataError(
                f"the positive value {quote(_label(spec.positive))} is not one of the target "
                f"{quote(spec.target)} values ({quote(a)}, {quote(b)})",
                f"pass --positive {quote(a)} or --positive {quote(b)}",
            )
        return hits[0]
    if set(values) == {"0", "1"}:
        return "1"
    if {v.lower() for v in values} == {"true", "false"}:
        return next(v for v in values if v.lower() == "true")
    hits = [v for v in values if v.lower() in POSITIVE_WORDS]
    if len(hits) == 1:
        return hits[0]
    raise DataError(
        f"cannot tell which value of the target {quote(spec.target)} is the positive outcome: {quote(a)} or {quote(b)}",
        f"name it with --positive (e.g. --positive {quote(b)}), or positive: in the YAML spec",
    )


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _require_columns(columns: list[str], spec: TableSpec, path: Path) -> None:
    roles = [
        ("target", [spec.target]),
        ("id", [spec.id] if spec.id else []),
        ("feature", list(spec.features or ())),
        ("sensitive", list(spec.sensitive)),
        ("drop", list(spec.drop)),
    ]
    present = set(columns)
    missing = [f"{role} {quote(c)}" for role, names in roles for c in names if c not in present]
    if missing:
        shown = names_list(columns)
        raise DataError(
            f"{path.name} has no column for {', '.join(missing)}",
            f"its columns are: {shown}; check the spelling (names are case-sensitive)",
        )
    if spec.id and spec.id == spec.target:
        raise DataError(f"column {quote(spec.target)} is named as both the target and the id", "name two columns")
    for role, names in (("feature", spec.features or ()), ("sensitive attribute", spec.sensitive)):
        if spec.target in names:
            raise DataError(
                f"the target {quote(spec.target)} is also listed as a {role}",
                f"remove it from the {role}s: a model must not see its outcome",
            )
    if spec.id and spec.id in (spec.features or ()):
        raise DataError(
            f"the id column {quote(spec.id)} is listed as a feature",
            "remove it from the features: an identifier is not a predictor",
        )


def _target(frame: pd.DataFrame, spec: TableSpec) -> tuple[np.ndarray, str, np.ndarray]:
    """(0/1 values of the rows that have a target, the positive label, the mask of those rows)."""
    col = frame[spec.target]
    labels = col.map(lambda v: None if pd.isna(v) else _label(v)).astype(object)
    labels = labels.where(~labels.isin([t for t in MISSING_TOKENS if t]) & labels.ne(""), None)
    has = labels.notna().to_numpy()
    n = int(has.sum())
    if n == 0:
        raise DataError(
            f"the target {quote(spec.target)} is empty in all {len(frame)} rows",
            "choose the column that holds the outcome",
        )
    values = sorted(set(labels[has]))
    if len(values) == 1:
        raise DataError(
            f"only one outcome value ({clip(values[0])}) in {n} rows of target {quote(spec.target)}: "
            "a model needs both",
            "check the target column, or that the file holds both outcomes",
        )
    if len(values) > 2:
        shown = ", ".join(clip(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise DataError(
            f"the target {quote(spec.target)} has {len(values)} different values in {n} rows ({shown}): "
            "a binary task needs exactly two",
            "choose a yes/no outcome column, or map its values to two (e.g. 0/1) first",
        )
    pos = _positive_value(values, spec)
    y = (labels[has] == pos).to_numpy(dtype=np.int8)
    return y, pos, has


def _feature_column(col: pd.Series, name: str, where: str, line_offset: int) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        raise DataError(f"feature {quote(name)} holds dates", "derive a number from it (e.g. days since admission)")
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col
    col = as_numeric_if_numeric(col, name, where, line_offset)
    if not is_text(col):
        return col.astype("float64")
    text = col.astype("string").str.strip()
    text = text.where(~text.isin(MISSING_TOKENS))
    levels = sorted(text.dropna().unique())
    return pd.Series(pd.Categorical(text, categories=levels), index=col.index, name=name)


def _sensitive_column(col: pd.Series, name: str) -> pd.Series:
    if name.lower() in _AGE_NAMES:
        numbers = pd.to_numeric(col, errors="coerce")
        if numbers.notna().any():
            return age_band(numbers)
    text = col.map(lambda v: UNKNOWN if pd.isna(v) else _label(v, parse_text=False)).astype(object)
    return text.where(~text.isin([t for t in MISSING_TOKENS]), UNKNOWN).astype(str)


def _refuse_infinite_ages(frame: pd.DataFrame, spec: TableSpec, where: str, line_offset: int) -> None:
    """An age of ``inf`` would be banded 80+ (and ``-inf`` <40): a subgroup of patients who do not exist."""
    for name in spec.sensitive:
        if name.lower() not in _AGE_NAMES:
            continue
        ages = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isinf(ages))
        if len(bad):
            line = f" (line {bad[0] + line_offset} of the file)" if line_offset else ""
            raise DataError(
                f"sensitive attribute {quote(name)} in {where} holds {len(bad)} infinite age(s); the first in data "
                f"row {bad[0] + 1}{line}",
                "correct them, or leave them empty where the age is unknown",
            )


def _check_ranges(spec: TableSpec, X: pd.DataFrame, columns: list[str]) -> None:
    """A plausible range names a numeric feature: a range for a missing, excluded or text column is a mistake."""
    for name in spec.plausible or {}:
        if name not in columns:
            raise ConfigError(
                f"the spec gives a plausible range for {quote(name)}, which is not a column",
                f"its columns are: {names_list(columns)}",
            )
        if name not in X.columns:
            raise ConfigError(
                f"the spec gives a plausible range for {quote(name)}, which is not a feature",
                "list it under features, or remove its range",
            )
        if not pd.api.types.is_numeric_dtype(X[name]):
            raise ConfigError(
                f"the spec gives a plausible range for {quote(name)}, which holds text, not numbers",
                "remove its range: ranges apply to numeric features",
            )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_table(path: str | Path, spec: TableSpec) -> TaskDataset:
    """The table at ``path`` as a TaskDataset under ``spec`` (see the module docstring)."""
    p = Path(path)
    frame = read_table(p)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    _require_columns(columns, spec, p)
    line_offset = 2 if p.name.lower().endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")) else 0

    y, pos, has = _target(frame, spec)
    _refuse_infinite_ages(frame, spec, p.name, line_offset)
    not_features = {spec.target, *([spec.id] if spec.id else []), *spec.sensitive, *spec.drop}
    feature_names = list(spec.features) if spec.features is not None else [c for c in columns if c not in not_features]
    if not feature_names:
        raise DataError(
            f"{p.name} has no feature columns left besides the target, id, sensitive and dropped ones",
            "add the predictor columns to the table, or list them under features",
        )
    X = pd.DataFrame({c: _feature_column(frame[c], c, p.name, line_offset) for c in feature_names})
    _check_ranges(spec, X, columns)
    X = X.loc[has].reset_index(drop=True)
    kept = frame.loc[has].reset_index(drop=True)

    if spec.id:
        pid = kept[spec.id].map(lambda v: None if pd.isna(v) else _label(v, parse_text=False))
        empty = pid.isna() | pid.isin(MISSING_TOKENS)
        if empty.any():
            raise DataError(
                f"the id column {quote(spec.id)} is empty in {int(empty.sum())} rows",
                "give every row its patient id, or leave out --id to treat each row as a patient",
            )
        groups = id_array(pid)
        occurrence = pid.groupby(pid).cumcount() + 1
        ids = groups if pid.is_unique else id_array(pid + "#" + occurrence.astype(str))
        who = f"{len(kept):,} rows of {pid.nunique():,} patients (patient id {quote(spec.id)}) from {p.name}"
    else:
        rows = np.flatnonzero(has) + 1
        groups = ids = id_array(rows)
        who = f"{len(kept):,} rows from {p.name}; with no id column, each row is taken to be a different patient"
    n_left = int((~has).sum())
    if n_left:
        who += f"; {n_left:,} rows with no value of {quote(spec.target)} were left out"

    excluded: dict[str, str] = {spec.target: f"the outcome ({pos} = 1)"}
    if spec.id:
        excluded[spec.id] = "the patient id (TaskDataset.groups), not a predictor"
    for c in columns:
        if c in X.columns or c in excluded:
            continue
        if c in spec.sensitive:
            excluded[c] = "sensitive attribute: kept in `sensitive`, not a feature (list it under features to use it)"
        elif c in spec.drop:
            excluded[c] = "dropped by the spec"
        else:
            excluded[c] = "not listed among the spec's features"
    with p.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return TaskDataset(
        name=spec.name or _stem(p),
        task=spec.task or f"{spec.target} = {pos}",
        X=X,
        y=BinaryTarget(y, f"{spec.target} = {pos}"),
        groups=groups,
        features=infer_features(X, plausible=spec.plausible),
        sensitive=pd.DataFrame({c: _sensitive_column(kept[c], c) for c in spec.sensitive}, index=X.index),
        ids=ids,
        population=who,
        provenance=f"{p.resolve()} ({p.stat().st_size:,} bytes, sha256 {digest[:16]})",
        excluded=excluded,
    )
