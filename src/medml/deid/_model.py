"""The FHIR R4 element model the de-identifier walks: each JSON key's element name, FHIR type and cardinality.

It reads the R4 element map that ships with the SQL-on-FHIR engine (``medml/fhir/view/fhir_r4_elements.json``,
generated from fhirpathpy's R4 model), so both engines agree on what R4 is. A key the map does not know under its
parent is not R4, which is how STU3 content is rejected, as the Microsoft anonymizer's R4 parser rejects it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

PRIMITIVE_TYPES = frozenset(
    {
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
)
NUMERIC_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
DATE_TYPES = frozenset({"date", "dateTime", "instant"})
#: the types the anonymizer's perturb method treats as a quantity (it perturbs their ``value``)
QUANTITY_TYPES = frozenset(
    {"Age", "Count", "Duration", "Distance", "Money", "MoneyQuantity", "Quantity", "SimpleQuantity"}
)
RESOURCE = "Resource"
_ABSTRACT = frozenset({"Resource", "DomainResource", "MetadataResource"})


@dataclass(frozen=True, slots=True)
class Element:
    """One JSON key under a parent: its element name (``value`` for ``valueQuantity``), FHIR type, the context
    its own children are looked up in, and whether it repeats. ``type`` is ``Resource`` for a nested resource
    (its type is its ``resourceType``)."""

    key: str
    name: str
    type: str
    context: str
    repeats: bool
    primitive: bool = field(default=False)


@cache
def _elements() -> tuple[dict[str, str], dict[str, str]]:
    """The element map, and for every choice key (``Observation.valueQuantity``) its element name (``value``)."""
    text = resources.files("medml.fhir").joinpath("view", "fhir_r4_elements.json").read_text(encoding="utf-8")
    data = json.loads(text)
    choice_names: dict[str, str] = {}
    for base, types in data["choices"].items():
        name = base.rsplit(".", 1)[1]
        for t in types:
            choice_names[f"{base}{t[0].upper()}{t[1:]}"] = name
    return data["elements"], choice_names


@cache
def resource_types() -> frozenset[str]:
    """The concrete resource types of FHIR R4."""
    elements, _ = _elements()
    return frozenset(k.split(".", 1)[0] for k in elements if k.endswith(".implicitRules")) - _ABSTRACT


def element(context: str, key: str) -> Element | None:
    """The element a JSON ``key`` names under a type context (a type or a backbone path), or None if R4 has none."""
    elements, choice_names = _elements()
    path = f"{context}.{key}"
    entry = elements.get(path)
    if entry is None:
        if key not in ("id", "extension"):
            return None
        entry = elements[f"Element.{key}"]
    repeats = entry.endswith("*")
    entry = entry.rstrip("*")
    name = choice_names.get(path, key)
    if entry.startswith("="):  # a backbone element defined elsewhere (Questionnaire.item.item)
        return Element(key, name, "BackboneElement", entry[1:], repeats)
    if not entry:  # a backbone element: its children live under its own path
        return Element(key, name, "BackboneElement", path, repeats)
    fhir_type = _override(context, key, entry)
    return Element(key, name, fhir_type, fhir_type, repeats, fhir_type in PRIMITIVE_TYPES)


@cache
def _required() -> frozenset[str]:
    text = resources.files("medml.deid").joinpath("r4_required.json").read_text(encoding="utf-8")
    return frozenset(json.loads(text))


def required(context: str, key: str) -> bool:
    """Whether R4 requires the element (cardinality 1..): from ``r4_required.json``, which the fhir.resources
    models' requirements are checked against by a test."""
    return f"{context}.{key}" in _required()


def _override(context: str, key: str, fhir_type: str) -> str:
    """Where the map, built from FHIRPath's System types, says ``string`` for what FHIR types more narrowly."""
    if key == "id" and context in resource_types():
        return "id"
    if key == "url" and context == "Extension":
        return "uri"
    return fhir_type


__all__ = [
    "DATE_TYPES",
    "INTEGER_TYPES",
    "NUMERIC_TYPES",
    "PRIMITIVE_TYPES",
    "QUANTITY_TYPES",
    "RESOURCE",
    "Element",
    "element",
    "required",
    "resource_types",
]
