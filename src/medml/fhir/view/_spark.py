"""Spark SQL (Spark 4) for the view compiler: the same views over resources parsed once per row into a VARIANT.

Resources are stored as JSON text (Parquet or a table: portable, and what DuckDB reads too); the FROM item parses each
one once with ``parse_json`` into Spark's binary semi-structured VARIANT, and every path reads that with
``try_variant_get``. A JSON value is a VARIANT, a list an ARRAY; ``[*]`` wildcards, which variant paths lack, become
``transform``/``flatten`` over ``ARRAY<VARIANT>``. Lambdas are Spark's ``x -> ...``; ``transform``'s index is 0-based.

Why VARIANT rather than ``get_json_object`` on the text or ``from_json`` with a schema: ``get_json_object`` re-parses
the text for every path (a view reads 10-20), unwraps a one-element ``[*]`` result and cannot tell a JSON string from
text; a schema for every FHIR resource is large, differs by resource type and drops what it does not name. The
measurements are in ``benchmarks/results-spark.md``. This module imports no pyspark: it only writes SQL text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from medml.fhir.view._dialect import Dialect

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\."((?:[^"\\]|\\.)*)"|\[(\*|-?\d+)\]')
_TYPES = {
    "VARCHAR": "STRING",
    "JSON": "VARIANT",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
}


def _steps(path: str) -> list[str]:
    """A DuckDB-style JSONPath ('$.a[*]."b c"[0]') as steps: names, '*' and indexes ('#0')."""
    if not path.startswith("$"):
        raise ValueError(f"not a JSONPath: {path!r}")
    steps, pos = [], 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ValueError(f"cannot read JSONPath {path!r} at {pos}")
        name, quoted, index = m.groups()
        if name is not None:
            steps.append("." + name)
        elif quoted is not None:
            steps.append("." + re.sub(r"\\(.)", r"\1", quoted))
        else:
            steps.append("*" if index == "*" else "#" + index)
        pos = m.end()
    return steps


def _variant_path(steps: list[str]) -> str:
    """Wildcard-free steps as a variant path: ``$.a['b c'][0]``."""
    out = "$"
    for st in steps:
        if st.startswith("#"):
            out += f"[{st[1:]}]"
        elif _IDENT.match(st[1:]):
            out += st
        else:
            out += "['" + st[1:].replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


class SparkDialect(Dialect):
    """Spark SQL 4 (VARIANT, higher-order functions); written for ANSI mode, Spark 4's default."""

    name = "spark"
    json_sql_type = "VARIANT"
    text_is_json = False

    # --- literals and names -------------------------------------------------------------------------------------
    def literal(self, value: object) -> str:
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        if isinstance(value, float):
            return repr(value) + "D"
        return super().literal(value)

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def source(self, table: str) -> str:
        return (
            f"(SELECT resource_type, id, parse_json(resource) AS resource, resource AS raw "
            f"FROM {self.quote(table)}) AS r"
        )

    def extra_extracts(self) -> list[str]:
        return ["r.raw AS _raw"]

    def number_text(self, path: str) -> str | None:
        # VARIANT keeps 1.50 as 1.5; the text, read again for this one path, keeps what was written
        return f"get_json_object(_r._raw, {self.literal(path)})"

    # --- JSON ------------------------------------------------------------------------------------------------------
    def _get(self, base: str, steps: list[str], spark_type: str) -> str:
        return f"try_variant_get({base}, {self.literal(_variant_path(steps))}, {self.literal(spark_type)})"

    def json_path(self, base: str, path: str, as_text: bool) -> str:
        steps = _steps(path)
        if "*" not in steps:
            return self._get(base, steps, "string" if as_text else "variant")
        head = steps.index("*")
        lst = self._get(base, steps[:head], "array<variant>")
        rest = steps[head + 1 :]
        while "*" in rest:
            nxt = rest.index("*")
            x = "_jx"
            inner = f"coalesce({self._get(x, rest[:nxt], 'array<variant>')}, CAST(array() AS ARRAY<VARIANT>))"
            lst = f"flatten(transform({lst}, {x} -> {inner}))"
            rest = rest[nxt + 1 :]
        if rest:  # members missing from an element are left out; JSON nulls stay (as DuckDB's json_extract)
            lst = f"filter(transform({lst}, _jx -> {self._get('_jx', rest, 'variant')}), _jz -> _jz IS NOT NULL)"
        if as_text:
            lst = f"transform({lst}, _jx -> CAST(_jx AS STRING))"
        return lst

    def json_paths(self, base: str, paths: list[str], as_text: bool) -> str:
        kind = "string" if as_text else "variant"
        return "array(" + ", ".join(self._get(base, _steps(p), kind) for p in paths) + ")"

    def json_records(self, base: str, keys: list[str], structure: str) -> str:
        access = "".join("." + self.quote(k) for k in keys)
        return f"coalesce(try_variant_get({base}, '$', {structure}){access}, array())"

    def json_shape(self, spec: object) -> str:
        return self.literal(self._shape_type(spec))

    def _shape_type(self, spec: Any) -> str:
        if isinstance(spec, list):
            return f"ARRAY<{self._shape_type(spec[0])}>"
        if isinstance(spec, dict):
            return "STRUCT<" + ", ".join(f"{self.quote(k)}: {self._shape_type(v)}" for k, v in spec.items()) + ">"
        return _TYPES[str(spec)]

    def json_type(self, base: str, path: str) -> str:
        v = self._get(base, _steps(path), "variant")
        return (
            f"(CASE WHEN {v} IS NULL THEN NULL WHEN is_variant_null({v}) THEN 'NULL' "
            f"ELSE regexp_extract(schema_of_variant({v}), '^[A-Z]+', 0) END)"
        )

    def json_to_text(self, value: str) -> str:
        return f"CAST({value} AS STRING)"

    # --- lists ------------------------------------------------------------------------------------------------------
    def lam(self, params: list[str], body: str) -> str:
        return f"{params[0]} -> {body}" if len(params) == 1 else f"({', '.join(params)}) -> {body}"

    def transform(self, lst: str, params: list[str], body: str) -> str:
        return f"transform({lst}, {self.lam(params, body)})"

    def filter(self, lst: str, param: str, body: str) -> str:
        return f"filter({lst}, {self.lam([param], body)})"

    def flatten(self, lst: str) -> str:
        return f"flatten(filter({lst}, _fz -> _fz IS NOT NULL))"

    def concat(self, *lists: str) -> str:
        return lists[0] if len(lists) == 1 else f"concat({', '.join(lists)})"

    def length(self, lst: str) -> str:
        return f"size({lst})"

    def element(self, lst: str, index1: str) -> str:
        if re.fullmatch(r"-?\d+", index1.strip()):
            return f"try_element_at({lst}, {int(index1)})" if int(index1) != 0 else "NULL"
        i = f"CAST({index1} AS INT)"
        return f"(CASE WHEN {i} <> 0 THEN try_element_at({lst}, {i}) END)"

    def index0(self, index: str) -> str:
        return index

    def list_type(self, elem_type: str) -> str:
        return f"ARRAY<{_TYPES.get(elem_type, elem_type)}>"

    def list_of(self, items: list[str], elem_type: str | None = None) -> str:
        if not items and elem_type:
            return f"CAST(array() AS {self.list_type(elem_type)})"
        return "array(" + ", ".join(items) + ")"

    def distinct(self, lst: str, json: bool = False) -> str:
        kept = f"filter({lst}, _dz -> _dz IS NOT NULL)"
        if json:  # VARIANT is not comparable: compare the JSON text
            return f"transform(array_distinct(transform({kept}, _dz -> to_json(_dz))), _dz -> parse_json(_dz))"
        return f"array_distinct({kept})"

    def contains(self, lst: str, value: str) -> str:
        return f"array_contains({lst}, {value})"

    def reduce(self, lst: str, acc: str, item: str, body: str, initial: str) -> str:
        return f"aggregate({lst}, {initial}, {self.lam([acc, item], body)})"

    def range(self, n: int) -> str:
        return f"sequence(0, {n - 1})"

    def sort(self, lst: str) -> str:
        return f"array_sort({lst})"

    def sort_by(self, lst: str, key: str) -> str:
        k = self.quote(key)
        order = f"CASE WHEN _sa.{k} < _sb.{k} THEN -1 WHEN _sa.{k} > _sb.{k} THEN 1 ELSE 0 END"
        return f"array_sort({lst}, (_sa, _sb) -> {order})"

    def join(self, lst: str, sep: str) -> str:
        return f"coalesce(array_join({lst}, {sep}), '')"

    # --- rows -------------------------------------------------------------------------------------------------------
    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "named_struct(" + ", ".join(f"{self.literal(k)}, {v}" for k, v in fields) + ")"

    def field(self, struct: str, name: str) -> str:
        return f"{struct}.{self.quote(name)}" if _IDENT.match(struct) else f"({struct}).{self.quote(name)}"

    def struct_type(self, fields: list[tuple[str, str]]) -> str:
        return "STRUCT<" + ", ".join(f"{self.quote(k)}: {_TYPES.get(t, t)}" for k, t in fields) + ">"

    def unnest_rows(self, rows: str, alias: str) -> str:
        return f"explode({rows}) AS {alias}"

    def fence(self) -> str:
        return ""

    # --- types, errors, strings -------------------------------------------------------------------------------------
    def sql_type(self, fhir_type: str | None, kind: str) -> str:
        return _TYPES.get(super().sql_type(fhir_type, kind), "STRING")

    def cast(self, value: str, sql_type: str, strict: bool = False) -> str:
        spark_type = _TYPES.get(sql_type, sql_type)
        return f"{'CAST' if strict else 'try_cast'}({value} AS {spark_type})"

    def error(self, message: str) -> str:
        return f"raise_error({self.literal(message)})"

    def regex_extract(self, value: str, pattern: str, group: int) -> str:
        return f"nullif(regexp_extract({value}, {self.literal(pattern)}, {group}), '')"

    def regex_matches(self, value: str, pattern: str) -> str:
        return f"({value} RLIKE {self.literal(pattern)})"

    def str_length(self, value: str) -> str:
        return f"length({value})"

    def int_div(self, x: str, y: str) -> str:
        return f"CAST({x} / {y} AS BIGINT)"

    def last_day_of_month(self, year_month: str) -> str:
        return f"date_format(last_day(to_date({year_month} || '-01')), 'yyyy-MM-dd')"

    def to_json_text(self, value: object) -> str:
        return self.literal(json.dumps(value))

    # --- feature aggregation ----------------------------------------------------------------------------------------
    def arg_min(self, value: str, *order: str) -> str:
        return f"min_by({value}, struct({', '.join(order)}))"

    def arg_max(self, value: str, *order: str) -> str:
        return f"max_by({value}, struct({', '.join(order)}))"

    def to_timestamp(self, text: str) -> str:
        return f"try_cast({text} AS TIMESTAMP)"

    def minus_micros(self, timestamp: str, micros: int) -> str:
        return f"timestamp_micros(unix_micros({timestamp}) - {int(micros)})"

    def seconds_between(self, start: str, end: str) -> str:
        return f"(unix_seconds({end}) - unix_seconds({start}))"

    def days_between(self, start: str, end: str) -> str:
        return f"datediff({end}, {start})"
