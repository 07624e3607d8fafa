"""ViewDefinition validation: the logical model's elements, cardinalities and invariants, constants, FHIRPath syntax,
the profiles a view claims, and the spec's ``ValidateColumns`` rules.

Each rule cites where the specification states it; docs/sql-on-fhir-requirements.csv maps every rule to its test.
"""

from __future__ import annotations

import math
import re
from typing import Any

from medml.fhir.view import _elements as el
from medml.fhir.view._errors import InvalidViewError
from medml.fhir.view._fhirpath import Literal, parse
from medml.fhir.view._resource_types import RESOURCE_TYPES

SQL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # invariant sql-name
FHIR_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
SOF_PREFIX = "https://sql-on-fhir.org/ig/StructureDefinition/"
SHAREABLE = SOF_PREFIX + "ShareableViewDefinition"
TABULAR = SOF_PREFIX + "TabularViewDefinition"
ENVIRONMENT = ("rowIndex", "resource", "rootResource", "context")  # %names the runner defines itself

_BACKBONE = {"id", "extension"}  # every BackboneElement may carry these
# ViewDefinition's own elements, then those it inherits from CanonicalResource, DomainResource and Resource.
_VIEW_KEYS = {"resource", "profile", "fhirVersion", "constant", "select", "where"} | {
    "url",
    "identifier",
    "version",
    "versionAlgorithmString",
    "versionAlgorithmCoding",
    "name",
    "title",
    "status",
    "experimental",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "jurisdiction",
    "purpose",
    "copyright",
    "copyrightLabel",
    "text",
    "contained",
    "extension",
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
}
_SELECT_KEYS = {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"} | _BACKBONE
_COLUMN_KEYS = {"name", "path", "type", "collection", "description", "tag"} | _BACKBONE
_WHERE_KEYS = {"path", "description"} | _BACKBONE
_TAG_KEYS = {"name", "value"} | _BACKBONE
_STATUS = ("draft", "active", "retired", "unknown")  # publication-status, CanonicalResource.status
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?(-[A-Za-z0-9.]+)?$")  # a FHIR-version code

# ViewDefinition.constant.value[x]: the types the model allows, each with its FHIRPath literal kind.
CONSTANT_TYPES = {
    "Base64Binary": "str",
    "Boolean": "bool",
    "Canonical": "str",
    "Code": "str",
    "Date": "date",
    "DateTime": "datetime",
    "Decimal": "num",
    "Id": "str",
    "Instant": "datetime",
    "Integer": "int",
    "Integer64": "int",
    "Oid": "str",
    "String": "str",
    "PositiveInt": "int",
    "Time": "time",
    "UnsignedInt": "int",
    "Uri": "str",
    "Url": "str",
    "Uuid": "str",
}
# The lexical forms of the FHIR primitive types (FHIR datatypes page) that constrain a JSON string.
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?"
_FULL_DATE = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
_ZONE = r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_LEXICAL = {
    "Date": _DATE,
    "DateTime": _DATE + r"|" + _FULL_DATE + "T" + _TIME + _ZONE,
    "Instant": _FULL_DATE + "T" + _TIME + _ZONE,
    "Time": _TIME,
    "Code": r"[^\s]+( [^\s]+)*",
    "Id": r"[A-Za-z0-9\-\.]{1,64}",
    "Uri": r"\S*",
    "Url": r"\S*",
    "Canonical": r"\S*",
    "Oid": r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+",
    "Uuid": r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "Base64Binary": r"(\s*([0-9a-zA-Z+/=]){4}\s*)+",
}
_INT_RANGE = {
    "Integer": (-(2**31), 2**31 - 1),
    "PositiveInt": (1, 2**31 - 1),
    "UnsignedInt": (0, 2**31 - 1),
    "Integer64": (-(2**63), 2**63 - 1),
}
_FIX = "correct the ViewDefinition (see the SQL-on-FHIR v2 ViewDefinition structure)"


def _fail(what: str, fix: str = _FIX) -> InvalidViewError:
    return InvalidViewError(what, fix)


def _keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    """Reject elements the model does not define (a misspelt ``wher`` would otherwise drop a filter silently)."""
    if "modifierExtension" in obj:
        raise _fail(f"{where} has a modifierExtension", "this runner understands no modifier extensions; remove it")
    unknown = sorted(k for k in obj if k not in allowed and not (k.startswith("_") and k[1:] in allowed))
    if unknown:
        fix = f"use only {', '.join(sorted(allowed))}" if len(allowed) <= 10 else "use the elements of the model only"
        raise _fail(f"{where} has unknown element(s) {unknown}", fix)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{where} must be a non-empty string, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(f"{where} must be a list, got {value!r}")
    return value


def _constant_value(name: str, kind: str, value: Any) -> object:
    """The constant's value checked against its FHIR type (JSON type, lexical form, range)."""
    at = f"constant {name!r} (value{kind})"
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise _fail(f"{at} must be true or false, got {value!r}")
        return value
    if kind in _INT_RANGE:
        if kind == "Integer64" and isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)  # R5 JSON writes integer64 as a string
        low, high = _INT_RANGE[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(f"{at} must be an integer from {low} to {high}, got {value!r}")
        return value
    if kind == "Decimal":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _fail(f"{at} must be a JSON number, got {value!r}")
        return value
    if not isinstance(value, str):
        raise _fail(f"{at} must be a JSON string, got {value!r}")
    pattern = _LEXICAL.get(kind)
    if pattern is not None and not re.fullmatch(pattern, value):
        raise _fail(f"{at} is not a valid {kind[0].lower() + kind[1:]}: {value!r}", "see the FHIR primitive types")
    return value


def constants(view: dict[str, Any]) -> dict[str, Literal]:
    """The view's ``constant`` list as FHIRPath literals by name, each checked against the model."""
    out: dict[str, Literal] = {}
    for i, c in enumerate(_list(view.get("constant", []), "constant")):
        at = f"constant[{i}]"
        if not isinstance(c, dict):
            raise _fail(f"{at} must be an object with a name and a value[x]")
        name = c.get("name")
        if not isinstance(name, str) or not SQL_NAME.match(name):
            raise _fail(f"{at} needs a name of letters, digits and '_' starting with a letter, got {name!r}")
        values = [k for k in c if k.startswith("value")]
        if len(values) != 1 or values[0][5:] not in CONSTANT_TYPES:
            raise _fail(
                f"constant {name!r} needs exactly one value[x] of a type the model allows, has {values}",
                "use one of " + ", ".join("value" + t for t in CONSTANT_TYPES),
            )
        _keys(c, {"name", values[0]} | _BACKBONE, at)
        if name in out or name in ENVIRONMENT:
            what = "is defined twice" if name in out else f"is the name of the environment variable %{name}"
            raise _fail(f"constant {name!r} {what}", "give each constant its own name")
        kind = values[0][5:]
        out[name] = Literal(_constant_value(name, kind, c[values[0]]), CONSTANT_TYPES[kind])
    return out


def _path(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _fail(f"{where} must be a FHIRPath string, got {value!r}")
    parse(value)


def known_type(name: str) -> str | None:
    """The FHIR type a column's ``type`` names (a relative or http://hl7.org/fhir URI), or None for another URI."""
    bare = name.removeprefix(FHIR_PREFIX)
    if "://" in bare or bare.startswith("urn:"):
        return None
    return bare


def _column_type(value: Any, at: str, tabular: bool) -> None:
    if not isinstance(value, str) or not value or re.search(r"\s", value):
        raise _fail(f"{at}.type must be a URI naming a FHIR type, got {value!r}", "e.g. string, integer, HumanName")
    ftype = known_type(value)
    if ftype is None:
        if tabular:
            raise _fail(f"{at}.type {value!r} is not a primitive type", "a TabularViewDefinition has only primitives")
        return
    if ftype not in el.PRIMITIVES and not el.has_children(ftype) and ftype not in RESOURCE_TYPES:
        raise _fail(f"{at}.type {value!r} names no FHIR type", "use a FHIR type such as string, integer or HumanName")
    if tabular and ftype not in el.PRIMITIVES:
        raise _fail(f"{at}.type {value!r} is not a primitive type", "a TabularViewDefinition has only primitives")


def _check_column(col: Any, at: str, profiles: set[str]) -> None:
    if not isinstance(col, dict):
        raise _fail(f"{at} must be an object")
    _keys(col, _COLUMN_KEYS, at)
    name = col.get("name")
    if not isinstance(name, str) or not SQL_NAME.match(name):
        raise _fail(f"{at} needs a name of letters, digits and '_' starting with a letter, got {name!r}")
    _path(col.get("path"), f"{at}.path")
    if "collection" in col and not isinstance(col["collection"], bool):
        raise _fail(f"{at}.collection must be true or false")
    if TABULAR in profiles and col.get("collection") is True:
        raise _fail(f"{at} is a collection", "a TabularViewDefinition's columns must not be collections")
    if "type" in col:
        _column_type(col["type"], at, TABULAR in profiles)
    elif SHAREABLE in profiles:
        raise _fail(f"{at} has no type", "a ShareableViewDefinition declares the type of every column")
    if "description" in col:
        _string(col["description"], f"{at}.description")
    for j, tag in enumerate(_list(col.get("tag", []), f"{at}.tag")):
        if not isinstance(tag, dict):
            raise _fail(f"{at}.tag[{j}] must be an object with a name and a value")
        _keys(tag, _TAG_KEYS, f"{at}.tag[{j}]")
        _string(tag.get("name"), f"{at}.tag[{j}].name")
        if not isinstance(tag.get("value"), str):
            raise _fail(f"{at}.tag[{j}].value must be a string, got {tag.get('value')!r}")


def _check_select(sel: Any, where: str, profiles: set[str]) -> None:
    if not isinstance(sel, dict):
        raise _fail(f"{where} must be an object")
    _keys(sel, _SELECT_KEYS, where)
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
        if key in sel:
            _list(sel[key], f"{where}.{key}")
    for i, col in enumerate(sel.get("column", [])):
        _check_column(col, f"{where}.column[{i}]", profiles)
    for key in ("select", "unionAll"):
        for i, sub in enumerate(sel.get(key, [])):
            _check_select(sub, f"{where}.{key}[{i}]", profiles)


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


def claimed_profiles(view: dict[str, Any]) -> set[str]:
    """The profiles a view claims in ``meta.profile``, versions (``|1.0``) dropped."""
    meta = view.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail("meta must be an object")
    return {p.split("|")[0] for p in _list(meta.get("profile", []), "meta.profile") if isinstance(p, str)}


def _check_header(view: dict[str, Any], profiles: set[str]) -> None:
    """The elements outside ``select``: resource type, name, status, FHIR versions, profiles."""
    if view.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise _fail(f"resourceType is {view['resourceType']!r}", "a ViewDefinition has resourceType ViewDefinition")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _fail("the view names no resource", 'set resource to a FHIR resource type, e.g. "Patient"')
    if resource not in RESOURCE_TYPES:
        raise _fail(f"resource {resource!r} is not a FHIR resource type", 'e.g. "Patient" or "Observation"')
    if "name" in view and not (isinstance(view["name"], str) and SQL_NAME.match(view["name"])):
        raise _fail(
            f"the view's name {view['name']!r} is not a SQL name", "use letters, digits and '_', starting with a letter"
        )
    if "status" in view and view["status"] not in _STATUS:
        raise _fail(f"status {view['status']!r} is not a publication status", f"use one of {', '.join(_STATUS)}")
    for v in _list(view.get("fhirVersion", []), "fhirVersion"):
        if not isinstance(v, str) or not _VERSION.match(v):
            raise _fail(f"fhirVersion {v!r} is not a FHIR version", "write e.g. 4.0.1")
    for p in _list(view.get("profile", []), "profile"):
        if not isinstance(p, str) or not p or re.search(r"\s", p):
            raise _fail(f"profile {p!r} is not a canonical URL")
        base = p.split("|")[0].removeprefix(FHIR_PREFIX)
        if base != p.split("|")[0] and base in RESOURCE_TYPES and base != resource:
            raise _fail(
                f"profile {p} is a profile of {base}, not of {resource}", "list profiles of the view's resource"
            )
    if SHAREABLE in profiles:
        missing = [e for e in ("url", "name", "fhirVersion") if not view.get(e)]
        if missing:
            raise _fail(f"the view claims ShareableViewDefinition but has no {', '.join(missing)}", "add them")


def check_structure(view: dict[str, Any]) -> None:
    """Raise :class:`InvalidViewError` when a ViewDefinition's structure, paths' syntax or column names are wrong."""
    if not isinstance(view, dict):
        raise _fail(f"a ViewDefinition must be a JSON object, got {type(view).__name__}")
    _keys(view, _VIEW_KEYS, "the view")
    profiles = claimed_profiles(view)
    _check_header(view, profiles)
    select = view.get("select")
    if not isinstance(select, list) or not select:
        raise _fail("the view has no select", "add a select with at least one column")
    for i, sel in enumerate(select):
        _check_select(sel, f"select[{i}]", profiles)
    for i, w in enumerate(_list(view.get("where", []), "where")):
        if not isinstance(w, dict):
            raise _fail(f"where[{i}] must be an object with a path")
        _keys(w, _WHERE_KEYS, f"where[{i}]")
        _path(w.get("path"), f"where[{i}].path")
        if "description" in w:
            _string(w["description"], f"where[{i}].description")
    constants(view)
    columns_of({"select": select}, [])
