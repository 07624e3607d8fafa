"""`medml deid verify`: every identifying value of an original found again where it is left, k-anonymity as a
count by hand gives it, and references that resolve to nothing; checked on a Synthea patient, whose identifiers
are read here straight from the original bundle."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SYNTHEA, deid
from medml.deid import verify
from medml.deid._verify import check_references, k_anonymity, quasi_identifiers

pytestmark = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea bundles are not here (MEDML_DATA)")
BUNDLE = SYNTHEA / "Adalberto_Hartmann_44ec4447-9e2c-4eb9-bd4f-0bdb416b806e.json.gz"
REDACT_ALL = {"fhirPathRules": [{"path": "Resource", "method": "redact"}]}


def original() -> dict[str, Any]:
    return json.loads(gzip.decompress(BUNDLE.read_bytes()))


def patient_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def identifiers_of(patient: dict[str, Any]) -> dict[str, str]:
    """The patient's identifying values, read from the FHIR structure (not by the verifier's code)."""
    by_code = {i["type"]["coding"][0]["code"]: i["value"] for i in patient["identifier"] if "type" in i}
    address = patient["address"][0]
    return {
        "name": patient["name"][0]["family"],
        "SSN": by_code["SS"],
        "MRN": by_code["MR"],
        "driver's licence": by_code["DL"],
        "passport number": by_code["PPN"],
        "phone": patient["telecom"][0]["value"],
        "address": address["line"][0],
        "city": address["city"],
        "ZIP code": address["postalCode"],
        "birth date": patient["birthDate"],
    }


def write(folder: Path, bundle: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "patient.json"
    path.write_text(json.dumps(bundle))
    return path


def test_an_untouched_copy_leaves_every_identifier(tmp_path: Path) -> None:
    bundle = original()
    path = write(tmp_path / "a", bundle)
    report = verify(path, write(tmp_path / "b", bundle))
    found = {(r.category, r.value) for r in report.residuals}
    for category, value in identifiers_of(patient_of(bundle)).items():
        assert (category, value) in found, (category, value)
    birth = next(r for r in report.residuals if r.category == "birth date" and "Patient" in r.found_at)
    assert birth.found_at.endswith("Patient.birthDate")
    assert report.references.unresolved == 0


def test_a_fully_redacted_copy_leaves_none(tmp_path: Path) -> None:
    source = write(tmp_path / "a", original())
    (tmp_path / "redact.json").write_text(json.dumps(REDACT_ALL))
    proc = deid(["run", "redact.json", str(source), "b.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = verify(source, tmp_path / "b.json")
    assert report.residuals == ()
    assert report.values_searched > 100


def test_a_planted_identifier_is_found_where_it_was_planted(tmp_path: Path) -> None:
    """An SSN written into a note, and a phone number without its dashes, in an otherwise clean output."""
    bundle = original()
    ids = identifiers_of(patient_of(bundle))
    clean = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "note"},
                    "note": [{"text": f"called back; SSN on file {ids['SSN']}."}],
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "note"},
                    "valueString": "call " + ids["phone"].replace("-", ""),
                }
            },
        ],
    }
    report = verify(write(tmp_path / "a", bundle), write(tmp_path / "b", clean))
    assert {(r.category, r.found_at) for r in report.residuals} == {
        ("SSN", "patient.json entry[0] Observation.note[0].text"),
        ("phone", "patient.json entry[1] Observation.valueString"),
    }


def test_k_anonymity_as_counted_by_hand() -> None:
    def person(year: str, sex: str, zip_code: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "birthDate": f"{year}-05-01",
            "gender": sex,
            "address": [{"postalCode": zip_code}],
        }

    people = [
        person("1960", "female", "02139"),
        person("1960", "female", "02141"),
        person("1960", "female", "02142"),
        person("1971", "male", "01545"),
        person("1971", "male", "01560"),
        person("1980", "male", "01545"),
    ]
    result = k_anonymity([("x", p) for p in people])
    assert (result.patients, result.k, result.groups) == (6, 1, 3)
    assert result.smallest[0] == (("1980", "male", "015", "-", "-"), 1)
    assert result.smallest[-1] == (("1960", "female", "021", "-", "-"), 3)
    race = {
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "extension": [{"url": "ombCategory", "valueCoding": {"code": "2106-3"}}],
    }
    assert quasi_identifiers({**people[0], "extension": [race]})[3] == "2106-3"


def test_a_dangling_reference_is_counted() -> None:
    bundle = original()
    broken = copy.deepcopy(bundle)
    broken["entry"][3]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    assert check_references([("a", bundle)]).unresolved == 0
    check = check_references([("a", broken)])
    assert check.unresolved == 1 and check.examples[0].endswith("= urn:uuid:00000000-0000-0000-0000-000000000000")


def test_the_command_masks_values_exits_1_on_residuals_and_writes_json(tmp_path: Path) -> None:
    bundle = original()
    a, b = write(tmp_path / "a", bundle), write(tmp_path / "b", bundle)
    proc = deid(["verify", str(a), str(b), "--json", "report.json"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    ssn = identifiers_of(patient_of(bundle))["SSN"]
    assert ssn not in proc.stdout and ssn not in (tmp_path / "report.json").read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["residuals_by_category"]["SSN"] >= 1
    assert report["k_anonymity"]["deidentified"]["k"] == 1
    shown = deid(["verify", str(a), str(b), "--show-values", "--max", "1000"], tmp_path)
    assert ssn in shown.stdout


def test_the_command_exits_0_on_a_clean_output(tmp_path: Path) -> None:
    source = write(tmp_path / "a", original())
    (tmp_path / "redact.json").write_text(json.dumps(REDACT_ALL))
    assert deid(["run", "redact.json", str(source), "b.json"], tmp_path).returncode == 0
    proc = deid(["verify", str(source), "b.json"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "residual identifiers: 0" in proc.stdout
