"""The CDS Hooks service end to end: real uvicorn on loopback, a model trained on PhysioNet 2012, real stays as FHIR.

References from outside: the CDS Hooks 2.0 JSON Schemas and spec examples (../shared/data/cds-hooks), FHIR R4 through
fhir.resources, and the training path (the task's own feature builder and the tabular adapter) for the scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import orjson
import pytest
from cds_requests import CDS, hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy

pytestmark = needs_physionet
SERVICE = "physionet-2012-lgbm"
SCHEMAS = CDS / "schemas"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"cds-hooks-2.0.{name}.schema.json").read_text())


def check(instance: Any, name: str) -> None:
    jsonschema.validate(instance, schema(name), format_checker=jsonschema.FormatChecker())


@pytest.fixture()
def config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off", max_body_bytes=2_000_000)


@pytest.fixture()
def service(model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    base = serve(create_app(model_home, config))
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client


def codes(client: httpx.Client) -> list[str]:
    tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
    return [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]


def test_discovery_lists_the_deployed_model_with_prefetch_for_exactly_its_codes(
    service: httpx.Client, model_home: Settings
) -> None:
    from medml.fhir.tasks import physionet_definition

    doc = service.get("/cds-services").json()
    check(doc, "discovery-response")
    (svc,) = doc["services"]
    assert svc["id"] == SERVICE and svc["hook"] == "patient-view"
    assert svc["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert svc["prefetch"]["encounters"] == "Encounter?patient={{context.patientId}}"
    assert sorted(codes(service)) == sorted(
        c.removeprefix("http://loinc.org|") for c in physionet_definition(48).codes()
    )


def test_a_stay_gets_one_card_that_validates_and_says_what_a_clinician_needs(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], config: ServiceConfig
) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    pid = "pn2012-132539"
    r = service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], codes(service))))
    assert r.status_code == 200, r.text
    body = r.json()
    check(body, "service-response")
    (card,) = body["cards"]
    record = json.loads(config.predictions_path.read_text().splitlines()[-1])
    risk = record["score"]
    assert card["indicator"] == ("critical" if risk >= 0.40 else "warning" if risk >= 0.15 else "info")
    assert len(card["summary"]) <= 140 and f"{risk:.0%}" in card["summary"]
    detail = card["detail"]
    for needed in (
        f"{SERVICE}@1",
        "AUROC",
        "calibration slope",
        "Evaluation population",
        "intended use",
        "not a diagnosis",
        "Top factors",
        "Missing inputs",
        "Unauthenticated demo",
    ):
        assert needed in detail, needed
    # 132539 has no lactate in its 48 h: the card names it, never imputes silently
    assert "Lactate" in detail.split("**Missing inputs**")[1]
    assert card["source"]["label"] == f"medml · {SERVICE}@1"
    assert card["links"][0]["url"].endswith(f"/models/{SERVICE}/1")
    (action,) = card["suggestions"][0]["actions"]
    ra = RiskAssessment.model_validate(action["resource"])
    assert float(ra.prediction[0].probabilityDecimal) == pytest.approx(round(risk, 4))
    assert ra.subject.reference == f"Patient/{pid}"
    assert "fraction between 0 and 1" in ra.note[0].text
    assert record["model"] == f"{SERVICE}@1" and record["patient"] == pid


def training_scores(model_home: Settings, stay_store: Path) -> dict[str, float]:
    """The registered model on the task's own features for the stays (the path that built the training data)."""
    from medml.fhir.store import FhirStore
    from medml.fhir.tasks import physionet_in_hospital_death
    from medml.registry import load_bundle

    bundle = load_bundle(SERVICE, model_home)
    with FhirStore(stay_store, read_only=True) as store:
        ds = physionet_in_hospital_death(store, 48)
    scores = bundle.predict_proba(ds.X[bundle.feature_names])[:, 1]
    return {f"pn2012-{sid}": float(s) for sid, s in zip(ds.ids, scores, strict=True)}


def test_serving_gives_the_training_numbers_for_the_same_stays(
    service: httpx.Client,
    stays: dict[str, list[dict[str, Any]]],
    stay_store: Path,
    model_home: Settings,
    config: ServiceConfig,
) -> None:
    from medml.pipelines.catalogue import load_dataset
    from medml.registry import load_bundle

    wanted = codes(service)
    for pid, resources in stays.items():
        r = service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(resources, wanted)))
        assert r.status_code == 200, r.text
    served = {rec["patient"]: rec["score"] for rec in map(json.loads, config.predictions_path.read_text().splitlines())}
    trained = training_scores(model_home, stay_store)
    assert set(served) == set(trained) == set(stays)
    for pid in stays:
        assert served[pid] == pytest.approx(trained[pid], rel=1e-12, abs=1e-15), pid
    # and the tabular adapter, which the model was trained on, agrees too
    tab = load_dataset("physionet-2012")
    rows = np.isin(tab.ids.astype(str), [p.removeprefix("pn2012-") for p in stays])
    bundle = load_bundle(SERVICE, model_home)
    tabular = dict(zip(tab.ids[rows].astype(str), bundle.predict_proba(tab.X[rows])[:, 1], strict=True))
    for pid in stays:
        assert served[pid] == pytest.approx(tabular[pid.removeprefix("pn2012-")], rel=1e-9), pid


def test_without_prefetch_the_service_fetches_from_fhir_server_with_the_token(
    service: httpx.Client,
    stays: dict[str, list[dict[str, Any]]],
    stay_store: Path,
    config: ServiceConfig,
    serve: Callable[[Any], str],
) -> None:
    from medml.fhir.server import create_fhir_app

    token = "opaque-fhir-token-4d1f"
    fhir = serve(create_fhir_app(stay_store, bearer_token=token))
    pid = "pn2012-132551"
    auth = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read user/Encounter.read",
        "subject": "cds-service",
    }
    fetched = service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, fhirServer=fhir, fhirAuthorization=auth))
    assert fetched.status_code == 200, fetched.text
    given = service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], codes(service))))
    scores = [json.loads(x)["score"] for x in config.predictions_path.read_text().splitlines()]
    assert scores[0] == scores[1]
    assert fetched.json()["cards"][0]["summary"] == given.json()["cards"][0]["summary"]
    # part prefetched, part fetched
    partial = prefetch_for(stays[pid], codes(service))
    del partial["observations"]
    both = service.post(
        f"/cds-services/{SERVICE}", json=hook_request(pid, partial, fhirServer=fhir, fhirAuthorization=auth)
    )
    assert both.status_code == 200
    assert json.loads(config.predictions_path.read_text().splitlines()[-1])["score"] == scores[0]
    # a wrong token: the FHIR server says 401, the service cannot get what it needs: 412
    bad = service.post(
        f"/cds-services/{SERVICE}",
        json=hook_request(pid, fhirServer=fhir, fhirAuthorization={**auth, "access_token": "nope"}),
    )
    assert bad.status_code == 412 and "fhirServer" in bad.json()["error"]
    for f in config.home.iterdir():  # the token reaches no file the service writes
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f.name


def test_no_prefetch_and_no_fhir_server_is_412_naming_what_is_missing(service: httpx.Client) -> None:
    r = service.post(f"/cds-services/{SERVICE}", json=hook_request("pn2012-132539"))
    assert r.status_code == 412
    assert "observations" in r.json()["error"] and "fhirServer" in r.json()["error"]


def bad_requests(stays: dict[str, list[dict[str, Any]]], wanted: list[str]) -> list[tuple[str, Any, int, str]]:
    pid = "pn2012-132539"
    good = hook_request(pid, prefetch_for(stays[pid], wanted))
    no_instance = {k: v for k, v in good.items() if k != "hookInstance"}
    wrong_type = {**good, "prefetch": {**good["prefetch"], "observations": good["prefetch"]["patient"]}}
    other = prefetch_for(stays["pn2012-132548"], wanted)
    other_patient = {**good, "prefetch": {**good["prefetch"], "observations": other["observations"]}}
    return [
        ("invalid JSON", b"{not json", 400, "not valid JSON"),
        ("a JSON list", b"[]", 400, "not an object"),
        ("no hookInstance", no_instance, 400, "hookInstance"),
        ("wrong hook", {**good, "hook": "order-sign"}, 400, "patient-view"),
        ("context without patientId", {**good, "context": {"userId": "Practitioner/1"}}, 400, "patientId"),
        ("context not an object", {**good, "context": "x"}, 400, "context"),
        ("prefetch of the wrong type", wrong_type, 400, "expected a Bundle"),
        ("prefetch of another patient", other_patient, 400, "not Patient/pn2012-132539"),
        (
            "fhirAuthorization without fhirServer",
            {**good, "fhirAuthorization": {"access_token": "x"}},
            400,
            "fhirServer",
        ),
    ]


def test_bad_requests_get_the_right_status_and_a_clear_message_and_the_service_keeps_serving(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], config: ServiceConfig
) -> None:
    wanted = codes(service)
    for what, body, status, words in bad_requests(stays, wanted):
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        r = service.post(f"/cds-services/{SERVICE}", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == status, (what, r.text)
        assert words in r.json()["error"], (what, r.json())
    r = service.post("/cds-services/no-such-service", json=hook_request("x"))
    assert r.status_code == 404 and "GET /cds-services" in r.json()["error"]
    big = service.post(
        f"/cds-services/{SERVICE}", content=b"x" * 2_000_001, headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    ok = service.post(
        f"/cds-services/{SERVICE}", json=hook_request("pn2012-132539", prefetch_for(stays["pn2012-132539"], wanted))
    )
    assert ok.status_code == 200
    assert not config.predictions_path.read_text().count("\n") > 1  # only the good call was scored


def test_every_call_is_audited_in_an_intact_chain(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], config: ServiceConfig
) -> None:
    pid = "pn2012-132548"
    service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], codes(service))))
    service.post(f"/cds-services/{SERVICE}", content=b"{", headers={"content-type": "application/json"})
    result = verify(config.audit_path)
    assert result.ok and result.records == 2, result
    first, second = (json.loads(x) for x in config.audit_path.read_text().splitlines())
    assert first["status"] == 200 and first["model"] == f"{SERVICE}@1" and first["patient"] == pid
    assert first["cards"][0]["summary"].startswith("Risk of death in hospital")
    assert len(first["input_sha256"]) == len(first["output_sha256"]) == 64
    assert second["status"] == 400 and "not valid JSON" in second["error"]


def test_feedback_on_a_card_is_stored_with_its_reason(
    service: httpx.Client, stays: dict[str, list[dict[str, Any]]], config: ServiceConfig
) -> None:
    pid = "pn2012-132539"
    card = service.post(
        f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], codes(service)))
    ).json()["cards"][0]
    example = json.loads((CDS / "spec-2.0.1-examples" / "feedback-overridden-with-reason.json").read_text())
    check(example, "feedback-request")
    example["feedback"][0]["card"] = card["uuid"]
    example["feedback"][0]["overrideReason"]["reason"] = {k: card["overrideReasons"][1][k] for k in ("code", "system")}
    r = service.post(f"/cds-services/{SERVICE}/feedback", json=example)
    assert r.status_code == 200, r.text
    accepted = json.loads((CDS / "spec-2.0.1-examples" / "feedback-accepted.json").read_text())
    accepted["feedback"][0]["card"] = card["uuid"]
    assert service.post(f"/cds-services/{SERVICE}/feedback", json=accepted).status_code == 200
    rows = [json.loads(x) for x in config.feedback_path.read_text().splitlines()]
    assert [r["outcome"] for r in rows] == ["overridden", "accepted"]
    assert rows[0]["known_card"] and rows[0]["overrideReason"]["reason"]["code"] == "not-applicable"
    bad = service.post(
        f"/cds-services/{SERVICE}/feedback", json={"feedback": [{"card": card["uuid"], "outcome": "maybe"}]}
    )
    assert bad.status_code == 400 and "accepted" in bad.json()["error"]
    assert verify(config.audit_path).ok


EHR_ISS = "https://fhir-ehr.example.com/"
EHR_JKU = "https://fhir-ehr.example.com/jwk_uri"


def test_hook_calls_need_the_ehr_jwt_and_a_refused_call_is_a_bare_401(
    model_home: Settings, tmp_path: Path, serve: Callable[[Any], str], stays: dict[str, list[dict[str, Any]]]
) -> None:
    import time
    import uuid

    import jwt

    from medml.service.config import TrustedIssuer

    spec = CDS / "spec-2.0.1-examples"
    cfg = ServiceConfig(
        home=tmp_path / "service",
        base_url="https://cds.example.org",
        issuers=(TrustedIssuer(EHR_ISS, str(spec / "jwks-public.json"), (EHR_JKU,)),),
    )
    deploy(model_home, cfg, SERVICE)
    key = jwt.PyJWK(json.loads((spec / "jwk-private-EXAMPLE-ONLY.json").read_text())).key
    aud = cfg.service_url(SERVICE)

    def token(**changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": EHR_ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **changes}
        return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "example-kid", "jku": EHR_JKU})

    pid = "pn2012-132539"
    with httpx.Client(base_url=serve(create_app(model_home, cfg)), timeout=30) as client:
        wanted = codes(client)
        body = hook_request(pid, prefetch_for(stays[pid], wanted))
        good = token()
        ok = client.post(f"/cds-services/{SERVICE}", json=body, headers={"Authorization": f"Bearer {good}"})
        assert ok.status_code == 200, ok.text
        assert "Unauthenticated" not in ok.json()["cards"][0]["detail"]
        refused = {
            "no token": None,
            "replayed jti": good,
            "aud of another service": token(aud=cfg.service_url("other")),
            "expired": token(exp=int(time.time()) - 3600),
            "the spec's example token (expired in 2015)": (spec / "jwt-example-ES384.txt").read_text().strip(),
        }
        for what, tok in refused.items():
            headers = {"Authorization": f"Bearer {tok}"} if tok else {}
            r = client.post(f"/cds-services/{SERVICE}", json=body, headers=headers)
            assert r.status_code == 401, what
            assert r.content == b"" and r.headers["www-authenticate"].startswith("Bearer"), what
    records = [json.loads(x) for x in cfg.audit_path.read_text().splitlines()]
    assert [r["status"] for r in records] == [200] + [401] * len(refused)
    assert records[0]["caller"]["iss"] == EHR_ISS
    log = cfg.audit_path.read_bytes()
    assert all(t.encode() not in log for t in refused.values() if t)
