"""One patient's features in plain Python, compiled from the same views and :class:`FeatureDefinition` as training.

:func:`medml.fhir.features.build_features` runs the ``observations`` and ``patient_demographics`` ViewDefinitions and
the aggregates in DuckDB: the reference, for training and cohorts. A CDS request holds one patient's few hundred
resources already parsed; planning SQL for them costs more than the arithmetic. :class:`FeatureRowProgram` compiles
the same ViewDefinitions (their FHIRPath, parsed by the view engine's own parser) into Python functions of one
resource, and the definition's measurements into lookup tables, once per deployment; :meth:`FeatureRowProgram.row`
then reads a patient's resources with no SQL engine.

Equal numbers are the contract, and it is kept narrow on purpose: where the data take a shape whose SQL meaning is
not plainly the same in Python (a value that is a string, a dateTime without a time zone or with more than
microseconds, a birthDate that is not a full date, two results tied on time and id with different values, a
resource nested deeper than the store takes), :class:`Unsupported` is raised and the caller asks the reference.
``tests/fhir/test_feature_row.py`` runs both on every stay of PhysioNet 2012 set A and on generated variations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from medml.fhir.features import _AGE, _SEX, Conversion, FeatureDefinition
from medml.fhir.store import MAX_DEPTH
from medml.fhir.view import _elements as el
from medml.fhir.view._fhirpath import Binary, Call, Literal, Member, Node, This, parse
from medml.fhir.views import get_view

__all__ = ["FeatureRowProgram", "PatientFeatures", "Unsupported", "compile_columns"]


class Unsupported(Exception):
    """Data (or a view) whose meaning this path does not decide the same way as the SQL reference: ask DuckDB."""


# ---- a ViewDefinition's columns as Python functions of one resource -------------------------------------------------
#
# Each FHIRPath is compiled to one Python expression: a path that FHIR says gives at most one value is a plain value
# (or None), a repeating one a list; the view's selections then call one generated function per focus. The shape
# checks raise Unsupported where the data do not have FHIR's shape (a list where one value belongs), because the SQL
# reads those as nothing and a plain walk would read them as something.

_REF = r"(?:^|/)({type})/([A-Za-z0-9\-\.]{{1,64}})(?:/_history/[^/]*)?\Z"
#: column types whose SQL value is the JSON text (the rest here: decimal, a TRY_CAST to DOUBLE)
_TEXT_TYPES = {"string", "code", "uri", "id", "dateTime", "date", "instant", "markdown", "url", "canonical"}


def _g1(x: Any, name: str) -> Any:
    """Member ``name`` of one value that FHIR does not repeat."""
    if x is None:
        return None
    if type(x) is not dict:
        raise Unsupported(f"{name} of a {type(x).__name__}")
    v = x.get(name)
    if type(v) is list:
        raise Unsupported(f"{name} is a list where FHIR has one value")
    return v


def _gl(x: Any, name: str) -> list[Any]:
    """Member ``name`` of one value, an element that FHIR repeats."""
    if x is None:
        return []
    if type(x) is not dict:
        raise Unsupported(f"{name} of a {type(x).__name__}")
    v = x.get(name)
    if v is None:
        return []
    if type(v) is not list or None in v:
        raise Unsupported(f"{name} is not a list where FHIR has one")
    return v


def _ml(items: list[Any], name: str, repeats: bool | None) -> list[Any]:
    """Member ``name`` of each of several values."""
    out: list[Any] = []
    for it in items:
        if type(it) is not dict:
            raise Unsupported(f"{name} of a {type(it).__name__}")
        v = it.get(name)
        if v is None:
            continue
        if type(v) is list:
            if repeats is False or None in v:
                raise Unsupported(f"{name} is a list where FHIR has one value")
            out.extend(v)
        elif repeats:
            raise Unsupported(f"{name} is one value where FHIR has a list")
        else:
            out.append(v)
    return out


def _text(v: Any) -> str:
    if type(v) is not str:
        raise Unsupported(f"a {type(v).__name__} where FHIR has a string")
    return v


def _num(v: Any) -> float | None:
    if v is None:
        return None
    if type(v) is not int and type(v) is not float:
        raise Unsupported(f"a {type(v).__name__} where FHIR has a number")
    return float(v)


def _str(v: Any) -> str | None:
    return None if v is None else _text(v)


def _single(items: list[Any]) -> Any:
    if len(items) > 1:
        raise Unsupported("several values for a column of one")
    return items[0] if items else None


def _eq(a: Any, b: Any, negate: bool) -> bool | None:
    if a is None or b is None:
        return None
    return (_text(a) == _text(b)) != negate


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return True if a is True and b is True else None


def _refkey(ref: Any, pattern: re.Pattern[str]) -> str | None:
    if ref is None:
        return None
    m = pattern.search(_text(ref))
    return m.group(2) if m else None


class _Gen:
    """The namespace and fresh names of the generated expressions."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {f.__name__: f for f in (_g1, _gl, _ml, _num, _str, _single, _eq, _and, _refkey)}
        self.n = 0

    def fresh(self, prefix: str = "_v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def function(self, args: str, body: str) -> Callable[..., Any]:
        fn: Callable[..., Any] = eval(
            f"lambda {args}: {body}", self.env
        )  # our own generated code, from the view's parsed FHIRPath
        return fn


def _type_name(node: Node) -> str:
    if isinstance(node, Member) and isinstance(node.base, This):
        return node.name
    raise Unsupported(f"a type name is expected, not {node}")


def _expr(node: Node, ctx: str | None, focus: str, g: _Gen) -> tuple[str, bool, str | None]:
    """A FHIRPath node as (Python expression, whether it gives a list, the type context it gives)."""
    if isinstance(node, This):
        return focus, False, ctx
    if isinstance(node, Literal):
        if node.kind not in ("str", "bool"):
            raise Unsupported(f"literal {node.value!r}")
        return repr(node.value), False, None
    if isinstance(node, Member):
        base, many, bctx = _expr(node.base, ctx, focus, g)
        if el.choice_types(bctx, node.name) is not None:
            raise Unsupported(f"choice element {node.name} without ofType")
        elem = el.child(bctx, node.name)
        if many or elem.repeats is None:
            items = base if many else f"[{base}]"
            return f"_ml({items}, {node.name!r}, {elem.repeats!r})", True, elem.context
        if elem.repeats:
            return f"_gl({base}, {node.name!r})", True, elem.context
        return f"_g1({base}, {node.name!r})", False, elem.context
    if isinstance(node, Call):
        return _call(node, ctx, focus, g)
    if isinstance(node, Binary):
        left, lmany, _ = _expr(node.left, ctx, focus, g)
        right, rmany, _ = _expr(node.right, ctx, focus, g)
        left, right = (f"_single({left})" if lmany else left), (f"_single({right})" if rmany else right)
        if node.op in ("=", "!="):
            return f"_eq({left}, {right}, {node.op == '!='})", False, "boolean"
        if node.op == "and":
            return f"_and({left}, {right})", False, "boolean"
    raise Unsupported(f"FHIRPath {node}")


def _call(node: Call, ctx: str | None, focus: str, g: _Gen) -> tuple[str, bool, str | None]:
    name = node.name
    if name == "getResourceKey" and isinstance(node.base, This) and not node.args:
        return "_res['id']", False, "string"
    if name == "ofType" and len(node.args) == 1 and isinstance(node.base, Member):
        t = _type_name(node.args[0])
        _, _, pctx = _expr(node.base.base, ctx, focus, g)
        choices = el.choice_types(pctx, node.base.name)
        if choices is not None:
            if t not in choices:
                return "None", False, None
            return _expr(Member(node.base.base, node.base.name + t[0].upper() + t[1:]), ctx, focus, g)
        raise Unsupported(f"ofType({t}) of something that is not a choice element")
    base, many, bctx = _expr(node.base, ctx, focus, g)
    if name == "first" and not node.args:
        return (f"({base} or [None])[0]" if many else base), False, bctx
    if name == "where" and len(node.args) == 1:
        v = g.fresh()
        cond, cmany, _ = _expr(node.args[0], bctx, v, g)
        if cmany:
            cond = f"_single({cond})"
        if many:
            return f"[{v} for {v} in {base} if {cond} is True]", True, bctx
        return f"(lambda {v}: {v} if {v} is not None and {cond} is True else None)({base})", False, bctx
    if name == "getReferenceKey" and len(node.args) <= 1:
        pattern = g.fresh("_p")
        g.env[pattern] = re.compile(_REF.format(type=_type_name(node.args[0]) if node.args else "[A-Za-z]+"))
        if many:
            r = g.fresh()
            refs = f"_ml({base}, 'reference', False)"
            return f"[k for k in ([_refkey({r}, {pattern}) for {r} in {refs}]) if k is not None]", True, "string"
        return f"_refkey(_g1({base}, 'reference'), {pattern})", False, "string"
    raise Unsupported(f"FHIRPath function {name}()")


def _columns_fn(cols: list[dict[str, Any]], ctx: str, g: _Gen) -> Callable[[Any, dict[str, Any]], tuple[Any, ...]]:
    parts = []
    for c in cols:
        if c.get("collection"):
            raise Unsupported("collection columns")
        ftype = c.get("type", "string")
        if ftype != "decimal" and ftype not in _TEXT_TYPES:
            raise Unsupported(f"column type {ftype}")
        expr, many, _ = _expr(parse(c["path"]), ctx, "_f", g)
        if many:
            expr = f"_single({expr})"
        parts.append(expr if expr == "_res['id']" else f"{'_num' if ftype == 'decimal' else '_str'}({expr})")
    fn: Callable[[Any, dict[str, Any]], tuple[Any, ...]] = g.function(
        "_f, _res", "(" + "".join(f"{p}, " for p in parts) + ")"
    )
    return fn


Rows = list[tuple[Any, ...]]


def _select_fn(
    sel: Mapping[str, Any], ctx: str, wanted: set[str], g: _Gen
) -> tuple[Callable[[Any, dict[str, Any]], Rows], list[str]]:
    """The rows one selection gives for a focus (tuples) and their column names, only the ``wanted`` columns."""
    if "repeat" in sel or "forEachOrNull" in sel:
        raise Unsupported("repeat and forEachOrNull are not compiled here")
    inner_ctx = ctx
    each = None
    if "forEach" in sel:
        expr, many, ectx = _expr(parse(sel["forEach"]), ctx, "_f", g)
        each = g.function("_f, _res", expr if many else f"[] if ({expr}) is None else [{expr}]")
        inner_ctx = ectx or ctx
    mine = [c for c in sel.get("column", ()) if c["name"] in wanted]
    columns = _columns_fn(mine, inner_ctx, g)
    names = [c["name"] for c in mine]
    parts = []
    for sub in sel.get("select", ()):
        fn, sub_names = _select_fn(sub, inner_ctx, wanted, g)
        parts.append(fn)
        names += sub_names
    unions = []
    union_names: list[str] | None = None
    for sub in sel.get("unionAll", ()):
        fn, sub_names = _select_fn(sub, inner_ctx, wanted, g)
        if union_names is not None and sub_names != union_names:
            raise Unsupported("unionAll branches with columns in another order")
        union_names = sub_names
        unions.append(fn)
    names += union_names or []

    def body(focus: Any, res: dict[str, Any]) -> Rows:
        rows: Rows = [columns(focus, res)]
        for part in parts:
            rows = [a + b for a in rows for b in part(focus, res)]
        if unions:
            branch = [r for u in unions for r in u(focus, res)]
            rows = [a + b for a in rows for b in branch]
        return rows

    if each is None:
        return body, names
    fe = each
    return (lambda focus, res: [r for item in fe(focus, res) for r in body(item, res)]), names


def compile_columns(
    view: Mapping[str, Any], wanted: Iterable[str]
) -> tuple[Callable[[dict[str, Any]], Rows], list[str]]:
    """A view's rows for one resource (tuples of the ``wanted`` columns, in the view's order) and their names;
    Unsupported for a view whose FHIRPath or structure this path does not compile."""
    rtype = str(view["resource"])
    g = _Gen()
    rows, names = _select_fn({"select": view.get("select", [])}, rtype, set(wanted), g)
    conditions = []
    for w in view.get("where", ()):
        expr, many, _ = _expr(parse(w["path"]), rtype, "_f", g)
        conditions.append(f"({f'_single({expr})' if many else expr}) is True")
    where = g.function("_f, _res", " and ".join(conditions) or "True")

    def run(res: dict[str, Any]) -> Rows:
        return rows(res, res) if where(res, res) else []

    return run, names


def _too_deep(value: Any, budget: int) -> bool:
    """Whether a JSON value nests deeper than ``budget`` levels (the store refuses a resource past MAX_DEPTH)."""
    if budget <= 0:
        return True
    for v in value.values() if type(value) is dict else value:
        t = type(v)
        if (t is dict or t is list) and _too_deep(v, budget - 1):
            return True
    return False


# ---- FHIR dateTime and date, as DuckDB's casts read them -----------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_PARTIAL_DATE = re.compile(r"\d{4}(?:-\d{2})?\Z")
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def instant_us(text: str) -> int:
    """Microseconds since the epoch of a FHIR dateTime with a time zone (what ``TRY_CAST(... AS TIMESTAMPTZ)`` gives);
    Unsupported for the other forms (a date, no zone, more than microseconds), whose cast depends on the session."""
    m = _DATETIME.match(text)
    if m is None:
        raise Unsupported(f"dateTime {text!r}")
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    try:
        day = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise Unsupported(f"dateTime {text!r}") from None
    hh, mm, ss = int(h), int(mi), int(s)
    if hh > 23 or mm > 59 or ss > 59 or (z is None and (int(oh) > 14 or int(om) > 59)):
        raise Unsupported(f"dateTime {text!r}")
    offset = 0 if z else (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
    micros = int(frac.ljust(6, "0")) if frac else 0
    return ((day * 86400 + hh * 3600 + mm * 60 + ss - offset) * 1_000_000) + micros


def _date_of(text: str) -> date | None:
    """A FHIR date as ``TRY_CAST(... AS DATE)`` reads it: a full date; a year or year-month (FHIR's partial dates)
    is no date (NULL); other forms are Unsupported."""
    if _PARTIAL_DATE.match(text):
        return None
    m = _DATE.match(text)
    if m is None:
        raise Unsupported(f"date {text!r}")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None  # 1946-02-30: TRY_CAST gives NULL


def _epoch_us(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("index times must be timezone-aware")
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // _MICRO


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1) - datetime(1970, 1, 1)


# ---- the program ----------------------------------------------------------------------------------------------------

_OBS_COLUMNS = (
    "observation_id",
    "patient_id",
    "effective",
    "effective_start",
    "code",
    "coding_system",
    "coding_code",
    "value",
    "unit",
)


@dataclass(frozen=True)
class _Measure:
    """One row of build_features' measure table: a (code, unit) a measurement accepts, and its conversion."""

    name: str
    multiply: float
    divide: float
    offset: float
    lo: float
    hi: float


@dataclass
class PatientFeatures:
    """One patient's features in ``definition.columns()`` order (sex as "Female"/"Male"/None, the rest floats),
    the measurements with no usable result, and the results left out (as :class:`BuiltFeatures` gives them)."""

    values: list[Any]
    missing: list[str]
    dropped: dict[tuple[str, str], int]


class FeatureRowProgram:
    """A :class:`FeatureDefinition` compiled for one patient at a time: :meth:`row` gives what ``build_features``
    gives for that patient, or raises :class:`Unsupported` where the reference must decide."""

    def __init__(self, definition: FeatureDefinition) -> None:
        self.definition = definition
        self.columns = definition.columns()
        self._observations, names = compile_columns(get_view("observations"), _OBS_COLUMNS)
        self._obs_fields = itemgetter(*(names.index(c) for c in _OBS_COLUMNS))
        patient_columns = ("patient_id", "gender", "birth_date")
        self._patients, names = compile_columns(get_view("patient_demographics"), patient_columns)
        self._patient_fields = itemgetter(*(names.index(c) for c in patient_columns))
        self._measures: dict[tuple[str, str], list[_Measure]] = {}
        for m in definition.measurements:
            lo, hi = m.plausible if m.plausible else (-math.inf, math.inf)
            for code in m.codes:
                for c in (Conversion(m.unit), *m.conversions):
                    self._measures.setdefault((code, c.unit), []).append(
                        _Measure(m.name, c.multiply, c.divide, c.offset, lo, hi)
                    )
        if definition.age:
            self._measures.setdefault((definition.age_loinc, "a"), []).append(_Measure(_AGE, 1.0, 1.0, 0.0, 0.0, 150.0))
        self._codes = {code for code, _ in self._measures}
        self._by_code = {c: m.name for m in definition.measurements for c in m.codes} | {definition.age_loinc: "age"}
        self._window_us = None if definition.window_hours is None else int(definition.window_hours * 3_600_000_000)
        self._col = {c: j for j, c in enumerate(self.columns)}

    def row(self, resources: Iterable[dict[str, Any]], patient_id: str, index_time: datetime) -> PatientFeatures:
        """The patient's features at ``index_time`` from their resources (Patient, Observations; others ignored)."""
        kept: dict[tuple[str, str], dict[str, Any]] = {}
        for res in resources:  # the store keeps the last resource of a type and id
            rid = res.get("id")
            if type(rid) is not str or not rid:
                raise Unsupported("a resource without an id (the store refuses it)")
            if _too_deep(res, MAX_DEPTH):
                raise Unsupported("a resource nested deeper than the store takes")
            rtype = res.get("resourceType")
            if rtype in ("Observation", "Patient"):
                kept[(str(rtype), rid)] = res
        idx = _epoch_us(index_time)
        lo_t = None if self._window_us is None else idx - self._window_us
        groups: dict[str, list[tuple[int, str, float]]] = {}
        dropped: dict[tuple[str, str], int] = {}
        patients = []
        instants: dict[str, int] = {}
        for (rtype, _), res in kept.items():
            if rtype == "Patient":
                patients += [p for p in map(self._patient_fields, self._patients(res)) if p[0] == patient_id]
                continue
            for r in self._observations(res):
                oid, pid, effective, effective_start, code, system, coding, value, unit = self._obs_fields(r)
                if value is None or pid != patient_id:
                    continue
                if code is None:
                    code = None if system is None or coding is None else f"{system}|{coding}"
                if code not in self._codes:
                    continue
                text = effective if effective is not None else effective_start
                if text is None:
                    continue
                t = instants.get(text)
                if t is None:
                    t = instants[text] = instant_us(text)
                if t > idx or (lo_t is not None and t < lo_t):
                    continue
                matched = self._measures.get((code, unit if unit is not None else ""))
                if matched is None:
                    key = (self._by_code[code], f"unit {'(none)' if unit is None else unit}")
                    dropped[key] = dropped.get(key, 0) + 1
                    continue
                for c in matched:
                    v = value * c.multiply / c.divide + c.offset
                    if c.lo <= v <= c.hi:
                        groups.setdefault(c.name, []).append((t, oid, v))
                    else:
                        key = (c.name, "implausible")
                        dropped[key] = dropped.get(key, 0) + 1
        values: list[Any] = [math.nan] * len(self.columns)
        col = self._col
        for m in self.definition.measurements:
            if not m.static and "count" in m.aggregates:
                values[col[f"{m.name}_count"]] = 0.0
            got = groups.get(m.name)
            if not got:
                continue
            aggs = _aggregate(got, idx, ("first",) if m.static else m.aggregates)
            for a, v in aggs.items():
                values[col[m.name if m.static else f"{m.name}_{a}"]] = v
        self._demographics(values, patients, groups.get(_AGE), idx, index_time)
        return PatientFeatures(values=values, missing=self._missing(values), dropped=dropped)

    def _demographics(
        self,
        values: list[Any],
        patients: list[tuple[Any, ...]],
        ages: list[tuple[int, str, float]] | None,
        idx: int,
        index_time: datetime,
    ) -> None:
        d = self.definition
        if not (d.age or d.sex):
            return
        if len(patients) > 1:
            raise Unsupported("the patient twice")
        _, gender, birth_date = patients[0] if patients else (None, None, None)
        if d.age:
            if ages:
                age = _aggregate(ages, idx, ("last",))["last"]
            else:
                born = None if birth_date is None else _date_of(birth_date)
                # DuckDB casts the index time to a DATE in its session's zone: the machine's, as Python's local one
                age = math.nan if born is None else (index_time.astimezone().date() - born).days / 365.25
            values[self._col[d.age]] = age
        if d.sex:
            values[self._col[d.sex]] = _SEX.get(gender) if gender is not None else None

    def _missing(self, values: list[Any]) -> list[str]:
        out = []
        col = self._col
        for m in self.definition.measurements:
            if m.static:
                empty = math.isnan(values[col[m.name]])
            else:
                shown = [a for a in m.aggregates if a != "count"]
                empty = (
                    math.isnan(values[col[f"{m.name}_{shown[0]}"]]) if shown else values[col[f"{m.name}_count"]] == 0
                )
            if empty:
                out.append(m.label)
        return out

    def as_dict(self, features: PatientFeatures, columns: list[str] | None = None) -> dict[str, Any]:
        """One row by column (a missing sex as NaN, as a row of :meth:`frame` reads)."""
        col = self._col
        out = {c: features.values[col[c]] for c in columns or self.columns}
        if self.definition.sex in out and out[self.definition.sex] is None:
            out[self.definition.sex] = math.nan
        return out

    def frame(self, rows: list[PatientFeatures], columns: list[str] | None = None) -> pd.DataFrame:
        """Rows as the DataFrame ``build_features`` gives (numeric float64, sex as labels), in ``columns`` order."""
        columns = columns or self.columns
        sex = self.definition.sex
        numeric = [c for c in columns if c != sex]
        pick = [self._col[c] for c in numeric]
        block = np.array([[r.values[j] for j in pick] for r in rows], dtype=float).reshape(len(rows), len(pick))
        X = pd.DataFrame(block, columns=numeric)
        if sex and sex in columns:
            # as build_features inserts it: the values of a categorical as an array (missing: NaN)
            j = self._col[sex]
            labels = np.array([math.nan if r.values[j] is None else r.values[j] for r in rows], dtype=object)
            X.insert(columns.index(sex), sex, labels)
        return X


def _aggregate(rows: list[tuple[int, str, float]], idx: int, wanted: Iterable[str]) -> dict[str, float]:
    """The aggregates of ``_AGG_SQL`` over one measurement's usable results (time, observation id, value)."""
    out: dict[str, float] = {}
    for a in wanted:
        if a in ("first", "last"):
            # arg_min/arg_max over (time, id): a tie with different values has no one answer
            key = min(r[:2] for r in rows) if a == "first" else max(r[:2] for r in rows)
            tied = {r[2] for r in rows if r[:2] == key}
            if len(tied) > 1:
                raise Unsupported("results tied on time and id with different values")
            out[a] = tied.pop()
        elif a == "min":
            out[a] = min(r[2] for r in rows)
        elif a == "max":
            out[a] = max(r[2] for r in rows)
        elif a == "mean":
            out[a] = math.fsum(r[2] for r in rows) / len(rows)
        elif a == "count":
            out[a] = float(len(rows))
        elif a == "since":
            out[a] = (idx // 1_000_000 - max(r[0] for r in rows) // 1_000_000) / 3600.0
    return out
