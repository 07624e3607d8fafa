"""The PGx drug-order services end to end: real uvicorn on loopback, the results of PharmCAT's example VCF stored for
a patient, order-sign and order-select calls as an EHR makes them.

References from outside: the CDS Hooks 2.0 JSON Schemas and the hooks library's order-sign/order-select R4 examples
(../shared/data/cds-hooks); the cards' CPIC text against :func:`medml.pgx.alerts.order_alerts` called directly.
PharmCAT's example (with its outside calls) is HLA-B *15:02/*57:01 (abacavir: "not recommended", Strong, another
drug) and CYP2D6 *1/*3, an intermediate metabolizer (amitriptyline: lower starting dose); CYP2C19 *38/*38 is a
normal metabolizer (clopidogrel: no change).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from cds_requests import CDS, data_root

from medml.config import Settings
from medml.pgx.alerts import order_alerts
from medml.pgx.store import save_results
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig

EXAMPLES = data_root() / "pgx" / "pharmcat-tests" / "examples"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"no PGx examples at {EXAMPLES}")
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PID = "pgx-patient-1"
SIGN, SELECT = "pgx-order-sign", "pgx-order-select"
SERVICES_HOOK = {SIGN: "order-sign", SELECT: "order-select"}


def check(instance: Any, name: str) -> None:
    schema = json.loads((CDS / "schemas" / f"cds-hooks-2.0.{name}.schema.json").read_text())
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The JSON `medml pgx call --format json` writes for PharmCAT's example and its outside calls."""
    from medml.pgx.pipeline import analyse_vcf

    result = analyse_vcf(
        EXAMPLES / "pharmcat.example.vcf", outside_calls=[EXAMPLES / "pharmcat.example.outsideCall.tsv"]
    )
    return dict(json.loads(str(result.to_json())))


@pytest.fixture()
def config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off")


@pytest.fixture()
def client(
    tmp_path: Path, config: ServiceConfig, document: dict[str, Any], serve: Callable[[Any], str]
) -> Iterator[httpx.Client]:
    save_results(config.pgx_results_dir, PID, document)
    base = serve(create_app(Settings(home=tmp_path, data_root=data_root()), config))
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def medication_request(rid: str, text: str, rxnorm: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if rxnorm:
        concept["coding"] = [{"system": RXNORM, "code": rxnorm, "display": text}]
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PID}"},
    }


ABACAVIR = medication_request("mr-abacavir", "abacavir 300 MG Oral Tablet", "190521")
#: a product code CPIC does not list (CPIC codes ingredients): the drug is found by its name in the text
AMITRIPTYLINE = medication_request("mr-amitriptyline", "amitriptyline hydrochloride 25 MG Oral Tablet", "856845")
CLOPIDOGREL = medication_request("mr-clopidogrel", "clopidogrel 75 MG Oral Tablet", "32968")
AMOXICILLIN = medication_request("mr-amoxicillin", "amoxicillin 500 MG Oral Capsule", "308191")


def order_request(
    hook: str, orders: list[dict[str, Any]], patient: str = PID, selections: list[str] | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/example",
        "patientId": patient,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in orders]},
    }
    if selections is not None:
        context["selections"] = selections
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}


def call(client: httpx.Client, service: str, body: dict[str, Any]) -> httpx.Response:
    r = client.post(f"/cds-services/{service}", json=body)
    if r.status_code == 200:
        check(r.json(), "service-response")
    return r


def test_discovery_lists_both_services_without_prefetch(client: httpx.Client) -> None:
    doc = client.get("/cds-services").json()
    check(doc, "discovery-response")
    services = {s["id"]: s for s in doc["services"]}
    assert {k: s["hook"] for k, s in services.items()} == {SELECT: "order-select", SIGN: "order-sign"}
    for s in services.values():
        assert "prefetch" not in s and "medml's own store" in s["usageRequirements"]


def test_the_services_are_not_offered_when_switched_off_or_without_a_results_store(
    tmp_path: Path, serve: Callable[[Any], str], document: dict[str, Any]
) -> None:
    settings = Settings(home=tmp_path, data_root=data_root())
    off = ServiceConfig(home=tmp_path / "off", auth="off", pgx_services=False)
    save_results(off.pgx_results_dir, PID, document)
    empty = ServiceConfig(home=tmp_path / "empty", auth="off")
    for cfg in (off, empty):
        with httpx.Client(base_url=serve(create_app(settings, cfg)), timeout=30) as c:
            assert c.get("/cds-services").json()["services"] == []
            assert c.post(f"/cds-services/{SIGN}", json=order_request("order-sign", [ABACAVIR])).status_code == 404


def test_order_sign_gives_the_cpic_recommendation_as_a_card(client: httpx.Client, document: dict[str, Any]) -> None:
    from medml.pgx.pipeline import phenotypes_from_dict

    r = call(client, SIGN, order_request("order-sign", [ABACAVIR]))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    (reference,) = order_alerts("abacavir", phenotypes_from_dict(document))
    assert reference.strength == "Strong" and reference.alternative_drug
    assert (
        card["summary"] == "abacavir, HLA-B *15:02 positive, *57:01 positive, *58:01 negative: Abacavir is not "
        "recommended"
    )
    assert card["indicator"] == "critical"
    detail = card["detail"]
    for fragment in (
        f"> {reference.recommendation}",
        "Strong",
        *reference.implications,
        reference.guideline,
        reference.version,
        "*15:02/*57:01",
        "not a diagnosis",
    ):
        assert fragment in detail, fragment
    assert card["source"] == {"label": f"medml PGx · {reference.version}", "url": reference.guideline_url}
    assert reference.version.startswith("CPIC ")
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft abacavir order",
            "resourceId": "MedicationRequest/mr-abacavir",
        }
    ]
    assert card["selectionBehavior"] == "at-most-one"
    assert {o["code"] for o in card["overrideReasons"]} >= {"benefit-outweighs-risk", "results-wrong"}


def test_a_dose_change_is_a_warning_without_a_suggestion_and_the_drug_is_found_by_name(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    from medml.pgx.pipeline import phenotypes_from_dict

    cards = call(client, SIGN, order_request("order-sign", [AMITRIPTYLINE])).json()["cards"]
    reference = order_alerts("amitriptyline", phenotypes_from_dict(document))
    assert len(cards) == len(reference) == 1
    assert cards[0]["indicator"] == "warning" and "suggestions" not in cards[0]
    assert "CYP2D6 Intermediate Metabolizer" in cards[0]["summary"] and len(cards[0]["summary"]) < 140
    assert all(f"> {line}" in cards[0]["detail"] for line in reference[0].recommendation.splitlines())
    assert "*1/*3" in cards[0]["detail"]


def test_a_drug_the_genotype_does_not_change_and_a_drug_without_guideline_get_no_card(client: httpx.Client) -> None:
    r = call(client, SIGN, order_request("order-sign", [CLOPIDOGREL, AMOXICILLIN]))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_a_patient_without_stored_results_gets_no_cards(client: httpx.Client) -> None:
    r = call(client, SIGN, order_request("order-sign", [ABACAVIR], patient="someone-else"))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_order_select_answers_only_for_the_selected_order(client: httpx.Client) -> None:
    both = [ABACAVIR, AMITRIPTYLINE]
    cards = call(
        client, SELECT, order_request("order-select", both, selections=["MedicationRequest/mr-amitriptyline"])
    ).json()["cards"]
    assert [c["summary"].split(",")[0] for c in cards] == ["amitriptyline"]
    cards = call(
        client,
        SELECT,
        order_request(
            "order-select", both, selections=["MedicationRequest/mr-abacavir", "MedicationRequest/mr-amitriptyline"]
        ),
    ).json()["cards"]
    assert sorted(c["summary"].split(",")[0] for c in cards) == ["abacavir", "amitriptyline"]


BAD = {
    "wrong hook": (SIGN, lambda b: {**b, "hook": "order-select"}, "answers the order-sign hook"),
    "patient-view": (SELECT, lambda b: {**b, "hook": "patient-view"}, "answers the order-select hook"),
    "no draftOrders": (
        SIGN,
        lambda b: {**b, "context": {k: v for k, v in b["context"].items() if k != "draftOrders"}},
        "context.draftOrders",
    ),
    "draftOrders not a Bundle": (
        SIGN,
        lambda b: {**b, "context": {**b["context"], "draftOrders": [ABACAVIR]}},
        "context.draftOrders",
    ),
    "no selections": (SELECT, lambda b: b, "context.selections"),
    "selections not references": (
        SELECT,
        lambda b: {**b, "context": {**b["context"], "selections": [1]}},
        "context.selections",
    ),
    "no userId": (
        SIGN,
        lambda b: {**b, "context": {k: v for k, v in b["context"].items() if k != "userId"}},
        "context.userId",
    ),
    "unsafe patientId": (
        SIGN,
        lambda b: {**b, "context": {**b["context"], "patientId": "../../audit"}},
        "not a FHIR id",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_400_naming_what_is_wrong(case: str, client: httpx.Client) -> None:
    service, edit, fragment = BAD[case]
    body = edit(order_request(SERVICES_HOOK[service], [ABACAVIR]))
    r = client.post(f"/cds-services/{service}", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text
    assert call(client, SIGN, order_request("order-sign", [ABACAVIR])).status_code == 200  # still serving


def library_example(name: str) -> dict[str, Any]:
    example = json.loads((CDS / "hooks-library-examples" / name).read_text())
    return {"hook": name.split("-context")[0], "hookInstance": str(uuid.uuid4()), "context": example["context"]}


def test_the_hooks_library_examples_are_answered(
    client: httpx.Client, config: ServiceConfig, document: dict[str, Any]
) -> None:
    sign = library_example("order-sign-context-R4.json")
    patient = sign["context"]["patientId"]
    save_results(config.pgx_results_dir, patient, document)
    r = call(client, SIGN, sign)  # a diet and amoxicillin/clavulanate: CPIC has nothing to say
    assert r.status_code == 200 and r.json() == {"cards": []}
    as_abacavir = copy.deepcopy(sign)
    (mr,) = (
        e["resource"]
        for e in as_abacavir["context"]["draftOrders"]["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
    )
    mr["medicationCodeableConcept"] = ABACAVIR["medicationCodeableConcept"]
    (card,) = call(client, SIGN, as_abacavir).json()["cards"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == f"MedicationRequest/{mr['id']}"
    select = library_example("order-select-context-R4.json")
    assert call(client, SELECT, select).json() == {"cards": []}


def test_every_call_is_audited_with_the_cpic_version(client: httpx.Client, config: ServiceConfig) -> None:
    call(client, SIGN, order_request("order-sign", [ABACAVIR]))
    call(client, SIGN, order_request("order-sign", [ABACAVIR], patient="someone-else"))
    client.post(f"/cds-services/{SIGN}", json={**order_request("order-sign", [ABACAVIR]), "hook": "order-select"})
    result = verify(config.audit_path)
    assert result.ok and result.records == 3, result
    first, second, third = (json.loads(x) for x in config.audit_path.read_text().splitlines())
    assert first["status"] == 200 and first["patient"] == PID and first["hook"] == "order-sign"
    assert first["model"].startswith("pgx@CPIC ") and first["cards"]
    assert second["status"] == 200 and second["model"] is None and second["cards"] == []
    assert third["status"] == 400 and "order-sign hook" in third["error"]


def test_feedback_on_a_pgx_card_is_stored(client: httpx.Client, config: ServiceConfig) -> None:
    (card,) = call(client, SIGN, order_request("order-sign", [ABACAVIR])).json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
                "overrideReason": {"reason": card["overrideReasons"][1]},
            }
        ]
    }
    assert client.post(f"/cds-services/{SIGN}/feedback", json=feedback).status_code == 200
    (row,) = (json.loads(x) for x in config.feedback_path.read_text().splitlines())
    assert row["known_card"] is True and row["outcome"] == "overridden"


def test_a_hook_call_without_the_ehr_jwt_is_a_bare_401(
    tmp_path: Path, serve: Callable[[Any], str], document: dict[str, Any]
) -> None:
    cfg = ServiceConfig(home=tmp_path / "service", auth="jwt")
    save_results(cfg.pgx_results_dir, PID, document)
    with httpx.Client(base_url=serve(create_app(Settings(home=tmp_path, data_root=data_root()), cfg)), timeout=30) as c:
        r = c.post(f"/cds-services/{SIGN}", json=order_request("order-sign", [ABACAVIR]))
        assert r.status_code == 401 and r.content == b""
