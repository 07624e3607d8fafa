"""The built-in ML views on real Synthea bundles: each row checked against the raw JSON, read independently."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from medml.config import get_settings
from medml.errors import NotFoundError
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view, validate_view
from medml.fhir.views import get_view, view_names

SYNTHEA = get_settings().data_root / "fhir" / "synthea-r4"
LOINC = "http://loinc.org"


def _read_gz(path: str | Path) -> Any:
    with gzip.open(path) as fh:
        return json.loads(fh.read())


@pytest.fixture(scope="module")
def synthea() -> tuple[FhirStore, list[dict[str, Any]]]:
    files = sorted(SYNTHEA.glob("[A-Z]*.json.gz"))[:8]
    raw = [e["resource"] for f in files for e in _read_gz(f)["entry"]]
    store = FhirStore()
    ingest(store, files)
    return store, raw


def test_every_builtin_view_is_valid() -> None:
    assert view_names() == ["conditions", "encounters", "medications", "observations", "patient_demographics"]
    for name in view_names():
        validate_view(get_view(name))
    with pytest.raises(NotFoundError, match="built-in views"):
        get_view("labs")


def _rows(store: FhirStore, name: str) -> list[dict[str, Any]]:
    return run_view(store.con, get_view(name)).to_pylist()


def test_observations_one_row_per_value_and_per_component(synthea: tuple[FhirStore, list[dict[str, Any]]]) -> None:
    store, raw = synthea
    rows = _rows(store, "observations")
    observations = [r for r in raw if r["resourceType"] == "Observation"]
    expected = len(observations) + sum(len(o.get("component", [])) for o in observations)
    assert len(rows) == expected
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["observation_id"], []).append(row)
    for obs in observations:
        got = by_id[obs["id"]]
        assert got[0]["patient_id"] == obs["subject"]["reference"].split(":")[-1]
        loinc = next((c["code"] for c in obs["code"]["coding"] if c.get("system") == LOINC), None)
        assert got[0]["code"] == loinc
        q = obs.get("valueQuantity")
        assert got[0]["value"] == (q["value"] if q else None)
        assert got[0]["unit"] == (q.get("code") if q else None)
        for comp, row in zip(obs.get("component", []), got[1:], strict=True):  # blood pressure: 8480-6, 8462-4
            assert row["code"] == comp["code"]["coding"][0]["code"]
            assert row["value"] == comp["valueQuantity"]["value"]


def test_demographics_conditions_medications_encounters(synthea: tuple[FhirStore, list[dict[str, Any]]]) -> None:
    store, raw = synthea
    patients = {r["id"]: r for r in raw if r["resourceType"] == "Patient"}
    demo = {r["patient_id"]: r for r in _rows(store, "patient_demographics")}
    assert set(demo) == set(patients)
    for pid, p in patients.items():
        assert demo[pid]["gender"] == p["gender"] and demo[pid]["birth_date"] == p["birthDate"]
        race = next(e for e in p["extension"] if e["url"].endswith("us-core-race"))
        omb = next(e for e in race["extension"] if e["url"] == "ombCategory")
        assert demo[pid]["race"] == omb["valueCoding"]["display"]
        assert "name" not in demo[pid] and "address" not in demo[pid]  # the ML view carries no identifiers
    for name, rtype in (("conditions", "Condition"), ("medications", "MedicationRequest"), ("encounters", "Encounter")):
        rows = _rows(store, name)
        assert len(rows) == sum(r["resourceType"] == rtype for r in raw), name
        assert all(r["patient_id"] in patients for r in rows), name
    meds = _rows(store, "medications")
    first = next(r for r in raw if r["resourceType"] == "MedicationRequest")
    row = next(r for r in meds if r["medication_request_id"] == first["id"])
    assert row["rxnorm"] == first["medicationCodeableConcept"]["coding"][0]["code"]


def test_view_files_are_plain_json_any_engine_can_read() -> None:
    folder = Path(__file__).parents[2] / "src" / "medml" / "fhir" / "views"
    for path in folder.glob("*.json"):
        view = json.loads(path.read_text())
        assert view["resourceType"] == "ViewDefinition" and view["name"] == path.stem
