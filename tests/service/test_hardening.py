"""What the security review found in the service (issue 13), each reproduced against the real app on loopback.

Every test here failed before its fix: pages readable from another origin, requests answered without an audit
record (deep JSON, 413, a chunked over-size body audited as 500), an audit log moved away while serving.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_requests import CDS, hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy

pytestmark = needs_physionet
SERVICE = "physionet-2012-lgbm"
PID = "pn2012-132539"
EVIL = "https://evil.example"


@pytest.fixture()
def config(tmp_path: Path, stay_store: Path) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off", max_body_bytes=2_000_000, fhir_store=stay_store)


@pytest.fixture()
def client(model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    with httpx.Client(base_url=serve(create_app(model_home, config)), timeout=30) as c:
        yield c


def records(config: ServiceConfig) -> list[dict[str, Any]]:
    if not config.audit_path.exists():
        return []
    return [json.loads(x) for x in config.audit_path.read_text().splitlines()]


def settled(config: ServiceConfig, n: int) -> list[dict[str, Any]]:
    """The audit records once there are ``n``: a refusal the middleware answers is recorded just after it leaves."""
    deadline = time.monotonic() + 5
    while len(got := records(config)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def codes(client: httpx.Client) -> list[str]:
    tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
    return [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"valueString": value}
    return value


# ---- 1. PHI readable by any other website --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/patients/{PID}", f"/models/{SERVICE}/1"])
def test_pages_send_no_cors_header_and_refuse_another_origin(
    client: httpx.Client, config: ServiceConfig, path: str
) -> None:
    other = client.get(path, headers={"Origin": EVIL})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    assert PID not in other.text
    cross = client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    own = client.get(path, headers={"Sec-Fetch-Site": "same-origin", "Origin": str(client.base_url).rstrip("/")})
    assert own.status_code == 200, own.text
    assert "access-control-allow-origin" not in own.headers
    assert own.headers["cross-origin-resource-policy"] == "same-origin"


def test_a_refused_cross_site_page_scores_no_one_and_is_audited_as_refused(
    client: httpx.Client, config: ServiceConfig
) -> None:
    assert client.get(f"/patients/{PID}", headers={"Origin": EVIL}).status_code == 403
    (rec,) = settled(config, 1)
    assert (rec["event"], rec["status"], rec["patient"]) == ("page", 403, PID)
    assert "origin https://evil.example" in rec["error"]
    assert not config.predictions_path.exists() or config.predictions_path.read_text() == ""


def test_the_hook_endpoints_keep_their_cors_for_browser_based_ehrs(client: httpx.Client) -> None:
    got = client.get("/cds-services", headers={"Origin": EVIL})
    assert got.headers["access-control-allow-origin"] in ("*", EVIL)


# ---- 4. answers without an audit record ----------------------------------------------------------------------------


def test_deeply_nested_json_is_refused_before_scoring_with_one_audit_record(
    client: httpx.Client, config: ServiceConfig, stays: dict[str, list[dict[str, Any]]]
) -> None:
    body = hook_request(PID, prefetch_for(stays[PID], codes(client)))
    body["extension"] = {"com.example.deep": nested(350)}
    r = client.post(f"/cds-services/{SERVICE}", json=body)
    assert r.status_code == 400 and "254 levels" in r.json()["error"]
    deep_prefetch = hook_request(PID, {**prefetch_for(stays[PID], codes(client)), "extra": nested(300)})
    assert client.post(f"/cds-services/{SERVICE}", json=deep_prefetch).status_code == 400
    feedback = {
        "feedback": [
            {
                "card": "c",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
                "overrideReason": nested(400),
            }
        ]
    }
    assert client.post(f"/cds-services/{SERVICE}/feedback", json=feedback).status_code == 400
    got = records(config)
    assert [(r["event"], r["status"]) for r in got] == [("hook", 400), ("hook", 400), ("feedback", 400)]
    assert verify(config.audit_path).ok
    assert not config.predictions_path.exists() or config.predictions_path.read_text() == ""


def test_an_over_size_body_is_audited_with_the_413_the_client_saw(client: httpx.Client, config: ServiceConfig) -> None:
    big = b'{"hook": "patient-view", "pad": "' + b"x" * 2_100_000 + b'"}'
    declared = client.post(f"/cds-services/{SERVICE}", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b" " * 100_000

    streamed = client.post(f"/cds-services/{SERVICE}", content=chunks())
    assert streamed.status_code == 413
    got = settled(config, 2)
    assert [(r["event"], r["service"], r["status"]) for r in got] == [("hook", SERVICE, 413)] * 2
    assert all("bytes this service accepts" in r["error"] for r in got)
    assert verify(config.audit_path).ok


def test_a_rate_limited_call_is_audited(model_home: Settings, tmp_path: Path, serve: Callable[[Any], str]) -> None:
    config = ServiceConfig(home=tmp_path / "service", auth="off", rate_per_minute=1)
    deploy(model_home, config, SERVICE)
    with httpx.Client(base_url=serve(create_app(model_home, config))) as c:
        statuses = [c.post(f"/cds-services/{SERVICE}", content=b"{").status_code for _ in range(6)]
    assert 429 in statuses
    assert [r["status"] for r in settled(config, len(statuses))] == statuses


# ---- 7. the audit log replaced while serving -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["moved", "deleted"])
def test_an_audit_log_moved_or_deleted_while_serving_is_detected_and_the_chain_goes_on(
    client: httpx.Client, config: ServiceConfig, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    client.post(f"/cds-services/{SERVICE}", content=b"{")
    client.post(f"/cds-services/{SERVICE}", content=b"{")
    moved = config.audit_path.with_name("elsewhere.jsonl")
    if how == "moved":
        config.audit_path.rename(moved)
        config.audit_path.with_name("audit.jsonl.head").rename(moved.with_name("elsewhere.jsonl.head"))
    else:
        config.audit_path.unlink()
    with caplog.at_level(logging.ERROR):
        client.post(f"/cds-services/{SERVICE}", content=b"{")
    assert any("moved or deleted while the service was running" in r.getMessage() for r in caplog.records)
    (new,) = records(config)  # the third call is in a new file at the configured path, not in the moved one
    assert new["seq"] == 3 and new["status"] == 400
    result = verify(config.audit_path)
    assert not result.ok and "records 1-2 are missing" in str(result)
    if how == "moved":
        assert [json.loads(x)["seq"] for x in moved.read_text().splitlines()] == [1, 2]


# ---- 10. the service fetches only from the FHIR servers allowed for the caller's EHR -----------------------------

EHR_ISS = "https://fhir-ehr.example.com/"
EHR_JKU = "https://fhir-ehr.example.com/jwk_uri"


def signed_config(tmp_path: Path, fhir_servers: tuple[str, ...]) -> ServiceConfig:
    from medml.service.config import TrustedIssuer

    jwks = CDS / "spec-2.0.1-examples" / "jwks-public.json"
    return ServiceConfig(
        home=tmp_path / "service",
        base_url="https://cds.example.org",
        issuers=(TrustedIssuer(EHR_ISS, str(jwks), (EHR_JKU,), fhir_servers),),
    )


def token(config: ServiceConfig) -> str:
    import uuid

    import jwt

    key = jwt.PyJWK(json.loads((CDS / "spec-2.0.1-examples" / "jwk-private-EXAMPLE-ONLY.json").read_text())).key
    now = int(time.time())
    claims = {
        "iss": EHR_ISS,
        "aud": config.service_url(SERVICE),
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    return str(jwt.encode(claims, key, algorithm="ES384", headers={"kid": "example-kid", "jku": EHR_JKU}))


def test_a_signed_call_may_name_only_a_fhir_server_listed_for_its_ehr(
    model_home: Settings, tmp_path: Path, stay_store: Path, serve: Callable[[Any], str]
) -> None:
    from medml.fhir.server import create_fhir_app

    asked: list[str] = []
    fhir_app = create_fhir_app(stay_store, bearer_token="fhir-token")

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            asked.append(scope["path"])
        await fhir_app(scope, receive, send)

    fhir = serve(counting)
    auth = {"access_token": "fhir-token", "token_type": "Bearer", "expires_in": 300, "scope": "", "subject": "s"}
    for allowed, status in (((), 412), (("https://other.example/fhir",), 412), ((fhir + "/",), 200)):
        config = signed_config(tmp_path / str(len(allowed)) / ("ok" if status == 200 else "no"), allowed)
        deploy(model_home, config, SERVICE)
        with httpx.Client(base_url=serve(create_app(model_home, config)), timeout=30) as c:
            asked.clear()
            r = c.post(
                f"/cds-services/{SERVICE}",
                json=hook_request(PID, fhirServer=fhir, fhirAuthorization=auth),
                headers={"Authorization": f"Bearer {token(config)}"},
            )
        assert r.status_code == status, r.text
        if status == 412:
            assert "fhir_servers" in r.json()["error"] and asked == []  # refused before any request left
        else:
            assert asked  # fetched the patient's record from the listed server


def test_with_authentication_off_only_a_loopback_fhir_server_is_asked(client: httpx.Client) -> None:
    auth = {"access_token": "t", "token_type": "Bearer"}
    r = client.post(
        f"/cds-services/{SERVICE}",
        json=hook_request(PID, fhirServer="https://ehr.hospital.example/fhir", fhirAuthorization=auth),
    )
    assert r.status_code == 412 and "not on loopback" in r.json()["error"]


def test_refusal_reasons_go_to_the_server_log_without_the_token(
    model_home: Settings, tmp_path: Path, serve: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    from medml.service.app import service_logging

    config = signed_config(tmp_path, ())
    deploy(model_home, config, SERVICE)
    bad = token(config).rsplit(".", 1)[0] + ".c2lnbmF0dXJlLWZvcmdlZA"
    with (
        caplog.at_level(logging.INFO, logger="medml"),
        httpx.Client(base_url=serve(create_app(model_home, config))) as c,
    ):
        assert (
            c.post(f"/cds-services/{SERVICE}", json={}, headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        )
    (refusal,) = [r for r in caplog.records if r.getMessage().startswith("refused a call")]
    assert refusal.levelno == logging.WARNING and "signature does not verify" in refusal.getMessage()
    assert all(part not in refusal.getMessage() for part in bad.split(".") if len(part) > 8)
    # what `medml serve` sets up in each worker: medml's lines reach stderr (uvicorn configures only its own)
    logger = logging.getLogger("medml")
    before = list(logger.handlers)
    try:
        service_logging()
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0], logging.StreamHandler) and logger.level == logging.INFO
    finally:
        for h in logger.handlers[:]:
            if h not in before:
                logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)


def test_a_page_number_past_any_store_is_a_page_not_a_server_error(client: httpx.Client) -> None:
    for page_no in ("99999999999999999999", "-99999999999999999999", "0"):
        r = client.get("/", params={"page_no": page_no})
        assert r.status_code == 200 and "Patients" in r.text, page_no


# ---- 2 and 3. implausible inputs, and a card from no data -----------------------------------------------------------


def with_values(prefetch: dict[str, Any], code: str, value: float | None) -> dict[str, Any]:
    """The prefetch with every Observation of LOINC ``code`` given ``value`` (None: the value removed)."""
    import copy

    out = copy.deepcopy(prefetch)
    for e in out["observations"]["entry"]:
        obs = e["resource"]
        if any(c.get("code") == code for c in obs["code"]["coding"]):
            if value is None:
                obs.pop("valueQuantity", None)
            else:
                obs["valueQuantity"]["value"] = value
    return out


def without(prefetch: dict[str, Any], code: str) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(prefetch)
    entries = out["observations"]["entry"]
    out["observations"]["entry"] = [
        e for e in entries if not any(c.get("code") == code for c in e["resource"]["code"]["coding"])
    ]
    return out


@pytest.mark.parametrize(
    ("code", "value", "label"),
    [
        ("9269-2", -50.0, "GCS"),  # GCS -50 read as a deep coma: 100% before
        ("9269-2", 95.0, "GCS"),  # GCS 95 read as fully awake: under 1% before
        ("2823-3", 95.0, "K"),  # potassium 95 mmol/L: 92% before
        ("8867-4", 1e308, "HR"),  # a 500 before
    ],
)
def test_an_implausible_value_is_left_out_and_named_exactly_as_a_missing_one(
    client: httpx.Client, stays: dict[str, list[dict[str, Any]]], code: str, value: float, label: str
) -> None:
    base = prefetch_for(stays[PID], codes(client))
    bad = client.post(f"/cds-services/{SERVICE}", json=hook_request(PID, with_values(base, code, value)))
    assert bad.status_code == 200, bad.text
    gone = client.post(f"/cds-services/{SERVICE}", json=hook_request(PID, without(base, code)))
    (card,), (reference,) = bad.json()["cards"], gone.json()["cards"]
    assert card["summary"] == reference["summary"]  # scored as if the value were not there
    left_out = card["detail"].split("**Results left out**", 1)[1]
    assert f"{label} (implausible)" in left_out


def test_a_stay_whose_values_are_all_null_gets_no_risk_but_a_card_that_says_so(
    client: httpx.Client, config: ServiceConfig, stays: dict[str, list[dict[str, Any]]]
) -> None:
    import copy

    prefetch = copy.deepcopy(prefetch_for(stays[PID], codes(client)))  # the stays are shared by the session
    for e in prefetch["observations"]["entry"]:
        e["resource"].pop("valueQuantity", None)
    r = client.post(f"/cds-services/{SERVICE}", json=hook_request(PID, prefetch))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["indicator"] == "info" and "not scored" in card["summary"]
    assert "%" not in card["summary"] and "at least 3 needed" in card["detail"]
    assert SERVICE in card["source"]["label"]
    assert not config.predictions_path.exists() or config.predictions_path.read_text() == ""
