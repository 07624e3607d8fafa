"""The SQL dialect seam: every engine-specific piece of SQL the view compiler emits comes from a :class:`Dialect`.

A dialect must provide:

- JSON access on a JSON (or JSON text) value: ``json_path`` (one JSONPath, ``[*]`` wildcards flattening arrays into a
  list), ``json_paths`` (several wildcard-free paths parsed once), ``json_records`` (an array of objects as a list of
  structs, shaped by ``json_shape``), ``json_type``;
- lists and lambdas: ``lam`` (one- or two-parameter lambda, the second a 1-based index), ``transform``, ``filter``,
  ``flatten``, ``concat``, ``length``, ``element`` (1-based), ``reduce`` (with an initial value), ``sort``,
  ``list_of``, ``join``;
- rows as values: ``struct`` and ``field``, and ``unnest_rows`` to turn a list of structs into rows; ``fence``, an
  optimisation barrier after the per-resource extraction;
- ``sql_type`` (FHIR type to column type), ``cast``, ``literal``, ``quote`` (identifiers), ``error`` (raise at run
  time) and ``regex_extract``.

``DuckDbDialect`` is the reference; ``SparkDialect`` (``_spark.py``, loaded on first use of ``"spark"``) maps the
same methods onto Spark 4's VARIANT (``parse_json``/``try_variant_get``), ``transform``/``filter``/``aggregate`` and
``explode``. The feature aggregation of :mod:`medml.fhir.features` (``arg_min``, timestamps, date differences) goes
through the dialect too, so both engines build the same training set.
"""

from __future__ import annotations

import json
import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class Dialect:
    """DuckDB 1.3+ SQL (lambda syntax ``lambda x: ...``); subclass and override for another engine."""

    name = "duckdb"
    #: the SQL type of a JSON value
    json_sql_type = "JSON"
    #: whether a JSON object's text can be read as JSON again (one text extraction then serves both uses)
    text_is_json = True

    # --- literals and names -------------------------------------------------------------------------------------
    def literal(self, value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return repr(value)
        return "'" + str(value).replace("'", "''") + "'"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def source(self, table: str) -> str:
        """The FROM item of the stored resources, aliased ``r``: (resource_type, id, resource as JSON)."""
        return f"{self.quote(table)} AS r"

    # --- JSON ------------------------------------------------------------------------------------------------------
    def json_path(self, base: str, path: str, as_text: bool) -> str:
        """Value(s) at a JSONPath ('$.a[*].b'); with a wildcard, a list. ``as_text`` unquotes strings."""
        fn = "json_extract_string" if as_text else "json_extract"
        return f"{fn}({base}, {self.literal(path)})"

    def json_paths(self, base: str, paths: list[str], as_text: bool) -> str:
        """One list holding the value at each wildcard-free path, the document parsed once."""
        fn = "json_extract_string" if as_text else "json_extract"
        return f"{fn}({base}, [{', '.join(self.literal(p) for p in paths)}])"

    def json_records(self, base: str, keys: list[str], structure: str) -> str:
        """The JSON array at ``base`` (after the object keys ``keys``) as a list of structs, parsed once.

        ``structure`` is the SQL of a :meth:`json_shape` of the array nested in ``keys``; an absent array is an empty
        list.
        """
        access = "".join("." + self.quote(k) for k in keys)
        return f"coalesce(json_transform({base}, {structure}){access}, [])"

    def json_shape(self, spec: object) -> str:
        """The SQL of a ``json_transform`` structure: ``"VARCHAR"`` text, ``"JSON"``, ``[spec]``, ``{name: spec}``."""
        return self.literal(json.dumps(spec))

    def json_type(self, base: str, path: str) -> str:
        return f"json_type({base}, {self.literal(path)})"

    def number_text(self, path: str) -> str | None:
        """A number at a path on the resource as written in its JSON (``1.50``, not ``1.5``), where the text
        extraction loses that; None where it keeps it (here)."""
        return None

    def extra_extracts(self) -> list[str]:
        """More columns of the per-resource extraction, from ``r`` (the dialect's own)."""
        return []

    def json_to_text(self, value: str) -> str:
        return f"json_extract_string({value}, '$')"

    # --- lists ------------------------------------------------------------------------------------------------------
    def lam(self, params: list[str], body: str) -> str:
        return f"lambda {', '.join(params)}: {body}"

    def transform(self, lst: str, params: list[str], body: str) -> str:
        return f"list_transform({lst}, {self.lam(params, body)})"

    def filter(self, lst: str, param: str, body: str) -> str:
        return f"list_filter({lst}, {self.lam([param], body)})"

    def flatten(self, lst: str) -> str:
        return f"flatten({lst})"

    def concat(self, *lists: str) -> str:
        return lists[0] if len(lists) == 1 else f"list_concat({', '.join(lists)})"

    def length(self, lst: str) -> str:
        return f"len({lst})"

    def element(self, lst: str, index1: str) -> str:
        return f"{lst}[{index1}]" if _NAME.match(lst) else f"({lst})[{index1}]"

    def index0(self, index: str) -> str:
        """The 0-based position from the index parameter of a two-parameter :meth:`lam` (1-based here)."""
        return f"({index} - 1)"

    def list_type(self, elem_type: str) -> str:
        return f"{elem_type}[]"

    def distinct(self, lst: str, json: bool = False) -> str:
        """The list without repeats and without NULLs (``json``: of JSON values)."""
        return f"list_distinct({lst})"

    def contains(self, lst: str, value: str) -> str:
        return f"list_contains({lst}, {value})"

    def list_of(self, items: list[str], elem_type: str | None = None) -> str:
        if not items and elem_type:
            return f"[]::{elem_type}[]"
        return "[" + ", ".join(items) + "]"

    def reduce(self, lst: str, acc: str, item: str, body: str, initial: str) -> str:
        return f"list_reduce({lst}, {self.lam([acc, item], body)}, {initial})"

    def range(self, n: int) -> str:
        return f"range({n})"

    def sort(self, lst: str) -> str:
        return f"list_sort({lst})"

    def sort_by(self, lst: str, key: str) -> str:
        """A list of structs sorted by the field ``key`` (the first field)."""
        return f"list_sort({lst})"

    def join(self, lst: str, sep: str) -> str:
        return f"coalesce(array_to_string({lst}, {sep}), '')"

    # --- rows -------------------------------------------------------------------------------------------------------
    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "{" + ", ".join(f"{self.literal(k)}: {v}" for k, v in fields) + "}"

    def field(self, struct: str, name: str) -> str:
        return f"({struct}).{self.quote(name)}"

    def struct_type(self, fields: list[tuple[str, str]]) -> str:
        return "STRUCT(" + ", ".join(f"{self.quote(k)} {t}" for k, t in fields) + ")"

    def unnest_rows(self, rows: str, alias: str) -> str:
        """A SELECT-list item turning a list of row structs into one row each, named ``alias``."""
        return f"unnest({rows}) AS {alias}"

    def fence(self) -> str:
        """A suffix for the per-resource extraction subquery that stops the planner inlining it into its users.

        Without it DuckDB pushes the view's ``where`` into the table scan as a copy of the whole multi-path
        extraction, so each resource is parsed once per reference to the batch instead of once.
        """
        return " OFFSET 0"

    # --- types, errors, strings -------------------------------------------------------------------------------------
    def sql_type(self, fhir_type: str | None, kind: str) -> str:
        by_type = {
            "boolean": "BOOLEAN",
            "integer": "INTEGER",
            "positiveInt": "INTEGER",
            "unsignedInt": "INTEGER",
            "integer64": "BIGINT",
            "decimal": "DOUBLE",
        }
        if fhir_type in by_type:
            return by_type[fhir_type]
        return {"bool": "BOOLEAN", "int": "BIGINT", "num": "DOUBLE"}.get(kind, "VARCHAR")

    def cast(self, value: str, sql_type: str, strict: bool = False) -> str:
        return f"{'CAST' if strict else 'TRY_CAST'}({value} AS {sql_type})"

    def error(self, message: str) -> str:
        return f"error({self.literal(message)})"

    def regex_extract(self, value: str, pattern: str, group: int) -> str:
        return f"nullif(regexp_extract({value}, {self.literal(pattern)}, {group}), '')"

    def regex_replace(self, value: str, pattern: str, replacement: str) -> str:
        return f"regexp_replace({value}, {self.literal(pattern)}, {self.literal(replacement)})"

    def str_length(self, value: str) -> str:
        return f"len({value})"

    def int_div(self, x: str, y: str) -> str:
        """``x div y``: the quotient truncated towards zero, as a BIGINT."""
        return f"CAST(trunc({x} / {y}) AS BIGINT)"

    def regex_matches(self, value: str, pattern: str) -> str:
        return f"regexp_matches({value}, {self.literal(pattern)})"

    def last_day_of_month(self, year_month: str) -> str:
        return f"strftime(last_day(CAST({year_month} || '-01' AS DATE)), '%Y-%m-%d')"

    def to_json_text(self, value: object) -> str:
        return self.literal(json.dumps(value))

    # --- feature aggregation (medml.fhir.features) -----------------------------------------------------------------
    def arg_min(self, value: str, *order: str) -> str:
        """The ``value`` of the row with the least ``order`` (ties broken by the later keys)."""
        return f"arg_min({value}, struct_pack({', '.join(order)}))"

    def arg_max(self, value: str, *order: str) -> str:
        return f"arg_max({value}, struct_pack({', '.join(order)}))"

    def to_timestamp(self, text: str) -> str:
        """An ISO 8601 date or date-time as an instant (NULL when unreadable); no offset is read as UTC."""
        return f"try_cast({text} AS TIMESTAMPTZ)"

    def to_date(self, value: str) -> str:
        return f"try_cast({value} AS DATE)"

    def minus_micros(self, timestamp: str, micros: int) -> str:
        return f"({timestamp} - to_microseconds({int(micros)}))"

    def seconds_between(self, start: str, end: str) -> str:
        """Whole-second boundaries crossed from ``start`` to ``end`` (DuckDB's ``date_diff('second', ...)``)."""
        return f"date_diff('second', {start}, {end})"

    def days_between(self, start: str, end: str) -> str:
        return f"date_diff('day', {start}, {end})"


DuckDbDialect = Dialect


def _spark() -> type[Dialect]:
    from medml.fhir.view._spark import SparkDialect

    return SparkDialect


DIALECTS: dict[str, type[Dialect]] = {"duckdb": DuckDbDialect}
LAZY_DIALECTS = {"spark": _spark}


def get_dialect(name: str) -> Dialect:
    from medml.fhir.view._errors import InvalidViewError

    if name not in DIALECTS and name in LAZY_DIALECTS:
        DIALECTS[name] = LAZY_DIALECTS[name]()
    if name not in DIALECTS:
        raise InvalidViewError(f"unknown SQL dialect {name!r}", f"use one of {', '.join(sorted(DIALECTS))}")
    return DIALECTS[name]()
