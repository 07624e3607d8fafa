"""An image model's output as FHIR R4: a DiagnosticReport per image, referencing its ImagingStudy.

Each DiagnosticReport (status ``preliminary`` by default: software output that a clinician must read) contains:

- an Observation of the finding: ``valueCodeableConcept`` is the class the model calls at the decision threshold
  (``present`` / ``absent`` of the positive class, in the model's own words), with two components:
  the model's **probability** of the positive class as ``valueQuantity`` in UCUM unit ``"1"`` (a fraction between
  0 and 1: 0.18 means 18%, as in RiskAssessment.prediction.probabilityDecimal), and the decision threshold in the
  same unit;
- a Device for the model (``name@version``), which the Observation names in ``device``; the Observation's
  ``method`` names it too (the model is not a ``performer``: FHIR R4 allows no Device there).

``imagingStudy`` and the Observation's ``derivedFrom`` reference the study by identifier: the DICOM Study
Instance UID (system ``urn:dicom:uid``, value ``urn:oid:<uid>``, as FHIR's ImagingStudy.identifier does), else the
image file's name. The conclusion says this is decision support, not a diagnosis. A heat map may ride along as a
PNG ``presentedForm``. Resources are plain dicts; ids are uuid5 of model and image, so the same input gives the
same ids. :func:`image_reports` assembles them for a batch of images and their sources.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medml.errors import DataError

__all__ = [
    "DICOM_UID",
    "MODEL_SYSTEM",
    "ImageSource",
    "bundle_of",
    "diagnostic_report",
    "image_reports",
    "study_reference",
]

DICOM_UID = "urn:dicom:uid"
MODEL_SYSTEM = "urn:medml:model"
FINDING_SYSTEM = "urn:medml:image-finding"
FILE_SYSTEM = "urn:medml:image-file"
UCUM = "http://unitsofmeasure.org"
_IMAGING = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}]
}
_AI = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "imaging",
            "display": "Imaging",
        }
    ]
}


def _id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:medml:image-report:" + "/".join(parts)))


def study_reference(*, study_uid: str = "", file_name: str = "") -> dict[str, Any]:
    """A logical Reference to an ImagingStudy: by DICOM Study Instance UID when there is one, else by file name."""
    if study_uid:
        return {"type": "ImagingStudy", "identifier": {"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}}
    if not file_name:
        raise DataError("an image report needs its study", "give the DICOM StudyInstanceUID or the image's file name")
    return {
        "type": "ImagingStudy",
        "identifier": {"system": FILE_SYSTEM, "value": file_name},
        "display": f"image file {file_name}",
    }


def _probability(code: str, text: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": code}], "text": text},
        "valueQuantity": {"value": round(value, 4), "unit": "1", "system": UCUM, "code": "1"},
    }


def diagnostic_report(
    probability: float,
    *,
    finding: str,
    model: str,
    study: Mapping[str, Any],
    threshold: float = 0.5,
    subject: Mapping[str, Any] | None = None,
    status: Literal["preliminary", "final"] = "preliminary",
    issued: datetime | None = None,
    heatmap_png: bytes | None = None,
    class_probabilities: Mapping[str, float] | None = None,
    rule: Literal["threshold", "most-probable"] = "threshold",
) -> dict[str, Any]:
    """A FHIR R4 DiagnosticReport (JSON-ready dict) of one image's ``probability`` of ``finding`` (the positive
    class) from ``model`` (``name@version``), with its Observation and the model's Device contained.

    ``study``: a Reference from :func:`study_reference`. ``subject``: a Patient Reference when known.
    ``threshold``: the probability at or above which the finding is called present (``rule="threshold"``).
    ``rule="most-probable"`` (multiclass): ``finding`` is the most probable of the classes, reported as such,
    with no threshold. ``class_probabilities``: every class's (or label's) probability, one component each.
    """
    if not 0.0 <= probability <= 1.0 or not 0.0 <= threshold <= 1.0:
        raise DataError(
            f"probability {probability} or threshold {threshold} is outside 0-1",
            "give probabilities as fractions between 0 and 1",
        )
    if status not in ("preliminary", "final"):
        raise DataError(f"status {status!r}", "use preliminary or final")
    if rule not in ("threshold", "most-probable"):
        raise DataError(f"rule {rule!r}", "use threshold or most-probable")
    others = dict(class_probabilities or {})
    if any(not 0.0 <= q <= 1.0 for q in others.values()):
        raise DataError("class probabilities must be fractions between 0 and 1", "give model probabilities")
    name, _, version = model.partition("@")
    key = str(study.get("identifier", {}).get("value") or study.get("reference") or "")
    present = probability >= threshold
    call = "present" if present else "absent"
    if rule == "most-probable":
        value_code, value_text = (
            finding,
            f"{finding}: most probable of {len(others) or 'the'} classes (probability {probability:.2f})",
        )
        components = [_probability("probability", f"model probability of {finding} (fraction 0-1)", probability)]
        summary = f"most probable class {finding} (probability {probability:.2f})"
    else:
        value_code = f"{finding}-{call}"
        value_text = f"{finding} {call} (probability {probability:.2f}, threshold {threshold:g})"
        components = [
            _probability("probability", f"model probability of {finding} (fraction 0-1)", probability),
            _probability("decision-threshold", "decision threshold (fraction 0-1)", threshold),
        ]
        summary = f"probability of {finding} {probability:.2f} ({call} at the threshold {threshold:g})"
    components += [
        _probability(f"probability:{name}", f"model probability of {name} (fraction 0-1)", q)
        for name, q in others.items()
    ]
    when = (issued or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    device = {
        "resourceType": "Device",
        "id": "model",
        "deviceName": [{"name": name, "type": "model-name"}],
        "type": {"text": "machine learning model (medml image classifier)"},
    }
    if version:
        device["version"] = [{"value": version}]
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "finding",
        "status": status,
        "category": [_AI],
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": finding}], "text": f"{finding} (image model finding)"},
        "valueCodeableConcept": {"coding": [{"system": FINDING_SYSTEM, "code": value_code}], "text": value_text},
        "component": components,
        "method": {"coding": [{"system": MODEL_SYSTEM, "code": model}], "text": f"medml image model {model}"},
        "device": {"reference": "#model"},
        "derivedFrom": [dict(study)],
        "issued": when,
    }
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _id(model, key),
        "contained": [observation, device],
        "status": status,
        "category": [_IMAGING],
        "code": {
            "coding": [{"system": FINDING_SYSTEM, "code": f"{finding}-assessment"}],
            "text": f"Image model assessment: {finding}",
        },
        "issued": when,
        "imagingStudy": [dict(study)],
        "result": [{"reference": "#finding"}],
        "conclusion": (
            f"Model {model}: {summary}. Decision support, not a diagnosis: a clinician must read the image."
        ),
    }
    if subject:
        report["subject"] = observation["subject"] = dict(subject)
    if heatmap_png:
        report["presentedForm"] = [
            {
                "contentType": "image/png",
                "data": base64.b64encode(heatmap_png).decode("ascii"),
                "title": f"Grad-CAM heat map of the predicted class ({model})",
            }
        ]
    return report


def bundle_of(reports: Sequence[Mapping[str, Any]], *, timestamp: datetime | None = None) -> dict[str, Any]:
    """DiagnosticReports as one FHIR R4 ``collection`` Bundle (``fullUrl`` ``urn:uuid:<id>``)."""
    when = (timestamp or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    ids = "/".join(str(r["id"]) for r in reports)
    return {
        "resourceType": "Bundle",
        "id": _id("bundle", ids),
        "type": "collection",
        "timestamp": when,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": dict(r)} for r in reports],
    }


@dataclass(frozen=True)
class ImageSource:
    """Where one image came from: ``label`` is the file, or ``file[i]`` for an ``.npz``; the DICOM Study Instance
    UID and Patient ID when the file is DICOM and has them, else empty."""

    label: str
    path: Path
    study_uid: str = ""
    patient_id: str = ""


def image_reports(
    sources: Sequence[ImageSource],
    probabilities: npt.ArrayLike,
    *,
    model: str,
    target: str,
    class_names: Sequence[str] = (),
    multiclass: bool = False,
    heatmap_pngs: Sequence[bytes | None] | None = None,
) -> dict[str, Any]:
    """One FHIR R4 collection Bundle of DiagnosticReports, one per image, each referencing its ImagingStudy (the
    DICOM Study Instance UID, else the file's name) and carrying its heat map PNG when ``heatmap_pngs`` has one.

    Binary (one probability per image): the finding is ``target`` at 0.5. ``multiclass``: the most probable class,
    with every class's probability. Multilabel: the most probable finding, with every finding's probability."""
    probs = np.asarray(probabilities, dtype=np.float64)
    pngs: Sequence[bytes | None] = [None] * len(sources) if heatmap_pngs is None else heatmap_pngs
    if len(probs) != len(sources) or len(pngs) != len(sources):
        raise DataError(
            f"{len(sources)} images, {len(probs)} rows of probabilities and {len(pngs)} heat maps",
            "give one row of probabilities (and one heat map, or None) per image",
        )
    names = [str(c) for c in class_names]
    reports = []
    for source, p, png in zip(sources, probs, pngs, strict=True):
        subject = (
            {
                "type": "Patient",
                "identifier": {"value": source.patient_id},
                "display": f"DICOM PatientID {source.patient_id}",
            }
            if source.patient_id
            else None
        )
        study = study_reference(study_uid=source.study_uid, file_name=source.label)
        row = np.atleast_1d(p)
        if row.size == 1:
            finding, probability, others = target, float(row[0]), None
        else:
            top = int(row.argmax())
            finding, probability = names[top], float(row[top])
            others = {name: float(q) for name, q in zip(names, row, strict=True)}
        reports.append(
            diagnostic_report(
                probability,
                finding=finding,
                model=model,
                study=study,
                subject=subject,
                heatmap_png=png,
                class_probabilities=others,
                rule="most-probable" if others is not None and multiclass else "threshold",
            )
        )
    return bundle_of(reports)
