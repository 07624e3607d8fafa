"""FHIRPath operators in SQL: boolean logic (three-valued, as SQL's), comparisons, arithmetic, union, membership."""

from __future__ import annotations

from medml.fhir.view._expr import Scope, Val, as_list, compile_expr, kind_of, single, typed
from medml.fhir.view._fhirpath import Binary, Literal

_NUMERIC = {"int", "num"}


def truth(v: Val, s: Scope) -> str:
    """A FHIRPath collection used as a condition: a boolean singleton as is, otherwise 'is not empty'."""
    if kind_of(v) == "bool":
        return single(typed(v, "bool", s), s).sql
    if v.many or (v.path is not None and "[*]" in (v.path or "")):
        return f"({s.d.length(as_list(v, s).sql)} > 0)"
    if v.kind == "json" and v.path is None and v.choice is None and v.sql == "NULL":
        return "NULL"
    return (
        f"(CASE WHEN {single(typed(v, kind_of(v) if kind_of(v) != 'json' else 'json', s), s).sql} IS NOT NULL "
        "THEN true END)"
    )


def _common_kind(a: Val, b: Val) -> str:
    ka, kb = kind_of(a), kind_of(b)
    if ka in _NUMERIC or kb in _NUMERIC:
        return "num"
    if ka == "bool" or kb == "bool":
        return "bool"
    return "str"


def _equality(op: str, a: Val, b: Val, s: Scope) -> str:
    kind = _common_kind(a, b)
    ta, tb = typed(a, kind, s), typed(b, kind, s)
    d = s.d
    if ta.many and tb.many:
        la, lb = d.length(ta.sql), d.length(tb.sql)
        eq = f"(CASE WHEN {la} = 0 OR {lb} = 0 THEN NULL ELSE {ta.sql} = {tb.sql} END)"
    elif ta.many or tb.many:
        lst, one = (ta, tb) if ta.many else (tb, ta)
        n = d.length(lst.sql)
        eq = f"(CASE WHEN {n} = 0 THEN NULL WHEN {n} = 1 THEN {d.element(lst.sql, '1')} = {one.sql} ELSE false END)"
    else:
        eq = f"({ta.sql} = {tb.sql})"
    if op == "~":
        return f"coalesce({eq}, ({single(ta, s).sql}) IS NULL AND ({single(tb, s).sql}) IS NULL)"
    if op == "!~":
        return f"(NOT coalesce({eq}, ({single(ta, s).sql}) IS NULL AND ({single(tb, s).sql}) IS NULL))"
    return eq if op == "=" else f"(NOT {eq})"


def binary(node: Binary, s: Scope) -> Val:
    """SQL for one binary operator node."""
    op = node.op
    if op in ("is", "as"):
        from medml.fhir.view._functions import call_of_type

        assert isinstance(node.right, Literal)
        v = call_of_type(compile_expr(node.left, s), str(node.right.value), s)
        if op == "as":
            return v
        return Val(truth(v, s), False, "bool", "boolean")
    a, b = compile_expr(node.left, s), compile_expr(node.right, s)
    d = s.d
    if op in ("and", "or", "xor", "implies"):
        p, q = truth(a, s), truth(b, s)
        sql = {
            "and": f"({p} AND {q})",
            "or": f"({p} OR {q})",
            "xor": f"({p} <> {q})",
            "implies": f"((NOT {p}) OR {q})",
        }[op]
        return Val(sql, False, "bool", "boolean")
    if op in ("=", "!=", "~", "!~"):
        return Val(_equality(op, a, b, s), False, "bool", "boolean")
    if op in ("<", ">", "<=", ">="):
        kind = "num" if _common_kind(a, b) == "num" else "str"
        x, y = single(typed(a, kind, s), s), single(typed(b, kind, s), s)
        return Val(f"({x.sql} {op} {y.sql})", False, "bool", "boolean")
    if op == "&":
        x, y = single(typed(a, "str", s), s), single(typed(b, "str", s), s)
        return Val(f"(coalesce({x.sql}, '') || coalesce({y.sql}, ''))", False, "str", "string")
    if op == "+" and kind_of(a) == "str" and kind_of(b) == "str":
        x, y = single(typed(a, "str", s), s), single(typed(b, "str", s), s)
        return Val(f"({x.sql} || {y.sql})", False, "str", "string")
    if op in ("+", "-", "*", "/", "div", "mod"):
        x, y = single(typed(a, "num", s), s), single(typed(b, "num", s), s)
        both_int = kind_of(a) == "int" and kind_of(b) == "int"
        sql = {
            "+": f"({x.sql} + {y.sql})",
            "-": f"({x.sql} - {y.sql})",
            "*": f"({x.sql} * {y.sql})",
            "/": f"(CAST({x.sql} AS DOUBLE) / nullif({y.sql}, 0))",
            "div": d.int_div(x.sql, f"nullif({y.sql}, 0)"),
            "mod": f"({x.sql} % nullif({y.sql}, 0))",
        }[op]
        kind = "int" if both_int and op in ("+", "-", "*", "div", "mod") else "num"
        return Val(sql, False, kind, "integer" if kind == "int" else "decimal")
    if op == "|":
        la, lb = as_list(a, s), as_list(b, s)
        if kind_of(a) != kind_of(b) and "json" in (la.kind, lb.kind):
            la, lb = typed(la, "str", s), typed(lb, "str", s)
        union = d.distinct(d.concat(la.sql, lb.sql), la.kind == "json")
        return Val(union, True, la.kind, a.ftype if a.ftype == b.ftype else None)
    if op in ("in", "contains"):
        item, coll = (a, b) if op == "in" else (b, a)
        kind = _common_kind(item, coll)
        x, lst = single(typed(item, kind, s), s), typed(as_list(coll, s), kind, s)
        return Val(f"CASE WHEN {x.sql} IS NOT NULL THEN {d.contains(lst.sql, x.sql)} END", False, "bool", "boolean")
    raise AssertionError(op)
