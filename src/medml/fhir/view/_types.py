"""The type rule of a view's ``where``: its paths give booleans.

Types come from the path (the R4 element map, a literal, a function's return type); a path whose type is unknown
until run time (an element the map lacks, a choice element not narrowed by ``ofType``) is checked on the data.
"""

from __future__ import annotations

from medml.fhir.view._errors import InvalidViewError, RuntimeCheck
from medml.fhir.view._expr import Scope, Val, as_list, typed

_KIND_TYPE = {"bool": "boolean", "int": "integer", "num": "decimal", "str": "string"}


def inferred_type(v: Val) -> str | None:
    """The FHIR type a compiled path gives, when the element map, a literal or a function tells; else None."""
    if v.choice is not None:
        return None
    if v.ftype is not None:
        return v.ftype
    return _KIND_TYPE.get(v.kind)


def where_condition(path: str, v: Val, s: Scope, checks: list[RuntimeCheck]) -> str:
    """SQL true when a view's ``where`` path gives true; an error for a path that does not give a boolean.

    A path of a known type that is not boolean is rejected now; one whose type is known only on the data (a choice
    element, an element the map lacks) raises a :class:`RuntimeCheck` on a row where it gives something else.
    """
    d = s.d
    inferred = inferred_type(v)
    several = RuntimeCheck(
        f"where path {path!r} gives several values where one boolean is required",
        "make the where path give one boolean, e.g. with exists() or first()",
    )
    if inferred == "boolean":
        b = typed(v, "bool", s)
        if not b.many:
            return b.sql
        checks.append(several)
        lst = s.fresh()
        body = f"CASE WHEN {d.length(lst)} > 1 THEN {d.error(several.message)} ELSE {d.element(lst, '1')} END"
        return d.element(d.transform(d.list_of([b.sql]), [lst], body), "1")
    if inferred is not None:
        raise InvalidViewError(
            f"where path {path!r} gives {inferred}, not a boolean",
            "a where path must evaluate to true or false, e.g. name.family.exists() or gender = 'female'",
        )
    not_boolean = RuntimeCheck(
        f"where path {path!r} gives a value that is not a boolean",
        "a where path must evaluate to true or false, e.g. add exists() or a comparison",
    )
    checks += [not_boolean, several]
    values = as_list(v, s)
    lst, x = s.fresh(), s.fresh()
    bad = d.length(d.filter(lst, x, f"{d.json_type(x, '$')} NOT IN ('BOOLEAN', 'NULL')"))
    body = (
        f"CASE WHEN {bad} > 0 THEN {d.error(not_boolean.message)} "
        f"WHEN {d.length(lst)} > 1 THEN {d.error(several.message)} "
        f"ELSE {d.json_to_text(d.element(lst, '1'))} = 'true' END"
    )
    return d.element(d.transform(d.list_of([values.sql]), [lst], body), "1")
