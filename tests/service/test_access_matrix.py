"""Access by role (issue 18): every role against every page and endpoint, on a real server on loopback.

The service runs under uvicorn with ``access: required`` (so loopback needs tokens too). Tokens are signed with the
CDS Hooks specification's EXAMPLE-ONLY ES384 key (its JWK Set is the trusted issuer's) or, for a bad signature, a
key generated here under the same ``kid``. What each role may open is the issue's own list (clinician: the patient
pages and the model card the cards link to; data scientist: models and monitoring; auditor: the audit log), written
out below rather than read from :data:`medml.service.access.RULES`; the scopes are SMART App Launch 2.0's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request

from medml.config import Settings, get_settings
from medml.errors import ConfigError
from medml.fhir.store import FhirStore
from medml.service.access import RULES, decide, required
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig, TrustedIssuer, load_config

SPEC = get_settings().data_root / "cds-hooks" / "spec-2.0.1-examples"
pytestmark = pytest.mark.skipif(not SPEC.is_dir(), reason="the shared CDS Hooks examples are not here (set MEDML_DATA)")

ISS = "https://fhir-ehr.example.com/"
OTHER_ISS = "https://unknown-ehr.example.org/"
BASE = "http://127.0.0.1:8800"
KID = "example-kid"
PID, OTHER_PID = "p-access-1", "p-access-2"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

#: what an authorization server would grant each role (README, "Access by role")
ROLE_SCOPES = {
    "clinician": "openid fhirUser user/Patient.rs user/Encounter.rs user/Observation.rs user/Device.r",
    "data-scientist": "openid fhirUser user/Device.rs user/MeasureReport.rs",
    "auditor": "openid fhirUser user/AuditEvent.rs",
}
ROUTES = {
    "patient list": "/",
    "patient page": f"/patients/{PID}",
    "model card": "/models/heart/1",
    "monitoring": "/monitor",
    "model monitoring": "/monitor/heart/1",
    "audit log": "/audit",
}
#: the issue's roles: clinician (patient pages and cards), data scientist (models, monitoring), auditor (the log)
ALLOWED = {
    "clinician": {"patient list", "patient page", "model card"},
    "data-scientist": {"model card", "monitoring", "model monitoring"},
    "auditor": {"audit log"},
}


# -- keys, tokens, the site ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ec_key() -> Any:
    """The spec's EXAMPLE-ONLY private key (public: never to be trusted outside tests)."""
    return jwt.PyJWK(json.loads((SPEC / "jwk-private-EXAMPLE-ONLY.json").read_text()), algorithm="ES384").key


def sign(scope: str | None, key: Any, *, kid: str = KID, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISS, "aud": BASE, "sub": "Practitioner/dr-a", "iat": now, "exp": now + 600}
    if scope is not None:
        claims["scope"] = scope
    claims.update(changes)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fhir_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pid in (PID, OTHER_PID):
        out += [
            {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"},
            {
                "resourceType": "Encounter",
                "id": f"enc-{pid}",
                "status": "finished",
                "class": {"code": "IMP"},
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": "2024-03-01T08:00:00Z"},
            },
            {
                "resourceType": "Observation",
                "id": f"hr-{pid}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2024-03-01T09:00:00Z",
                "valueQuantity": {"value": 88, "unit": "/min"},
            },
        ]
    return out


def heart_bundle() -> Any:
    """A logistic model of the Cleveland heart patients with its reference profile (as tests/monitor build it)."""
    from medml.data.splits import patient_split
    from medml.models import make_model
    from medml.monitor.profile import PROFILE_KEY
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import data_hash, development_profile
    from medml.registry import BundleMetadata, ModelBundle

    ds = load_dataset("heart-cleveland")
    split = patient_split(ds.groups, ds.binary_target.values, seed=0)
    model = make_model("logistic", ds.features, {}, seed=0).fit(
        ds.subset(split.train).X, ds.subset(split.train).binary_target.values
    )
    parts = (ds.subset(split.calibration), ds.subset(split.test))
    md = BundleMetadata(
        name="heart",
        model_kind="logistic",
        dataset=ds.name,
        task=ds.task,
        target=ds.binary_target.name,
        intended_use="Tests only: not for clinical use.",
        population=ds.population,
        data_hash=data_hash(ds),
        seed=0,
        extra={"fractions": [0.6, 0.2, 0.2], PROFILE_KEY: development_profile(model, parts, seed=0).to_dict()},
    )
    return ModelBundle(model, list(ds.features), md)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registered model (heart@1, logistic on Cleveland, with its reference profile) with 300 monitored
    predictions, and a FHIR store of two patients."""
    from medml.monitor.store import MonitorStore, PredictionRow
    from medml.pipelines.catalogue import load_dataset
    from medml.registry import register

    root = tmp_path_factory.mktemp("access")
    settings = Settings(home=root / "home", data_root=get_settings().data_root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        bundle = register(heart_bundle(), settings)
        ds = load_dataset("heart-cleveland")
        start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        rows = [
            PredictionRow(
                "heart",
                1,
                "heart",
                str(ds.groups[i]),
                start + timedelta(hours=i),
                float(bundle.predict_proba(ds.X.iloc[[i]])[0, 1]),
                {
                    str(k): None if pd.isna(v) else v if isinstance(v, str) else float(v)
                    for k, v in ds.X.iloc[i].items()
                },
                threshold=0.5,
            )
            for i in range(300)
        ]
        MonitorStore(settings.monitor_store).record(rows)
    store = root / "fhir.duckdb"
    with FhirStore(store) as fhir:
        fhir.add(fhir_resources())
    return {"settings": settings, "store": store}


def make_config(tmp_path: Path, home: dict[str, Any], **extra: Any) -> ServiceConfig:
    settings = {"access": "required", "base_url": BASE, **extra}
    return ServiceConfig(
        home=tmp_path / "service",
        issuers=(TrustedIssuer(ISS, str(SPEC / "jwks-public.json")),),
        fhir_store=home["store"],
        pages=True,
        **settings,
    )


@pytest.fixture()
def site(
    tmp_path: Path, home: dict[str, Any], serve: Callable[[Any], str]
) -> Iterator[tuple[httpx.Client, ServiceConfig]]:
    config = make_config(tmp_path, home)
    with httpx.Client(base_url=serve(create_app(home["settings"], config)), timeout=60) as client:
        yield client, config


def records(config: ServiceConfig, n: int) -> list[dict[str, Any]]:
    """The audit records once there are ``n`` (a page's record is written just after its answer leaves)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if config.audit_path.exists():
            got = [json.loads(x) for x in config.audit_path.read_text().splitlines()]
            if len(got) >= n:
                return got
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} audit records")


# -- the matrix ------------------------------------------------------------------------------------------------------


def test_every_role_against_every_page_and_endpoint(site: tuple[httpx.Client, ServiceConfig], ec_key: Any) -> None:
    client, _ = site
    other_key = ec.generate_private_key(ec.SECP384R1())
    seen: dict[tuple[str, str], int] = {}
    for what, path in ROUTES.items():
        for role, scope in ROLE_SCOPES.items():
            got = client.get(path, headers=bearer(sign(scope, ec_key)))
            seen[(role, what)] = got.status_code
            if what in ALLOWED[role]:
                assert got.status_code == 200, (role, what, got.text[:300])
            else:
                assert got.status_code == 403, (role, what, got.status_code)
                assert 'error="insufficient_scope"' in got.headers["www-authenticate"]
                assert "needs the SMART scope" in got.text or "is for the role" in got.text
        nobody = client.get(path)
        assert nobody.status_code == 401 and nobody.headers["www-authenticate"].startswith("Bearer"), what
        assert "no bearer token" in nobody.text
        forged = client.get(path, headers=bearer(sign(ROLE_SCOPES["auditor"] + " user/*.rs", other_key)))
        assert forged.status_code == 401 and forged.headers["www-authenticate"].startswith("Bearer"), what
        stranger = client.get(path, headers=bearer(sign("user/*.rs user/*.r", ec_key, iss=OTHER_ISS)))
        assert stranger.status_code == 401, what
        assert "token was refused" in stranger.text
    # the matrix is the issue's: each role opens exactly its own pages
    assert {r: {w for (rr, w), s in seen.items() if rr == r and s == 200} for r in ROLE_SCOPES} == ALLOWED


def test_a_scope_the_route_does_not_grant_is_403_naming_the_missing_scope(
    site: tuple[httpx.Client, ServiceConfig], ec_key: Any
) -> None:
    client, _ = site
    got = client.get(f"/patients/{PID}", headers=bearer(sign("user/Patient.rs user/Encounter.rs", ec_key)))
    assert got.status_code == 403
    assert "user/Observation.s" in got.text and "user/Patient.rs user/Encounter.rs" in got.text
    assert 'scope="user/Observation.s"' in got.headers["www-authenticate"]
    audit = client.get("/audit", headers=bearer(sign("user/AuditEvent.c", ec_key)))
    assert audit.status_code == 403 and audit.headers["content-type"].startswith("application/json")
    assert audit.json()["error"].startswith("GET /audit needs the SMART scope user/AuditEvent.s")
    # a scope narrowed by a query (the spec's own example) grants only requests carrying it: not the whole page
    narrowed = f"user/Patient.rs user/Encounter.rs user/Observation.rs?category={LAB}"
    assert client.get(f"/patients/{PID}", headers=bearer(sign(narrowed, ec_key))).status_code == 403
    # a scope that is not SMART 2.0 grants nothing, and the refusal says so
    odd = client.get("/monitor", headers=bearer(sign("user/MeasureReport.sr", ec_key)))
    assert odd.status_code == 403 and "user/MeasureReport.sr" in odd.text and "grants nothing" in odd.text


@pytest.mark.parametrize(
    "scope",
    ["user/*.rs", "user/*.cruds", "user/*.*", "user/Patient.read user/Encounter.read user/Observation.read"],
)
def test_the_specs_wildcard_and_v1_scopes_open_the_patient_page(
    site: tuple[httpx.Client, ServiceConfig], ec_key: Any, scope: str
) -> None:
    client, _ = site
    assert client.get(f"/patients/{PID}", headers=bearer(sign(scope, ec_key))).status_code == 200


def test_patient_scopes_open_only_the_tokens_own_patient(site: tuple[httpx.Client, ServiceConfig], ec_key: Any) -> None:
    client, _ = site
    token = sign("launch/patient patient/*.rs", ec_key, patient=PID)
    assert client.get(f"/patients/{PID}", headers=bearer(token)).status_code == 200
    other = client.get(f"/patients/{OTHER_PID}", headers=bearer(token))
    assert other.status_code == 403 and f"for patient {PID}, not {OTHER_PID}" in other.text
    assert client.get("/", headers=bearer(token)).status_code == 403  # the list of every patient is user/ only


def test_a_phi_read_leaves_an_audit_record_with_the_caller(
    site: tuple[httpx.Client, ServiceConfig], ec_key: Any
) -> None:
    client, config = site
    assert client.get(f"/patients/{PID}", headers=bearer(sign(ROLE_SCOPES["clinician"], ec_key))).status_code == 200
    refused = sign(ROLE_SCOPES["data-scientist"], ec_key, sub="Practitioner/ds-b")
    assert client.get(f"/patients/{PID}", headers=bearer(refused)).status_code == 403
    first, second = records(config, 2)
    assert first["patient"] == PID and first["status"] == 200 and first["route"] == "GET /patients/{patient_id}"
    assert first["caller"]["iss"] == ISS and first["caller"]["sub"] == "Practitioner/dr-a"
    assert first["caller"]["address"] == "127.0.0.1"
    assert (second["status"], second["caller"]["sub"], second["patient"]) == (403, "Practitioner/ds-b", PID)
    assert "user/Patient.r" in second["error"]
    # the auditor sees both, newest last, and can ask for one patient's
    log = client.get("/audit", params={"patient": PID}, headers=bearer(sign(ROLE_SCOPES["auditor"], ec_key)))
    assert log.status_code == 200
    assert [(e["caller"]["sub"], e["status"]) for e in log.json()["entries"]] == [
        ("Practitioner/dr-a", 200),
        ("Practitioner/ds-b", 403),
    ]
    assert verify(config.audit_path).ok
    for bad in ("0", "abc", "99999999"):
        wrong = client.get("/audit", params={"n": bad}, headers=bearer(sign(ROLE_SCOPES["auditor"], ec_key)))
        assert wrong.status_code == 400 and "is not a number of records from 1 to 10000" in wrong.json()["error"]


def test_a_role_claim_must_name_the_routes_role(
    tmp_path: Path, home: dict[str, Any], serve: Callable[[Any], str], ec_key: Any
) -> None:
    config = make_config(tmp_path, home, role_claim="medml_role")
    with httpx.Client(base_url=serve(create_app(home["settings"], config)), timeout=60) as client:
        everything = "user/*.rs"
        ok = client.get("/monitor", headers=bearer(sign(everything, ec_key, medml_role="data-scientist")))
        assert ok.status_code == 200
        wrong = client.get("/monitor", headers=bearer(sign(everything, ec_key, medml_role=["clinician"])))
        assert wrong.status_code == 403 and "is for the role data-scientist" in wrong.text
        assert "medml_role claim names clinician" in wrong.text
        none = client.get("/audit", headers=bearer(sign(everything, ec_key)))
        assert none.status_code == 403 and "names no role" in none.json()["error"]


# -- where a token is needed -----------------------------------------------------------------------------------------


def test_off_loopback_the_pages_need_a_token_and_on_loopback_they_stay_open(
    tmp_path: Path, home: dict[str, Any], serve: Callable[[Any], str], ec_key: Any
) -> None:
    public = make_config(tmp_path, home, access="auto", base_url="https://cds.hospital.example")
    with httpx.Client(base_url=serve(create_app(home["settings"], public)), timeout=60) as client:
        assert client.get("/monitor").status_code == 401
        token = sign(ROLE_SCOPES["data-scientist"], ec_key, aud="https://cds.hospital.example")
        assert client.get("/monitor", headers=bearer(token)).status_code == 200
    local = make_config(tmp_path / "local", home, access="auto")
    with httpx.Client(base_url=serve(create_app(home["settings"], local)), timeout=60) as client:
        assert client.get("/monitor").status_code == 200
        assert client.get(f"/patients/{PID}").status_code == 200


def _request(client: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": (client, 50000)})


def test_a_loopback_service_still_asks_a_token_of_a_request_from_another_address(
    tmp_path: Path, home: dict[str, Any]
) -> None:
    config = make_config(tmp_path, home, access="auto")
    assert not required(config, _request("127.0.0.1")) and not required(config, _request("::1"))
    assert required(config, _request("10.1.2.3"))  # bound to 0.0.0.0 with a loopback base_url: not loopback-only
    assert required(make_config(tmp_path, home), _request("127.0.0.1"))  # access: required


def test_service_yaml_access_settings_are_checked(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, data_root=tmp_path)
    yaml = tmp_path / "service.yaml"
    yaml.write_text("access: sometimes\n")
    with pytest.raises(ConfigError, match="access must be 'auto' or 'required'"):
        load_config(settings, yaml)
    yaml.write_text("access: required\nrole_claim: medml_role\naccess_token_lifetime_s: 600\n")
    config = load_config(settings, yaml)
    assert (config.access, config.role_claim, config.access_token_lifetime_s) == ("required", "medml_role", 600)


def test_the_rule_of_each_route_against_the_specs_scopes() -> None:
    """decide() on its own: the spec's example scopes, with and without the launch context."""
    page = RULES["patient"]
    assert decide(page, "user/*.rs") == (None, None)
    assert decide(page, "system/*.rs")[0] is not None  # a backend does not open a clinician's page
    assert decide(page, "patient/*.rs", patient_claim=PID, patient_id=PID) == (None, None)
    assert decide(page, "patient/*.rs", patient_claim=OTHER_PID, patient_id=PID)[0] is not None
    assert decide(RULES["audit"], "system/*.rs") == (None, None)  # a SIEM's backend may read the log
    assert decide(RULES["audit"], "user/Observation.rs")[1] == "user/AuditEvent.s"
    _, wanted = decide(page, "user/Patient.r")
    assert wanted == "user/Encounter.s user/Observation.s"
