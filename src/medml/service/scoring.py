"""One patient scored from FHIR by a deployed model: prefetch in, calibrated risk and its reasons out.

The features come from :func:`medml.fhir.features.build_features`, the function that built the training data, over
the prefetched resources loaded into a small in-memory store: a stay scored here and in training gives the same
numbers. Each worker thread reuses one in-memory DuckDB store, emptied between requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from medml.errors import MedmlError
from medml.explain.contributions import Factor, top_factors
from medml.fhir.features import build_features
from medml.fhir.store import FhirStore
from medml.registry import ModelBundle
from medml.service.deploy import Deployment

LOINC = "http://loinc.org"


class PrefetchError(MedmlError):
    """A prefetch (or fetched data) that cannot be what the service asked for: a 400 to the EHR."""


@dataclass
class Scored:
    """A patient's risk from one model, with what it rests on."""

    risk: float
    category: str
    factors: list[Factor]
    missing: list[str]
    index_time: datetime
    encounter_id: str | None
    #: hours from the encounter's start to the index time, when the model is anchored to an encounter
    hours_observed: float | None
    results_used: int
    dropped: dict[str, int] = field(default_factory=dict)
    #: the model's inputs, by column, as scored
    features: dict[str, Any] = field(default_factory=dict)


@dataclass
class NotScored:
    """The model does not apply to this patient now (no encounter of the kind it was built for)."""

    reason: str


def prefetch_templates(deployment: Deployment) -> dict[str, str]:
    """The FHIR queries the service needs, as CDS Hooks prefetch templates: exactly the codes the model reads."""
    spec = deployment.serving
    codes = ",".join(c if "|" in c else f"{LOINC}|{c}" for c in spec.definition.codes())
    templates = {"patient": "Patient/{{context.patientId}}"}
    if spec.anchor == "encounter-start":
        templates["encounters"] = "Encounter?patient={{context.patientId}}"
    templates["observations"] = "Observation?patient={{context.patientId}}&code=" + codes
    return templates


#: what each prefetch key must hold: a resource type (a read) or the entries' type of a searchset Bundle
EXPECTED = {"patient": ("Patient", None), "encounters": ("Bundle", "Encounter"),
            "observations": ("Bundle", "Observation")}


def collect(prefetch: Mapping[str, Any], patient_id: str) -> list[dict[str, Any]]:
    """The resources of a complete prefetch, checked: right types, and every one about this patient.

    A key whose value is null means the EHR looked and found nothing. Entries of other types in a search Bundle
    (an OperationOutcome with search.mode "outcome", an _include) are left out.
    """
    out: list[dict[str, Any]] = []
    for key, value in prefetch.items():
        if key not in EXPECTED or value is None:
            continue
        rtype, entry_type = EXPECTED[key]
        if not isinstance(value, Mapping) or value.get("resourceType") != rtype:
            got = value.get("resourceType") if isinstance(value, Mapping) else type(value).__name__
            raise PrefetchError(f"prefetch '{key}' is a {got}, expected a {rtype}"
                                + (f" of {entry_type} resources" if entry_type else ""),
                                "send what the service's discovery prefetch template asks for")
        if entry_type is None:
            if value.get("id") != patient_id:
                raise PrefetchError(f"prefetch '{key}' is Patient/{value.get('id')}, but context.patientId is "
                                    f"{patient_id}", "prefetch the patient in context")
            out.append(dict(value))
            continue
        entries = value.get("entry") or []
        if not isinstance(entries, list):
            raise PrefetchError(f"prefetch '{key}': Bundle.entry is not a list", "send a searchset Bundle")
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(res, Mapping) or res.get("resourceType") != entry_type:
                continue
            ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
            if not _is_patient(ref, patient_id):
                raise PrefetchError(f"prefetch '{key}' entry {i} ({entry_type}/{res.get('id')}) is about "
                                    f"{ref or 'no one'}, not Patient/{patient_id}",
                                    "prefetch only the patient in context")
            out.append(dict(res))
    return out


def _is_patient(reference: Any, patient_id: str) -> bool:
    return isinstance(reference, str) and (reference == f"Patient/{patient_id}"
                                           or reference.endswith(f"/Patient/{patient_id}"))


_local = threading.local()


def _scratch() -> FhirStore:
    """This thread's in-memory store (creating a DuckDB connection costs more than a whole request)."""
    store: FhirStore | None = getattr(_local, "store", None)
    if store is None:
        store = FhirStore(":memory:")
        _local.store = store
    return store


class Scorer:
    """A deployment and its loaded model, ready to score patients."""

    def __init__(self, deployment: Deployment, bundle: ModelBundle) -> None:
        self.deployment = deployment
        self.bundle = bundle
        self.spec = deployment.serving
        self.columns = bundle.feature_names
        self.templates = prefetch_templates(deployment)

    def score(self, patient_id: str, resources: list[dict[str, Any]], *, encounter_id: str | None = None,
              now: datetime | None = None) -> Scored | NotScored:
        now = now or datetime.now(UTC)
        encounter = None
        if self.spec.anchor == "encounter-start":
            encounter = choose_encounter(resources, encounter_id, self.spec.encounter_classes)
            if encounter is None:
                kinds = "/".join(self.spec.encounter_classes) or "any"
                return NotScored(f"no encounter ({kinds}) with a start time for Patient/{patient_id}")
            start = encounter[1]
            index = min(now, start + timedelta(hours=self.spec.hours))
            if index < start:
                return NotScored(f"encounter {encounter[0]} starts in the future")
        else:
            index = now
        store = _scratch()
        try:
            store.replace_all(resources)
            built = build_features(store, self.spec.definition, pd.Series({patient_id: index}, dtype=object))
        finally:
            store.replace_all(())
        X = built.X[self.columns]
        risk = float(self.bundle.predict_proba(X)[0, 1])
        factors = top_factors(self.bundle.model, X, k=5)[0]
        counts = [c for c in self.columns if c.endswith("_count")]
        results = int(np.nansum(X[counts].to_numpy(dtype=float))) if counts else 0
        return Scored(
            risk=risk, category=self.deployment.category(risk), factors=factors,
            missing=built.missing(patient_id, self.spec.definition), index_time=index,
            encounter_id=encounter[0] if encounter else None,
            hours_observed=(index - encounter[1]).total_seconds() / 3600 if encounter else None,
            results_used=results, dropped={f"{n} ({why})": k for (n, why), k in built.dropped.items()},
            features=dict(zip(self.columns, X.iloc[0].tolist(), strict=True)))


def choose_encounter(resources: list[dict[str, Any]], encounter_id: str | None,
                     classes: tuple[str, ...]) -> tuple[str, datetime] | None:
    """The encounter in context if it is in the data, else the patient's latest of the model's classes."""
    found = []
    for res in resources:
        if res.get("resourceType") != "Encounter":
            continue
        cls = (res.get("class") or {}).get("code")
        start = _instant((res.get("period") or {}).get("start"))
        if start is None or (classes and cls not in classes):
            continue
        if encounter_id is not None and res.get("id") == encounter_id:
            return str(res["id"]), start
        found.append((start, str(res.get("id"))))
    if not found:
        return None
    start, eid = max(found)
    return eid, start


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
