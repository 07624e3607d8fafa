"""Building CDS Hooks requests from real stays, as an EHR would, for the service tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

LOINC = "http://loinc.org"


def data_root() -> Path:
    from medml.config import get_settings

    return get_settings().data_root


SET_A = data_root() / "icu" / "physionet-2012-set-a"
CDS = data_root() / "cds-hooks"
#: stays of set A: the first record, a death, Age >= 200, Gender -1, FiO2 in percent, and a few more
STAYS = (132539, 132548, 132551, 132973, 135757, 132547, 133308, 132540, 132541, 132543, 132545, 132592)
needs_physionet = pytest.mark.skipif(not (SET_A / "set-a.tar.gz").is_file(), reason=f"no PhysioNet data at {SET_A}")


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:test:{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def prefetch_for(resources: list[dict[str, Any]], codes: list[str]) -> dict[str, Any]:
    """What an EHR sends for the discovery templates: the Patient, its Encounters, its Observations of ``codes``."""
    wanted = {c if "|" in c else f"{LOINC}|{c}" for c in codes}

    def coded(obs: dict[str, Any]) -> bool:
        return any(f"{c.get('system')}|{c.get('code')}" in wanted for c in obs.get("code", {}).get("coding", []))

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return {
        "patient": patient,
        "encounters": searchset([r for r in resources if r["resourceType"] == "Encounter"]),
        "observations": searchset([r for r in resources if r["resourceType"] == "Observation" and coded(r)]),
    }


def hook_request(patient_id: str, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body
