"""Features from FHIR, relative to an index time: one function for a training cohort and for one CDS request.

:func:`build_features` runs the built-in ViewDefinitions (``observations``, ``patient_demographics``) over a
:class:`FhirStore` and aggregates their rows in SQL: first/last value, min, max, mean, count and hours since the
last result, for each measurement in a look-back window before each patient's index time, with units checked.
A CDS Hooks prefetch (a handful of resources in memory) goes through the very same code: it is loaded into an
in-memory store first, so training and serving cannot drift apart.

Units: a result counts only when its UCUM code is the measurement's unit or one with a declared conversion; any
other unit is left out and counted in :attr:`BuiltFeatures.dropped`, never guessed. Values outside the declared
plausible range (recording errors such as a heart rate of 0) are left out and counted likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from medml.errors import ConfigError, DataError
from medml.fhir.store import FhirStore
from medml.fhir.view._dialect import Dialect, get_dialect
from medml.fhir.views import get_view

#: ``since``: hours from the last result to the index time (how stale the last value is)
AGGREGATES = ("first", "last", "min", "max", "mean", "count", "since")
_SEX = {"female": "Female", "male": "Male"}
_AGE = "__age__"


@dataclass(frozen=True)
class Conversion:
    """Another UCUM unit accepted for a measurement: value_in_unit = value * multiply / divide + offset.

    ``divide`` exists so that a percent becomes a fraction exactly (35 / 100 is the double nearest 0.35; 35 * 0.01
    is not).
    """

    unit: str
    multiply: float = 1.0
    divide: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """A vital sign or lab: which LOINC codes, in which UCUM unit, summarised how."""

    name: str
    label: str
    #: LOINC codes, or ``system|code`` for a code of another system (matched when a result has no LOINC coding)
    codes: tuple[str, ...]
    unit: str
    aggregates: tuple[str, ...] = ("last", "min", "max", "mean", "count")
    plausible: tuple[float, float] | None = None
    #: other UCUM units accepted, and how to convert them
    conversions: tuple[Conversion, ...] = ()
    #: one column named ``name`` (the first value), for a static input such as height
    static: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.aggregates) - set(AGGREGATES)
        if unknown or not self.aggregates:
            raise ConfigError(
                f"measurement {self.name}: unknown aggregates {sorted(unknown)}",
                f"choose among {', '.join(AGGREGATES)}",
            )
        if not self.codes:
            raise ConfigError(f"measurement {self.name} has no code", "give at least one LOINC code")

    def columns(self) -> list[str]:
        return [self.name] if self.static else [f"{self.name}_{a}" for a in self.aggregates]


@dataclass(frozen=True)
class FeatureDefinition:
    """What a model reads from FHIR: measurements in a window before the index time, age and sex."""

    name: str
    measurements: tuple[Measurement, ...]
    #: look back this many hours from the index time (both ends included); None takes everything up to it
    window_hours: float | None = None
    #: column names for age (years at the index time) and sex, or None to leave them out
    age: str | None = "age"
    sex: str | None = "sex"
    #: an Observation of age (LOINC 30525-0) wins over birthDate: de-identified data often shifts dates
    age_loinc: str = "30525-0"

    def columns(self) -> list[str]:
        cols = [c for c in (self.age, self.sex) if c]
        return cols + [c for m in self.measurements for c in m.columns()]

    def labels_and_units(self) -> tuple[dict[str, str], dict[str, str]]:
        """Each column's label in clinical words ("Heart rate (max in 48 h)") and its unit, for reports and cards."""
        window = f" in {self.window_hours:g} h" if self.window_hours is not None else ""
        labels: dict[str, str] = {}
        units: dict[str, str] = {}
        if self.age:
            labels[self.age], units[self.age] = "Age", "years"
        if self.sex:
            labels[self.sex] = "Sex"
        for m in self.measurements:
            if m.static:
                labels[m.name], units[m.name] = m.label, m.unit
                continue
            for a in m.aggregates:
                col = f"{m.name}_{a}"
                labels[col] = {
                    "count": f"{m.label}: measurements{window}",
                    "since": f"{m.label}: hours since the last result",
                }.get(a, f"{m.label} ({a}{window})")
                units[col] = {"count": "count", "since": "h"}.get(a, m.unit)
        return labels, units

    def codes(self) -> list[str]:
        """Every code the definition reads (a CDS prefetch asks for exactly these)."""
        codes = {c for m in self.measurements for c in m.codes}
        if self.age:
            codes.add(self.age_loinc)
        return sorted(codes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: a deployment stores the definition beside the model, so serving needs no task code."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureDefinition:
        """The definition back from :meth:`to_dict`; a stored definition that does not fit is a ConfigError."""
        try:
            measurements = tuple(
                Measurement(
                    **{
                        **m,
                        "codes": tuple(m["codes"]),
                        "aggregates": tuple(m["aggregates"]),
                        "plausible": tuple(m["plausible"]) if m.get("plausible") else None,
                        "conversions": tuple(Conversion(**c) for c in m.get("conversions", ())),
                    }
                )
                for m in d["measurements"]
            )
            return cls(**{**d, "measurements": measurements})
        except (KeyError, TypeError) as e:
            raise ConfigError(
                f"stored feature definition is not valid: {e}", "deploy the model again with this medml version"
            ) from None


ANCHORS = ("now", "encounter-start")


@dataclass(frozen=True)
class ServingSpec:
    """How a task's model reads one patient at the bedside: its FHIR features and when its index time falls.

    Declared with the task and written into the model's bundle at training time, so that serving needs no task
    code. ``anchor`` "encounter-start": the index time is the encounter's start + ``hours`` (or now, if that is
    still ahead), for encounters of the given ``encounter_classes`` (v3 ActCode; empty = any); "now": the time of
    the request.
    """

    #: the tag of this serving contract in a bundle (an image model's is another)
    kind: ClassVar[str] = "fhir"

    definition: FeatureDefinition
    outcome: str
    anchor: str = "now"
    hours: float = 0.0
    encounter_classes: tuple[str, ...] = ()
    #: the fewest measurements with a usable result for a score to be shown; below it the service says it cannot
    #: score (a risk from no data is the population's prior dressed as the patient's)
    min_measured: int = 1

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ConfigError(f"unknown index anchor {self.anchor!r}", f"use one of {', '.join(ANCHORS)}")
        if not 0 <= self.min_measured <= len(self.definition.measurements):
            raise ConfigError(
                f"min_measured {self.min_measured} is outside 0-{len(self.definition.measurements)}",
                "ask for at most as many measurements as the definition has",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "definition": self.definition.to_dict(),
            "outcome": self.outcome,
            "anchor": self.anchor,
            "hours": self.hours,
            "encounter_classes": list(self.encounter_classes),
            "min_measured": self.min_measured,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServingSpec:
        """The spec back from :meth:`to_dict` (a spec stored without ``kind`` is one too); ConfigError if not."""
        try:
            if d.get("kind", cls.kind) != cls.kind:
                raise ValueError(f"kind {d.get('kind')!r} is not {cls.kind!r}")
            return cls(
                definition=FeatureDefinition.from_dict(d["definition"]),
                outcome=str(d["outcome"]),
                anchor=str(d["anchor"]),
                hours=float(d["hours"]),
                encounter_classes=tuple(str(c) for c in d["encounter_classes"]),
                min_measured=int(d.get("min_measured", 1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"stored serving spec is not valid: {e}", "deploy the model again") from None


@dataclass
class BuiltFeatures:
    """Features per patient (rows in the order of the index times) and what was left out on the way."""

    X: pd.DataFrame
    patient_ids: list[str]
    index_times: pd.Series
    #: results left out, per patient, then per measurement and reason ("unit mg/dL", "implausible")
    dropped_by_patient: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)

    @property
    def dropped(self) -> dict[tuple[str, str], int]:
        """Results left out over all patients, per measurement and reason."""
        total: dict[tuple[str, str], int] = {}
        for per in self.dropped_by_patient.values():
            for key, n in per.items():
                total[key] = total.get(key, 0) + n
        return total

    def missing(self, patient_id: str, definition: FeatureDefinition) -> list[str]:
        """The measurements (labels) with no usable result for this patient: to be named, never silently imputed."""
        row: pd.Series = self.X.iloc[self.patient_ids.index(patient_id)]
        return [m.label for m in definition.measurements if _has_no_value(row, m)]


def _has_no_value(row: pd.Series, m: Measurement) -> bool:
    if m.static:
        return bool(pd.isna(row[m.name]))
    values = [a for a in m.aggregates if a != "count"]
    return bool(pd.isna(row[f"{m.name}_{values[0]}"])) if values else float(row[f"{m.name}_count"]) == 0


def as_store(source: FhirStore | Mapping[str, Any] | Iterable[dict[str, Any]]) -> FhirStore:
    """A store from a store, a Bundle (``urn:uuid:`` references resolved) or resources in memory."""
    if isinstance(source, FhirStore):
        return source
    if isinstance(source, Mapping):
        if source.get("resourceType") != "Bundle":
            raise DataError("expected a FHIR Bundle or a list of resources", "wrap single resources in a list")
        from medml.fhir.ingest import bundle_resources

        return FhirStore.in_memory(bundle_resources(dict(source)))
    return FhirStore.in_memory(source)


def index_frame(index_times: Mapping[str, datetime] | pd.Series) -> pd.DataFrame:
    series = pd.Series(index_times) if not isinstance(index_times, pd.Series) else index_times
    if series.empty:
        raise DataError("no patients to build features for", "give at least one patient id with an index time")
    times = pd.to_datetime(series, utc=True, errors="coerce")
    if times.isna().any():
        bad = list(series[times.isna()].index[:3])
        raise DataError(f"index times missing or unreadable for patients {bad}", "give ISO 8601 date-times")
    return pd.DataFrame({"patient_id": [str(i) for i in series.index], "index_time": times.reset_index(drop=True)})


def measure_table(definition: FeatureDefinition) -> pa.Table:
    rows: list[tuple[str, str, str, float, float, float, float, float]] = []
    for m in definition.measurements:
        lo, hi = m.plausible if m.plausible else (-np.inf, np.inf)
        for code in m.codes:
            for c in (Conversion(m.unit), *m.conversions):
                rows.append((m.name, code, c.unit, c.multiply, c.divide, c.offset, lo, hi))
    if definition.age:  # age Observations ride along in the same pass, under a name no measurement can have
        rows.append((_AGE, definition.age_loinc, "a", 1.0, 1.0, 0.0, 0.0, 150.0))
    names = ["name", "code", "unit", "multiply", "divide", "offset", "lo", "hi"]
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


_CODE = "coalesce(o.code, o.coding_system || '|' || o.coding_code)"


@cache
def _view_sql(name: str, dialect: str = "duckdb") -> str:
    """A built-in view's SQL, compiled once per process (a CDS request should not pay for it)."""
    from medml.fhir.view import compile_view

    return compile_view(get_view(name), dialect=dialect).sql


@dataclass(frozen=True)
class FeatureQueries:
    """The SQL that builds a definition's features, in one engine's dialect, over four tables.

    ``resources`` (resource_type, id, resource) is what the views read; ``_medml_index`` (patient_id, index_time)
    and ``_medml_measures`` (:func:`measure_table`) are the inputs; ``matched`` is materialised as
    ``_medml_matched``, which the other queries read. DuckDB and Spark run the same queries, written through the
    view compiler's :class:`~medml.fhir.view._dialect.Dialect`, so both engines build the same training set.
    """

    matched: str
    aggregate: str
    dropped_units: str
    dropped_implausible: str
    demographics: str


def _agg_sql(d: Dialect) -> dict[str, str]:
    return {
        "first": d.arg_min("v", "t", "oid"),
        "last": d.arg_max("v", "t", "oid"),
        "min": "min(v)",
        "max": "max(v)",
        "mean": "avg(v)",
        "count": "count(v)",
        "since": f"{d.seconds_between('max(t)', 'any_value(index_time)')} / CAST(3600 AS DOUBLE)",
    }


def feature_queries(definition: FeatureDefinition, dialect: str = "duckdb") -> FeatureQueries:
    """The definition's feature SQL for an engine (``duckdb`` or ``spark``)."""
    d = get_dialect(dialect)
    ts = f"coalesce({d.to_timestamp('o.effective')}, {d.to_timestamp('o.effective_start')})"
    window = (
        ""
        if definition.window_hours is None
        else f"AND {ts} >= {d.minus_micros('i.index_time', int(definition.window_hours * 3_600_000_000))}"
    )
    matched = f"""
    WITH obs AS ({_view_sql("observations", dialect)}),
    coded AS (
        SELECT o.patient_id, o.observation_id AS oid, {_CODE} AS code, o.unit, CAST(o.value AS DOUBLE) AS value,
               {ts} AS t, i.index_time
        FROM obs o JOIN _medml_index i ON o.patient_id = i.patient_id
        WHERE o.value IS NOT NULL AND {_CODE} IN (SELECT code FROM _medml_measures)
          AND {ts} <= i.index_time {window}),
    matched AS (
        SELECT c.*, m.name, c.value * m.multiply / m.divide + m.offset AS v, m.lo, m.hi,
               m.name IS NOT NULL AS unit_ok
        FROM coded c LEFT JOIN _medml_measures m ON c.code = m.code AND coalesce(c.unit, '') = m.unit)
    SELECT * FROM matched
    """
    aggs = ", ".join(f"{sql} AS {d.quote(name)}" for name, sql in _agg_sql(d).items())
    days = d.days_between(d.to_date("p.birth_date"), "CAST(i.index_time AS DATE)")
    return FeatureQueries(
        matched=matched,
        aggregate=f"""SELECT patient_id, name, {aggs} FROM _medml_matched
                      WHERE unit_ok AND v BETWEEN lo AND hi GROUP BY patient_id, name""",
        dropped_units="""SELECT patient_id, code, coalesce(unit, '(none)') AS unit, count(*) AS n FROM _medml_matched
                         WHERE NOT unit_ok GROUP BY patient_id, code, coalesce(unit, '(none)')""",
        dropped_implausible="""SELECT patient_id, name, count(*) AS n FROM _medml_matched
                               WHERE unit_ok AND NOT (v BETWEEN lo AND hi) GROUP BY patient_id, name""",
        demographics=f"""
        SELECT i.patient_id, p.gender, {days} / CAST(365.25 AS DOUBLE) AS age_birth
        FROM _medml_index i LEFT JOIN ({_view_sql("patient_demographics", dialect)}) p ON p.patient_id = i.patient_id
        """,
    )


def index_table(index: pd.DataFrame) -> pa.Table:
    """The ``_medml_index`` table: patient ids and their index times as UTC instants."""
    utc = index["index_time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return pa.table(
        {
            "patient_id": pa.array(index["patient_id"], pa.string()),
            "index_time": pa.array(utc, pa.timestamp("us", tz="UTC")),
        }
    )


def build_features(
    source: FhirStore | Mapping[str, Any] | Iterable[dict[str, Any]],
    definition: FeatureDefinition,
    index_times: Mapping[str, datetime] | pd.Series | None = None,
) -> BuiltFeatures:
    """The definition's features for each patient at their index time (default: now, for every patient)."""
    store = as_store(source)
    con = store.con.cursor()
    if index_times is None:
        now = datetime.now(UTC)
        ids = [
            r[0] for r in con.execute("SELECT id FROM resources WHERE resource_type = 'Patient' ORDER BY id").fetchall()
        ]
        index_times = pd.Series(dict.fromkeys(ids, now), dtype=object)
    index = index_frame(index_times)
    queries = feature_queries(definition)
    con.register("_medml_index", index_table(index))
    con.register("_medml_measures", measure_table(definition))
    try:
        con.execute(f"CREATE TEMP TABLE _medml_matched AS {queries.matched}")
        long = con.execute(queries.aggregate).df()
        units = con.execute(queries.dropped_units).df()
        implausible = con.execute(queries.dropped_implausible).df()
        demo = con.execute(queries.demographics).df() if definition.age or definition.sex else None
    finally:
        con.execute("DROP TABLE IF EXISTS _medml_matched")
        con.unregister("_medml_index")
        con.unregister("_medml_measures")
        con.close()
    return assemble_features(definition, index, long, units, implausible, demo)


def assemble_features(
    definition: FeatureDefinition,
    index: pd.DataFrame,
    long: pd.DataFrame,
    dropped_units: pd.DataFrame,
    dropped_implausible: pd.DataFrame,
    demographics: pd.DataFrame | None,
) -> BuiltFeatures:
    """The features from the results of :func:`feature_queries`, whichever engine ran them."""
    X = _pivot(long, index, definition)
    if demographics is not None:
        demo = _demographics(definition, index, long, demographics)
        for col in demo.columns:
            X.insert(list(demo.columns).index(col), col, demo[col].to_numpy())
    X = X[definition.columns()]
    return BuiltFeatures(
        X=X.reset_index(drop=True),
        patient_ids=list(index["patient_id"]),
        index_times=index.set_index("patient_id")["index_time"],
        dropped_by_patient=_dropped(definition, dropped_units, dropped_implausible),
    )


def _dropped(
    definition: FeatureDefinition, units: pd.DataFrame, implausible: pd.DataFrame
) -> dict[str, dict[tuple[str, str], int]]:
    """Results left out, per patient: (measurement, "unit X" or "implausible") -> count."""
    by_code = {c: m.name for m in definition.measurements for c in m.codes} | {definition.age_loinc: "age"}
    out: dict[str, dict[tuple[str, str], int]] = {}
    for pid, code, unit, n in units.itertuples(index=False):
        mine = out.setdefault(str(pid), {})
        key = (by_code[code], f"unit {unit}")
        mine[key] = mine.get(key, 0) + int(n)
    for pid, name, n in implausible.itertuples(index=False):
        out.setdefault(str(pid), {})[(str(name), "implausible")] = int(n)
    return out


def _pivot(long: pd.DataFrame, index: pd.DataFrame, definition: FeatureDefinition) -> pd.DataFrame:
    pos = {pid: i for i, pid in enumerate(index["patient_id"])}
    columns = [c for m in definition.measurements for c in m.columns()]
    col_of = {c: j for j, c in enumerate(columns)}
    out = np.full((len(index), len(columns)), np.nan)
    for m in definition.measurements:  # a count of nothing is 0, not missing
        if not m.static and "count" in m.aggregates:
            out[:, col_of[f"{m.name}_count"]] = 0.0
    if not long.empty:
        by_name = {m.name: m for m in definition.measurements}
        for name, g in long.groupby("name", sort=False):
            if name not in by_name:  # the age Observations, read by _demographics
                continue
            m = by_name[str(name)]
            rows = np.array([pos[p] for p in g["patient_id"]], dtype=np.int64)
            for agg in ("first",) if m.static else m.aggregates:
                out[rows, col_of[m.name if m.static else f"{m.name}_{agg}"]] = g[agg].to_numpy(dtype=float)
    return pd.DataFrame(out, columns=columns)


def _demographics(
    definition: FeatureDefinition, index: pd.DataFrame, long: pd.DataFrame, pts: pd.DataFrame
) -> pd.DataFrame:
    pts = pts.drop_duplicates("patient_id").set_index("patient_id").reindex(index["patient_id"])
    out = pd.DataFrame(index=range(len(index)))
    if definition.age:
        age_obs = long[long["name"] == _AGE].set_index("patient_id")["last"].reindex(index["patient_id"])
        out[definition.age] = age_obs.fillna(pts["age_birth"]).to_numpy(dtype=float)
    if definition.sex:
        sex = pts["gender"].map(_SEX)
        out[definition.sex] = pd.Categorical(sex.to_numpy(), categories=list(_SEX.values()))
    return out
