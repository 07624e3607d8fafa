"""`medml fhir serve` with bearer JWTs (issue 18): SMART 2.0 scopes per resource type, patient/ scopes held to the
token's patient, every read in the audit log with its caller; on a real server on loopback.

Tokens are signed with the CDS Hooks specification's EXAMPLE-ONLY ES384 key, whose public JWK Set is the trusted
issuer's; a key generated here signs the forged ones. The scopes are examples of the SMART App Launch 2.0 page.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from medml.config import get_settings
from medml.fhir.server import create_fhir_app
from medml.fhir.store import FhirStore
from medml.service.access import fhir_guard
from medml.service.audit import InMemoryAuditSink, verify, verify_lines
from medml.service.auth import JwtVerifier
from medml.service.config import ServiceConfig, TrustedIssuer

SPEC = get_settings().data_root / "cds-hooks" / "spec-2.0.1-examples"
pytestmark = pytest.mark.skipif(not SPEC.is_dir(), reason="the shared CDS Hooks examples are not here (set MEDML_DATA)")

ISS = "https://fhir-ehr.example.com/"
KID = "example-kid"
FHIR_BASE = "https://fhir.hospital.example/r4/"
MEDML = [sys.executable, "-m", "medml.cli"]
P1, P2 = "p1", "p2"


@pytest.fixture(scope="module")
def ec_key() -> Any:
    return jwt.PyJWK(json.loads((SPEC / "jwk-private-EXAMPLE-ONLY.json").read_text()), algorithm="ES384").key


def sign(scope: str, key: Any, aud: str = FHIR_BASE, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "sub": "Practitioner/dr-a", "iat": now, "exp": now + 600, "scope": scope}
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": "org-1", "name": "Ward 3"}]
    for pid in (P1, P2):
        out += [
            {"resourceType": "Patient", "id": pid, "gender": "male"},
            {
                "resourceType": "Observation",
                "id": f"hr-{pid}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2024-03-01T09:00:00Z",
            },
        ]
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fhir-access") / "fhir.duckdb"
    with FhirStore(path) as fhir:
        fhir.add(resources())
    return path


@pytest.fixture()
def server(
    tmp_path: Path, store: Path, serve: Callable[[Any], str]
) -> Iterator[tuple[httpx.Client, InMemoryAuditSink]]:
    config = ServiceConfig(home=tmp_path / "service", issuers=(TrustedIssuer(ISS, str(SPEC / "jwks-public.json")),))
    sink = InMemoryAuditSink()
    guard = fhir_guard(JwtVerifier(config), sink, (FHIR_BASE,))
    app = create_fhir_app(store, base_url=FHIR_BASE, guard=guard, bearer_token="shared-secret-1")
    with httpx.Client(base_url=serve(app), timeout=30) as client:
        yield client, sink


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_no_token_a_forged_one_and_an_unknown_issuer_are_401(
    server: tuple[httpx.Client, InMemoryAuditSink], ec_key: Any
) -> None:
    client, sink = server
    nobody = client.get(f"/Patient/{P1}")
    assert nobody.status_code == 401 and nobody.headers["www-authenticate"].startswith("Bearer")
    assert nobody.json()["issue"][0]["code"] == "login"
    forged = client.get(f"/Patient/{P1}", headers=bearer(sign("system/*.rs", ec.generate_private_key(ec.SECP384R1()))))
    assert forged.status_code == 401 and "token was refused" in forged.json()["issue"][0]["diagnostics"]
    stranger = client.get(f"/Patient/{P1}", headers=bearer(sign("system/*.rs", ec_key, iss="https://other.example/")))
    assert stranger.status_code == 401
    elsewhere = client.get(f"/Patient/{P1}", headers=bearer(sign("system/*.rs", ec_key, aud="https://cds.example/")))
    assert elsewhere.status_code == 401
    assert [r["status"] for r in sink.records] == [401, 401, 401, 401]
    # the CapabilityStatement stays open and says how to get in
    meta = client.get("/metadata").json()
    assert meta["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_user_and_system_scopes_read_what_they_name_and_nothing_else(
    server: tuple[httpx.Client, InMemoryAuditSink], ec_key: Any
) -> None:
    client, sink = server
    obs_only = bearer(sign("openid fhirUser user/Observation.rs", ec_key))
    found = client.get("/Observation", params={"patient": P1}, headers=obs_only)
    assert found.status_code == 200 and ids(found.json()) == [f"hr-{P1}"]
    refused = client.get(f"/Patient/{P1}", headers=obs_only)
    assert refused.status_code == 403
    message = refused.json()["issue"][0]["diagnostics"]
    assert "needs the SMART scope user/Patient.r" in message and "user/Observation.rs" in message
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    read_only = bearer(sign("user/Observation.r", ec_key))  # .r reads, but a search needs .s
    assert client.get(f"/Observation/hr-{P2}", headers=read_only).status_code == 200
    assert client.get("/Observation", headers=read_only).status_code == 403
    backend = bearer(sign("system/*.rs", ec_key, sub="client-etl"))
    assert ids(client.get("/Patient", headers=backend).json()) == [P1, P2]
    assert client.get("/Organization/org-1", headers=backend).status_code == 200
    # each read is one audit record with the caller, the route and the patient read
    first = sink.records[0]
    assert (first["event"], first["status"], first["patient"]) == ("fhir-read", 200, P1)
    assert (first["caller"]["iss"], first["caller"]["sub"], first["route"]) == (
        ISS,
        "Practitioner/dr-a",
        "GET /Observation",
    )
    assert [(r["status"], r["patient"]) for r in sink.records[1:4]] == [(403, None), (200, P2), (403, None)]
    assert sink.records[-1]["caller"]["sub"] == "client-etl" and sink.records[-1]["route"] == "GET /Organization/org-1"
    assert verify_lines(sink.lines()).ok


def test_patient_scopes_reach_only_the_tokens_patient(
    server: tuple[httpx.Client, InMemoryAuditSink], ec_key: Any
) -> None:
    client, sink = server
    mine = bearer(sign("launch/patient patient/*.rs", ec_key, patient=P1))
    assert client.get(f"/Patient/{P1}", headers=mine).status_code == 200
    assert client.get(f"/Observation/hr-{P1}", headers=mine).status_code == 200
    other = client.get(f"/Observation/hr-{P2}", headers=mine)
    assert other.status_code == 403 and f"only patient {P1}'s records" in other.json()["issue"][0]["diagnostics"]
    assert client.get(f"/Patient/{P2}", headers=mine).status_code == 403
    # a search is held to the compartment, whatever it asks
    assert ids(client.get("/Patient", headers=mine).json()) == [P1]
    assert ids(client.get("/Observation", headers=mine).json()) == [f"hr-{P1}"]
    assert ids(client.get("/Observation", params={"patient": P2}, headers=mine).json()) == []
    assert client.get("/Organization", headers=mine).status_code == 403  # not in a patient's compartment here
    assert [r["patient"] for r in sink.records[:3]] == [P1, P1, P1]
    # patient/ scopes without the launch context grant nothing
    unbound = client.get(f"/Patient/{P1}", headers=bearer(sign("patient/*.rs", ec_key)))
    assert unbound.status_code == 403 and "patient claim" in unbound.json()["issue"][0]["diagnostics"]


def test_the_shared_token_still_reads_everything(server: tuple[httpx.Client, InMemoryAuditSink]) -> None:
    client, _ = server
    got = client.get("/Patient", headers={"Authorization": "Bearer shared-secret-1"})
    assert got.status_code == 200 and ids(got.json()) == [P1, P2]


# -- the command -------------------------------------------------------------------------------------------------------


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MEDML_FHIR_TOKEN", None)
    return env


@contextlib.contextmanager
def fhir_serve(home: Path, store: Path, *options: str) -> Iterator[str]:
    """``medml fhir serve`` on a free loopback port, once it answers; stopped by Ctrl-C after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}/"
    cmd = [*MEDML, "fhir", "serve", "--store", str(store), "--port", str(port), *options]
    proc = subprocess.Popen(cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:  # any answer (a shared-token server answers /metadata with 401) means it is up
                httpx.get(f"{base}metadata", timeout=2)
                break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "medml fhir serve did not answer"
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_fhir_serve_config_takes_jwts_and_audits_each_read(tmp_path: Path, store: Path, ec_key: Any) -> None:
    home = tmp_path / "home"
    yaml = tmp_path / "service.yaml"
    yaml.write_text(f"issuers:\n  - iss: {ISS}\n    jwks: {SPEC / 'jwks-public.json'}\n")
    with fhir_serve(home, store, "--config", str(yaml)) as base:
        assert httpx.get(f"{base}Patient/{P1}").status_code == 401
        got = httpx.get(f"{base}Patient/{P1}", headers=bearer(sign("user/Patient.rs", ec_key, aud=base)))
        assert got.status_code == 200 and got.json()["id"] == P1
    log = home / "service" / "audit.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(r["status"], r["patient"], r["caller"]["sub"]) for r in records] == [
        (401, None, None),
        (200, P1, "Practitioner/dr-a"),
    ]
    assert verify(log).ok


def test_every_read_is_audited_without_jwts_too(tmp_path: Path, store: Path) -> None:
    """The shared token's reads and an open loopback server's leave a record each, as the JWT readers' do."""
    open_home, shared_home = tmp_path / "open", tmp_path / "shared"
    with fhir_serve(open_home, store) as base:
        assert httpx.get(f"{base}Patient/{P1}").status_code == 200
        assert ids(httpx.get(f"{base}Observation", params={"patient": P2}).json()) == [f"hr-{P2}"]
        assert httpx.get(f"{base}Patient/nobody").status_code == 404
    token = tmp_path / "token"
    token.write_text("shared-secret-2\n")
    token.chmod(0o600)
    with fhir_serve(shared_home, store, "--token-file", str(token)) as base:
        assert httpx.get(f"{base}Patient/{P2}", headers=bearer("shared-secret-2")).status_code == 200
        assert httpx.get(f"{base}Patient/{P2}").status_code == 401  # refused before any read: nothing was read
    for home, expected in (
        (open_home, [(200, P1, "GET /Patient/p1"), (200, P2, "GET /Observation"), (404, None, "GET /Patient/nobody")]),
        (shared_home, [(200, P2, "GET /Patient/p2")]),
    ):
        log = home / "service" / "audit.jsonl"
        records = [json.loads(x) for x in log.read_text().splitlines()]
        assert [(r["status"], r["patient"], r["route"]) for r in records] == expected
        how = "no token (open server)" if home == open_home else "shared token"
        assert {r["caller"]["sub"] for r in records} == {how} and {r["event"] for r in records} == {"fhir-read"}
        assert {r["caller"]["address"] for r in records} == {"127.0.0.1"}
        assert verify(log).ok


def test_fhir_serve_refuses_a_config_without_issuers_and_names_config_off_loopback(tmp_path: Path) -> None:
    yaml = tmp_path / "service.yaml"
    yaml.write_text("access: auto\n")
    run = [*MEDML, "fhir", "serve", "--store", str(tmp_path / "none.duckdb")]
    empty = subprocess.run(
        [*run, "--config", str(yaml)], capture_output=True, text=True, env=_env(tmp_path), timeout=60
    )
    assert empty.returncode == 2 and "Traceback" not in empty.stderr
    assert "lists no issuers" in " ".join(empty.stderr.split())
    public = subprocess.run(
        [*run, "--host", "192.0.2.7"], capture_output=True, text=True, env=_env(tmp_path), timeout=60
    )
    assert public.returncode == 2 and "--config service.yaml" in " ".join(public.stderr.split())
