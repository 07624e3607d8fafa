"""FHIRPath functions in SQL: the SQL-on-FHIR required subset plus ``getResourceKey``/``getReferenceKey``."""

from __future__ import annotations

from dataclasses import replace

from medml.fhir.view import _elements as el
from medml.fhir.view._errors import InvalidViewError
from medml.fhir.view._expr import (
    _REF,
    NeedJson,
    Scope,
    Val,
    _empty,
    as_list,
    compile_expr,
    json_of,
    materialize,
    member,
    records,
    single,
    typed,
)
from medml.fhir.view._fhirpath import Binary, Call, Literal, Member, Node, This
from medml.fhir.view._ops import truth

_CONVERSIONS = {
    "toString": ("str", "string"),
    "toInteger": ("int", "integer"),
    "toDecimal": ("num", "decimal"),
    "toBoolean": ("bool", "boolean"),
}


def _type_arg(node: Node) -> str:
    """The type name in ``ofType(Quantity)`` / ``getReferenceKey(Patient)`` (``FHIR.`` prefixes dropped)."""
    parts: list[str] = []
    while isinstance(node, Member):
        parts.append(node.name)
        node = node.base
    if not parts or not isinstance(node, This):
        raise InvalidViewError("expected a type name as the argument", "write e.g. ofType(Quantity)")
    return parts[0]


def _args(node: Call, low: int, high: int) -> None:
    if not low <= len(node.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise InvalidViewError(
            f"{node.name}() takes {want} argument(s), got {len(node.args)}", "fix the call in the view's FHIRPath"
        )


def call_of_type(v: Val, type_name: str, s: Scope) -> Val:
    """``ofType(T)``: a choice element picks its ``valueT`` member; other values are kept when their type is T."""
    if v.choice is not None:
        parent, name = v.choice
        return member(parent, name + type_name[0].upper() + type_name[1:], s)
    if v.ftype is None or v.ftype == type_name:
        return v
    return _empty()


def _lambda_over(v: Val, s: Scope) -> tuple[Val, str, Scope]:
    """A list of the items of ``v`` and a scope whose ``$this`` is one item (a lambda variable)."""
    lst = as_list(v, s)
    x = s.fresh()
    item = Val(x, False, "json", v.ftype, path="") if lst.kind == "json" else Val(x, False, lst.kind, v.ftype)
    return lst, x, s.at(item)


def _where(v: Val, crit: Node, s: Scope) -> Val:
    """``v.where(crit)``: over records (each element parsed once) when ``crit`` reads only members records hold."""
    recs = records(v, s)
    if recs is not None:
        x = s.fresh()
        item = Val(x, False, "json", v.ftype, shape=recs.shape)
        try:
            cond = truth(compile_expr(crit, s.at(item)), s)
        except NeedJson:
            pass
        else:
            return replace(
                recs,
                sql=s.d.filter(recs.sql, x, f"coalesce({cond}, false)"),
                as_json=lambda: _where_json(json_of(recs), crit, s),
            )
    return _where_json(v, crit, s)


def _where_json(v: Val, crit: Node, s: Scope) -> Val:
    if not v.many and v.path is not None and not v.base_many and "[*]" not in v.path:
        cond = truth(compile_expr(crit, s.at(v)), s)
        one = materialize(v, s)
        return Val(f"CASE WHEN coalesce({cond}, false) THEN {one.sql} END", False, one.kind, v.ftype)
    lst, x, inner = _lambda_over(v, s)
    cond = truth(compile_expr(crit, inner), inner)
    return Val(s.d.filter(lst.sql, x, f"coalesce({cond}, false)"), True, lst.kind, v.ftype)


def _exists(v: Val, s: Scope) -> str:
    if v.shape is not None:
        return f"({s.d.length(v.sql)} > 0)" if v.many else f"({v.sql} IS NOT NULL)"
    if v.choice is not None or not v.many:
        w = materialize(v, s, as_text=v.kind == "json")
        return f"({w.sql} IS NOT NULL)"
    return f"({s.d.length(as_list(v, s).sql)} > 0)"


def _first(v: Val, s: Scope) -> Val:
    if not v.many:
        return v
    if v.shape is not None:
        first_json = v.as_json
        return replace(
            v,
            sql=s.d.element(v.sql, "1"),
            many=False,
            as_json=None if first_json is None else lambda: _first(first_json(), s),
        )
    if v.path is not None and v.path.endswith("[*]") and v.path.count("[*]") == 1 and not v.base_many:
        return replace(v, path=v.path[:-3] + "[0]", many=False)
    primitive = v.path is not None and v.ftype is not None and el.kind_of(v.ftype) != "json"
    lst = materialize(v, s, as_text=True) if primitive else as_list(v, s)  # text at once: no second parse
    return Val(s.d.element(lst.sql, "1"), False, lst.kind, v.ftype)


def _reference_key(v: Val, type_node: Node | None, s: Scope) -> Val:
    rtype = _type_arg(type_node) if type_node is not None else "[A-Za-z]+"
    pattern = _REF.format(type=rtype)
    refs = typed(member(replace(v, ftype="Reference"), "reference", s), "str", s)
    d = s.d
    if refs.many:
        z = s.fresh()
        keys = d.transform(refs.sql, [z], d.regex_extract(z, pattern, 2))
        y = s.fresh()
        return Val(d.filter(keys, y, f"{y} IS NOT NULL"), True, "str", "string")
    return Val(d.regex_extract(refs.sql, pattern, 2), False, "str", "string")


def call(node: Call, s: Scope) -> Val:
    """SQL for one function call node."""
    name, d = node.name, s.d
    if name == "getResourceKey":
        _args(node, 0, 0)
        return Val(s.key_sql, False, "str", "string")
    if name == "ofType":
        _args(node, 1, 1)
        return call_of_type(compile_expr(node.base, s), _type_arg(node.args[0]), s)
    v = compile_expr(node.base, s)
    if name == "where":
        _args(node, 1, 1)
        return _where(v, node.args[0], s)
    if name == "exists":
        _args(node, 0, 1)
        w = _where(v, node.args[0], s) if node.args else v
        return Val(_exists(w, s), False, "bool", "boolean")
    if name == "empty":
        _args(node, 0, 0)
        return Val(f"(NOT {_exists(v, s)})", False, "bool", "boolean")
    if name == "first":
        _args(node, 0, 0)
        return _first(v, s)
    if name == "last":
        _args(node, 0, 0)
        lst = as_list(v, s)
        return Val(d.element(lst.sql, "-1"), False, lst.kind, v.ftype)
    if name == "count":
        _args(node, 0, 0)
        if v.shape is not None and v.many:
            return Val(d.length(v.sql), False, "int", "integer")
        return Val(d.length(as_list(v, s).sql), False, "int", "integer")
    if name == "not":
        _args(node, 0, 0)
        return Val(f"(NOT {truth(v, s)})", False, "bool", "boolean")
    if name == "join":
        _args(node, 0, 1)
        sep = typed(compile_expr(node.args[0], s), "str", s).sql if node.args else "''"
        return Val(d.join(as_list(typed(v, "str", s), s).sql, sep), False, "str", "string")
    if name == "extension":
        _args(node, 1, 1)
        if isinstance(node.args[0], Literal):  # extension(url) is where(url = url)
            return _where(member(v, "extension", s), Binary("=", Member(This(), "url"), node.args[0]), s)
        url = typed(compile_expr(node.args[0], s), "str", s).sql
        ext = as_list(member(v, "extension", s), s)
        x = s.fresh()
        cond = f"{d.json_path(x, '$.url', True)} = {url}"
        return Val(d.filter(ext.sql, x, cond), True, "json", "Extension")
    if name == "getReferenceKey":
        _args(node, 0, 1)
        return _reference_key(v, node.args[0] if node.args else None, s)
    if name in ("lowBoundary", "highBoundary"):
        _args(node, 0, 1)
        from medml.fhir.view._boundary import boundary

        return boundary(v, name == "highBoundary", s)
    if name == "hasValue":
        _args(node, 0, 0)
        return Val(_exists(v, s), False, "bool", "boolean")
    if name in _CONVERSIONS:
        _args(node, 0, 0)
        kind, ftype = _CONVERSIONS[name]
        return replace(single(typed(v, kind, s), s), ftype=ftype)
    if name == "distinct":
        _args(node, 0, 0)
        lst = as_list(v, s)
        return Val(d.distinct(lst.sql, lst.kind == "json"), True, lst.kind, v.ftype)
    if name == "select":
        _args(node, 1, 1)
        lst, x, inner = _lambda_over(v, s)
        out = as_list(compile_expr(node.args[0], inner), inner)
        return Val(d.flatten(d.transform(lst.sql, [x], out.sql)), True, out.kind, out.ftype)
    raise InvalidViewError(
        f"FHIRPath function {name}() is not supported",
        "use the functions the SQL-on-FHIR specification requires (where, exists, first, ...)",
    )
