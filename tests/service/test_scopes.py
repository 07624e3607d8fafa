"""The SMART App Launch 2.0 scope parser against the specification's own examples (scopes-and-launch-context,
read from HL7/smart-app-launch): every example scope is accepted and means what the page says it means; what the
page calls undefined (``.dus``; ``.read`` read as ``.rd``) and what is not the syntax is refused in one line."""

from __future__ import annotations

import pytest

from medml.errors import MedmlError
from medml.service.scopes import ScopeError, parse_scope, parse_scopes

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
# every scope the page shows (tables of patient-, user- and system-level scopes, quick start, wildcard grants,
# v1 forms, launch context, identity, refresh, extensions, the URI representation), with the permissions it grants
SPEC_EXAMPLES = {
    "patient/*.rs": ("patient", "*", "rs"),
    "user/*.cruds": ("user", "*", "cruds"),
    "patient/Observation.cu": ("patient", "Observation", "cu"),
    "patient/Observation.rs": ("patient", "Observation", "rs"),
    "patient/Patient.r": ("patient", "Patient", "r"),
    "patient/Observation.c": ("patient", "Observation", "c"),
    "patient/*.cruds": ("patient", "*", "cruds"),
    "user/Observation.rs": ("user", "Observation", "rs"),
    "user/Appointment.cruds": ("user", "Appointment", "cruds"),
    "user/Patient.rs": ("user", "Patient", "rs"),
    "system/Observation.rs": ("system", "Observation", "rs"),
    "system/*.rs": ("system", "*", "rs"),
    "system/Encounter.cud": ("system", "Encounter", "cud"),
    "patient/AllergyIntolerance.cruds": ("patient", "AllergyIntolerance", "cruds"),
    "patient/AllergyIntolerance.rs": ("patient", "AllergyIntolerance", "rs"),
    "patient/AllergyIntolerance.cud": ("patient", "AllergyIntolerance", "cud"),
    "patient/*.r": ("patient", "*", "r"),
    f"patient/Observation.rs?category={LAB}": ("patient", "Observation", "rs"),
    # SMART 1.0 forms, with the v2 meaning the page gives them
    "patient/Observation.read": ("patient", "Observation", "rs"),
    "patient/*.read": ("patient", "*", "rs"),
    "user/*.*": ("user", "*", "cruds"),
    "user/Observation.write": ("user", "Observation", "cud"),
    # the URI representation
    "http://smarthealthit.org/fhir/scopes/patient/*.r": ("patient", "*", "r"),
}
OTHER_EXAMPLES = {
    "openid": "identity",
    "fhirUser": "identity",
    "launch": "launch",
    "launch/patient": "launch-context",
    "launch/encounter": "launch-context",
    "launch/diagnosticreport": "launch-context",
    "launch/imagingstudy": "launch-context",
    "offline_access": "refresh",
    "online_access": "refresh",
    "__profilePhoto.manage": "extension",
    "https://ehr.example.org/scopes/profilePhoto.manage": "extension",
    "http://openid.net/specs/openid-connect-core-1_0#openid": "identity",
}


@pytest.mark.parametrize("text", list(SPEC_EXAMPLES))
def test_every_clinical_example_of_the_spec_is_accepted(text: str) -> None:
    context, resource_type, letters = SPEC_EXAMPLES[text]
    scope = parse_scope(text)
    assert (scope.kind, scope.context, scope.resource_type, scope.permissions) == (
        "clinical",
        context,
        resource_type,
        frozenset(letters),
    )


@pytest.mark.parametrize("text", list(OTHER_EXAMPLES))
def test_every_other_example_of_the_spec_is_accepted(text: str) -> None:
    assert parse_scope(text).kind == OTHER_EXAMPLES[text]


def test_the_example_scope_strings() -> None:
    granted = parse_scopes("launch/patient patient/*.rs __profilePhoto.manage")
    assert [s.kind for s in granted.scopes] == ["launch-context", "clinical", "extension"]
    assert granted.allows("patient", "Condition", "read") and granted.allows("patient", "Condition", "search")
    assert not granted.allows("patient", "Condition", "create") and not granted.allows("user", "Condition", "read")
    # the page's experimental query features, on the scopes it shows them with (written there without a context)
    for query in ("code:in=http://valueset.example.org/ValueSet/diabetes-codes", "patient.birthdate=1990"):
        assert parse_scope(f"patient/Observation.rs?{query}").query[0][0] in ("code:in", "patient.birthdate")
    assert parse_scopes("").scopes == ()


def test_scope_equivalence_rs_is_r_plus_s() -> None:
    """The page: `Observation.rs` is interchangeable with `Observation.r Observation.s`."""
    one, two = parse_scopes("user/Observation.rs"), parse_scopes("user/Observation.r user/Observation.s")
    for interaction in ("create", "read", "update", "delete", "search"):
        assert one.allows("user", "Observation", interaction) == two.allows("user", "Observation", interaction)


def test_a_query_narrows_what_a_scope_grants() -> None:
    lab = parse_scope(f"patient/Observation.rs?category={LAB}")
    assert lab.query == (("category", LAB),)
    assert lab.allows("patient", "Observation", "search", {"category": LAB})
    assert not lab.allows("patient", "Observation", "search", {"category": "vital-signs"})
    assert not lab.allows("patient", "Observation", "search")
    assert not lab.allows("patient", "Condition", "search", {"category": LAB})
    two = parse_scope("user/Observation.rs?category=laboratory&status=final")
    assert two.query == (("category", "laboratory"), ("status", "final"))


def test_write_does_not_imply_read() -> None:
    """The page: write access does not imply read access."""
    scope = parse_scope("patient/Observation.c")
    assert scope.allows("patient", "Observation", "create") and not scope.allows("patient", "Observation", "read")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("patient/Observation.dus", "in that order"),  # the page's own undefined example
        ("patient/Observation.rr", "in that order"),
        ("patient/Observation.x", "letters of 'cruds'"),
        ("patient/Observation.", "no permissions"),
        ("patient/Observaton.rs", "not a FHIR R4 resource type"),
        ("patients/Observation.rs", "patient/, user/ or system/"),
        ("patient.Immunization.read", "is not a SMART scope"),  # a typo on the page for patient/Immunization.read
        ("patient/Observation.rs?", "no param=value"),
        ("patient/Observation.rs?category", "param=value"),
        ("patient/Observation.rs?category=", "param=value"),
        ("launch/Patient", "lower case"),
        ("patient/*.rs user/*.rs", "white space"),
        ("", "empty"),
        ("http://openid.net/specs/openid-connect-core-1_0#email", "not an OpenID Connect scope"),
        ("Observation.rs", "is not a SMART scope"),
    ],
)
def test_bad_scopes_are_one_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(ScopeError, match=None) as caught:
        parse_scope(text)
    assert isinstance(caught.value, MedmlError)
    message = str(caught.value) + " " + caught.value.fix
    assert fragment in message and "\n" not in message


def test_a_long_bad_scope_is_clipped_in_the_message() -> None:
    with pytest.raises(ScopeError) as caught:
        parse_scope("patient/Observation.zz?" + "a=b&" * 500 + "c")
    assert len(caught.value.what) < 300
