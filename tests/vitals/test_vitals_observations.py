"""Reading one FHIR vital-sign Observation: each LOINC code of the mapping, UCUM units (degF converted, unknown units
refused), the BP panel's systolic component, oxygen as flow or FiO2, ACVPU and GCS, and each way a record is bad."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_vitals import T0, UCUM, observation

from medml.vitals.observations import (
    IMPLAUSIBLE,
    NO_SUBJECT,
    NO_TIME,
    NO_VALUE,
    NOT_USABLE,
    NOT_VITAL,
    UNIT,
    ObservationProblem,
    parse_instant,
    read_observation,
)


@pytest.mark.parametrize(
    ("code", "value", "kind"),
    [
        ("9279-1", 18, "respiratory rate"),
        ("59408-5", 95, "SpO2"),
        ("2708-6", 95, "SpO2"),
        ("8480-6", 118, "systolic blood pressure"),
        ("8867-4", 88, "pulse"),
        ("8310-5", 37.2, "temperature"),
        ("9269-2", 14, "GCS"),
        ("3151-8", 2, "oxygen flow"),
        ("3150-0", 28, "FiO2"),
    ],
)
def test_each_loinc_code_maps_to_its_measurement(code: str, value: float, kind: str) -> None:
    obs = read_observation(observation(code, value, id="x1"))
    assert (obs.kind, obs.value, obs.patient, obs.id) == (kind, value, "Patient/1", "x1")
    assert obs.time == T0.timestamp()


def test_systolic_pressure_is_read_from_a_blood_pressure_panel_component() -> None:
    panel = observation("85354-9", 0)
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 60, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 97, "system": UCUM, "code": "mm[Hg]"},
        },
    ]
    obs = read_observation(panel)
    assert (obs.kind, obs.value) == ("systolic blood pressure", 97)
    panel["component"] = panel["component"][:1]
    with pytest.raises(ObservationProblem, match="no systolic") as e:
        read_observation(panel)
    assert e.value.kind == NO_VALUE


def test_fahrenheit_is_converted_and_unknown_units_are_refused() -> None:
    f = read_observation(observation("8310-5", 101.3, unit="[degF]"))
    assert f.value == pytest.approx((101.3 - 32) * 5 / 9, abs=0.01) and f.unit == "[degF]"
    for code, unit in [("8310-5", "K"), ("8480-6", "kPa"), ("59408-5", "1"), ("8867-4", "Hz")]:
        with pytest.raises(ObservationProblem, match="refused") as e:
            read_observation(observation(code, 50, unit=unit))
        assert e.value.kind == UNIT
    no_unit = observation("8867-4", 80)
    no_unit["valueQuantity"] = {"value": 80}
    with pytest.raises(ObservationProblem) as e:
        read_observation(no_unit)
    assert e.value.kind == UNIT


def test_a_printed_unit_is_accepted_where_no_ucum_code_is_given() -> None:
    obs = observation("8480-6", 120)
    obs["valueQuantity"] = {"value": 120, "unit": "mmHg"}
    assert read_observation(obs).value == 120


def test_fio2_as_a_fraction_is_read_in_percent() -> None:
    assert read_observation(observation("3150-0", 0.4, unit="1")).value == pytest.approx(40)


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("Alert", "A"), ("New confusion", "C"), ("Responds to voice", "V"), ("pain", "P"), ("Unresponsive", "U")],
)
def test_acvpu_answers_as_text(answer: str, letter: str) -> None:
    assert read_observation(observation("67775-7", answer)).value == letter


def test_acvpu_as_a_coding_and_an_unknown_answer() -> None:
    obs = observation("67775-7", "")
    obs["valueCodeableConcept"] = {"coding": [{"system": "http://loinc.org", "code": "LA9340-6", "display": "Alert"}]}
    assert read_observation(obs).value == "A"
    with pytest.raises(ObservationProblem, match="not Alert"):
        read_observation(observation("67775-7", "drowsy"))


def test_gcs_as_an_integer() -> None:
    obs = observation("9269-2", 0)
    del obs["valueQuantity"]
    obs["valueInteger"] = 13
    assert read_observation(obs).value == 13


@pytest.mark.parametrize(
    ("code", "value", "unit"),
    [
        ("9279-1", 95, None),
        ("59408-5", 30, None),
        ("8480-6", 350, None),
        ("8480-6", 20, None),
        ("8867-4", 10, None),
        ("8310-5", 98.6, None),  # degF sent as degC
        ("8310-5", 140, "[degF]"),
        ("9269-2", 2, None),
        ("3150-0", 15, None),
    ],
)
def test_implausible_values_are_refused(code: str, value: float, unit: str | None) -> None:
    with pytest.raises(ObservationProblem, match="outside") as e:
        read_observation(observation(code, value, unit=unit))
    assert e.value.kind == IMPLAUSIBLE


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        ({"resourceType": "Patient"}, NOT_VITAL, "not an Observation"),
        ({"code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}}, NOT_VITAL, "LOINC"),
        ({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "8867-4"}]}}, NOT_VITAL, "LOINC"),
        ({"status": "entered-in-error"}, NOT_USABLE, "entered-in-error"),
        ({"subject": None}, NO_SUBJECT, "no subject"),
        ({"subject": {"display": "Ward 3 bed 2"}}, NO_SUBJECT, "no subject"),
        ({"effectiveDateTime": None}, NO_TIME, "no effectiveDateTime"),
        ({"effectiveDateTime": "2024-05-01"}, NO_TIME, "no time of day"),
        ({"effectiveDateTime": "2024-05-01T08:00:00"}, NO_TIME, "no time zone"),
        ({"effectiveDateTime": "yesterday"}, NO_TIME, "not an ISO 8601"),
        ({"valueQuantity": {"value": "fast", "code": "/min"}}, NO_VALUE, "not a number"),
        ({"valueQuantity": None, "dataAbsentReason": {"text": "patient refused"}}, NO_VALUE, "absent"),
    ],
)
def test_each_bad_record_says_what_was_wrong(change: dict[str, Any], kind: str, words: str) -> None:
    obs = observation("8867-4", 80)
    for key, value in change.items():
        if value is None:
            obs.pop(key, None)
        else:
            obs[key] = value
    with pytest.raises(ObservationProblem, match=words) as e:
        read_observation(obs)
    assert e.value.kind == kind


def test_other_times_and_patient_identifiers() -> None:
    obs = observation("8867-4", 80)
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2024-05-01T09:00:00+01:00"}
    obs["subject"] = {"identifier": {"system": "urn:mrn", "value": "12345"}}
    r = read_observation(obs)
    assert r.time == T0.timestamp() and r.patient == "urn:mrn|12345"
    assert parse_instant("2024-05-01T08:00:00.000Z") == T0.timestamp()


def test_an_amended_version_is_a_new_identity() -> None:
    a = read_observation(observation("8867-4", 80, id="o1"))
    b = read_observation(observation("8867-4", 80, id="o1", meta={"versionId": "2"}))
    assert a.id != b.id
