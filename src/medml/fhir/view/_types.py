"""The type rules of a view: a column's type against its path, unionAll branches of one type, a boolean ``where``.

Types come from the column's ``type`` when declared, else from the path (the R4 element map, a literal, a function's
return type), as the specification's Column Types section describes; a path whose type is unknown until run time
(an element the map lacks, a choice element not narrowed by ``ofType``) is checked on the data where a rule needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from medml.fhir.view import _elements as el
from medml.fhir.view._errors import InvalidViewError, RuntimeCheck
from medml.fhir.view._expr import Scope, Val, as_list, typed
from medml.fhir.view._validate import known_type

# FHIR primitives by the FHIRPath type they map to; date and dateTime together (a date is a dateTime to the day).
_SYSTEM = {
    "boolean": "Boolean",
    "integer": "Integer",
    "positiveInt": "Integer",
    "unsignedInt": "Integer",
    "integer64": "Integer",
    "decimal": "Decimal",
    "date": "DateTime",
    "dateTime": "DateTime",
    "instant": "DateTime",
    "time": "Time",
}
_GENERIC = {"Element", "BackboneElement", "Resource", "DomainResource"}  # declared types any complex value fits
_KIND_TYPE = {"bool": "boolean", "int": "integer", "num": "decimal", "str": "string"}


@dataclass(frozen=True)
class ColumnType:
    """A column's FHIR type (None where unknown until run time), whether the view declared it, and ``collection``."""

    ftype: str | None
    declared: bool
    collection: bool


def system_type(ftype: str) -> str:
    """The FHIRPath type a FHIR primitive maps to (String for the string-like ones); a complex type is itself."""
    if ftype in el.PRIMITIVES:
        return _SYSTEM.get(ftype, "String")
    return ftype


def inferred_type(v: Val) -> str | None:
    """The FHIR type a compiled path gives, when the element map, a literal or a function tells; else None."""
    if v.choice is not None:
        return None
    if v.ftype is not None:
        return v.ftype
    return _KIND_TYPE.get(v.kind)


def fits(declared: str, inferred: str) -> bool:
    """Whether values of the inferred type may fill a column of the declared type (integers fit decimals)."""
    if declared in _GENERIC:
        return inferred not in el.PRIMITIVES
    want, got = system_type(declared), system_type(inferred)
    return want == got or (want, got) == ("Decimal", "Integer")


def column_type(name: str, path: str, declared: str | None, collection: bool, v: Val) -> ColumnType:
    """The column's type; an error when a non-primitive comes without ``type`` or does not fit the declared one."""
    inferred = inferred_type(v)
    if declared is None:
        if inferred is not None and inferred not in el.PRIMITIVES:
            raise InvalidViewError(
                f"column {name!r} ({path}) gives {inferred}, a non-primitive type, and declares no type",
                f'set "type": "{inferred}", or select a primitive element of it',
            )
        return ColumnType(inferred, False, collection)
    ftype = known_type(declared)
    if ftype is not None and inferred is not None and not fits(ftype, inferred):
        raise InvalidViewError(
            f"column {name!r} ({path}) gives {inferred}, which does not fit its declared type {declared}",
            "declare the type the path gives, or change the path",
        )
    return ColumnType(ftype or declared, True, collection)


def check_union(branches: list[dict[str, ColumnType]], names: list[str]) -> None:
    """Every unionAll branch gives each column the same type (and the same ``collection``) as the first branch.

    Declared types must be equal; where a type was inferred, branches agree when their FHIRPath types do.
    """
    first = branches[0]
    for i, branch in enumerate(branches[1:], start=2):
        for n in names:
            a, b = first[n], branch[n]
            if a.collection != b.collection:
                raise InvalidViewError(
                    f"column {n!r} is a collection in one unionAll branch and not in branch {i}",
                    "set the same collection on the column in every unionAll branch",
                )
            if a.ftype is None or b.ftype is None:
                continue
            same = a.ftype == b.ftype if a.declared and b.declared else system_type(a.ftype) == system_type(b.ftype)
            if not same:
                raise InvalidViewError(
                    f"column {n!r} is {a.ftype} in the first unionAll branch and {b.ftype} in branch {i}",
                    "every unionAll branch must give each column the same type",
                )


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
