"""The engine's behaviour that the anonymizer's documentation states and its test cases do not reach: rule order,
nodesByName, Bundles and contained resources under their own rules, encryption and hashing end to end, the date-
shift scopes and fixed offset, generalization by expression, and R4 input only."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from conftest import ANONYMIZER, MISSING, read
from medml.deid import Anonymizer, DeidProcessingError, InvalidResourceError, parse_config
from medml.deid._methods import crypto_hash, date_shift_offset, decrypt

pytestmark = pytest.mark.skipif(not ANONYMIZER.is_dir(), reason=MISSING)
KEY = "0123456789abcdef0123456789abcdef"


def run(rules: list[dict[str, Any]], resource: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    config = parse_config({"fhirPathRules": rules, "parameters": parameters})
    return Anonymizer(config, today=date(2026, 1, 1)).anonymize(copy.deepcopy(resource))


def patient() -> dict[str, Any]:
    return read(ANONYMIZER / "resources" / "patient-basic.json")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_the_first_rule_that_selects_a_node_wins() -> None:
    """The docs: rules are applied in the order they appear; a node one rule processed is left by the others."""
    keep_first = run(
        [{"path": "Patient.name", "method": "keep"}, {"path": "nodesByType('HumanName')", "method": "redact"}],
        patient(),
    )
    assert keep_first["name"] == patient()["name"]
    redact_first = run(
        [{"path": "nodesByType('HumanName')", "method": "redact"}, {"path": "Patient.name", "method": "keep"}],
        patient(),
    )
    assert "name" not in redact_first
    assert "name" not in redact_first["contact"][0]
    assert keep_first["contact"][0].get("name") is None  # the Patient.name rule does not reach contact.name


def test_nodes_by_name_reaches_every_node_of_that_name() -> None:
    out = run([{"path": "nodesByName('telecom')", "method": "redact"}], patient())
    assert "telecom" not in out and "telecom" not in out["contact"][0]
    expected = patient()
    del expected["telecom"], expected["contact"][0]["telecom"]
    out.pop("meta")
    assert out == expected


def test_each_resource_of_a_bundle_has_its_own_rules() -> None:
    """A Bundle rule does not reach into its entries (docs: nested resources are excluded), and each entry's
    resource gets its own security label."""
    bundle = read(ANONYMIZER / "resources" / "bundle-basic.json")
    out = run([{"path": "Bundle.nodesByType('HumanName')", "method": "redact"}], bundle)
    assert out == bundle
    out = run([{"path": "Patient.name", "method": "redact"}], bundle)
    assert "name" not in out["entry"][0]["resource"]
    assert out["entry"][0]["resource"]["meta"]["security"][0]["code"] == "REDACTED"
    assert out["meta"]["security"][0]["code"] == "REDACTED"  # the Bundle's label sums its entries'


def test_encrypted_values_decrypt_with_the_key() -> None:
    out = run([{"path": "Patient.name.family", "method": "encrypt"}], patient(), encryptKey=KEY)
    families = [n["family"] for n in out["name"] if "family" in n]
    assert [decrypt(f, KEY.encode()) for f in families] == ["Family", "Family"]
    assert {"code": "MASKED"}.items() <= out["meta"]["security"][0].items()


def test_hashed_ids_and_references_to_them_agree() -> None:
    """The docs: with one key, an id and the references to it hash to the same value, so references resolve."""
    bundle = read(ANONYMIZER / "resources" / "bundle-basic.json")
    rules = [
        {"path": "Resource.id", "method": "cryptoHash"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
    ]
    out = run(rules, bundle, cryptoHashKey="k")
    patient_id = out["entry"][0]["resource"]["id"]
    assert patient_id == crypto_hash("23", "k")
    assert out["entry"][2]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"


def test_full_urls_hash_like_the_references_to_them() -> None:
    """medml's one departure: a hashed Bundle.entry.fullUrl keeps its form, as references to it do."""
    bundle = read(ANONYMIZER / "resources" / "bundle-basic.json")
    out = run([{"path": "Bundle.entry.fullUrl", "method": "cryptoHash"}], bundle, cryptoHashKey="k")
    assert out["entry"][0]["fullUrl"] == "http://example.org/fhir/Patient/" + crypto_hash("23", "k")
    assert out["entry"][1]["fullUrl"] == "urn:uuid:" + crypto_hash("04121321-4af5-424c-a0e1-ed3aab1c349d", "k")


def test_date_shift_scopes() -> None:
    """The docs: the offset comes from resource id (scope resource), file name (file) or folder name (folder)
    with the key; a fixed offset in days overrides them."""
    rules = [{"path": "nodesByType('date')", "method": "dateShift"}]
    one = {"resourceType": "Patient", "id": "a", "birthDate": "2000-01-01"}
    two = {"resourceType": "Patient", "id": "b", "birthDate": "2000-01-01"}
    config = parse_config({"fhirPathRules": rules, "parameters": {"dateShiftKey": "k", "dateShiftScope": "file"}})
    engine = Anonymizer(config, today=date(2026, 1, 1))
    a = engine.anonymize(dict(one), file_name="x.ndjson")["birthDate"]
    b = engine.anonymize(dict(two), file_name="x.ndjson")["birthDate"]
    assert (
        a == b == str(date(2000, 1, 1).fromordinal(date(2000, 1, 1).toordinal() + date_shift_offset("x.ndjson", "k")))
    )
    by_resource = run(rules, one, dateShiftKey="k")["birthDate"]
    assert by_resource == str(date.fromordinal(date(2000, 1, 1).toordinal() + date_shift_offset("a", "k")))
    fixed = read(ANONYMIZER / "configurations" / "configuration-sample-with-dateshiftfixedoffset.json")
    out = Anonymizer(parse_config(fixed, generate_missing_keys=True), today=date(2026, 1, 1)).anonymize(dict(one))
    assert out["birthDate"] == "2000-01-08"  # dateShiftFixedOffsetInDays: 7


def test_generalize_by_the_docs_examples() -> None:
    """The generalize table of the docs: ranges, value sets, and a replaceMatches with .NET named groups."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueInteger": 18,
        "effectiveDateTime": "2016-01-01",
    }
    out = run([{"path": "Observation.value", "method": "generalize", "cases": {"$this>=0 and $this<20": "20"}}], obs)
    assert out["valueInteger"] == 20
    out = run([{"path": "Observation.value", "method": "generalize", "cases": {"true": "($this div 10)*10"}}], obs)
    assert out["valueInteger"] == 10
    pattern = (
        "$this.replaceMatches('(?<year>\\\\d{2,4})-(?<month>\\\\d{1,2})-(?<day>\\\\d{1,2})\\\\b', '${year}-${month}')"
    )
    out = run([{"path": "Observation.effective", "method": "generalize", "cases": {"true": pattern}}], obs)
    assert out["effectiveDateTime"] == "2016-01"
    out = run([{"path": "Observation.value", "method": "generalize", "cases": {"$this > 50": "50"}}], obs)
    assert "valueInteger" not in out  # otherValues: redact by default
    out = run(
        [{"path": "Observation.value", "method": "generalize", "cases": {"$this > 50": "50"}, "otherValues": "keep"}],
        obs,
    )
    assert out["valueInteger"] == 18


def test_generalize_on_a_complex_element_is_refused() -> None:
    from medml.deid import RuleNotApplicableError

    with pytest.raises(RuleNotApplicableError, match="only to primitive"):
        run([{"path": "Patient.name", "method": "generalize", "cases": {"true": "'x'"}}], patient())


def test_a_failing_rule_raises_or_empties_the_resource() -> None:
    rules = [{"path": "Patient.name.family", "method": "generalize", "cases": {"$this > 3": "'x'"}}]
    with pytest.raises(DeidProcessingError, match="generalize"):
        run(rules, patient())
    config = parse_config({"processingErrors": "skip", "fhirPathRules": rules})
    assert Anonymizer(config).anonymize(patient()) == read(ANONYMIZER / "resources" / "patient-empty.json")


@pytest.mark.parametrize(
    ("resource", "what"),
    [
        ({"resourceType": "DeviceComponent", "id": "x"}, "not a FHIR R4 resource type"),
        ({"resourceType": "Patient", "animal": {"species": {"text": "dog"}}}, "no element 'animal'"),
        ({"resourceType": "Patient", "name": "Smith"}, "must be a JSON object"),
        ({"id": "x"}, "no resourceType"),
        (["not", "a", "resource"], "not a FHIR resource"),
    ],
)
def test_only_r4_resources_are_accepted(resource: Any, what: str) -> None:
    with pytest.raises(InvalidResourceError, match=what):
        run([{"path": "Resource.id", "method": "keep"}], resource)


def test_required_elements_keep_a_data_absent_reason_where_asked() -> None:
    """medml's requiredElementsDataAbsentReason: a required element (Claim.created, 1..1 in R4) that a rule
    empties stays, as a data-absent-reason, so the resource stays valid; without the parameter it goes."""
    claim = {
        "resourceType": "Claim",
        "status": "active",
        "type": {"text": "x"},
        "use": "claim",
        "patient": {"reference": "Patient/1"},
        "created": "1930-01-01",
        "provider": {"reference": "Organization/1"},
        "priority": {"text": "normal"},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "A"}}],
    }
    rules = [
        {"path": "nodesByType('dateTime')", "method": "redact"},
        {"path": "nodesByType('Reference').display", "method": "redact"},
    ]
    out = run(rules, claim, enablePartialDatesForRedact=True, requiredElementsDataAbsentReason="masked")
    absent = {
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]
    }
    assert out["_created"] == absent and "created" not in out
    assert out["insurance"][0]["coverage"] == absent
    plain = run(rules, claim, enablePartialDatesForRedact=True)
    assert "created" not in plain and "_created" not in plain and "coverage" not in plain["insurance"][0]
