"""Who is calling: the EHR's signed JWT, verified as CDS Hooks 2.0 requires ("Trusting CDS Clients").

Every hook call carries ``Authorization: Bearer <JWT>``. :class:`JwtVerifier` accepts it only when the token is
signed with ES384 or RS384 by a key from the JWK Set configured for its ``iss`` (an allow-list), names that key by
``kid``, names an allow-listed ``jku`` if any, carries this service's URL as ``aud``, is within ``iat``/``exp``
and has not been seen before (``jti``). Signatures are checked by PyJWT; this module only chooses the key and
checks the claims. A rejection raises :class:`AuthError`, whose ``reason`` is for the server log and never
contains the token.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from medml.service.config import ServiceConfig, TrustedIssuer

__all__ = ["ACCEPTED_ALGORITHMS", "AccessToken", "AuthError", "Caller", "JwtVerifier", "bearer_token"]

#: exp, iat and nbf beyond this many seconds from the epoch (about year 33658) are not times
MAX_EPOCH_S = 10**12

log = logging.getLogger(__name__)

#: the algorithms CDS Hooks 2.0 recommends; "none" and every symmetric algorithm are forbidden by the spec
ACCEPTED_ALGORITHMS = ("ES384", "RS384")
_KEY_TYPES = {"ES384": ("EC", "P-384"), "RS384": ("RSA", None)}
_MIN_RSA_BITS = 2048
_MAX_HEADER_CHARS = 16_384
_MAX_JWKS_BYTES = 512 * 1024
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # an empty signature is "none"


class AuthError(Exception):
    """A call that is not authenticated; ``reason`` says why, for the server log (it never contains the token)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Caller:
    """Who called: the verified JWT's ``iss``, ``sub``, ``jti``, ``tenant`` and the ``kid`` of the key it used.

    ``authenticated`` is False only for the anonymous caller that ``auth: off`` (a loopback demo) lets in.
    """

    iss: str
    sub: str | None
    jti: str
    tenant: str | None
    kid: str
    authenticated: bool = True
    #: the JWT's ``scope`` claim (SMART scopes, space-separated), where it has one: the device gateway's needs one
    scope: str | None = None

    @classmethod
    def anonymous(cls) -> Caller:
        return cls(iss="", sub=None, jti="", tenant=None, kid="", authenticated=False)


@dataclass(frozen=True)
class AccessToken:
    """A verified bearer access token of a user or a backend (the web pages, ``/audit``, ``medml fhir serve``):
    who it names (``caller``; its ``jti`` may be empty) and the claims that decide what it may read (``scope``, the
    SMART launch context ``patient``, a role claim)."""

    caller: Caller
    claims: Mapping[str, Any]

    @property
    def scope(self) -> str:
        value = self.claims.get("scope")
        return value if isinstance(value, str) else ""

    @property
    def patient(self) -> str | None:
        value = self.claims.get("patient")
        return value if isinstance(value, str) and value else None


def _show(value: Any, limit: int = 120) -> str:
    """A caller-supplied value quoted for a log line: repr (no raw newlines), cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ReplayCache:
    """(iss, jti) pairs seen, each kept until a time after which its token is refused anyway; thread-safe.

    At ``max_entries`` unexpired pairs it refuses new tokens rather than forget one (forgetting would allow a replay).
    """

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._max = max_entries
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def remember(self, key: tuple[str, str], until: float) -> None:
        """Record ``key`` until ``until``; AuthError if it is already recorded or the cache is full."""
        with self._lock:
            now = self._clock()
            while self._heap and self._heap[0][0] < now:
                _, old = heapq.heappop(self._heap)
                self._until.pop(old, None)
            if key in self._until:
                raise AuthError(f"jti {_show(key[1])} of iss {_show(key[0])} was already used (a replayed token)")
            if len(self._until) >= self._max:
                raise AuthError(
                    f"the replay cache holds {self._max} unexpired tokens; refusing more until some "
                    "expire (is a client sending a flood of tokens, or are its exp times too long?)"
                )
            self._until[key] = until
            heapq.heappush(self._heap, (until, key))

    def __len__(self) -> int:
        return len(self._until)


class _SharedReplayCache(_ReplayCache):
    """The same, in a SQLite file that every worker process of the service shares (a token replayed to another
    uvicorn worker must be refused too); the in-process cache in front spares the file most repeats."""

    def __init__(self, path: Path, max_entries: int, clock: Callable[[], float]) -> None:
        super().__init__(max_entries, clock)
        import sqlite3

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (iss TEXT, jti TEXT, until REAL, PRIMARY KEY (iss, jti))")
        self._db_lock = threading.Lock()
        self._inserts = 0

    def remember(self, key: tuple[str, str], until: float) -> None:
        super().remember(key, until)
        with self._db_lock:
            now = self._clock()
            self._inserts += 1
            if self._inserts % 1000 == 1:
                self._db.execute("DELETE FROM seen WHERE until < ?", (now,))
            cur = self._db.execute(
                "INSERT INTO seen VALUES (?, ?, ?) ON CONFLICT (iss, jti) DO UPDATE "
                "SET until = excluded.until WHERE seen.until < ?",
                (*key, until, now),
            )
            if cur.rowcount != 1:
                raise AuthError(
                    f"jti {_show(key[1])} of iss {_show(key[0])} was already used (a replayed token, "
                    "seen by another worker)"
                )


class _KeySet:
    """One issuer's JWK Set (a file or a URL), cached for ``ttl_s`` and read again once on an unknown ``kid``."""

    def __init__(
        self,
        issuer: TrustedIssuer,
        http_get: Callable[[str], bytes],
        clock: Callable[[], float],
        ttl_s: float,
        min_refetch_s: float,
    ) -> None:
        self._issuer = issuer
        self._http_get = http_get
        self._clock = clock
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._jwks: dict[str, list[Mapping[str, Any]]] | None = None
        self._loaded_at = -math.inf
        self._tried_at = -math.inf
        self._keys: dict[tuple[str, str], Any] = {}
        self._failure: str | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return self._issuer.jwks

    def _read(self) -> bytes:
        source = self.source
        if source.startswith(("http://", "https://")):
            if source.startswith("http://") and not _is_loopback(source):
                raise AuthError(
                    f"the JWKS URL {source} of iss {self._issuer.iss} is plain http; use an https URL "
                    "(plain http is accepted on loopback only)"
                )
            try:
                return self._http_get(source)
            except AuthError:
                raise
            except Exception as e:  # any failure of the fetch (transport, status, a custom getter's) means no keys
                raise AuthError(
                    f"could not fetch the JWKS of iss {self._issuer.iss} from {source}: {type(e).__name__}: {e}"
                ) from None
        try:
            return Path(source).read_bytes()
        except OSError as e:
            raise AuthError(
                f"could not read the JWKS file {source} of iss {self._issuer.iss}: {e.strerror}; "
                "fix issuers[].jwks in service.yaml"
            ) from None

    def _load(self, now: float, *, expired: bool) -> None:
        """Read the key set. If it fails, keys past their TTL (``expired``) are dropped, and for ``min_refetch_s``
        calls fail fast with the same reason instead of waiting on a fetch each."""
        if self._failure is not None and now - self._tried_at < self._min_refetch_s:
            raise AuthError(self._failure)
        self._tried_at = now
        try:
            self._parse(self._read(), now)
        except AuthError as e:
            if expired:
                self._jwks, self._failure = None, e.reason
            raise
        self._failure = None

    def _parse(self, raw: bytes, now: float) -> None:
        if len(raw) > _MAX_JWKS_BYTES:
            raise AuthError(f"the JWKS at {self.source} is larger than {_MAX_JWKS_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"the JWKS at {self.source} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise AuthError(f"the JWKS at {self.source} is not a JWK Set (an object with a 'keys' list)")
        by_kid: dict[str, list[Mapping[str, Any]]] = {}
        for jwk in data["keys"]:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                by_kid.setdefault(jwk["kid"], []).append(jwk)
        self._jwks = by_kid
        self._keys = {}
        self._loaded_at = now

    def key(self, kid: str, alg: str) -> Any:
        """The public key object for ``kid`` usable with ``alg``; AuthError if there is none."""
        with self._lock:
            now = self._clock()
            if self._jwks is None or now - self._loaded_at >= self._ttl_s:
                self._load(now, expired=True)
            if (kid, alg) in self._keys:
                return self._keys[(kid, alg)]
            assert self._jwks is not None
            if kid not in self._jwks and now - self._tried_at >= self._min_refetch_s:
                self._load(now, expired=False)  # the issuer may have rotated its keys since we last read them
            candidates = [jwk for jwk in self._jwks.get(kid, []) if _usable(jwk, alg)]
            if not candidates:
                raise AuthError(
                    f"no {alg} key with kid {_show(kid)} in the JWKS of iss {self._issuer.iss} ({self.source})"
                )
            if len(candidates) > 1:
                raise AuthError(
                    f"the JWKS of iss {self._issuer.iss} has {len(candidates)} {alg} keys with kid "
                    f"{_show(kid)}; kid must be unique"
                )
            try:
                key = jwt.PyJWK(dict(candidates[0]), algorithm=alg).key
            except jwt.PyJWTError as e:
                raise AuthError(
                    f"the key {_show(kid)} in the JWKS of iss {self._issuer.iss} is not a valid {alg} "
                    f"public key: {type(e).__name__}"
                ) from None
            if alg == "RS384" and key.key_size < _MIN_RSA_BITS:
                raise AuthError(
                    f"the RSA key {_show(kid)} of iss {self._issuer.iss} has {key.key_size} bits; "
                    f"at least {_MIN_RSA_BITS} are required"
                )
            self._keys[(kid, alg)] = key
            return key


def _usable(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether a JWK may verify an ``alg`` signature: right key type and curve, and no contrary ``alg`` or ``use``."""
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    if jwk.get("alg") not in (None, alg):
        return False
    return jwk.get("use") in (None, "sig")


def _httpx_getter(timeout_s: float) -> Callable[[str], bytes]:
    def get(url: str) -> bytes:
        import httpx

        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise AuthError(f"the JWKS at {url} is larger than {_MAX_JWKS_BYTES} bytes")
            return bytes(body)

    return get


def bearer_token(authorization: str | None) -> str:
    """The JWT in an ``Authorization: Bearer <JWT>`` header value; AuthError if the header is absent or malformed."""
    if not authorization:
        raise AuthError("no Authorization header; CDS Hooks calls must send 'Authorization: Bearer <JWT>'")
    if len(authorization) > _MAX_HEADER_CHARS:
        raise AuthError(f"the Authorization header is longer than {_MAX_HEADER_CHARS} characters")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthError("the Authorization header is not of the form 'Bearer <JWT>'")
    return parts[1]


class JwtVerifier:
    """Verifies the JWT of each hook call against ``config.issuers``; one instance serves the whole app.

    ``clock`` gives the time in seconds since the epoch (for ``exp``, ``iat`` and the replay cache);
    ``http_get(url) -> bytes`` fetches a JWKS URL (default: httpx, ``config.fhir_timeout_s``, no redirects).
    A fetched JWKS is kept ``jwks_ttl_s`` seconds and read again on an unknown ``kid``, at most once per
    ``min_refetch_s``. When ``config.check_expiry`` is off, a ``jti`` is remembered ``replay_window_s`` seconds.
    ``verify`` is thread-safe and may block on a JWKS fetch: call it from a worker thread, not the event loop.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        clock: Callable[[], float] = time.time,
        http_get: Callable[[str], bytes] | None = None,
        jwks_ttl_s: float = 300.0,
        min_refetch_s: float = 30.0,
        replay_window_s: float = 3600.0,
        max_remembered_tokens: int = 100_000,
    ) -> None:
        self._config = config
        self._clock = clock
        self._replay_window_s = replay_window_s
        getter = http_get if http_get is not None else _httpx_getter(config.fhir_timeout_s)
        self._key_sets: dict[str, _KeySet] = {}
        for issuer in config.issuers:
            self._key_sets.setdefault(issuer.iss, _KeySet(issuer, getter, clock, jwks_ttl_s, min_refetch_s))
        # shared by the worker processes of one service (MEDML_HOME/service/jti.sqlite)
        self._seen: _ReplayCache = _SharedReplayCache(config.home / "jti.sqlite", max_remembered_tokens, clock)

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """The verified caller of a request whose ``Authorization`` header is ``authorization``.

        ``audience`` is the URL of the service called (``config.service_url(id)``), which ``aud`` must name.
        Raises AuthError with the reason when the call is not authenticated.
        """
        if self._config.auth == "off":
            return Caller.anonymous()
        token = bearer_token(authorization)
        try:
            return self._verify(token, audience)
        except AuthError as e:
            raise AuthError(_redact(e.reason, token)) from None

    def verify_access(self, authorization: str | None, audience: str | tuple[str, ...]) -> AccessToken:
        """The verified access token of a request to the pages, ``/audit`` or ``medml fhir serve``.

        The same issuers, keys and algorithms as a hook call's JWT, with the rules of an OAuth access token
        (RFC 9068, RFC 6750): ``typ`` JWT or at+jwt, ``sub`` required, presented again on every request until it
        expires (so ``jti`` is optional and not a nonce), at most ``access_token_lifetime_s`` long. ``auth: off``
        does not apply: an access token is always verified. ``audience``: the URL(s) the token's ``aud`` may name.
        """
        token = bearer_token(authorization)
        try:
            return self._verify_access(token, audience)
        except AuthError as e:
            raise AuthError(_redact(e.reason, token)) from None

    def _verify_access(self, token: str, audience: str | tuple[str, ...]) -> AccessToken:
        claims, iss, kid = self._decode(token, audience, access=True)
        caller = self._check_times(claims, iss, kid, self._config.access_token_lifetime_s, replay=False)
        return AccessToken(caller=caller, claims=claims)

    def _verify(self, token: str, audience: str) -> Caller:
        claims, iss, kid = self._decode(token, audience, access=False)
        return self._check_claims(claims, iss, kid)

    def _decode(self, token: str, audience: str | tuple[str, ...], *, access: bool) -> tuple[dict[str, Any], str, str]:
        """The claims of a token whose signature, issuer, key and audience verify; (claims, iss, kid)."""
        if not _COMPACT_JWS.fullmatch(token):
            raise AuthError("the bearer token is not a signed JWT (three base64url parts separated by '.')")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthError(f"the JWT header is not valid ({e})") from None
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise AuthError(f"the JWT payload is not valid ({e})") from None
        alg = header.get("alg")
        if alg not in ACCEPTED_ALGORITHMS:
            raise AuthError(
                f"the JWT is signed with alg {_show(alg)}; only {' or '.join(ACCEPTED_ALGORITHMS)} "
                "are accepted (CDS Hooks 2.0 forbids none and symmetric algorithms)"
            )
        typs = ("JWT", "AT+JWT", "APPLICATION/AT+JWT") if access else ("JWT",)
        if not isinstance(header.get("typ"), str) or header["typ"].upper() not in typs:
            raise AuthError(
                f"the JWT header's typ is {_show(header.get('typ'))}; "
                + ("an access token's is JWT or at+jwt" if access else "CDS Hooks 2.0 requires 'JWT'")
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the JWT header has no kid; CDS Hooks 2.0 requires the kid of the signing key")
        if "crit" in header or "b64" in header:
            raise AuthError("the JWT header has critical extensions (crit/b64), which this service does not support")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise AuthError("the JWT has no iss; CDS Hooks 2.0 requires the issuer's URI")
        key_set = self._key_sets.get(iss)
        if key_set is None:
            raise AuthError(
                f"iss {_show(iss)} is not a trusted issuer; add it under issuers: in service.yaml "
                "if this EHR should be allowed"
            )
        jku = header.get("jku")
        if jku is not None:
            allowed = next(i.jku for i in self._config.issuers if i.iss == iss)
            if jku not in allowed:
                raise AuthError(
                    f"the JWT names jku {_show(jku)}, which is not allowed for iss {iss}; add it to "
                    "that issuer's jku list in service.yaml if it is the EHR's"
                )
        key = key_set.key(kid, alg)
        required = ["iss", "aud", "exp", "iat", "sub"] if access else ["iss", "aud", "exp", "iat", "jti"]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(audience) if isinstance(audience, tuple) else audience,
                issuer=iss,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": required},
            )
        except jwt.InvalidSignatureError:
            raise AuthError(f"the JWT's signature does not verify with key {_show(kid)} of iss {iss}") from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                f"the JWT's aud {_show(unverified.get('aud'))} is not the URL of the service called ({audience})"
            ) from None
        except jwt.MissingRequiredClaimError as e:
            needs = "an access token needs" if access else "CDS Hooks 2.0 requires"
            raise AuthError(f"the JWT has no {e.claim} claim, which {needs}") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"the JWT is not valid: {type(e).__name__}: {e}") from None
        return claims, iss, kid

    def _check_claims(self, claims: dict[str, Any], iss: str, kid: str) -> Caller:
        return self._check_times(claims, iss, kid, self._config.max_token_lifetime_s, replay=True)

    def _check_times(self, claims: dict[str, Any], iss: str, kid: str, longest: float, *, replay: bool) -> Caller:
        exp, iat = claims["exp"], claims["iat"]
        for name, value in (("exp", exp), ("iat", iat), ("nbf", claims.get("nbf", 0))):
            # an int too large for a float (10**400) would overflow every comparison below: refuse it here
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not -MAX_EPOCH_S < value < MAX_EPOCH_S
                or not math.isfinite(value)
            ):
                raise AuthError(f"the JWT's {name} is {_show(value)}, not a number of seconds since the epoch")
        now, leeway = self._clock(), self._config.leeway_s
        if iat > now + leeway:
            raise AuthError(
                f"the JWT's iat is {iat - now:.0f} s in the future (leeway {leeway:g} s); check the EHR's clock"
            )
        if claims.get("nbf", 0) > now + leeway:
            raise AuthError("the JWT is not valid yet (nbf is in the future)")
        if self._config.check_expiry and exp <= now - leeway:
            raise AuthError(f"the JWT expired {now - exp:.0f} s ago (leeway {leeway:g} s)")
        if exp > now + longest + leeway:
            # its jti would be held (and the token replayable elsewhere) until then: CDS Hooks 2.0 asks for minutes
            setting = "max_token_lifetime_s" if replay else "access_token_lifetime_s"
            raise AuthError(
                f"the JWT's exp is {exp - now:.0f} s ahead; this service takes tokens of at most "
                f"{longest:g} s ({setting} in service.yaml"
                + ("; CDS Hooks 2.0 recommends 5 minutes)" if replay else ")")
            )
        if not replay:  # an access token: presented on each request until it expires (RFC 6750)
            sub, jti = claims.get("sub"), claims.get("jti")
            if not isinstance(sub, str) or not sub:
                raise AuthError("the access token's sub is empty; it must name the user or client")
            return Caller(iss=iss, sub=sub, jti=jti if isinstance(jti, str) else "", tenant=None, kid=kid)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError("the JWT's jti is empty; CDS Hooks 2.0 requires a unique nonce string")
        sub, tenant = claims.get("sub"), claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthError(f"the JWT's tenant is {_show(tenant)}, not a string")
        until = exp + leeway if self._config.check_expiry else max(exp + leeway, now + self._replay_window_s)
        self._seen.remember((iss, jti), until)
        scope = claims.get("scope")
        return Caller(
            iss=iss,
            sub=sub if isinstance(sub, str) else None,
            jti=jti,
            tenant=tenant,
            kid=kid,
            scope=scope if isinstance(scope, str) else None,
        )


def _redact(reason: str, token: str) -> str:
    """``reason`` with the token, and any of its parts, cut out: a log line must never let a token be reused."""
    for secret in (token, *token.split(".")):
        if len(secret) >= 8:
            reason = reason.replace(secret, "[token]")
    return reason
