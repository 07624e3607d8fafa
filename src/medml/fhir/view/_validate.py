"""ViewDefinition validation: structure, FHIRPath syntax, constants, and the spec's ``ValidateColumns`` rules."""

from __future__ import annotations

import re
from typing import Any

from medml.fhir.view._errors import InvalidViewError
from medml.fhir.view._fhirpath import Literal, parse

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SELECT_KEYS = {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"}
_COLUMN_KEYS = {"name", "path", "type", "collection", "description", "tag"}
_CONSTANT_KINDS = {
    "valueString": "str",
    "valueCode": "str",
    "valueId": "str",
    "valueUri": "str",
    "valueUrl": "str",
    "valueUuid": "str",
    "valueOid": "str",
    "valueCanonical": "str",
    "valueBase64Binary": "str",
    "valueMarkdown": "str",
    "valueInteger": "int",
    "valuePositiveInt": "int",
    "valueUnsignedInt": "int",
    "valueInteger64": "int",
    "valueDecimal": "num",
    "valueBoolean": "bool",
    "valueDate": "date",
    "valueDateTime": "datetime",
    "valueInstant": "datetime",
    "valueTime": "time",
}
_FIX = "correct the ViewDefinition (see the SQL-on-FHIR v2 ViewDefinition structure)"


def _fail(what: str, fix: str = _FIX) -> InvalidViewError:
    return InvalidViewError(what, fix)


def constants(view: dict[str, Any]) -> dict[str, Literal]:
    """The view's ``constant`` list as FHIRPath literals by name."""
    out: dict[str, Literal] = {}
    items = view.get("constant", [])
    if not isinstance(items, list):
        raise _fail("constant must be a list")
    for c in items:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise _fail(f"each constant needs a name: {c!r}")
        values = [k for k in c if k.startswith("value")]
        if len(values) != 1 or values[0] not in _CONSTANT_KINDS:
            raise _fail(
                f"constant {c['name']!r} needs exactly one supported value[x]", "e.g. valueString or valueInteger"
            )
        out[c["name"]] = Literal(c[values[0]], _CONSTANT_KINDS[values[0]])
    return out


def _path(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _fail(f"{where} must be a FHIRPath string, got {value!r}")
    parse(value)


def _check_select(sel: Any, where: str) -> None:
    if not isinstance(sel, dict):
        raise _fail(f"{where} must be an object")
    unknown = set(sel) - _SELECT_KEYS
    if unknown:
        raise _fail(f"{where} has unknown element(s) {sorted(unknown)}")
    iterators = [k for k in ("forEach", "forEachOrNull", "repeat") if k in sel]
    if len(iterators) > 1:
        raise _fail(f"{where} has both {iterators[0]} and {iterators[1]}", "use one of forEach, forEachOrNull, repeat")
    for key in ("forEach", "forEachOrNull"):
        if key in sel:
            _path(sel[key], f"{where}.{key}")
    if "repeat" in sel:
        if not isinstance(sel["repeat"], list) or not sel["repeat"]:
            raise _fail(f"{where}.repeat must be a non-empty list of FHIRPath strings")
        for i, p in enumerate(sel["repeat"]):
            _path(p, f"{where}.repeat[{i}]")
    for key in ("column", "select", "unionAll"):
        if key in sel and not isinstance(sel[key], list):
            raise _fail(f"{where}.{key} must be a list")
    for i, col in enumerate(sel.get("column", [])):
        at = f"{where}.column[{i}]"
        if not isinstance(col, dict):
            raise _fail(f"{at} must be an object")
        if set(col) - _COLUMN_KEYS:
            raise _fail(f"{at} has unknown element(s) {sorted(set(col) - _COLUMN_KEYS)}")
        name = col.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(f"{at} needs a name of letters, digits and '_' starting with a letter, got {name!r}")
        _path(col.get("path"), f"{at}.path")
        if "collection" in col and not isinstance(col["collection"], bool):
            raise _fail(f"{at}.collection must be true or false")
        if "type" in col and not isinstance(col["type"], str):
            raise _fail(f"{at}.type must be a FHIR type name")
    for key in ("select", "unionAll"):
        for i, sub in enumerate(sel.get(key, [])):
            _check_select(sub, f"{where}.{key}[{i}]")


def columns_of(sel: dict[str, Any], before: list[str]) -> list[str]:
    """The spec's ``ValidateColumns(S, C)``: the column names in output order, checked unique and union-consistent."""
    ret = list(before)

    def add(name: str) -> None:
        if name in ret:
            raise _fail(f"column {name!r} is already defined", "give each column of a view a unique name")
        ret.append(name)

    for col in sel.get("column", []):
        add(col["name"])
    for sub in sel.get("select", []):
        for name in columns_of(sub, ret)[len(ret) :]:
            add(name)
    branches = sel.get("unionAll", [])
    if branches:
        first = columns_of(branches[0], ret)[len(ret) :]
        for i, branch in enumerate(branches[1:], start=2):
            names = columns_of(branch, ret)[len(ret) :]
            if names != first:
                raise _fail(
                    f"unionAll branch {i} has columns {names}, the first has {first}",
                    "every unionAll branch must produce the same column names in the same order",
                )
        for name in first:
            add(name)
    return ret


def check_structure(view: dict[str, Any]) -> None:
    """Raise :class:`InvalidViewError` when a ViewDefinition's structure, paths' syntax or column names are wrong."""
    if not isinstance(view, dict):
        raise _fail(f"a ViewDefinition must be a JSON object, got {type(view).__name__}")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _fail("the view names no resource", 'set resource to a FHIR resource type, e.g. "Patient"')
    select = view.get("select")
    if not isinstance(select, list) or not select:
        raise _fail("the view has no select", "add a select with at least one column")
    for i, sel in enumerate(select):
        _check_select(sel, f"select[{i}]")
    where = view.get("where", [])
    if not isinstance(where, list):
        raise _fail("where must be a list of {path: ...}")
    for i, w in enumerate(where):
        if not isinstance(w, dict):
            raise _fail(f"where[{i}] must be an object with a path")
        _path(w.get("path"), f"where[{i}].path")
    constants(view)
    columns_of({"select": select}, [])
