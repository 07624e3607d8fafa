"""``lowBoundary()`` / ``highBoundary()``: the least and greatest value a decimal, date, dateTime or time could be."""

from __future__ import annotations

from medml.fhir.view._dialect import Dialect
from medml.fhir.view._errors import DialectLimitError
from medml.fhir.view._expr import Scope, Val, materialize, typed


def _time(t: str, high: bool, d: Dialect) -> str:
    """A partial time ('HH', 'HH:MM', 'HH:MM:SS[.f]', or '') filled to milliseconds."""
    fill = "9" if high else "0"
    return (
        f"(CASE {d.str_length(t)} WHEN 0 THEN '{'23:59:59.999' if high else '00:00:00.000'}' "
        f"WHEN 2 THEN {t} || '{':59:59.999' if high else ':00:00.000'}' "
        f"WHEN 5 THEN {t} || '{':59.999' if high else ':00.000'}' "
        f"WHEN 8 THEN {t} || '{'.999' if high else '.000'}' "
        f"ELSE split_part({t}, '.', 1) || '.' || rpad(left(split_part({t}, '.', 2), 3), 3, '{fill}') END)"
    )


def _date(x: str, high: bool, d: Dialect) -> str:
    n = d.str_length(x)
    if high:
        return f"(CASE {n} WHEN 4 THEN {x} || '-12-31' WHEN 7 THEN {d.last_day_of_month(x)} ELSE {x} END)"
    return f"(CASE {n} WHEN 4 THEN {x} || '-01-01' WHEN 7 THEN {x} || '-01' ELSE {x} END)"


_ZONE = r"(Z|[+-]\d{2}:\d{2})$"


def _datetime(b: str, high: bool, d: Dialect) -> str:
    date = f"split_part({b}, 'T', 1)"
    rest = f"split_part({b}, 'T', 2)"
    tz = d.regex_extract(rest, _ZONE, 1)
    bare = d.regex_replace(rest, _ZONE, "")
    zone = "'-12:00'" if high else "'+14:00'"
    return f"({_date(date, high, d)} || 'T' || {_time(bare, high, d)} || coalesce({tz}, {zone}))"


def boundary(v: Val, high: bool, s: Scope) -> Val:
    """The boundary of each value, by its FHIR type (decimal by default for numbers)."""
    d = s.d
    ftype = v.ftype or ("decimal" if v.kind in ("int", "num") else None)
    text = typed(materialize(v, s, as_text=v.kind == "json"), "str", s)
    if ftype in ("decimal", "integer") and v.root and v.path and "[*]" not in v.path:
        raw = d.number_text("$" + v.path)  # the number as written: its decimal places are its precision
        text = text if raw is None else Val(raw, False, "str", ftype)
    elif ftype == "decimal" and (v.kind == "json" or v.path is not None) and d.number_text("$") is not None:
        raise DialectLimitError(
            f"the {d.name} engine cannot compute {'highBoundary' if high else 'lowBoundary'}() of a decimal that is "
            "not an element of the resource itself (inside forEach, a list or a function): it reads 1.50 as 1.5, "
            "and the decimal places are the precision the boundary depends on",
            "run this view with --engine duckdb, or take the boundary of a path from the resource",
        )
    b = s.fresh()
    if ftype in ("decimal", "integer"):
        sign = "+" if high else "-"
        decimals = d.str_length(f"split_part({b}, '.', 2)")
        digits = f"(CASE WHEN contains({b}, '.') THEN {decimals} ELSE 0 END)"
        body = f"(CAST({b} AS DOUBLE) {sign} 0.5 * pow(10, -{digits}))"
        kind, out_type = "num", "decimal"
    elif ftype == "date":
        body, kind, out_type = _date(b, high, d), "str", "date"
    elif ftype == "time":
        body, kind, out_type = _time(b, high, d), "str", "time"
    else:
        body = (
            f"(CASE WHEN contains({b}, ':') AND NOT contains({b}, '-') THEN {_time(b, high, d)} "
            f"ELSE {_datetime(b, high, d)} END)"
        )
        kind, out_type = "str", "dateTime"
    if text.many:
        return Val(d.transform(text.sql, [b], body), True, kind, out_type)
    bound = d.element(d.transform(d.list_of([text.sql]), [b], body), "1")  # binds the value to b once
    return Val(f"CASE WHEN {text.sql} IS NOT NULL THEN {bound} END", False, kind, out_type)
