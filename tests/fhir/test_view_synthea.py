"""Views on real Synthea R4 Bundles: one row per resource, values as the Bundles hold them."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from medml.config import get_settings
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view

SYNTHEA = get_settings().data_root / "fhir/synthea-r4"


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    files = sorted(SYNTHEA.glob("*.json.gz"))[:2]
    if len(files) < 2:
        pytest.skip(f"Synthea bundles not found in {SYNTHEA}")
    return [e["resource"] for f in files for e in json.load(gzip.open(f))["entry"]]


@pytest.fixture(scope="module")
def store(resources: list[dict[str, Any]]) -> FhirStore:
    return FhirStore.in_memory(resources)


def test_patient_view_matches_the_bundles(store: FhirStore, resources: list[dict[str, Any]]) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "gender", "path": "gender"},
                    {"name": "birth_date", "path": "birthDate", "type": "date"},
                    {"name": "family", "path": "name.where(use = 'official').first().family"},
                    {
                        "name": "race",
                        "path": "extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')"
                        ".extension('ombCategory').value.ofType(Coding).code.first()",
                    },
                ]
            }
        ],
    }
    rows = {r["id"]: r for r in run_view(store.con, view).to_pylist()}
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(rows) == len(patients) == 2
    for p in patients:
        official = next(n for n in p["name"] if n.get("use") == "official")
        race = next(e for e in p["extension"] if e["url"].endswith("us-core-race"))
        assert rows[p["id"]] == {
            "id": p["id"],
            "gender": p["gender"],
            "birth_date": p["birthDate"],
            "family": official["family"],
            "race": race["extension"][0]["valueCoding"]["code"],
        }


def test_observation_view_with_foreach_on_components(store: FhirStore, resources: list[dict[str, Any]]) -> None:
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    view = {
        "resource": "Observation",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "loinc", "path": "code.coding.code.first()"},
                    {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                ]
            },
            {
                "forEachOrNull": "component",
                "column": [
                    {"name": "component", "path": "code.coding.code.first()"},
                    {"name": "component_value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                ],
            },
        ],
    }
    rows = run_view(store.con, view).to_pylist()
    expected = sum(max(1, len(o.get("component", []))) for o in observations)
    assert len(rows) == expected > 100
    by_id = {o["id"]: o for o in observations}
    for row in rows:
        obs = by_id[row["id"]]
        assert row["loinc"] == obs["code"]["coding"][0]["code"]
        assert row["value"] == obs.get("valueQuantity", {}).get("value")
    assert any(r["component"] == "8480-6" for r in rows)  # systolic blood pressure
