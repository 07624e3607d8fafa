"""Nested records (an array parsed once into structs shaped by the members a view reads) give the rows FHIRPath
gives: each path is checked against fhirpathpy, the reference FHIRPath engine, on resources with the awkward cases
(missing and null members, empty arrays, a string where an array belongs, numbers where text belongs)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from medml.fhir.store import FhirStore
from medml.fhir.view import compile_view, run_view

RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


def _race(*subs: dict[str, Any]) -> dict[str, Any]:
    return {"url": RACE, "extension": list(subs)}


def _omb(display: Any = None, **value: Any) -> dict[str, Any]:
    coding = {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}
    if display is not None:
        coding["display"] = display
    return {"url": "ombCategory", **(value or {"valueCoding": coding})}


PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "white",
        "gender": "male",
        "extension": [
            _race(_omb("White"), {"url": "text", "valueString": "White"}),
            {"url": ETHNICITY, "extension": [_omb("Not Hispanic or Latino")]},
        ],
        "name": [{"use": "official", "family": "Hartmann", "given": ["Adalberto", "B."]}],
    },
    # the first ombCategory has no display: first() takes the next one that has
    {
        "resourceType": "Patient",
        "id": "second",
        "extension": [{"url": "other"}, _race(_omb(), _omb("Asian")), _race(_omb("Black"))],
        "name": [{"use": "usual", "given": ["Nick"]}, {"use": "official", "family": "Later", "given": []}],
    },
    # ombCategory as a string, not a Coding; a number where text belongs; an extension with no url
    {
        "resourceType": "Patient",
        "id": "odd",
        "extension": [_race(_omb(valueString="White"), _omb(1.50)), {"extension": [_omb("nourl")]}],
        "name": [{"family": "NoUse", "given": ["G"]}],
    },
    # a string where the array of extensions belongs, a null member, an empty array
    {
        "resourceType": "Patient",
        "id": "invalid",
        "extension": [_race(), {"url": RACE, "extension": "White"}],
        "name": [{"use": None, "family": "Null"}],
        "address": [],
    },
    {"resourceType": "Patient", "id": "bare"},
]

PATHS = {
    "race": f"extension('{RACE}').extension('ombCategory').value.ofType(Coding).display.first()",
    "races": f"extension('{RACE}').extension('ombCategory').value.ofType(Coding).display.join('|')",
    "n_omb": f"extension('{RACE}').extension('ombCategory').count()",
    "omb_codes": f"extension('{RACE}').extension.where(url = 'ombCategory').value.ofType(Coding).code.join('|')",
    "has_race": f"extension('{RACE}').exists()",
    "ethnicity": f"extension('{ETHNICITY}').extension('ombCategory').value.ofType(Coding).display.first()",
    "family": "name.where(use = 'official').family.first()",
    "official_given": "name.where(use = 'official').first().given.join(' ')",
    "n_named": "name.where(family.exists()).count()",
    "given_of_named": "name.where(family.exists()).given.join(',')",
    "no_use": "name.where(use.empty()).family.first()",
}


def _text(value: Any) -> Any:
    """A FHIRPath value as the view's column holds it: numbers as the text json_extract_string gives."""
    return format(value, "f").rstrip("0").rstrip(".") if isinstance(value, Decimal) else value


def _reference(resource: dict[str, Any], path: str) -> Any:
    # fhirpathpy's extension(url) keeps only the first match; the specification defines it as this where()
    path = re.sub(r"extension\('([^']*)'\)", r"extension.where(url = '\1')", path)
    joined = re.fullmatch(r"(.*)\.join\('([^']*)'\)", path)
    if joined:  # joined here: fhirpathpy will not join numbers; the engine joins an empty collection to ''
        return joined[2].join(str(_text(v)) for v in evaluate(resource, joined[1], model=models["r4"]))
    out = evaluate(resource, path, model=models["r4"])
    assert len(out) <= 1, (path, out)
    return _text(out[0]) if out else None


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, Any]]:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}] + [{"name": name, "path": path} for name, path in PATHS.items()]}
        ],
    }
    store = FhirStore.in_memory(PATIENTS)
    return {r["id"]: r for r in run_view(store.con, view).to_pylist()}


@pytest.mark.parametrize("name", list(PATHS))
def test_each_path_gives_what_fhirpath_gives(rows: dict[str, dict[str, Any]], name: str) -> None:
    for patient in PATIENTS:
        want = _reference(patient, PATHS[name])
        got = rows[patient["id"]][name]
        assert got == want, (patient["id"], PATHS[name])


def test_nested_extensions_are_parsed_once_into_the_members_read() -> None:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "race", "path": PATHS["race"]}, {"name": "ethnicity", "path": PATHS["ethnicity"]}]}
        ],
    }
    sql = compile_view(view).sql
    structure = '[{"url": "VARCHAR", "extension": [{"url": "VARCHAR", "valueCoding": {"display": "VARCHAR"}}]}]'
    assert sql.count(f"json_transform(_r._t[1], '{structure}')") == 2  # the same expression: computed once
    assert "json_extract(" not in sql  # no element re-parsed as JSON


def test_members_records_cannot_hold_fall_back_to_json() -> None:
    # a boolean member and a choice read whole are not held as text in a record; the same rows come from the JSON
    patients = [
        {
            "resourceType": "Patient",
            "id": "a",
            "extension": [
                {"url": "x", "valueBoolean": True},
                {"url": "x", "valueString": "s"},
                {"url": "y", "valueInteger": 1},
            ],
        }
    ]
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "n", "path": "extension.where(url = 'x').where(value.exists()).count()"},
                    {
                        "name": "b",
                        "path": "extension.where(url = 'x').value.ofType(boolean).first()",
                        "type": "boolean",
                    },
                    {"name": "v", "path": "extension.where(url = 'y').value.first()"},
                ]
            }
        ],
    }
    store = FhirStore.in_memory(patients)
    assert run_view(store.con, view).to_pylist() == [{"n": 2, "b": True, "v": "1"}]


def test_a_record_none_of_whose_members_is_read_is_counted() -> None:
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id"}, {"name": "n", "path": "name.where(true).count()"}]}],
    }
    store = FhirStore.in_memory(PATIENTS)
    got = {r["id"]: r["n"] for r in run_view(store.con, view).to_pylist()}
    assert got == {"white": 1, "second": 2, "odd": 1, "invalid": 1, "bare": 0}
