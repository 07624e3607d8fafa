"""The FHIR R4 element map: for each element path its type and whether it repeats (from ``fhir_r4_elements.json``).

Generated once by ``tools/gen_fhir_elements.py``. A *type context* is a FHIR type name (``HumanName``) or, inside a
backbone element, the element's path (``Patient.contact``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

PRIMITIVE_KIND = {
    "boolean": "bool",
    "integer": "int",
    "positiveInt": "int",
    "unsignedInt": "int",
    "integer64": "int",
    "decimal": "num",
}
PRIMITIVES = {
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "integer64",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
}


@dataclass(frozen=True)
class Element:
    context: str | None  # the type context of the child; None where unknown
    repeats: bool | None  # None where unknown: decided at run time


@cache
def _data() -> tuple[dict[str, str], dict[str, list[str]]]:
    text = resources.files("medml.fhir.view").joinpath("fhir_r4_elements.json").read_text()
    data = json.loads(text)
    return data["elements"], data["choices"]


def child(context: str | None, name: str) -> Element:
    """The element ``name`` under a type context, or an unknown element when the map does not have it."""
    if context is None:
        return Element(None, None)
    elements, _ = _data()
    entry = elements.get(f"{context}.{name}")
    if entry is None and context not in PRIMITIVES:
        entry = elements.get(f"Element.{name}") if name in ("id", "extension") else None
    if entry is None:
        return Element(None, None)
    repeats = entry.endswith("*")
    entry = entry.rstrip("*")
    if entry.startswith("="):
        return Element(entry[1:], repeats)
    return Element(entry or f"{context}.{name}", repeats)


def choice_types(context: str | None, name: str) -> list[str] | None:
    """The types of a choice element (``Observation.value`` -> Quantity, string, ...), or None if not a choice."""
    if context is None:
        return None
    return _data()[1].get(f"{context}.{name}")


def kind_of(fhir_type: str | None) -> str:
    """The SQL value kind of a FHIR type: 'bool', 'int', 'num', 'str' for primitives, 'json' otherwise."""
    if fhir_type is None:
        return "json"
    if fhir_type in PRIMITIVE_KIND:
        return PRIMITIVE_KIND[fhir_type]
    return "str" if fhir_type in PRIMITIVES else "json"


@cache
def has_children(context: str | None) -> bool:
    """Whether the map knows the members of a type context (a complex type or a backbone element)."""
    if context is None or context in PRIMITIVES:
        return False
    prefix = context + "."
    return any(key.startswith(prefix) for key in _data()[0])
