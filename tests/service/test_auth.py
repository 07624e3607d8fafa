"""JWT verification as CDS Hooks 2.0 requires, against the spec's own example token and keys.

The spec's ES384 example (jwt-example-ES384.txt, signed by jwk-private-EXAMPLE-ONLY.json) must verify with
jwks-public.json and must be refused once expiry is checked (it expired in 2015). Fresh tokens are signed here with
that example key and with a generated RSA key, to check each rule one at a time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from medml.config import get_settings
from medml.service.auth import AuthError, Caller, JwtVerifier
from medml.service.config import ServiceConfig, TrustedIssuer

SPEC = get_settings().data_root / "cds-hooks" / "spec-2.0.1-examples"
pytestmark = pytest.mark.skipif(not SPEC.is_dir(), reason="the shared CDS Hooks examples are not here (set MEDML_DATA)")

BASE_URL = "https://cds.example.org"
SERVICE = "some-service"
EHR_ISS = "https://fhir-ehr.example.com/"
EHR_JKU = "https://fhir-ehr.example.com/jwk_uri"
RSA_ISS = "https://rsa-ehr.example.org/"
NOW = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def spec_token() -> str:
    return (SPEC / "jwt-example-ES384.txt").read_text().strip()


@pytest.fixture(scope="module")
def spec_payload() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((SPEC / "jwt-payload.json").read_text())
    return payload


@pytest.fixture(scope="module")
def ec_key() -> Any:
    """The spec's EXAMPLE-ONLY private key (public: never to be trusted outside tests)."""
    return jwt.PyJWK(json.loads((SPEC / "jwk-private-EXAMPLE-ONLY.json").read_text()), algorithm="ES384").key


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS384" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture()
def rsa_jwks(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "rsa-jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(rsa_key, "rsa-1", "RS384")]}))
    return path


def make_config(
    tmp_path: Path, rsa_jwks: Path | None = None, *, jku: tuple[str, ...] = (EHR_JKU,), **settings: Any
) -> ServiceConfig:
    issuers = [TrustedIssuer(EHR_ISS, str(SPEC / "jwks-public.json"), jku)]
    if rsa_jwks is not None:
        issuers.append(TrustedIssuer(RSA_ISS, str(rsa_jwks)))
    return ServiceConfig(home=tmp_path, base_url=BASE_URL, issuers=tuple(issuers), **settings)


def claims(**changes: Any) -> dict[str, Any]:
    """Claims of a good token from the spec's example EHR, issued now; a change of None drops that claim."""
    base: dict[str, Any] = {
        "iss": EHR_ISS,
        "aud": f"{BASE_URL}/cds-services/{SERVICE}",
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": str(uuid.uuid4()),
        "tenant": "2ddd6c3a",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, alg: str = "ES384", kid: str = "example-kid", **header: Any) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **header})


def rejection(verifier: JwtVerifier, token: str, authorization: str | None = None) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(
            authorization if authorization is not None else f"Bearer {token}", f"{BASE_URL}/cds-services/{SERVICE}"
        )
    reason = caught.value.reason
    assert token not in reason and str(caught.value) == reason
    assert not any(len(part) >= 8 and part in reason for part in token.split("."))
    return reason


# --- the spec's own test vector -----------------------------------------------------------------------------------


def test_spec_example_token_verifies_with_the_spec_jwks_when_expiry_is_off(
    tmp_path: Path, spec_token: str, spec_payload: dict[str, Any]
) -> None:
    config = make_config(tmp_path, check_expiry=False)
    assert config.service_url(SERVICE) == spec_payload["aud"]
    caller = JwtVerifier(config, clock=FakeClock()).verify(f"Bearer {spec_token}", spec_payload["aud"])
    assert caller == Caller(
        iss=spec_payload["iss"], sub=None, jti=spec_payload["jti"], tenant=spec_payload["tenant"], kid="example-kid"
    )
    assert caller.authenticated


def test_spec_example_token_is_refused_as_expired_when_expiry_is_checked(tmp_path: Path, spec_token: str) -> None:
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    assert "expired" in rejection(verifier, spec_token)


def test_spec_example_token_is_refused_when_its_jku_is_not_allowed(tmp_path: Path, spec_token: str) -> None:
    verifier = JwtVerifier(make_config(tmp_path, jku=(), check_expiry=False), clock=FakeClock())
    assert "jku" in rejection(verifier, spec_token)


def test_spec_example_token_is_refused_for_another_service(tmp_path: Path, spec_token: str) -> None:
    verifier = JwtVerifier(make_config(tmp_path, check_expiry=False), clock=FakeClock())
    with pytest.raises(AuthError, match="aud"):
        verifier.verify(f"Bearer {spec_token}", f"{BASE_URL}/cds-services/another-service")


# --- fresh tokens ---------------------------------------------------------------------------------------------------


def test_good_es384_and_rs384_tokens_are_accepted(
    tmp_path: Path, rsa_jwks: Path, ec_key: Any, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(make_config(tmp_path, rsa_jwks), clock=FakeClock())
    audience = f"{BASE_URL}/cds-services/{SERVICE}"
    es = verifier.verify(f"Bearer {sign(claims(sub='ehr-client', jti='a1'), ec_key, jku=EHR_JKU)}", audience)
    assert (es.iss, es.sub, es.jti, es.tenant, es.kid) == (EHR_ISS, "ehr-client", "a1", "2ddd6c3a", "example-kid")
    rs = verifier.verify(f"bearer {sign(claims(iss=RSA_ISS, tenant=None), rsa_key, 'RS384', 'rsa-1')}", audience)
    assert (rs.iss, rs.kid, rs.tenant) == (RSA_ISS, "rsa-1", None)


def test_aud_may_be_a_list_naming_the_service(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    token = sign(claims(aud=["https://other.example/", f"{BASE_URL}/cds-services/{SERVICE}"]), ec_key)
    assert verifier.verify(f"Bearer {token}", f"{BASE_URL}/cds-services/{SERVICE}").iss == EHR_ISS


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token whose HMAC secret is the EHR's *public* key: the classic algorithm-confusion attack."""
    signing_input = (
        b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "example-kid"}).encode())
        + "."
        + b64url(json.dumps(payload).encode())
    )
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def unsigned(payload: dict[str, Any]) -> str:
    return (
        b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "example-kid"}).encode())
        + "."
        + b64url(json.dumps(payload).encode())
        + "."
    )


def tampered(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims(sub='someone-else')).encode())}.{signature}"


def other_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


# (case, token maker, words the reason must contain)
REJECTED: list[tuple[str, Callable[[Any, Any], str], str]] = [
    ("wrong aud", lambda k, r: sign(claims(aud=f"{BASE_URL}/cds-services/other"), k), "aud"),
    ("unknown iss", lambda k, r: sign(claims(iss="https://evil.example/"), k), "not a trusted issuer"),
    ("jku not allow-listed", lambda k, r: sign(claims(), k, jku="https://evil.example/jwks"), "jku"),
    ("unknown kid", lambda k, r: sign(claims(), k, kid="no-such-kid"), "no ES384 key with kid"),
    ("key of another issuer", lambda k, r: sign(claims(iss=RSA_ISS), k), "no ES384 key with kid"),
    ("RS384 header with the EC key's kid", lambda k, r: sign(claims(), r, "RS384"), "no RS384 key"),
    ("signed by a stranger's key", lambda k, r: sign(claims(), other_ec_key()), "signature does not verify"),
    ("alg none", lambda k, r: unsigned(claims()), "alg 'none'"),
    (
        "HS256 with the public key",
        lambda k, r: forge_hs256(
            claims(),
            k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
        "alg 'HS256'",
    ),
    ("ES256", lambda k, r: sign(claims(), ec.generate_private_key(ec.SECP256R1()), "ES256"), "alg 'ES256'"),
    ("tampered payload", lambda k, r: tampered(sign(claims(), k)), "signature does not verify"),
    ("missing jti", lambda k, r: sign(claims(jti=None), k), "jti"),
    ("empty jti", lambda k, r: sign(claims(jti=""), k), "jti"),
    ("missing exp", lambda k, r: sign(claims(exp=None), k), "exp"),
    ("missing iat", lambda k, r: sign(claims(iat=None), k), "iat"),
    ("missing iss", lambda k, r: sign(claims(iss=None), k), "iss"),
    ("expired", lambda k, r: sign(claims(iat=int(NOW) - 600, exp=int(NOW) - 31), k), "expired"),
    ("iat in the future", lambda k, r: sign(claims(iat=int(NOW) + 31, exp=int(NOW) + 600), k), "in the future"),
    ("nbf in the future", lambda k, r: sign(claims(nbf=int(NOW) + 120), k), "nbf"),
    ("typ missing", lambda k, r: sign(claims(), k, typ=None), "typ"),
    ("typ not JWT", lambda k, r: sign(claims(), k, typ="at+jwt"), "typ"),
    ("kid missing", lambda k, r: jwt.encode(claims(), k, "ES384", headers={"typ": "JWT"}), "kid"),
    ("crit header", lambda k, r: sign(claims(), k, crit=["exp"]), "critical"),
    ("garbage", lambda k, r: "not-a-jwt-at-all-but-long-enough", "not a signed JWT"),
    ("garbage parts", lambda k, r: "eyJub3Q.eyJqc29u.c2ln", "header is not valid"),
    ("garbage payload", lambda k, r: sign(claims(), k).split(".")[0] + ".bm90IGpzb24.c2ln", "payload is not valid"),
]


@pytest.mark.parametrize(("make", "words"), [(m, w) for _, m, w in REJECTED], ids=[c for c, _, _ in REJECTED])
def test_bad_tokens_are_refused_with_a_reason_that_hides_the_token(
    tmp_path: Path, rsa_jwks: Path, ec_key: Any, rsa_key: rsa.RSAPrivateKey, make: Callable[[Any, Any], str], words: str
) -> None:
    verifier = JwtVerifier(make_config(tmp_path, rsa_jwks), clock=FakeClock())
    assert words in rejection(verifier, make(ec_key, rsa_key))


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "no Authorization header"),
        ("", "no Authorization header"),
        ("{token}", "Bearer <JWT>"),
        ("Basic {token}", "Bearer <JWT>"),
        ("Bearer", "Bearer <JWT>"),
        ("Bearer {token} extra", "Bearer <JWT>"),
    ],
)
def test_authorization_header_must_be_bearer_jwt(tmp_path: Path, ec_key: Any, header: str | None, words: str) -> None:
    token = sign(claims(), ec_key)
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    with pytest.raises(AuthError) as caught:
        verifier.verify(None if header is None else header.format(token=token), f"{BASE_URL}/cds-services/{SERVICE}")
    assert words in caught.value.reason and token not in caught.value.reason


def test_replayed_jti_is_refused_even_when_requests_race(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    token = sign(claims(), ec_key)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        try:
            verifier.verify(f"Bearer {token}", f"{BASE_URL}/cds-services/{SERVICE}")
            outcomes.append("accepted")
        except AuthError as e:
            outcomes.append(e.reason)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("accepted") == 1
    assert all("already used" in o for o in outcomes if o != "accepted")
    # the same jti from another issuer is another token
    assert "already used" in rejection(
        verifier,
        sign(claims(jti=json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==").decode())["jti"]), ec_key),
    )


def test_leeway_allows_small_clock_skew(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path, leeway_s=30.0), clock=FakeClock())
    audience = f"{BASE_URL}/cds-services/{SERVICE}"
    verifier.verify(f"Bearer {sign(claims(iat=int(NOW) - 300, exp=int(NOW) - 29), ec_key)}", audience)
    verifier.verify(f"Bearer {sign(claims(iat=int(NOW) + 29), ec_key)}", audience)


def test_with_expiry_off_exp_is_not_checked_but_everything_else_is(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path, check_expiry=False), clock=FakeClock())
    old = sign(claims(iat=int(NOW) - 86_400, exp=int(NOW) - 3600), ec_key)
    assert verifier.verify(f"Bearer {old}", f"{BASE_URL}/cds-services/{SERVICE}").iss == EHR_ISS
    assert "already used" in rejection(verifier, old)  # still remembered although its exp has passed
    assert "in the future" in rejection(verifier, sign(claims(iat=int(NOW) + 600), ec_key))
    assert "exp" in rejection(verifier, sign(claims(exp=None), ec_key))
    assert "aud" in rejection(verifier, sign(claims(aud="https://elsewhere.example/"), ec_key))


def test_a_token_replayed_to_another_worker_process_is_refused(tmp_path: Path, ec_key: Any) -> None:
    """uvicorn --workers N: each worker has its own verifier; they share MEDML_HOME/service/jti.sqlite."""
    import multiprocessing

    config = make_config(tmp_path)
    token = sign(claims(), ec_key)
    audience = f"{BASE_URL}/cds-services/{SERVICE}"
    JwtVerifier(config, clock=FakeClock()).verify(f"Bearer {token}", audience)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        reason = pool.apply(_verify_elsewhere, (config, token, audience))
    assert "already used" in reason and "another worker" in reason


def _verify_elsewhere(config: ServiceConfig, token: str, audience: str) -> str:
    try:
        JwtVerifier(config, clock=FakeClock()).verify(f"Bearer {token}", audience)
    except AuthError as e:
        return e.reason
    return "accepted"


def test_replay_memory_is_bounded_and_forgets_expired_tokens(tmp_path: Path, ec_key: Any) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(make_config(tmp_path), clock=clock, max_remembered_tokens=2)
    audience = f"{BASE_URL}/cds-services/{SERVICE}"
    for _ in range(2):
        verifier.verify(f"Bearer {sign(claims(), ec_key)}", audience)
    assert "replay cache" in rejection(verifier, sign(claims(), ec_key))
    clock.now += 300 + 31  # past exp + leeway: those tokens are refused as expired now, so they can be forgotten
    verifier.verify(f"Bearer {sign(claims(iat=int(clock.now), exp=int(clock.now) + 300), ec_key)}", audience)


def test_auth_off_lets_an_anonymous_caller_in(tmp_path: Path) -> None:
    verifier = JwtVerifier(make_config(tmp_path, auth="off"))
    caller = verifier.verify(None, f"{BASE_URL}/cds-services/{SERVICE}")
    assert caller == Caller.anonymous() and not caller.authenticated


def test_sandbox_jwks_is_read_and_its_key_checks_signatures(tmp_path: Path, ec_key: Any) -> None:
    """The public CDS Hooks sandbox's key set: a token naming its kid but signed by another key is refused at the
    signature (so the key was found and used), not for want of a key."""
    sandbox = "https://sandbox.cds-hooks.org"
    jwks = SPEC.parent / "sandbox" / "sandbox-jwks-public.json"
    kid = json.loads(jwks.read_text())["keys"][0]["kid"]
    config = dataclasses.replace(make_config(tmp_path), issuers=(TrustedIssuer(sandbox, str(jwks)),))
    reason = rejection(JwtVerifier(config, clock=FakeClock()), sign(claims(iss=sandbox), ec_key, kid=kid))
    assert "signature does not verify" in reason and kid in reason


def test_unreadable_jwks_file_is_reported(tmp_path: Path, ec_key: Any) -> None:
    config = dataclasses.replace(make_config(tmp_path), issuers=(TrustedIssuer(EHR_ISS, str(tmp_path / "no.json")),))
    reason = rejection(JwtVerifier(config, clock=FakeClock()), sign(claims(), ec_key))
    assert "no.json" in reason and "service.yaml" in reason


# --- a JWK Set fetched over HTTP ----------------------------------------------------------------------------------


def test_jwks_served_over_http_is_fetched_cached_and_refetched_for_a_new_kid(
    serve: Callable[[Any], str], tmp_path: Path, ec_key: Any
) -> None:
    class Served:
        jwks: dict[str, Any] = json.loads((SPEC / "jwks-public.json").read_text())
        hits = 0

    served = Served()

    async def jwks(request: Request) -> JSONResponse:
        served.hits += 1
        return JSONResponse(served.jwks)

    url = serve(Starlette(routes=[Route("/jwks", jwks)])) + "/jwks"
    clock = FakeClock()
    config = dataclasses.replace(make_config(tmp_path), issuers=(TrustedIssuer(EHR_ISS, url, (url,)),))
    verifier = JwtVerifier(config, clock=clock, jwks_ttl_s=300, min_refetch_s=30)
    audience = f"{BASE_URL}/cds-services/{SERVICE}"

    def fresh() -> dict[str, Any]:
        return claims(iat=int(clock.now), exp=int(clock.now) + 300)

    assert verifier.verify(f"Bearer {sign(fresh(), ec_key, jku=url)}", audience).kid == "example-kid"
    verifier.verify(f"Bearer {sign(fresh(), ec_key)}", audience)
    assert served.hits == 1  # cached

    rotated = other_ec_key()
    served.jwks = {"keys": [*served.jwks["keys"], public_jwk(rotated, "rotated", "ES384")]}
    clock.now += 31
    assert verifier.verify(f"Bearer {sign(fresh(), rotated, kid='rotated')}", audience).kid == "rotated"
    assert served.hits == 2  # an unknown kid makes it read the set again
    assert "no ES384 key" in rejection(verifier, sign(fresh(), ec_key, kid="never-published"))
    assert served.hits == 2  # ... but not again within min_refetch_s, whatever kids a caller invents

    clock.now += 301
    verifier.verify(f"Bearer {sign(fresh(), ec_key)}", audience)
    assert served.hits == 3  # past the TTL


def test_unreachable_jwks_url_fails_closed_and_fast(tmp_path: Path, ec_key: Any) -> None:
    calls: list[str] = []

    def down(url: str) -> bytes:
        calls.append(url)
        raise ConnectionError("connection refused")

    clock = FakeClock()
    config = dataclasses.replace(
        make_config(tmp_path), issuers=(TrustedIssuer(EHR_ISS, "https://fhir-ehr.example.com/jwks"),)
    )
    verifier = JwtVerifier(config, clock=clock, http_get=down, min_refetch_s=30)
    for _ in range(3):
        assert "could not fetch the JWKS" in rejection(verifier, sign(claims(), ec_key))
    assert len(calls) == 1
    clock.now += 31
    rejection(verifier, sign(claims(iat=int(clock.now)), ec_key))
    assert len(calls) == 2


def test_plain_http_jwks_is_refused_off_loopback(tmp_path: Path, ec_key: Any) -> None:
    def never(url: str) -> bytes:
        raise AssertionError("must not fetch")

    config = dataclasses.replace(
        make_config(tmp_path), issuers=(TrustedIssuer(EHR_ISS, "http://fhir-ehr.example.com/jwks"),)
    )
    assert "https" in rejection(JwtVerifier(config, clock=FakeClock(), http_get=never), sign(claims(), ec_key))


# --- issue 13: time claims that are numbers but not times, and tokens valid for years --------------------------------


def test_an_exp_too_large_for_a_float_is_refused_not_a_server_error(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    for claim in ("exp", "iat", "nbf"):
        assert f"{claim} is" in rejection(verifier, sign(claims(**{claim: 10**400}), ec_key))


def test_a_token_valid_for_years_is_refused_and_its_jti_not_held(tmp_path: Path, ec_key: Any) -> None:
    verifier = JwtVerifier(make_config(tmp_path), clock=FakeClock())
    ten_years = sign(claims(exp=int(NOW) + 10 * 365 * 86400), ec_key)
    assert "max_token_lifetime_s" in rejection(verifier, ten_years)
    longer = JwtVerifier(make_config(tmp_path / "b", max_token_lifetime_s=20 * 365 * 86400), clock=FakeClock())
    assert longer.verify(f"Bearer {ten_years}", f"{BASE_URL}/cds-services/{SERVICE}").authenticated
    five_minutes = sign(claims(exp=int(NOW) + 300), ec_key)
    assert verifier.verify(f"Bearer {five_minutes}", f"{BASE_URL}/cds-services/{SERVICE}").authenticated
