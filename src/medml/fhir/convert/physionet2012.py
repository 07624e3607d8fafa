"""PhysioNet/CinC Challenge 2012 ICU stays as FHIR R4: a Patient, an Encounter and one Observation per measurement.

Each record file (``Time,Parameter,Value``, times ``HH:MM`` since ICU admission) is one ICU stay and, as in the
tabular adapter (:mod:`medml.data.datasets.physionet2012`), its own patient. ``MAPPINGS`` is the mapping table: one
row per parameter with its LOINC code, UCUM unit and category; ``docs/fhir-physionet-2012-mapping.md`` shows it
(``mapping_markdown``) with what is represented where and what is lost.

- Time: the data has no dates. Stay ``r`` is admitted at the synthetic instant ``ADMISSION_BASE + r minutes``
  (``Encounter.period.start``) and a measurement at ``HH:MM`` is effective that much later, so the offset from
  admission, the only real quantity, is ``effectiveDateTime - Encounter.period.start``.
- Values are converted as recorded, implausible ones included (an HR of 0, a weight of 0 kg): only the -1
  missing sentinel is dropped, exactly as the tabular adapter reads the files. Its physiological limits
  (``PLAUSIBLE``) are a modelling choice and are applied by whoever builds features from the store.
- Descriptors: Gender -> ``Patient.gender`` (0 female, 1 male, -1 or absent unknown); Age, Height and Weight ->
  Observations at their line's time; ICUType -> ``Encounter.serviceType`` (local codes 1-4); RecordID -> ids and
  identifiers. An Age of 200 or more is MIMIC-II's code for "over 89": value 90 with comparator ``>=``.
- Outcomes (``Outcomes-a.txt``): in-hospital death -> ``Encounter.hospitalization.dischargeDisposition`` ``exp``,
  else ``oth``; Length_of_stay -> ``Encounter.length`` (days); Survival -> ``Patient.deceasedDateTime`` (a date).
- Ids are deterministic (``pn2012-<RecordID>``; Observation ``pn2012-<RecordID>-<Parameter>-<minute>-<k>``, ``k``
  counting repeats of a parameter at one minute in file order), so a re-ingest replaces rather than duplicates.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import orjson

from medml.data.datasets.physionet2012 import ICU_TYPES, STATIC, VARIABLES
from medml.errors import DataError, InputFileError

Resource = dict[str, Any]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
#: Local code systems and identifiers (URNs: this project owns no URL to publish them under).
PARAMETER_SYSTEM = "urn:medml:physionet-2012:parameter"
ICU_TYPE_SYSTEM = "urn:medml:physionet-2012:icu-type"
RECORD_ID_SYSTEM = "urn:medml:physionet-2012:record-id"

ID_PREFIX = "pn2012"
HEADER = "Time,Parameter,Value"
#: Synthetic admission instants: stay r is admitted at ADMISSION_BASE + r minutes (set A: 2-9 April 2000).
ADMISSION_BASE = datetime(2000, 1, 1, tzinfo=UTC)
MISSING = -1.0
AGE_DEIDENTIFIED = 200  # MIMIC-II's ages of 200 and over stand for "over 89"
AGE_TOP = 90

CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "survey": "Survey", "therapy": "Therapy"}


@dataclass(frozen=True)
class VariableMap:
    """How one PhysioNet 2012 parameter becomes an Observation: code, unit, category and any unit conversion."""

    variable: str  # the parameter's name in the record files
    code: str  # LOINC code (a local code where ``system`` says so)
    display: str  # LOINC display name
    ucum: str  # UCUM code of valueQuantity
    unit: str  # valueQuantity.unit, for people
    category: str  # observation-category code; "" for none
    source_unit: str  # the unit in the record files
    scale: int = 1  # FHIR value = source value x scale
    generic: tuple[str, str] | None = None  # a broader LOINC (code, display) sent as a second coding
    system: str = LOINC
    notes: str = ""

    @property
    def label(self) -> str:
        """The tabular adapter's clinical label for this parameter."""
        return (VARIABLES | STATIC)[self.variable][0]


_LAB, _VITAL = "laboratory", "vital-signs"
_BP_NOTE = (
    "the method-specific code comes first; the generic vital-signs code is sent too, as FHIR's vital "
    "signs guidance asks, so a query for {generic} finds invasive and cuff pressures alike"
)

#: The mapping table: the 37 time-series parameters (alphabetical), then the descriptors Age and Height.
MAPPINGS: tuple[VariableMap, ...] = (
    VariableMap(
        "ALP",
        "6768-6",
        "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        "U/L",
        _LAB,
        "IU/L",
        notes="IU/L and U/L are the same unit",
    ),
    VariableMap(
        "ALT",
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        "U/L",
        _LAB,
        "IU/L",
    ),
    VariableMap(
        "AST",
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        "U/L",
        _LAB,
        "IU/L",
        notes="25 AST/ALT values (and a Urine) are written as 1.422e+04",
    ),
    VariableMap("Albumin", "1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", "g/dL", _LAB, "g/dL"),
    VariableMap("BUN", "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", _LAB, "mg/dL"),
    VariableMap(
        "Bilirubin",
        "1975-2",
        "Bilirubin.total [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mg/dL",
        _LAB,
        "mg/dL",
        notes="the challenge says only 'bilirubin'; total bilirubin is assumed",
    ),
    VariableMap(
        "Cholesterol", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", _LAB, "mg/dL"
    ),
    VariableMap("Creatinine", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", _LAB, "mg/dL"),
    VariableMap(
        "DiasABP",
        "76213-8",
        "Invasive Diastolic blood pressure",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8462-4", "Diastolic blood pressure"),
        notes=_BP_NOTE.format(generic="8462-4"),
    ),
    VariableMap(
        "FiO2",
        "3150-0",
        "Inhaled oxygen concentration",
        "%",
        "%",
        _VITAL,
        "fraction (0-1)",
        scale=100,
        notes="the files hold a fraction (0.21-1); FHIR gets percent (x100, exact decimal arithmetic) as "
        "US Core and LOINC's example unit do; divide by 100 to get the tabular value back",
    ),
    VariableMap(
        "GCS",
        "9269-2",
        "Glasgow coma score total",
        "{score}",
        "score",
        "survey",
        "points (3-15)",
        notes="category survey, as for other assessment scales (Apgar)",
    ),
    VariableMap(
        "Glucose",
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mg/dL",
        _LAB,
        "mg/dL",
        notes="debatable: the source does not say serum or whole blood (2339-0); serum is assumed",
    ),
    VariableMap(
        "HCO3",
        "1963-8",
        "Bicarbonate [Moles/volume] in Serum or Plasma",
        "mmol/L",
        "mmol/L",
        _LAB,
        "mmol/L",
        notes="debatable: MIMIC-II chemistry panels may report total CO2 (2028-9)",
    ),
    VariableMap(
        "HCT",
        "20570-8",
        "Hematocrit [Volume Fraction] of Blood",
        "%",
        "%",
        _LAB,
        "%",
        notes="the method-free code: the source mixes analyser and blood-gas haematocrits",
    ),
    VariableMap("HR", "8867-4", "Heart rate", "/min", "beats/min", _VITAL, "bpm"),
    VariableMap(
        "K",
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        "mmol/L",
        _LAB,
        "mEq/L",
        notes="mEq/L = mmol/L for a monovalent ion: no conversion",
    ),
    VariableMap(
        "Lactate",
        "32693-4",
        "Lactate [Moles/volume] in Blood",
        "mmol/L",
        "mmol/L",
        _LAB,
        "mmol/L",
        notes="debatable: whole blood (blood gas), as MIMIC maps it; 2524-7 would say serum or plasma",
    ),
    VariableMap(
        "MAP",
        "76214-6",
        "Invasive Mean blood pressure",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8478-0", "Mean blood pressure"),
        notes=_BP_NOTE.format(generic="8478-0"),
    ),
    VariableMap(
        "MechVent",
        "MechVent",
        "Mechanical ventilation",
        "1",
        "1 = on",
        "therapy",
        "1 = on",
        system=PARAMETER_SYSTEM,
        notes="no LOINC fits a ventilation on/off flag: a local code; the files only ever hold 1 "
        "(ventilation charted at that time); arguably a Procedure or device use, kept an "
        "Observation so that every parameter is read the same way",
    ),
    VariableMap(
        "Mg",
        "19123-9",
        "Magnesium [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mg/dL",
        _LAB,
        "mmol/L per the challenge; the values are mg/dL",
        notes="the challenge lists mmol/L, but the values (median 2.0) are mg/dL, as the tabular "
        "adapter labels them; hence the mass code, not 2601-3",
    ),
    VariableMap(
        "NIDiasABP",
        "76535-4",
        "Diastolic blood pressure by Noninvasive",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8462-4", "Diastolic blood pressure"),
        notes=_BP_NOTE.format(generic="8462-4"),
    ),
    VariableMap(
        "NIMAP",
        "76536-2",
        "Mean blood pressure by Noninvasive",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8478-0", "Mean blood pressure"),
        notes=_BP_NOTE.format(generic="8478-0"),
    ),
    VariableMap(
        "NISysABP",
        "76534-7",
        "Systolic blood pressure by Noninvasive",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8480-6", "Systolic blood pressure"),
        notes=_BP_NOTE.format(generic="8480-6"),
    ),
    VariableMap(
        "Na",
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        "mmol/L",
        _LAB,
        "mEq/L",
        notes="mEq/L = mmol/L for a monovalent ion: no conversion",
    ),
    VariableMap(
        "PaCO2", "2019-8", "Carbon dioxide [Partial pressure] in Arterial blood", "mm[Hg]", "mmHg", _LAB, "mmHg"
    ),
    VariableMap("PaO2", "2703-7", "Oxygen [Partial pressure] in Arterial blood", "mm[Hg]", "mmHg", _LAB, "mmHg"),
    VariableMap(
        "Platelets",
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        "10*3/uL",
        "10^3/uL",
        _LAB,
        "cells/nL",
        notes="cells/nL = 10^3/uL: no conversion",
    ),
    VariableMap("RespRate", "9279-1", "Respiratory rate", "/min", "breaths/min", _VITAL, "breaths/min"),
    VariableMap(
        "SaO2",
        "2708-6",
        "Oxygen saturation in Arterial blood",
        "%",
        "%",
        _LAB,
        "%",
        notes="arterial blood-gas saturation (about 2 a stay), not pulse oximetry SpO2 (59408-5)",
    ),
    VariableMap(
        "SysABP",
        "76215-3",
        "Invasive Systolic blood pressure",
        "mm[Hg]",
        "mmHg",
        _VITAL,
        "mmHg",
        generic=("8480-6", "Systolic blood pressure"),
        notes=_BP_NOTE.format(generic="8480-6"),
    ),
    VariableMap(
        "Temp",
        "8310-5",
        "Body temperature",
        "Cel",
        "degC",
        _VITAL,
        "degC",
        notes="site not recorded (no 8331-1 oral, 8332-9 rectal)",
    ),
    VariableMap(
        "TroponinI", "10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ug/L", "ug/L", _LAB, "ug/L"
    ),
    VariableMap(
        "TroponinT", "6598-7", "Troponin T.cardiac [Mass/volume] in Serum or Plasma", "ug/L", "ug/L", _LAB, "ug/L"
    ),
    VariableMap(
        "Urine",
        "9187-6",
        "Urine output",
        "mL",
        "mL",
        _VITAL,
        "mL",
        notes="volume charted since the previous entry, not a rate; no observation category fits output "
        "charting: vital-signs, as ICU flowsheets keep it beside them",
    ),
    VariableMap(
        "WBC",
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        "10^3/uL",
        _LAB,
        "cells/nL",
        notes="cells/nL = 10^3/uL: no conversion",
    ),
    VariableMap(
        "Weight",
        "29463-7",
        "Body weight",
        "kg",
        "kg",
        _VITAL,
        "kg",
        notes="the 00:00 line is the admission weight (descriptor), later lines the time series",
    ),
    VariableMap(
        "pH",
        "2744-1",
        "pH of Arterial blood",
        "[pH]",
        "pH",
        _LAB,
        "",
        notes="the challenge says arterial pH; 11558-4 would leave the specimen open",
    ),
    VariableMap(
        "Age",
        "30525-0",
        "Age",
        "a",
        "years",
        "",
        "years",
        notes="descriptor, at admission; 200 and over (MIMIC-II's 'over 89') -> 90 with comparator >=",
    ),
    VariableMap("Height", "8302-2", "Body height", "cm", "cm", _VITAL, "cm", notes="descriptor, at admission"),
)
BY_VARIABLE: dict[str, VariableMap] = {m.variable: m for m in MAPPINGS}
#: Reverse lookup for feature building: primary code -> row (the codes are unique).
BY_CODE: dict[str, VariableMap] = {m.code: m for m in MAPPINGS}
#: Parameters that are not Observations: RecordID (ids), Gender (Patient), ICUType (Encounter).
NOT_OBSERVATIONS = frozenset({"RecordID", "Gender", "ICUType"})
KNOWN_PARAMETERS = frozenset(BY_VARIABLE) | NOT_OBSERVATIONS
GENDER = {0: "female", 1: "male"}


def source_value(mapping: VariableMap, value: float) -> float:
    """A valueQuantity.value back in the record file's unit (undoes ``scale`` in exact decimal arithmetic)."""
    if mapping.scale == 1:
        return float(value)
    return float(Decimal(repr(value)) / mapping.scale)


@dataclass(frozen=True)
class StayOutcome:
    """One row of ``Outcomes-a.txt``; ``None`` where the file holds the -1 missing code."""

    record_id: int
    in_hospital_death: bool
    length_of_stay: int | None  # days from ICU admission to the end of the hospital stay
    survival: int | None  # days from ICU admission to death; None when no death is known
    saps_i: int | None
    sofa: int | None


def _known(v: int) -> int | None:
    return None if v == MISSING else v


_OUTCOME_COLUMNS = ("RecordID", "SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death")


def read_outcomes(path: str | Path) -> dict[int, StayOutcome]:
    """``Outcomes-a.txt`` (or -b, -c) by RecordID; a clear error naming the file and line for a bad one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read the outcomes file {p}: {e}", "restore it (see SOURCE.txt)") from e
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != _OUTCOME_COLUMNS:
        found = ",".join(rows[0]) if rows else "nothing"
        raise InputFileError(
            f"{p}, line 1: expected the header {','.join(_OUTCOME_COLUMNS)}, found {found!r}",
            "give the challenge's Outcomes-*.txt file unchanged",
        )
    out: dict[int, StayOutcome] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            rid, saps, sofa, los, survival, death = (int(c) for c in row)
        except ValueError as e:
            raise DataError(
                f"{p}, line {lineno}: expected {len(_OUTCOME_COLUMNS)} whole numbers, found {','.join(row)!r}",
                "correct the line, or restore the original file",
            ) from e
        if death not in (0, 1):
            raise DataError(
                f"{p}, line {lineno}: In-hospital_death is {death}, not 0 or 1",
                "correct the line, or restore the original file",
            )
        out[rid] = StayOutcome(rid, death == 1, _known(los), _known(survival), _known(saps), _known(sofa))
    return out


def _minutes(token: str) -> int | None:
    """``HH:MM`` -> minutes since admission; None when malformed."""
    hours, sep, mins = token.partition(":")
    if not sep or not hours.isdigit() or len(mins) != 2 or not mins.isdigit() or int(mins) >= 60:
        return None
    return int(hours) * 60 + int(mins)


def _number(token: str) -> float | None:
    """A finite number, or None."""
    try:
        v = float(token)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _fhir_decimal(token: str, value: float, scale: int) -> int | float:
    """The value for valueQuantity: an integer when the file wrote one, scaled in decimal arithmetic."""
    if scale != 1:
        d = Decimal(token) * scale
        return int(d) if d == d.to_integral_value() else float(d)
    body = token[1:] if token[:1] in "+-" else token
    return int(token) if body.isdigit() else value


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def admission_instant(record_id: int) -> datetime:
    """The synthetic admission instant of a stay (see the module docstring)."""
    return ADMISSION_BASE + timedelta(minutes=record_id)


def _codeable(m: VariableMap) -> dict[str, Any]:
    codings: list[dict[str, str]] = []
    if m.system != PARAMETER_SYSTEM:
        codings.append({"system": m.system, "code": m.code, "display": m.display})
    if m.generic is not None:
        codings.append({"system": LOINC, "code": m.generic[0], "display": m.generic[1]})
    codings.append({"system": PARAMETER_SYSTEM, "code": m.variable, "display": m.label})
    return {"coding": codings}


_CODES = {m.variable: orjson.dumps(_codeable(m)) for m in MAPPINGS}
_CATEGORIES = {
    c: orjson.dumps([{"coding": [{"system": OBSERVATION_CATEGORY, "code": c, "display": d}]}])
    for c, d in CATEGORY_DISPLAY.items()
}


class _Record:
    """One record file, parsed and checked: its id, descriptors and measurement lines."""

    def __init__(self, text: str, source: str, stem_id: int | None) -> None:
        lines = text.splitlines()
        first = lines[0].lstrip("\ufeff").strip() if lines else ""
        if first != HEADER:
            raise InputFileError(
                f"{source}, line 1: expected the header '{HEADER}', found {first!r}",
                "give a PhysioNet 2012 record file (Time,Parameter,Value) unchanged",
            )
        self.source = source
        self.gender: int | None = None
        self.icu_type: int | None = None
        self.age: float | None = None
        self.lines: list[tuple[int, int, str, str, float]] = []  # (line, minutes, parameter, text, value)
        record_id: int | None = None
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            parts = line.split(",")
            if len(parts) != 3:
                self._fail(lineno, f"expected 3 comma-separated fields (Time,Parameter,Value), found {line!r}")
            token_t, param, token = (s.strip() for s in parts)
            minutes = _minutes(token_t)
            if minutes is None:
                self._fail(lineno, f"the time {token_t!r} is not HH:MM")
            value = _number(token)
            if value is None:
                self._fail(lineno, f"the value {token!r} of {param} is not a number")
            if param not in KNOWN_PARAMETERS:
                self._fail(lineno, f"unknown parameter {param!r}")
            if value == MISSING:
                continue
            if param == "RecordID":
                if record_id is None:
                    record_id = self._whole(lineno, value, "RecordID")
            elif param == "Gender":
                if self.gender is None:
                    self.gender = self._whole(lineno, value, "Gender")
                    if self.gender not in GENDER:
                        self._fail(lineno, f"Gender {token} is not 0 (female), 1 (male) or -1 (missing)")
            elif param == "ICUType":
                if self.icu_type is None:
                    self.icu_type = self._whole(lineno, value, "ICUType")
            else:
                if param == "Age" and self.age is None:
                    self.age = value
                self.lines.append((lineno, minutes, param, token, value))
        if record_id is None:
            record_id = stem_id
        elif stem_id is not None and record_id != stem_id:
            raise DataError(
                f"{source}: its RecordID line says {record_id} but the file is named {stem_id}",
                "rename the file after its RecordID, or restore the original",
            )
        if record_id is None:
            raise DataError(
                f"{source}: no RecordID line and no numeric file name",
                "give the record's RecordID line, or name the file <RecordID>.txt",
            )
        self.record_id = record_id

    def _fail(self, lineno: int, what: str) -> NoReturn:
        raise DataError(
            f"{self.source}, line {lineno}: {what}",
            "each line must read HH:MM,Parameter,Value with a number value (-1 = missing)",
        )

    def _whole(self, lineno: int, value: float, name: str) -> int:
        if value != int(value):
            self._fail(lineno, f"{name} {value} is not a whole number")
        return int(value)


def _patient(rec: _Record, pid: str, admitted: datetime, outcome: StayOutcome | None) -> Resource:
    patient: Resource = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": RECORD_ID_SYSTEM, "value": str(rec.record_id)}],
        "gender": GENDER[rec.gender] if rec.gender is not None else "unknown",
    }
    if rec.age is not None and 0 < rec.age < AGE_DEIDENTIFIED:
        patient["birthDate"] = str(admitted.year - round(rec.age))  # approximate: the year only, +-1
    if outcome is not None and outcome.survival is not None:
        patient["deceasedDateTime"] = (admitted + timedelta(days=outcome.survival)).date().isoformat()
    return patient


def _encounter(rec: _Record, pid: str, admitted: datetime, outcome: StayOutcome | None) -> Resource:
    encounter: Resource = {
        "resourceType": "Encounter",
        "id": pid,
        "identifier": [{"system": RECORD_ID_SYSTEM, "value": str(rec.record_id)}],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": _iso(admitted)},
    }
    if rec.icu_type is not None:
        if rec.icu_type not in ICU_TYPES:
            raise DataError(
                f"{rec.source}: ICUType {rec.icu_type} is not one of 1-4",
                "correct the ICUType line (1 coronary care, 2 cardiac surgery, 3 medical, 4 surgical)",
            )
        encounter["serviceType"] = {
            "coding": [{"system": ICU_TYPE_SYSTEM, "code": str(rec.icu_type), "display": ICU_TYPES[rec.icu_type]}]
        }
    if outcome is not None:
        if outcome.length_of_stay is not None:
            encounter["length"] = {"value": outcome.length_of_stay, "unit": "days", "system": UCUM, "code": "d"}
        code, display = ("exp", "Expired") if outcome.in_hospital_death else ("oth", "Other")
        encounter["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [{"system": DISCHARGE_DISPOSITION, "code": code, "display": display}],
                "text": "died in hospital" if outcome.in_hospital_death else "discharged alive",
            }
        }
    return encounter


def _observation_lines(rec: _Record, pid: str, admitted: datetime) -> Iterator[bytes]:
    """Each measurement as one Observation, serialised (JSON bytes): the hot loop of a conversion."""
    subject = orjson.dumps({"reference": f"Patient/{pid}"})
    encounter = orjson.dumps({"reference": f"Encounter/{pid}"})
    times: dict[int, str] = {}
    seen: dict[tuple[int, str], int] = {}
    for _, minutes, param, token, value in rec.lines:
        m = BY_VARIABLE[param]
        k = seen.get((minutes, param), 0)
        seen[(minutes, param)] = k + 1
        when = times.get(minutes)
        if when is None:
            when = times[minutes] = _iso(admitted + timedelta(minutes=minutes))
        quantity: dict[str, Any] = {
            "value": _fhir_decimal(token, value, m.scale),
            "unit": m.unit,
            "system": UCUM,
            "code": m.ucum,
        }
        extra = b""
        if param == "Age" and value >= AGE_DEIDENTIFIED:
            quantity = {"value": AGE_TOP, "comparator": ">=", "unit": m.unit, "system": UCUM, "code": m.ucum}
            extra = b',"note":' + orjson.dumps(
                [{"text": f"the file's Age is {token}: MIMIC-II's code for an age over 89"}]
            )
        category = b'"category":' + _CATEGORIES[m.category] + b"," if m.category else b""
        yield b"".join(
            (
                b'{"resourceType":"Observation","id":"',
                f"{pid}-{param}-{minutes}-{k}".encode(),
                b'","status":"final",',
                category,
                b'"code":',
                _CODES[param],
                b',"subject":',
                subject,
                b',"encounter":',
                encounter,
                b',"effectiveDateTime":"',
                when.encode(),
                b'","valueQuantity":',
                orjson.dumps(quantity),
                extra,
                b"}",
            )
        )


def _convert(
    text: str, source: str, stem_id: int | None, outcomes: Mapping[int, StayOutcome] | StayOutcome | None
) -> tuple[Resource, Resource, list[bytes]]:
    rec = _Record(text, source, stem_id)
    pid = f"{ID_PREFIX}-{rec.record_id}"
    admitted = admission_instant(rec.record_id)
    outcome = outcomes if isinstance(outcomes, StayOutcome) or outcomes is None else outcomes.get(rec.record_id)
    if outcome is not None and outcome.record_id != rec.record_id:
        raise DataError(
            f"{source}: the outcome given is for RecordID {outcome.record_id}, not {rec.record_id}",
            "pass the outcome of this stay (read_outcomes(path)[record_id])",
        )
    return (
        _patient(rec, pid, admitted, outcome),
        _encounter(rec, pid, admitted, outcome),
        list(_observation_lines(rec, pid, admitted)),
    )


def _read_record(path: str | Path) -> tuple[str, str, int | None]:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no record file at {p}", "give the path of a PhysioNet 2012 record (<RecordID>.txt)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {p}: {e}", "give the record file unchanged (UTF-8 text)") from e
    return text, str(p), int(p.stem) if p.stem.isdigit() else None


def convert_record(path: str | Path, *, outcome: StayOutcome | None = None) -> list[Resource]:
    """The resources of one stay: its Patient, its Encounter, then one Observation per measurement (file order)."""
    patient, encounter, observations = _convert(*_read_record(path), outcome)
    return [patient, encounter, *(orjson.loads(b) for b in observations)]


def _urn(resource: Resource) -> str:
    key = f"{resource['resourceType']}/{resource['id']}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def stay_bundle(path: str | Path, *, outcome: StayOutcome | None = None) -> Resource:
    """One stay as a self-contained FHIR ``collection`` Bundle (a per-patient prefetch for scoring).

    Entries carry deterministic ``urn:uuid:`` fullUrls and refer to each other by them, so the references resolve
    inside the Bundle; an ingest rewrites them to ``Type/id``, giving back exactly ``convert_record``'s resources.
    """
    resources = convert_record(path, outcome=outcome)
    urns = {f"{r['resourceType']}/{r['id']}": _urn(r) for r in resources}
    entries = []
    for r in resources:
        for key in ("subject", "encounter"):
            if key in r:
                r[key] = {"reference": urns[r[key]["reference"]]}
        entries.append({"fullUrl": urns[f"{r['resourceType']}/{r['id']}"], "resource": r})
    return {"resourceType": "Bundle", "id": f"{resources[0]['id']}-stay", "type": "collection", "entry": entries}


_RECORD_NAME = re.compile(r"(?:^|/)(\d+)\.txt$")


def _record_texts(src: Path) -> Iterator[tuple[str, str, int | None]]:
    """(text, source name, RecordID from the name) of every record under ``src``, by RecordID.

    ``src`` is a folder of ``<RecordID>.txt`` files (an unpacked set), a folder holding the challenge's
    ``set-*.tar.gz``, or such an archive itself.
    """
    if not src.exists():
        raise InputFileError(f"{src} does not exist", "give the folder with the record files (or set-a.tar.gz)")
    if src.is_dir():
        files = sorted((p for p in src.iterdir() if _RECORD_NAME.search(p.name)), key=lambda p: int(p.stem))
        if files:
            for p in files:
                yield _read_record(p)
            return
        archives = sorted([*src.glob("set-*.tar.gz"), *src.glob("set-*.tgz")])
        if not archives:
            raise InputFileError(
                f"{src} holds no record files (<RecordID>.txt) and no set-*.tar.gz archive",
                "give the folder of an unpacked set, or the one holding set-a.tar.gz",
            )
    else:
        archives = [src]
    for archive in archives:
        members: list[tuple[int, str, bytes]] = []
        try:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    match = _RECORD_NAME.search(member.name)
                    f = tf.extractfile(member) if member.isfile() and match else None
                    if f is not None and match is not None:
                        members.append((int(match.group(1)), member.name, f.read()))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InputFileError(f"cannot read the archive {archive}: {e}", "restore it (see SOURCE.txt)") from e
        if not members:
            raise InputFileError(f"{archive} holds no record files (<RecordID>.txt)", "restore it (see SOURCE.txt)")
        for rid, name, data in sorted(members):
            source = f"{archive}:{name}"
            try:
                yield data.decode("utf-8"), source, rid
            except UnicodeDecodeError as e:
                raise InputFileError(f"{source} is not UTF-8 text: {e}", "restore the archive") from e


def iter_stays(
    src_dir: str | Path, *, record_ids: Iterable[int] | None = None, outcomes: str | Path | None = None
) -> Iterator[list[Resource]]:
    """Each stay under ``src_dir`` (as for :func:`write_ndjson`) as its resources, in RecordID order, read in place
    from the archive; only ``record_ids`` when given. Outcomes as for :func:`write_ndjson`."""
    src = Path(src_dir)
    outcome_path = Path(outcomes) if outcomes is not None else _find_outcomes(src)
    by_id = read_outcomes(outcome_path) if outcome_path is not None else {}
    wanted = set(record_ids) if record_ids is not None else None
    for text, source, stem_id in _record_texts(src):
        if wanted is None or stem_id in wanted:
            patient, encounter, observations = _convert(text, source, stem_id, by_id)
            yield [patient, encounter, *(orjson.loads(b) for b in observations)]


def _find_outcomes(src: Path) -> Path | None:
    folder = src if src.is_dir() else src.parent
    for candidate in (folder, folder.parent):
        found = sorted(candidate.glob("Outcomes-*.txt"))
        if found:
            return found[0]
    return None


def _open_out(path: Path, compress: bool) -> BinaryIO:
    # compresslevel 1: gzip is the slow step; level 1 keeps most of the gain (FHIR JSON repeats itself)
    return gzip.open(path, "wb", compresslevel=1) if compress else path.open("wb")  # type: ignore[return-value]


def write_ndjson(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    outcomes: str | Path | None = None,
    compress: bool = False,
) -> dict[str, int]:
    """Convert every stay under ``src_dir`` to Bulk Data NDJSON in ``out_dir``; the count of each resource type.

    Writes ``Patient.ndjson``, ``Encounter.ndjson`` and ``Observation.ndjson`` (``.ndjson.gz`` with ``compress``),
    stays in RecordID order. ``limit`` converts the first stays only. ``outcomes`` is the challenge's
    ``Outcomes-*.txt``; by default one is looked for beside the records (or one folder up); without it the
    Encounters carry no outcome. Files are written under temporary names and renamed at the end, so a failed
    run leaves no partial output.
    """
    src = Path(src_dir)
    out = Path(out_dir)
    if limit is not None and limit < 1:
        raise DataError(f"limit={limit} converts nothing", "give a positive limit, or None for every stay")
    outcome_path = Path(outcomes) if outcomes is not None else _find_outcomes(src)
    by_id = read_outcomes(outcome_path) if outcome_path is not None else {}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputFileError(f"cannot create the output folder {out}: {e}", "choose a folder you can write") from e
    suffix = ".ndjson.gz" if compress else ".ndjson"
    counts = {"Patient": 0, "Encounter": 0, "Observation": 0}
    paths = {t: out / f"{t}{suffix}" for t in counts}
    tmp = {t: p.with_name(f".{p.name}.part") for t, p in paths.items()}
    finished = False
    try:
        with ExitStack() as stack:
            handles: dict[str, BinaryIO] = {t: stack.enter_context(_open_out(p, compress)) for t, p in tmp.items()}
            for n, (text, source, stem_id) in enumerate(_record_texts(src)):
                if limit is not None and n >= limit:
                    break
                patient, encounter, observations = _convert(text, source, stem_id, by_id)
                handles["Patient"].write(orjson.dumps(patient, option=orjson.OPT_APPEND_NEWLINE))
                handles["Encounter"].write(orjson.dumps(encounter, option=orjson.OPT_APPEND_NEWLINE))
                if observations:
                    handles["Observation"].write(b"\n".join(observations) + b"\n")
                counts["Patient"] += 1
                counts["Encounter"] += 1
                counts["Observation"] += len(observations)
        for t, p in tmp.items():
            p.replace(paths[t])
        finished = True
    except OSError as e:
        raise InputFileError(f"cannot write the NDJSON files in {out}: {e}", "check the folder and free space") from e
    finally:
        if not finished:
            for p in tmp.values():
                p.unlink(missing_ok=True)
    return counts


def mapping_markdown(rows: Iterable[VariableMap] = MAPPINGS) -> str:
    """The mapping table as Markdown, as ``docs/fhir-physionet-2012-mapping.md`` shows it."""
    lines = [
        "| PhysioNet | code | display | UCUM | category | source unit | conversion | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        code = f"{m.code} (LOINC)" if m.system == LOINC else f"{m.code} ({m.system})"
        if m.generic is not None:
            code += f" + {m.generic[0]} ({m.generic[1]})"
        conversion = f"x {m.scale}" if m.scale != 1 else "none"
        cells = (
            m.variable,
            code,
            m.display,
            f"`{m.ucum}`",
            m.category or "(none)",
            m.source_unit or "(none)",
            conversion,
            m.notes,
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
