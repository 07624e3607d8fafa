"""An image model's output as FHIR R4 DiagnosticReports: valid R4 (fhir.resources R4B), probability as a fraction
in UCUM unit "1", the ImagingStudy referenced by DICOM Study Instance UID or by file name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("fhir.resources")

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from medml.errors import DataError
from medml.models.imaging.fhir import DICOM_UID, bundle_of, diagnostic_report, study_reference

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _report(p: float = 0.873, **kw: object) -> dict:
    args: dict = {
        "finding": "pneumonia",
        "model": "chest-xray@3",
        "issued": WHEN,
        "study": study_reference(study_uid="1.2.840.1.2.3"),
        **kw,
    }
    return diagnostic_report(p, **args)


def test_report_and_its_contained_resources_validate_as_r4() -> None:
    r = _report(subject={"reference": "Patient/7"}, heatmap_png=b"\x89PNG\r\n\x1a\n")
    DiagnosticReport.model_validate(r)
    obs, device = r["contained"]
    Observation.model_validate(obs)
    Device.model_validate(device)
    assert r["status"] == obs["status"] == "preliminary" and r["issued"] == "2026-01-02T03:04:05Z"
    assert r["result"] == [{"reference": f"#{obs['id']}"}] and obs["device"] == {"reference": f"#{device['id']}"}
    assert r["subject"] == obs["subject"] == {"reference": "Patient/7"}
    assert device["deviceName"][0]["name"] == "chest-xray" and device["version"] == [{"value": "3"}]
    assert obs["method"]["coding"][0]["code"] == "chest-xray@3"
    assert r["presentedForm"][0]["contentType"] == "image/png" and r["presentedForm"][0]["data"] == "iVBORw0KGgo="


def test_probability_is_a_fraction_in_unit_1_and_the_finding_follows_the_threshold() -> None:
    r = _report(0.873)
    obs = r["contained"][0]
    prob = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "probability")["valueQuantity"]
    assert prob == {"value": 0.873, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "pneumonia-present"
    low = _report(0.2)["contained"][0]
    assert low["valueCodeableConcept"]["coding"][0]["code"] == "pneumonia-absent"
    assert _report(0.2, threshold=0.1)["contained"][0]["valueCodeableConcept"]["coding"][0]["code"] == (
        "pneumonia-present"
    )
    assert "not a diagnosis" in r["conclusion"] and "0.87" in r["conclusion"]


def test_imaging_study_by_dicom_uid_or_by_file_name() -> None:
    r = _report()
    assert r["imagingStudy"] == [
        {"type": "ImagingStudy", "identifier": {"system": DICOM_UID, "value": "urn:oid:1.2.840.1.2.3"}}
    ]
    assert r["contained"][0]["derivedFrom"] == r["imagingStudy"]
    by_file = _report(study=study_reference(file_name="scan.png"))
    assert by_file["imagingStudy"][0]["identifier"]["value"] == "scan.png"
    assert by_file["id"] != r["id"] and _report()["id"] == r["id"]  # ids follow model and study
    with pytest.raises(DataError, match="needs its study"):
        study_reference()


def test_bundle_of_reports_validates_and_bad_input_is_refused() -> None:
    b = bundle_of([_report(), _report(study=study_reference(file_name="a.png"))], timestamp=WHEN)
    Bundle.model_validate(b)
    assert b["type"] == "collection" and [e["fullUrl"] for e in b["entry"]] == [
        f"urn:uuid:{e['resource']['id']}" for e in b["entry"]
    ]
    with pytest.raises(DataError, match="outside 0-1"):
        _report(87.3)
    with pytest.raises(DataError, match="status"):
        _report(status="amended")
