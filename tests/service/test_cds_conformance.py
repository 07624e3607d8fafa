"""CDS Hooks 2.0 conformance of the service, against data from outside medml (../shared/data/cds-hooks).

The spec's own examples, the hook library's patient-view contexts and Inferno's realistic requests of other hooks
are sent to a running service; every response it sends is validated against JSON Schemas written from the spec's
tables, with ``format: uri`` checked as an absolute URL. One app serves the whole module: a model deployed twice,
with its RiskAssessment offered as a card suggestion and recorded as a system action. docs/cds-hooks-requirements.csv
maps each SHALL for a CDS service to the tests that cover it, here and in the other service tests.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import orjson
import pytest
from cds_requests import CDS, hook_request, needs_physionet, prefetch_for, searchset

from loopback import running
from medml.config import Settings
from medml.service.app import create_app
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy

pytestmark = needs_physionet

SERVICE = "physionet-2012-lgbm"
#: the same model, deployed to record every score as a RiskAssessment system action
RECORDING = "physionet-2012-lgbm-recording"
SPEC = CDS / "spec-2.0.1-examples"
LIBRARY = CDS / "hooks-library-examples"
INFERNO = CDS / "inferno-crd-fixtures"
PID = "pn2012-132539"
#: the patient-view context fields (hook library 1.0), all primitive, and the user identifiers a prefetch token
#: may name (CDS Hooks 2.0, "Prefetch tokens")
PREFETCH_TOKENS = {
    "context.userId",
    "context.patientId",
    "context.encounterId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("uri")
def _absolute_uri(value: object) -> bool:
    """An absolute URI: a scheme, and a host for http(s) (jsonschema checks ``uri`` only with rfc3987 installed)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and (parts.scheme not in ("http", "https") or bool(parts.netloc))


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def schema_errors(instance: Any, name: str) -> list[str]:
    schema = load(CDS / "schemas" / f"cds-hooks-2.0.{name}.schema.json")
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def check(instance: Any, name: str) -> None:
    errors = schema_errors(instance, name)
    assert not errors, errors


def no_null_or_empty(value: Any, path: str = "$", allowed: frozenset[str] = frozenset({"$.cards"})) -> list[str]:
    """Where a JSON value is null or empty, which CDS Hooks forbids unless stated (``cards: []`` means no advice)."""
    if value is None or (value in ("", [], {}) and path not in allowed):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in no_null_or_empty(v, f"{path}.{k}", allowed)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in no_null_or_empty(v, f"{path}[{i}]", allowed)]
    return []


def json_body(r: httpx.Response) -> Any:
    """The body of a response, which must be JSON and say so."""
    assert r.headers["content-type"].split(";")[0].strip() == "application/json", (r.status_code, r.headers)
    return r.json()


# ---- one service for the module ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ServiceConfig:
    return ServiceConfig(
        home=tmp_path_factory.mktemp("conformance") / "service",
        auth="off",
        max_body_bytes=2_000_000,
        fhir_timeout_s=3.0,
    )


@pytest.fixture(scope="module")
def service(model_home: Settings, config: ServiceConfig) -> Iterator[httpx.Client]:
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    deploy(model_home, config, SERVICE, service_id=RECORDING, thresholds=(0.15, 0.40), risk_assessment="system-action")
    with running(create_app(model_home, config)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def codes(service: httpx.Client) -> list[str]:
    """The LOINC codes of the service's observations prefetch template."""
    (svc,) = (s for s in service.get("/cds-services").json()["services"] if s["id"] == SERVICE)
    return svc["prefetch"]["observations"].split("code=", 1)[1].split(",")


def full(stays: dict[str, list[dict[str, Any]]], codes: list[str], pid: str = PID) -> dict[str, Any]:
    """What an EHR prefetches for the service's templates, for one stay."""
    return prefetch_for(stays[pid], codes)


def renamed(resources: list[dict[str, Any]], patient_id: str, encounter_id: str) -> list[dict[str, Any]]:
    """A stay's resources as the EHR of the spec's examples would hold them: its Patient and Encounter ids."""
    old = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    out = []
    for res in resources:
        text = json.dumps(res).replace(f'"Encounter/{old}"', json.dumps(f"Encounter/{encounter_id}"))
        res2 = json.loads(text.replace(old, patient_id))
        if res2["resourceType"] == "Encounter":
            res2["id"] = encounter_id
        out.append(res2)
    return out


def risk_of(response: dict[str, Any]) -> float:
    """The probability in the RiskAssessment a card suggests."""
    (card,) = response["cards"]
    return float(card["suggestions"][0]["actions"][0]["resource"]["prediction"][0]["probabilityDecimal"])


def hook(client: httpx.Client, body: Any, service_id: str = SERVICE) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(f"/cds-services/{service_id}", content=raw, headers={"content-type": "application/json"})


# ---- the references themselves --------------------------------------------------------------------------------


def test_the_spec_examples_validate_against_the_schemas_and_known_bad_ones_do_not() -> None:
    valid = {
        "discovery-response": [
            SPEC / "discovery-response.json",
            SPEC / "discovery-response-with-extension.json",
            INFERNO / "misc" / "cds-services.json",
        ],
        "service-request": [
            SPEC / "request-patient-view.json",
            SPEC / "request-with-extension.json",
            *sorted((INFERNO / "hook-requests").glob("*.json")),
        ],
        "service-response": [
            SPEC / "response-cards-links-overrideReasons.json",
            SPEC / "response-empty-cards.json",
            SPEC / "response-systemActions.json",
        ],
        "feedback-request": sorted(SPEC.glob("feedback-*.json")),
    }
    for name, paths in valid.items():
        assert len(paths) >= 3, name
        for path in paths:
            assert not schema_errors(load(path), name), (path.name, schema_errors(load(path), name))
    # the spec erratum: a card without its REQUIRED indicator
    assert any(
        "'indicator' is a required property" in e
        for e in schema_errors(load(SPEC / "response-autolaunchable.json"), "service-response")
    )
    # and the rules the service's cards are held to below can fail
    good = load(SPEC / "response-cards-links-overrideReasons.json")
    card = good["cards"][0]
    broken = {
        "a summary of 141 characters": {**card, "summary": "x" * 141},
        "a relative source url": {**card, "source": {**card["source"], "url": "/models/x/1"}},
        "an absolute link with appContext": {**card, "links": [{**card["links"][0], "appContext": "{}"}]},
        "suggestions without selectionBehavior": {**card, "suggestions": [{"label": "do it"}]},
        "an override reason without display": {**card, "overrideReasons": [{"code": "c", "system": "urn:x"}]},
        "an unknown indicator": {**card, "indicator": "hard-stop"},
        "a create action without a resource": {
            **card,
            "selectionBehavior": "any",
            "suggestions": [{"label": "do it", "actions": [{"type": "create", "description": "make one"}]}],
        },
    }
    for what, bad in broken.items():
        assert schema_errors({"cards": [bad]}, "service-response"), what
    assert no_null_or_empty(good) == []
    assert no_null_or_empty({"cards": [{**card, "detail": ""}], "systemActions": []}) == [
        "$.cards[0].detail",
        "$.systemActions",
    ]


# ---- discovery --------------------------------------------------------------------------------------------------


def test_discovery_is_valid_json_and_every_service_it_lists_answers_at_its_endpoint(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    r = service.get("/cds-services")
    assert r.status_code == 200
    doc = json_body(r)
    check(doc, "discovery-response")
    assert no_null_or_empty(doc) == []
    assert isinstance(doc["services"], list)
    ids = [s["id"] for s in doc["services"]]
    assert sorted(ids) == sorted([SERVICE, RECORDING])  # one entry per id
    for svc in doc["services"]:
        assert svc["hook"] == "patient-view"
        assert svc["title"] and svc["description"] and svc["usageRequirements"]
        answered = hook(service, hook_request(PID, full(stays, codes)), svc["id"])
        assert answered.status_code == 200, (svc["id"], answered.text)
        assert json_body(answered)["cards"], svc["id"]


def test_prefetch_templates_are_fhir_queries_with_only_context_tokens_in_double_braces(service: httpx.Client) -> None:
    for svc in service.get("/cds-services").json()["services"]:
        assert set(svc["prefetch"]) == {"patient", "encounters", "observations"}
        for key, template in svc["prefetch"].items():
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens, key
            assert set(tokens) <= PREFETCH_TOKENS, (key, tokens)
            rest = re.sub(r"\{\{.*?\}\}", "", template)
            assert "{" not in rest and "}" not in rest, (key, template)  # no token left half-delimited
            # a read (Type/id) or a search (Type?params) relative to fhirServer, as the spec recommends
            assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{[^}]+\}\}|\?.+)", template), (key, template)
        assert svc["prefetch"]["patient"] == "Patient/{{context.patientId}}"


# ---- hook responses ---------------------------------------------------------------------------------------------


def check_card(card: dict[str, Any], patient_id: str) -> None:
    """The rules of the spec's Card, Source, Suggestion, Action, Link and Coding tables a schema cannot state."""
    from fhir.resources.R4B.riskassessment import RiskAssessment
    from markdown_it import MarkdownIt

    assert isinstance(card["uuid"], str) and uuid.UUID(card["uuid"])
    assert len(card["summary"]) < 140  # "<140-character summary"
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(card["detail"])
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in t.children or []}
    assert {"strong_open", "bullet_list_open"} <= kinds  # markdown that renders, not text that looks like it
    assert not kinds & {"html_block", "html_inline"}
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and urlsplit(card["source"]["url"]).scheme in ("http", "https")
    assert {"system", "code"} <= set(card["source"]["topic"])
    assert card["overrideReasons"] and all(r["display"].strip() for r in card["overrideReasons"])
    for link in card["links"]:
        assert link["type"] == "absolute" and "appContext" not in link and urlsplit(link["url"]).netloc
    if "suggestions" in card:
        assert card["selectionBehavior"] in ("at-most-one", "any")
        (suggestion,) = card["suggestions"]
        assert suggestion["label"] and isinstance(suggestion["isRecommended"], bool)
        (action,) = suggestion["actions"]  # the one action the suggestion is about: taking it takes all
        check_action(action, patient_id)
        RiskAssessment.model_validate(action["resource"])


def check_action(action: dict[str, Any], patient_id: str) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    assert action["type"] == "create" and action["description"]
    resource = action["resource"]
    assert "id" not in resource  # a new resource, for the EHR to create
    assert "resourceId" not in action
    ra = RiskAssessment.model_validate(resource)
    assert ra.subject.reference == f"Patient/{patient_id}"
    assert 0 <= float(ra.prediction[0].probabilityDecimal) <= 1


def test_hook_responses_validate_and_every_card_meets_the_card_rules(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    seen: list[str] = []
    for pid in ("pn2012-132539", "pn2012-132548", "pn2012-132551", "pn2012-135757"):
        for _ in range(2):
            r = hook(service, hook_request(pid, full(stays, codes, pid)))
            assert r.status_code == 200, r.text
            body = json_body(r)
            check(body, "service-response")
            assert no_null_or_empty(body) == []
            assert set(body) == {"cards"}
            (card,) = body["cards"]
            check_card(card, pid)
            assert card["selectionBehavior"] == "at-most-one"
            seen += [card["uuid"], card["suggestions"][0]["uuid"]]
    assert len(set(seen)) == len(seen)  # a fresh uuid for every card and suggestion


def test_a_recording_deployment_sends_the_risk_assessment_as_a_valid_system_action(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    r = hook(service, hook_request(PID, full(stays, codes)), RECORDING)
    assert r.status_code == 200, r.text
    body = json_body(r)
    check(body, "service-response")
    assert no_null_or_empty(body) == []
    (card,) = body["cards"]
    check_card(card, PID)
    assert "suggestions" not in card and "selectionBehavior" not in card
    (action,) = body["systemActions"]
    check_action(action, PID)
    same = hook(service, hook_request(PID, full(stays, codes))).json()
    assert action["resource"]["prediction"][0]["probabilityDecimal"] == pytest.approx(risk_of(same), abs=1e-12)


def count_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.parametrize("service_id", [SERVICE, RECORDING])
def test_a_patient_the_model_does_not_apply_to_gets_200_and_no_cards(
    service: httpx.Client,
    stays: dict[str, list[dict[str, Any]]],
    codes: list[str],
    config: ServiceConfig,
    service_id: str,
) -> None:
    before = count_lines(config.predictions_path)
    for encounters in (None, searchset([])):  # null: the EHR has no Encounter; or an empty searchset
        prefetch = {**full(stays, codes), "encounters": encounters}
        r = hook(service, hook_request(PID, prefetch), service_id)
        assert r.status_code == 200, r.text
        body = json_body(r)
        assert body == {"cards": []}  # and no empty systemActions
        check(body, "service-response")
        assert no_null_or_empty(body) == []
    assert count_lines(config.predictions_path) == before  # nothing was scored


def test_a_null_prefetch_value_means_no_data_not_a_missing_key(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    r = hook(service, hook_request(PID, {"patient": None, "encounters": None, "observations": None}))
    assert r.status_code == 200, r.text  # not 412: the EHR looked and found nothing
    assert json_body(r) == {"cards": []}
    r = hook(service, hook_request(PID, {**full(stays, codes), "observations": None}))
    assert r.status_code == 200, r.text
    body = json_body(r)
    check(body, "service-response")
    (card,) = body["cards"]
    check_card(card, PID)
    missing = card["detail"].split("**Missing inputs** (", 1)[1]
    assert int(missing.split(",", 1)[0]) >= 30  # every laboratory and vital sign input is named as missing
    # only the patient null: the card still comes, without age and sex
    r = hook(service, hook_request(PID, {**full(stays, codes), "patient": None}))
    assert r.status_code == 200, r.text
    check(r.json(), "service-response")
    assert r.json()["cards"]


def test_operation_outcomes_in_a_prefetch_bundle_are_left_out(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    plain = hook(service, hook_request(PID, full(stays, codes))).json()
    outcome = {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": "some results are not available"}],
        },
        "search": {"mode": "outcome"},
    }
    prefetch = full(stays, codes)
    for key in ("encounters", "observations"):
        prefetch[key] = {**prefetch[key], "entry": [*prefetch[key]["entry"], outcome]}
    r = hook(service, hook_request(PID, prefetch))
    assert r.status_code == 200, r.text
    check(json_body(r), "service-response")
    assert risk_of(r.json()) == pytest.approx(risk_of(plain), abs=1e-12)


def test_a_prefetch_key_the_ehr_could_not_fill_counts_as_not_prefetched(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    prefetch = full(stays, codes)
    prefetch["observations"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "search timed out"}],
    }
    r = hook(service, hook_request(PID, prefetch))
    assert r.status_code == 412, r.text  # no fhirServer to fetch the Observations from
    assert "observations" in json_body(r)["error"]


def test_browser_clients_get_cors_preflight_and_headers_without_a_token(service: httpx.Client) -> None:
    origin = "https://sandbox.cds-hooks.org"
    pre = service.options(
        f"/cds-services/{SERVICE}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] in ("*", origin)
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    got = service.get("/cds-services", headers={"Origin": origin})
    assert got.headers["access-control-allow-origin"] in ("*", origin)


def test_extensions_unknown_fields_and_prefetch_keys_the_service_did_not_ask_for_are_ignored(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    plain = hook(service, hook_request(PID, full(stays, codes))).json()
    example = load(SPEC / "request-with-extension.json")
    prefetch = {
        **full(stays, codes),
        **load(SPEC / "request-patient-view.json")["prefetch"],
        **load(SPEC / "prefetch-data-example.json")["prefetch"],
    }
    prefetch["patient"] = full(stays, codes)["patient"]
    body = hook_request(PID, prefetch, extension=example["extension"], **{"com.example.unknown": {"a": 1}})
    body["context"]["extension"] = {"com.example.note": "a field the hook does not define"}
    check(body, "service-request")
    r = hook(service, body)
    assert r.status_code == 200, r.text
    assert risk_of(json_body(r)) == pytest.approx(risk_of(plain), abs=1e-12)


# ---- the spec's and the hook library's requests -------------------------------------------------------------------


def test_the_spec_patient_view_requests_get_412_when_what_the_service_needs_cannot_be_had(
    service: httpx.Client,
) -> None:
    # its prefetch holds only "patientToGreet"; its fhirServer cannot be reached from here
    r = hook(service, load(SPEC / "request-patient-view.json"))
    assert r.status_code == 412, r.text
    assert "fhirServer" in json_body(r)["error"]
    # the extension example has no patientId, which patient-view requires
    r = hook(service, load(SPEC / "request-with-extension.json"))
    assert r.status_code == 400 and "context.patientId" in json_body(r)["error"]
    # with the patientId of the spec's context example it is a valid request: fhirServer cannot be reached
    with_patient = load(SPEC / "request-with-extension.json")
    with_patient["context"].update(load(SPEC / "context-patientId.json")["context"])
    check(with_patient, "service-request")
    r = hook(service, with_patient)
    assert r.status_code == 412 and "fhirServer" in json_body(r)["error"]
    # the spec's bare context example lacks userId, which patient-view requires too
    bare = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), **load(SPEC / "context-patientId.json")}
    r = hook(service, bare)
    assert r.status_code == 400 and "context.userId" in json_body(r)["error"]


@pytest.mark.parametrize("example", ["patient-view-context-example-1.json", "patient-view-context-example-2.json"])
def test_the_hook_library_patient_view_contexts_are_scored_from_prefetch_and_412_without(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str], example: str
) -> None:
    context = load(LIBRARY / example)["context"]
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context}
    check(body, "service-request")
    r = hook(service, body)
    assert r.status_code == 412, r.text
    assert "fhirServer" in json_body(r)["error"]
    pid = context["patientId"]
    encounter = context.get("encounterId", pid)
    body["prefetch"] = prefetch_for(renamed(stays[PID], pid, encounter), codes)
    r = hook(service, body)
    assert r.status_code == 200, r.text
    response = json_body(r)
    check(response, "service-response")
    (card,) = response["cards"]
    check_card(card, pid)
    assert f"encounter {encounter}" in card["detail"]
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["encounter"] == {"reference": f"Encounter/{encounter}"}


def other_hook_requests() -> list[tuple[str, dict[str, Any]]]:
    """Requests of hooks other than patient-view: the hook library's order contexts, Inferno's CRD requests."""
    out = []
    for path in sorted(LIBRARY.glob("order-*.json")):
        name = "-".join(path.stem.split("-")[:2])
        out.append((path.name, {"hook": name, "hookInstance": str(uuid.uuid4()), **load(path)}))
    out += [(path.name, load(path)) for path in sorted((INFERNO / "hook-requests").glob("*.json"))]
    return out


def test_requests_of_other_hooks_are_refused_with_400_naming_the_hook(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    requests = other_hook_requests()
    assert len(requests) == 13
    for name, body in requests:
        check(body, "service-request")
        r = hook(service, body)
        assert r.status_code == 400, (name, r.text)
        error = json_body(r)["error"]
        assert repr(body["hook"]) in error and "patient-view" in error, (name, error)
    assert hook(service, hook_request(PID, full(stays, codes))).status_code == 200


# ---- feedback -----------------------------------------------------------------------------------------------------


def test_the_spec_feedback_examples_are_accepted_and_stored(service: httpx.Client, config: ServiceConfig) -> None:
    before = count_lines(config.feedback_path)
    examples = sorted(SPEC.glob("feedback-*.json"))
    assert [p.name for p in examples] == [
        "feedback-accepted.json",
        "feedback-overridden-with-reason.json",
        "feedback-overridden.json",
    ]
    for path in examples:
        r = service.post(f"/cds-services/{SERVICE}/feedback", json=load(path))
        assert r.status_code == 200, (path.name, r.text)
        json_body(r)
    rows = [json.loads(x) for x in config.feedback_path.read_text().splitlines()[before:]]
    assert [(r["card"], r["outcome"]) for r in rows] == [
        (load(p)["feedback"][0]["card"], load(p)["feedback"][0]["outcome"]) for p in examples
    ]
    assert rows[1]["overrideReason"]["userComment"] == "A comment entered by the clinician."
    assert not any(r["known_card"] for r in rows)  # the spec's card uuids were never issued here


def test_malformed_feedback_is_refused_with_400_and_a_reason(service: httpx.Client, config: ServiceConfig) -> None:
    good = load(SPEC / "feedback-overridden.json")["feedback"][0]
    accepted = load(SPEC / "feedback-accepted.json")["feedback"][0]
    cases: list[tuple[str, Any, str]] = [
        ("not JSON", b"{feedback", "not valid JSON"),
        ("a JSON list", b"[]", "not an object"),
        ("no feedback", {}, "non-empty list"),
        ("an empty list", {"feedback": []}, "non-empty list"),
        ("no card", {"feedback": [{k: v for k, v in good.items() if k != "card"}]}, "'card'"),
        ("an unknown outcome", {"feedback": [{**good, "outcome": "dismissed"}]}, "'accepted' or 'overridden'"),
        (
            "no outcomeTimestamp",
            {"feedback": [{k: v for k, v in good.items() if k != "outcomeTimestamp"}]},
            "outcomeTimestamp",
        ),
        ("no outcome", {"feedback": [{k: v for k, v in accepted.items() if k != "outcome"}]}, "outcome"),
        ("a reason that is text", {"feedback": [{**good, "overrideReason": "no"}]}, "overrideReason"),
        (
            "acceptedSuggestions not a list",
            {"feedback": [{**accepted, "acceptedSuggestions": {}}]},
            "acceptedSuggestions",
        ),
    ]
    before = count_lines(config.feedback_path)
    for what, body, words in cases:
        if not isinstance(body, bytes):
            assert schema_errors(body, "feedback-request"), what  # the schema refuses it too
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        r = service.post(f"/cds-services/{SERVICE}/feedback", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, (what, r.text)
        assert words in json_body(r)["error"], (what, r.text)
    r = service.post("/cds-services/no-such-service/feedback", json=load(SPEC / "feedback-overridden.json"))
    assert r.status_code == 404 and "GET /cds-services" in json_body(r)["error"]
    assert count_lines(config.feedback_path) == before


# ---- HTTP -------------------------------------------------------------------------------------------------------


def test_every_answer_is_json_and_the_service_keeps_serving_after_each_bad_request(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], codes: list[str]
) -> None:
    good = hook_request(PID, full(stays, codes))
    bad: list[tuple[str, Any, int]] = [
        ("invalid JSON", b"{not json", 400),
        ("a JSON string", b'"patient-view"', 400),
        ("an empty object", {}, 400),
        ("hookInstance a number", {**good, "hookInstance": 7}, 400),
        ("context a list", {**good, "context": [PID]}, 400),
        ("fhirServer not a URL", {**good, "fhirServer": "hooks.example.org"}, 400),
        (
            "fhirAuthorization of another token type",
            {
                **good,
                "fhirServer": "https://ehr.example/fhir",
                "fhirAuthorization": {"access_token": "x", "token_type": "MAC"},
            },
            400,
        ),
        ("prefetch a list", {**good, "prefetch": [good["prefetch"]["patient"]]}, 400),
        ("prefetch of another patient", hook_request("pn2012-132548", good["prefetch"]), 400),
        ("no prefetch, no fhirServer", hook_request(PID), 412),
        ("a body over the limit", b"[" + b" " * 2_000_001 + b"]", 413),
    ]
    for what, body, status in bad:
        r = hook(service, body)
        assert r.status_code == status, (what, r.text)
        assert json_body(r)["error"], what
        assert hook(service, good).status_code == 200, f"after {what}"
    for method, path, status in (
        ("GET", f"/cds-services/{SERVICE}", 405),
        ("POST", "/cds-services", 405),
        ("POST", "/cds-services/no-such-service", 404),
    ):
        r = service.request(method, path, json=good)
        assert r.status_code == status, (method, path)
        json_body(r)
    assert service.get("/cds-services").status_code == 200
