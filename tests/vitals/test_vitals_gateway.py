"""The device gateway's endpoint end to end: real uvicorn on loopback, signed JWTs, real PhysioNet 2012 stays as FHIR.

The reference is the streaming scorer of `medml vitals watch` (:class:`medml.vitals.EarlyWarningStream`) fed the
same observations in the same order, in this process: the endpoint must raise the same alerts (patient, time,
score, band, sub-scores) and count the same observations, whether they come as NDJSON, Bundles or one at a time,
and its audit log must hold one record per alert, chained.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_vitals import full_set, observation

from medml.config import Settings, get_settings
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig, TrustedIssuer
from medml.service.routers.vitals import endpoint_url
from medml.vitals import EarlyWarningStream, StreamConfig

ISS = "https://device-gateway.example.org/"
KID = "gateway-key"
SCOPE = "system/Observation.c"
SET_A = get_settings().data_root / "icu" / "physionet-2012-set-a"
#: stays of set A with vital signs through the first 48 h (a death among them)
STAYS = (132539, 132548, 132551, 132973, 135757, 132547, 133308, 132540, 132541, 132543, 132545, 132592)


@pytest.fixture(scope="module")
def stays() -> dict[str, list[dict[str, Any]]]:
    """Real stays converted to FHIR as medml's converter writes them: Patient id -> its resources."""
    from medml.fhir.convert.physionet2012 import iter_stays

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet 2012 set A at {SET_A}")
    return {stay[0]["id"]: stay for stay in iter_stays(SET_A, record_ids=STAYS)}


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The gateway's ES384 key and its public JWK Set file."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": KID, "alg": "ES384", "use": "sig"}]}))
    return key, path


def settings(home: Path) -> Settings:
    return Settings(home=home, data_root=get_settings().data_root)


@pytest.fixture()
def config(tmp_path: Path, signer: tuple[Any, Path]) -> ServiceConfig:
    return ServiceConfig(
        home=tmp_path / "service",
        base_url="https://cds.example.org",
        pages=False,
        monitor=False,
        issuers=(TrustedIssuer(ISS, str(signer[1])),),
    )


def token(signer: tuple[Any, Path], aud: str, **changes: Any) -> str:
    import jwt

    now = int(time.time())
    claims = {
        "iss": ISS,
        "sub": "ward-7-gateway",
        "aud": aud,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "scope": SCOPE,
        **changes,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return str(jwt.encode(claims, signer[0], algorithm="ES384", headers={"kid": KID}))


@pytest.fixture()
def post(
    tmp_path: Path, config: ServiceConfig, signer: tuple[Any, Path], serve: Callable[[Any], str]
) -> Iterator[Callable[..., httpx.Response]]:
    """POST a body to the endpoint with a fresh signed token (``headers`` replace the token's)."""
    base = serve(create_app(settings(tmp_path), config))
    aud = endpoint_url(config.base_url)
    with httpx.Client(base_url=base, timeout=60) as client:

        def send(body: bytes, content_type: str = "application/fhir+json", **headers: str) -> httpx.Response:
            given = {"Authorization": f"Bearer {token(signer, aud)}", "Content-Type": content_type, **headers}
            return client.post("/vitals/observations", content=body, headers={k: v for k, v in given.items() if v})

        yield send


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def bundle(resources: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})


def audit_records(config: ServiceConfig) -> list[dict[str, Any]]:
    return [json.loads(x) for x in config.audit_path.read_text().splitlines()]


def test_physionet_stays_posted_raise_the_alerts_and_counts_of_the_stream_scorer(
    post: Callable[..., httpx.Response], config: ServiceConfig, stays: dict[str, list[dict[str, Any]]]
) -> None:
    reference = EarlyWarningStream(StreamConfig())
    expected_alerts: list[dict[str, Any]] = []
    got_alerts: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for _pid, resources in sorted(stays.items()):
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        half = len(observations) // 2
        # NDJSON, then a Bundle (one score per patient for the set), as a gateway may send them
        for body, kind in ((ndjson(observations[:half]), "application/fhir+ndjson"), (bundle(observations[half:]), "")):
            r = post(body, kind or "application/fhir+json")
            assert r.status_code == 200, r.text
            answer = r.json()
            got_alerts += answer["alerts"]
            for k, n in answer["counts"].items():
                totals[k] = totals.get(k, 0) + n
            if kind:
                expected_alerts += [
                    a.to_dict() for n, line in enumerate(body.splitlines(), 1) for a in reference.feed(line, n)
                ]
            else:
                expected_alerts += [a.to_dict() for a in reference.feed(body)]
    assert len(expected_alerts) > 20  # real deterioration in these stays: the comparison is not of empty lists
    assert got_alerts == expected_alerts
    assert totals == {k: n for k, n in reference.counts().items() if n}
    records = audit_records(config)
    alerts = [r for r in records if r["event"] == "vitals-alert"]
    assert [(r["patient"], r["cards"][0]["indicator"]) for r in alerts] == [
        (a["patient"], {"high": "critical", "low": "info"}.get(a["band"], "warning")) for a in expected_alerts
    ]
    for record, alert in zip(alerts, expected_alerts, strict=True):
        summary = record["cards"][0]["summary"]
        assert f"NEWS2 {alert['total']}: {alert['band']} clinical risk, up from {alert['previous_band']}" in summary
        assert record["model"] == "NEWS2 (RCP 2017)" and record["caller"]["iss"] == ISS
    calls = [r for r in records if r["event"] == "vitals"]
    assert len(calls) == 2 * len(stays) and all(r["status"] == 200 for r in calls)
    assert verify(config.audit_path).ok


def test_a_repeat_of_the_same_band_within_the_hour_is_held_back_across_requests(
    post: Callable[..., httpx.Response], config: ServiceConfig
) -> None:
    first = post(bundle(full_set(minutes=0))).json()
    assert first["alerts"] == [] and first["accepted"] == 7
    up = post(bundle(full_set(minutes=5, rr=26))).json()  # RR 26 scores 3: a red score, low-medium
    assert [a["band"] for a in up["alerts"]] == ["low-medium"] and up["alerts"][0]["patient"] == "Patient/1"
    post(bundle(full_set(minutes=10)))
    again = post(bundle(full_set(minutes=15, rr=26))).json()
    assert again["alerts"] == [] and again["alerts_held_back"] == 1
    one = post(orjson.dumps(full_set(minutes=20, rr=26, pulse=135)[4])).json()  # a single Observation: pulse 135
    assert [a["band"] for a in one["alerts"]] == ["medium"] and one["accepted"] == 1
    assert len([r for r in audit_records(config) if r["event"] == "vitals-alert"]) == 2


def test_bad_records_are_counted_and_named_and_the_rest_is_scored(post: Callable[..., httpx.Response]) -> None:
    no_subject = observation("8867-4", 80)
    del no_subject["subject"]
    wrong_unit = observation("8310-5", 310.15, unit="K")
    lines = [b"{not json", orjson.dumps(no_subject), orjson.dumps(wrong_unit), *ndjson(full_set(rr=30)).splitlines()]
    r = post(b"\n".join(lines), "application/x-ndjson")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accepted"] == 7 and answer["not_used"] == {"not JSON": 1, "no subject": 1, "unit refused": 1}
    assert answer["problems"][0].startswith("line 1: not JSON")
    assert answer["problems"][1].startswith("line 2: pulse Observation has no subject")
    assert answer["problems"][2].startswith("line 3: temperature in unit 'K' is refused")
    assert [a["band"] for a in answer["alerts"]] == ["low-medium"]  # RR 30 scores 3


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "the body is empty"),
        (b'{"resourceType": "Observation", "status":', "the body is not JSON"),
        (b"[1, 2]", "JSON list, not a FHIR resource"),
    ],
)
def test_a_body_that_is_not_fhir_is_a_400_that_says_what_to_send(
    post: Callable[..., httpx.Response], config: ServiceConfig, body: bytes, words: str
) -> None:
    r = post(body)
    assert r.status_code == 400 and words in r.json()["error"] and "Bundle" in r.json()["error"]
    assert audit_records(config)[-1]["status"] == 400
    assert post(bundle(full_set())).json()["accepted"] == 7  # the service goes on


def test_calls_need_a_signed_token_for_this_endpoint_with_the_observation_scope(
    tmp_path: Path, config: ServiceConfig, signer: tuple[Any, Path], serve: Callable[[Any], str]
) -> None:
    aud = endpoint_url(config.base_url)
    body = bundle(full_set())
    refused = {
        "no token": (None, 401),
        "aud of a CDS service": (token(signer, config.service_url("news2")), 401),
        "no scope": (token(signer, aud, scope=None), 403),
        "read-only scope": (token(signer, aud, scope="system/Observation.rs"), 403),
        "not a SMART scope": (token(signer, aud, scope="system/Observation.xyz"), 403),
    }
    with httpx.Client(base_url=serve(create_app(settings(tmp_path), config)), timeout=30) as client:
        for what, (tok, status) in refused.items():
            headers = {"Authorization": f"Bearer {tok}"} if tok else {}
            r = client.post("/vitals/observations", content=body, headers=headers)
            assert r.status_code == status, what
            if status == 401:
                assert r.content == b"" and r.headers["www-authenticate"].startswith("Bearer"), what
            else:
                assert "system/Observation.c" in r.json()["error"] or "not valid" in r.json()["error"], what
        for scope in ("system/Observation.c", "system/*.cruds", "system/Observation.write"):
            ok = client.post(
                "/vitals/observations",
                content=body,
                headers={"Authorization": f"Bearer {token(signer, aud, scope=scope)}"},
            )
            assert ok.status_code == 200, scope
    records = audit_records(config)
    assert [r["status"] for r in records] == [401, 401, 403, 403, 403, 200, 200, 200]
    assert all(r["event"] == "vitals" and r["service"] == "vitals-observations" for r in records)
    log = config.audit_path.read_bytes()
    assert all(t.encode() not in log for t, _ in refused.values() if t)
