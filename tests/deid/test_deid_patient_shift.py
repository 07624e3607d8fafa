"""medml's options beyond the anonymizer, in its Safe Harbor configuration: one date shift per patient (every
interval within a patient's record kept, across resources and files, the same on every run with the same key),
keyed pseudonyms (HMAC-SHA256, computed here with the standard library) that keep references resolving across
files, and narratives, annotations and unlisted extensions gone.

The input is Synthea's patients as a Bulk Data export: one NDJSON file per resource type, so that a patient's
Observations and the Patient they refer to are in different files."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import ANONYMIZER, KEYS, SYNTHEA, assert_clear_error, deid
from medml.deid import Anonymizer, built_in_config, load_config, parse_config
from medml.deid._patients import bundle_patient, patient_key

pytestmark = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea bundles are not here (MEDML_DATA)")
PATIENTS = 6
HASH_KEY = KEYS["MEDML_DEID_CRYPTO_HASH_KEY"]


def hashed(value: str) -> str:
    return hmac.new(HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def as_bulk_export(folder: Path) -> dict[str, dict[str, Any]]:
    """The first patients' bundles written as one NDJSON file per resource type (references made relative, as a
    Bulk Data export has them); the resources by ``Type/id``."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(SYNTHEA.glob("*_*.json.gz"))[:PATIENTS]:
        bundle = json.loads(gzip.decompress(path.read_bytes()))
        types = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        text = json.dumps([e["resource"] for e in bundle["entry"]])
        for full_url, relative in types.items():
            text = text.replace(f'"{full_url}"', f'"{relative}"')
        for resource in json.loads(text):
            by_type[resource["resourceType"]].append(resource)
    folder.mkdir()
    for rt, resources in by_type.items():
        (folder / f"{rt}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return {f"{r['resourceType']}/{r['id']}": r for rs in by_type.values() for r in rs}


def read_folder(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in folder.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[f"{r['resourceType']}/{r['id']}"] = r
    return out


def instants(value: Any, path: str = "") -> dict[str, str]:
    """Every full dateTime (with a time of day) in a resource, by its JSON path."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            found.update(instants(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.update(instants(v, f"{path}[{i}]"))
    elif isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        with contextlib.suppress(ValueError):
            found[path] = value if datetime.fromisoformat(value).tzinfo else ""
    return {k: v for k, v in found.items() if v}


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The export, its de-identification by `medml deid run safe-harbor`, and a second run's (same keys)."""
    work = tmp_path_factory.mktemp("bulk")
    original = as_bulk_export(work / "in")
    for out in ("out", "again"):
        proc = deid(["run", "safe-harbor", "in", out], work, env=KEYS)
        assert proc.returncode == 0, proc.stderr
    return original, read_folder(work / "out"), read_folder(work / "again")


def test_every_interval_within_a_patients_record_is_kept_across_files(bulk: Any) -> None:
    original, out, _ = bulk
    by_patient: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for ref, resource in original.items():
        rt, rid = ref.split("/")
        twin = out[f"{rt}/{hashed(rid)}"]  # ids are HMAC-SHA256 under the key
        before, after = instants(resource), instants(twin)
        assert set(after) <= set(before)
        patient = patient_key(resource)
        for path, value in after.items():
            by_patient[patient].append((datetime.fromisoformat(before[path]), datetime.fromisoformat(value)))
    assert len([p for p in by_patient if p]) == PATIENTS
    assert sum(len(v) for v in by_patient.values()) > 1000
    shifts = set()
    for patient, pairs in by_patient.items():
        if not patient:
            continue
        offsets = {a - b for b, a in pairs}
        assert len(offsets) == 1, (patient, offsets)  # one shift for all of a patient's instants, to the second
        (offset,) = offsets
        assert offset.seconds == 0 and offset.microseconds == 0 and abs(offset.days) <= 50
        shifts.add(offset.days)
    assert len(shifts) > 1  # and not one shift for everyone


def test_the_shift_and_pseudonyms_repeat_with_the_same_keys(bulk: Any) -> None:
    _, out, again = bulk
    assert out.keys() == again.keys()
    assert all(instants(out[k]) == instants(again[k]) for k in out)


def test_references_resolve_across_files(bulk: Any) -> None:
    original, out, _ = bulk

    def references(value: Any) -> list[str]:
        if isinstance(value, dict):
            own = [value["reference"]] if isinstance(value.get("reference"), str) else []
            return own + [r for v in value.values() for r in references(v)]
        if isinstance(value, list):
            return [r for v in value for r in references(v)]
        return []

    unresolved, n = [], 0
    for resource in out.values():
        contained = {f"#{c['id']}" for c in resource.get("contained", [])}
        for ref in references(resource):
            n += 1
            if ref not in out and ref not in contained:
                unresolved.append(ref)
    assert n > 5000
    assert unresolved == []
    patients = {k for k in original if k.startswith("Patient/")}
    assert {f"Patient/{hashed(k.split('/')[1])}" for k in patients} <= set(out)


def test_narratives_annotations_and_other_extensions_are_gone(bulk: Any) -> None:
    original, out, _ = bulk
    text = json.dumps(list(out.values()))
    assert '"div"' in json.dumps(list(original.values()))
    assert '"div"' not in text and '"note"' not in text
    urls = {u.split('"')[0] for u in text.split('"url": "')[1:]}
    assert urls <= {
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
        "ombCategory",
        "text",
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
    }


def test_a_patients_bundle_shifts_its_practitioners_with_the_patient() -> None:
    """A resource that names no patient (a Practitioner) in a patient's Bundle takes that patient's shift."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-03-04"}},
            {"resource": {"resourceType": "Practitioner", "id": "d1", "birthDate": "1960-03-04"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:p1"},
                    "effectiveDateTime": "2020-03-04T10:11:12Z",
                }
            },
        ],
    }
    assert bundle_patient(bundle) == "p1"
    assert patient_key(bundle["entry"][2]["resource"]) == "p1"
    config = parse_config(
        {
            "fhirPathRules": [
                {"path": "nodesByType('date')", "method": "dateShift"},
                {"path": "nodesByType('dateTime')", "method": "dateShift"},
            ],
            "parameters": {"dateShiftKey": "k", "dateShiftScope": "patient", "dateShiftKeepTime": True},
        }
    )
    out = Anonymizer(config, today=date(2026, 1, 1)).anonymize(bundle)
    born = [date.fromisoformat(e["resource"]["birthDate"]) for e in out["entry"][:2]]
    seen = datetime.fromisoformat(out["entry"][2]["resource"]["effectiveDateTime"])
    assert (born[0] - date(1970, 3, 4)) == (born[1] - date(1960, 3, 4)) == (seen.date() - date(2020, 3, 4))
    assert seen.time().isoformat() == "10:11:12"


def test_the_anonymizers_scopes_zero_the_time_and_medmls_config_says_patient() -> None:
    config = load_config(built_in_config("safe-harbor"), generate_missing_keys=True)
    assert config.parameters.date_shift_scope == "patient" and config.parameters.date_shift_keep_time
    resource = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": "2020-03-04T10:11:12Z",
    }
    resource_scope = parse_config(
        {
            "fhirPathRules": [{"path": "nodesByType('dateTime')", "method": "dateShift"}],
            "parameters": {"dateShiftKey": "k"},
        }
    )
    out = Anonymizer(resource_scope, today=date(2026, 1, 1)).anonymize(resource)
    assert out["effectiveDateTime"].endswith("T00:00:00Z")


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"dateShiftScope": "person"}, "dateShiftScope 'person' is unknown"),
        ({"dateShiftKeepTime": "yes"}, "true or false"),
    ],
)
def test_bad_date_shift_options_are_one_clear_error(tmp_path: Path, parameters: dict[str, Any], fragment: str) -> None:

    config = tmp_path / "config.json"
    rules = [{"path": "nodesByType('date')", "method": "dateShift"}]
    config.write_text(json.dumps({"fhirPathRules": rules, "parameters": {"dateShiftKey": "k", **parameters}}))
    proc = deid(["run", str(config), str(ANONYMIZER / "resources" / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, fragment)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("resource", "key"),
    [
        ({"resourceType": "Patient", "id": "p1"}, "p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}, "p1"),
        (
            {"resourceType": "Observation", "subject": {"reference": "https://ehr.example/fhir/Patient/p1/_history/2"}},
            "p1",
        ),
        (
            {"resourceType": "Claim", "patient": {"reference": "urn:uuid:4a3a6a3e-1111-4222-8333-944455556666"}},
            "4a3a6a3e-1111-4222-8333-944455556666",
        ),
        ({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p1"}}, "p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}, ""),
        ({"resourceType": "Observation", "subject": {"reference": "urn:uuid:x", "type": "Group"}}, ""),
        ({"resourceType": "Practitioner", "id": "d1"}, ""),
    ],
)
def test_whose_record_a_resource_is(resource: dict[str, Any], key: str) -> None:
    assert patient_key(resource) == key
