"""medml's FHIRPath (the subset anonymizer configurations use) against fhirpathpy, an independent implementation,
on the anonymizer's own test patient; and the anonymizer's extensions nodesByType/nodesByName as its docs define."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from conftest import ANONYMIZER, MISSING, read
from medml.deid._fhirpath import FhirPathEvaluationError, FhirPathSyntaxError, evaluate, parse, plain, resource_item

pytestmark = pytest.mark.skipif(not ANONYMIZER.is_dir(), reason=MISSING)
EXPRESSIONS = [
    "Patient.name.given",
    "Patient.name.where(use='official').family",
    "Patient.address.where(city='KeepTest').state",
    "Patient.telecom.where(system='phone').value.count()",
    "Patient.name.given.first()",
    "Patient.name.given.last()",
    "Patient.identifier.exists()",
    "Patient.photo.exists()",
    "Patient.photo.empty()",
    "Patient.birthDate >= @1990-01-01",
    "Patient.birthDate < @1990-01-01",
    "Patient.birthDate = @2000-01-01",
    "Patient.name.family.first().startsWith('Fam')",
    "Patient.name.family.first().substring(0, 3)",
    "Patient.name.family.first().length()",
    "Patient.name.family.first().upper()",
    "Patient.contact.relationship.coding.code.lower()",
    "Patient.address.postalCode.first().replaceMatches('(\\\\d{3})\\\\d+', '$1')",
    "Patient.address.postalCode.first().matches('^[0-9]{5}$')",
    "Patient.name.exists(use = 'maiden')",
    "Patient.name.all(use.exists())",
    "Patient.name.select(given.first())",
    "Patient.deceased",
    "Patient.deceased.not()",
    "Patient.active and Patient.deceased.not()",
    "Patient.active or false",
    "Patient.active implies Patient.gender = 'male'",
    "'en-US' in ('en-AU' | 'en-US')",
    "('es-AR' | 'es-ES') contains 'es-UY'",
    "(18 div 10) * 10",
    "18 mod 10",
    "7 / 2",
    "2 + 3 * 4",
    "'a' + 'b' & 'c'",
    "Patient.name.given.count() > 3",
    "Patient.telecom.rank.where($this > 1)",
    "iif(Patient.active, 'yes', 'no')",
    "Patient.name[1].given",
    "Patient.name.given.skip(1).take(2)",
    "Patient.gender ~ 'MALE'",
    "Patient.gender != 'female'",
    "Patient.telecom.value.first().indexOf('1234')",
]


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    return getattr(v, "text", v)


def _ours(resource: dict[str, Any], expression: str) -> list[Any]:
    root = resource_item(resource)
    return [_plain(plain(i)) for i in evaluate(parse(expression), [root], root)]


def _reference(resource: dict[str, Any], expression: str) -> list[Any]:
    fhirpathpy = pytest.importorskip("fhirpathpy")
    from fhirpathpy.models import models

    values = fhirpathpy.evaluate(resource, expression, {}, models["r4"])
    return [
        float(v)
        if isinstance(v, Decimal | float) and not isinstance(v, bool)
        else str(v)
        if hasattr(v, "isoformat")
        else v
        for v in values
    ]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_agrees_with_fhirpathpy(expression: str) -> None:
    patient = read(ANONYMIZER / "resources" / "patient-basic.json")
    assert _ours(patient, expression) == _reference(patient, expression)


def test_nodes_by_type_and_name_stay_out_of_nested_resources() -> None:
    """The docs: descendants of the type or name; nodes in Bundle entries and contained resources excluded."""
    bundle = read(ANONYMIZER / "resources" / "bundle-basic.json")
    assert _ours(bundle, "nodesByType('HumanName').family") == []
    assert _ours(bundle, "nodesByName('family')") == []
    assert _ours(bundle, "entry.resource.nodesByType('HumanName').family") == ["Family"]
    patient = read(ANONYMIZER / "resources" / "patient-basic.json")
    assert _ours(patient, "nodesByType('Address').city") == ["TestCity", "KeepTest", "TestCity"]
    assert _ours(patient, "nodesByName('city')") == ["TestCity", "KeepTest", "TestCity"]
    assert len(_ours(patient, "nodesByType('Period')")) == 7


@pytest.mark.parametrize(
    "text", ["Patient.name.", "Patient.(name", "Patient.name.frobnicate()", "'open", "a ==== b", ""]
)
def test_a_path_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(FhirPathSyntaxError):
        parse(text)


def test_comparing_a_string_with_a_number_is_an_error() -> None:
    """FHIRPath: comparison operands of different types are an error (the conformance case 'processing error')."""
    patient = read(ANONYMIZER / "resources" / "patient-basic.json")
    with pytest.raises(FhirPathEvaluationError):
        _ours(patient, "Patient.name.family.first() >= 0")
