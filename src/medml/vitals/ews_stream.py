"""The learned early-warning model beside NEWS2 on a stream of FHIR Observations (`medml vitals watch --model`).

Per patient the watcher keeps the window of the model's inputs: each Observation read back into PhysioNet 2012 set
A's variables (the converter's LOINC table, :data:`medml.fhir.convert.physionet2012.MAPPINGS`, and its units; a
generic code without the method, such as systolic pressure 8480-6 from a bedside monitor, as the cuff pressure), in
minutes since ICU admission: the ``period.start`` of the patient's Encounter when one came first on the stream, else
the patient's first observation. To score, it builds the model's stay-hour features with the training code itself
(:func:`medml.vitals.ews.stay_hours` on this one stay, after the dataset adapter's cleaning) at the hour the
newest observation falls in (minute 61 is hour 2), from the events so far, and asks the registered model. The model
knows the first 48 hours of a stay only: later, or before anything is measured, it is not scored and says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medml.data.cohort import Cohort
from medml.errors import ConfigError
from medml.fhir.convert.physionet2012 import LOINC, MAPPINGS, VariableMap, source_value
from medml.vitals.ews import KEY, stay_hours
from medml.vitals.observations import parse_instant

__all__ = ["GENERIC", "LearnedWatch", "learned_variable"]

#: generic vital-sign codes (no method) -> the set A variable they are read as
GENERIC = {"8480-6": "NISysABP", "8462-4": "NIDiasABP", "8478-0": "NIMAP", "59408-5": "SaO2"}
_BY_CODING: dict[tuple[str, str], VariableMap] = {(m.system, m.code): m for m in MAPPINGS}
_BY_VARIABLE = {m.variable: m for m in MAPPINGS}
_MAX_HOURS = 48


def learned_variable(resource: Mapping[str, Any]) -> tuple[str, float] | None:
    """(set A variable, value in the record files' unit) of an Observation, or None when it is none of them (or its
    unit is not the table's)."""
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list):
        return None
    mapping = None
    for c in codings:
        if isinstance(c, dict):
            mapping = _BY_CODING.get((str(c.get("system")), str(c.get("code"))))
            if mapping is not None:
                break
    if mapping is None:
        generic = next(
            (
                GENERIC[c["code"]]
                for c in codings
                if isinstance(c, dict) and c.get("system") in (LOINC, None) and c.get("code") in GENERIC
            ),
            None,
        )
        if generic is None:
            return None
        mapping = _BY_VARIABLE[generic]
    q = resource.get("valueQuantity")
    if not isinstance(q, dict):
        return None
    value = q.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if q.get("code", mapping.ucum) != mapping.ucum:
        return None
    return mapping.variable, source_value(mapping, value)


@dataclass
class _Window:
    admitted: float | None = None
    events: list[tuple[int, str, float]] = field(default_factory=list)
    age: float = math.nan


class LearnedWatch:
    """Per-patient windows of a registered early-warning model's inputs, and its risk on demand.

    ``bundle``: a :class:`~medml.registry.ModelBundle` trained by `medml vitals train-ews` (its inputs are the
    stay-hour features)."""

    def __init__(self, bundle: Any) -> None:
        md = bundle.metadata
        if md.dataset != KEY:
            raise ConfigError(
                f"{bundle.ref} was trained on {md.dataset!r}, not the stay-hours of `medml vitals train-ews`",
                "give a model that `medml vitals train-ews` registered (see `medml models list`)",
            )
        self.bundle = bundle
        self._patients: dict[str, _Window] = {}
        headline = md.headline
        self._evaluation = None if headline is None else headline.auroc.to_dict()
        self._population = md.population or (headline.population if headline is not None else "")

    def observe(self, resource: Any) -> None:
        """Take one parsed FHIR resource: an Encounter gives its patient's admission, an Observation an event."""
        if not isinstance(resource, dict):
            return
        kind = resource.get("resourceType")
        if kind == "Bundle":
            for entry in resource.get("entry") or ():
                if isinstance(entry, dict):
                    self.observe(entry.get("resource"))
            return
        subject = resource.get("subject")
        patient = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(patient, str) or not patient.strip():
            return
        window = self._patients.setdefault(patient.strip(), _Window())
        if kind == "Encounter":
            period = resource.get("period")
            start = period.get("start") if isinstance(period, dict) else None
            if window.admitted is None and not window.events:
                try:
                    window.admitted = parse_instant(start)
                except ValueError:
                    return
            return
        if kind != "Observation":
            return
        found = learned_variable(resource)
        if found is None:
            return
        text = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
        try:
            t = parse_instant(text)
        except ValueError:
            return
        if window.admitted is None:
            window.admitted = t
        variable, value = found
        if variable == "Age":
            window.age = value if math.isnan(window.age) else window.age
            return
        minute = round((t - window.admitted) / 60.0)
        if 0 <= minute <= _MAX_HOURS * 60:
            window.events.append((minute, variable, value))

    def score(self, patient: str, at: float) -> dict[str, Any]:
        """The model's risk for ``patient`` at ``at`` (seconds since the epoch), or why it is not scored."""
        out: dict[str, Any] = {
            "model": self.bundle.ref,
            "intended_use": self.bundle.metadata.intended_use,
            "auroc_test": self._evaluation,
            "population": self._population,
        }
        window = self._patients.get(patient)
        if window is None or window.admitted is None or not window.events:
            return {**out, "risk": None, "not_scored": "no input of the model measured yet for this patient"}
        minutes = (at - window.admitted) / 60.0
        if minutes > _MAX_HOURS * 60:
            return {**out, "risk": None, "not_scored": "past the first 48 h of the stay, which the model knows"}
        hour = max(1, math.ceil(minutes / 60.0))
        features = self.features(patient, hour)
        risk = float(self.bundle.predict_proba(features[self.bundle.feature_names])[0, 1])
        return {**out, "risk": round(risk, 4), "hour": hour, "not_scored": None}

    def features(self, patient: str, hour: int) -> pd.DataFrame:
        """The model's one-row stay-hour features of ``patient`` at ``hour`` (1-48), by the training code."""
        from medml.data.datasets.physionet2012 import clean_events

        window = self._patients[patient]
        events = pd.DataFrame([e for e in window.events if e[0] <= hour * 60], columns=["time", "variable", "value"])
        events.insert(0, "stay_id", 1)
        events = clean_events(events.sort_values("time", kind="stable")).reset_index(drop=True)
        events["time"] = events["time"].astype(np.int32)
        table = pd.DataFrame(
            {
                "stay_id": [1],
                "patient_id": [1],
                "has_time_series": [True],
                "In-hospital_death": [0],
                "Age": [window.age],
            }
        )
        one = Cohort(
            name=patient, table=table, patient_id="patient_id", unit_id="stay_id", events=events, provenance="watch"
        )
        frame = stay_hours(one, hours=max(hour, 1)).frame
        return frame[frame["hour"] == hour].reset_index(drop=True)
