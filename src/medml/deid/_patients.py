"""Whose record a resource is: the key medml's ``dateShiftScope: patient`` shifts all of a patient's dates by.

A Patient is keyed by its id; any other resource by the Patient its first patient element refers to
(``patient``, ``subject``, ``beneficiary``, ``for``, ``individual``: the elements the R4 patient compartment
names most), read as ``Patient/<id>`` (relative, absolute or versioned) or ``urn:uuid:<id>`` (a Bundle's
internal reference, whose target's id is that uuid in a transaction or Bulk Data export). So an Observation in one
NDJSON file and its Patient in another get the same key, and so the same shift. A resource with no patient
(a Practitioner, an Organization) takes the key of the record it sits in (a patient's Bundle, the resource
that contains it) or else its own type and id.
"""

from __future__ import annotations

import re
from typing import Any

#: the elements that name a resource's patient, most common first
PATIENT_ELEMENTS = ("patient", "subject", "beneficiary", "for", "individual")
_REFERENCE = re.compile(r"(?:^|/)Patient/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_UUID = "urn:uuid:"


def patient_key(resource: dict[str, Any]) -> str:
    """The id of the patient whose record ``resource`` is, or "" where it names none."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else ""
    for name in PATIENT_ELEMENTS:
        value = resource.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            continue
        ref = value.get("reference")
        if not isinstance(ref, str):
            continue
        if ref.startswith("Patient/") and "/" not in ref[8:]:
            return ref[8:]  # the common case, without the pattern
        if "Patient/" not in ref:  # the pattern cannot match: a Bundle's urn:uuid: reference, or no patient
            if ref.startswith(_UUID) and value.get("type", "Patient") == "Patient":
                return ref[len(_UUID) :]
            continue
        m = _REFERENCE.search(ref)
        if m:
            return m.group("id")
        if ref.startswith(_UUID) and value.get("type", "Patient") == "Patient":
            return ref[len(_UUID) :]
    return ""


def bundle_patient(bundle: dict[str, Any]) -> str:
    """The id of a Bundle's only Patient entry (a patient's record sent as one Bundle), else ""."""
    found = ""
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            if found:
                return ""
            rid = resource.get("id")
            found = rid if isinstance(rid, str) and rid else ""
    return found


__all__ = ["PATIENT_ELEMENTS", "bundle_patient", "patient_key"]
