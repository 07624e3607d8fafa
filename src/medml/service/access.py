"""Access by role (issue 18): who may open the web pages, the monitoring pages, ``GET /audit`` and the FHIR store.

A caller shows a bearer JWT (``Authorization: Bearer <JWT>``) signed by an issuer of service.yaml's ``issuers:``
(:meth:`~medml.service.auth.JwtVerifier.verify_access`) whose ``scope`` claim holds SMART App Launch 2.0 scopes
(:mod:`medml.service.scopes`). Each route declares, in :data:`RULES`, the roles that use it and the scopes it needs;
one check (:func:`decide`) grants or refuses, and says which scope is missing.

The rule:

- A route needs every scope of its ``needs`` (a resource type and the interactions it performs: ``r`` read,
  ``s`` search) in one of its ``contexts``: ``user/`` (what the signed-in user may see), ``system/`` (a backend),
  ``patient/`` (only where the route names one patient, and only when that patient is the token's ``patient``
  claim, the SMART launch context). ``user/Observation.rs`` grants ``.r`` and ``.s``; ``user/*.rs`` every type.
- With ``role_claim`` set in service.yaml, the token's claim of that name (a string, space-separated, or a list)
  must also name one of the route's roles. Without it the scopes alone decide: a role is the scopes it is given
  (:data:`ROLE_SCOPES`, what an authorization server grants each role).
- Scopes that are not SMART 2.0 syntax (``email``, ``user/Observation.rd``) grant nothing and are named in the
  refusal: a lenient reading could grant what was never asked for.

Answers: 401 with ``WWW-Authenticate: Bearer`` for no token or a token that does not verify (the reason goes to the
server log, never the token); 403 with ``WWW-Authenticate: Bearer error="insufficient_scope"`` and one message
naming the missing scope or role when the token is good but not enough.

Where: with ``access: auto`` (the default) the token is needed unless the service is loopback-only, that is unless
``base_url`` is a loopback URL *and* the request comes from a loopback address. Both, because each alone can lie:
a service bound to 0.0.0.0 may keep a loopback ``base_url``, and a reverse proxy on the same machine makes every
request come from 127.0.0.1. ``access: required`` asks for the token on loopback too.

Every request to these routes leaves one audit record (the audit guard of :mod:`medml.service.middleware`) with
the caller's ``iss`` and ``sub``, the route and the patient it names; :func:`fhir_guard` does the same for each read
and search of ``medml fhir serve``.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medml.service import audit
from medml.service.auth import AccessToken, AuthError, JwtVerifier
from medml.service.config import ServiceConfig
from medml.service.middleware import audit_state
from medml.service.scopes import INTERACTIONS, Scope, ScopeError, parse_scope

log = logging.getLogger("medml.service.access")

ROLES = ("clinician", "data-scientist", "auditor")
#: what an authorization server grants each role (``user/`` for a person; a backend gets the same as ``system/``)
ROLE_SCOPES: dict[str, str] = {
    "clinician": "user/Patient.rs user/Encounter.rs user/Observation.rs user/Device.r",
    "data-scientist": "user/Device.rs user/MeasureReport.rs",
    "auditor": "user/AuditEvent.rs",
}
REALM = "medml"
_LETTER_NAMES = {v: k for k, v in INTERACTIONS.items()}


@dataclass(frozen=True)
class Rule:
    """What one route needs: the roles that use it, the scopes (resource type, interaction letter) and their
    contexts; ``kind`` is how a refusal is answered (an HTML page or JSON)."""

    route: str
    roles: tuple[str, ...]
    needs: tuple[tuple[str, str], ...]
    contexts: tuple[str, ...] = ("user", "system")
    kind: str = "html"


#: every route under access control. The FHIR resource types: the store's own for patient data; Device for a
#: model (a model card describes software used as a device: FHIR's Device, as HL7's AI transparency work uses it);
#: MeasureReport for monitoring (drift and performance are measures over a population); AuditEvent for the log.
RULES: dict[str, Rule] = {
    "patients": Rule("GET /", ("clinician",), (("Patient", "s"), ("Encounter", "s"), ("Observation", "s")), ("user",)),
    "patient": Rule(
        "GET /patients/{patient_id}",
        ("clinician",),
        (("Patient", "r"), ("Encounter", "s"), ("Observation", "s")),
        ("user", "patient"),
    ),
    "model": Rule("GET /models/{name}/{version}", ("clinician", "data-scientist"), (("Device", "r"),)),
    "monitor": Rule("GET /monitor", ("data-scientist",), (("MeasureReport", "s"),)),
    "monitor-model": Rule("GET /monitor/{name}/{version}", ("data-scientist",), (("MeasureReport", "r"),)),
    "audit": Rule("GET /audit", ("auditor",), (("AuditEvent", "s"),), kind="json"),
}


@dataclass(frozen=True)
class Principal:
    """A caller let through: its verified token and the role the route was granted to (None: no role claim)."""

    token: AccessToken
    role: str | None

    def audit_caller(self, address: str | None) -> audit.Caller:
        c = self.token.caller
        return audit.Caller(iss=c.iss, sub=c.sub, address=address, jti=c.jti or None)


class AccessDenied(Exception):
    """A request refused: 401 (no token or a bad one) or 403 (a good token without the scope or role)."""

    def __init__(self, status: int, message: str, kind: str = "json", scope: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.scope = scope

    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        needed = f', scope="{self.scope}"' if self.scope else ""
        return {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"{needed}'}


# -- the decision --------------------------------------------------------------------------------------------------


def token_roles(claims: Mapping[str, Any], role_claim: str) -> set[str]:
    """The roles a token's ``role_claim`` names: a string (space- or comma-separated) or a list of strings."""
    value = claims.get(role_claim)
    if isinstance(value, str):
        return set(value.replace(",", " ").split())
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def parse_granted(text: str) -> tuple[list[Scope], list[str]]:
    """The SMART scopes of a ``scope`` claim, and a note for each item that is not one (it grants nothing)."""
    good, bad = [], []
    for item in text.split():
        try:
            good.append(parse_scope(item))
        except ScopeError as e:
            bad.append(str(e.what))
    return good, bad


def decide(
    rule: Rule,
    scope: str,
    *,
    patient_claim: str | None = None,
    patient_id: str | None = None,
    roles: set[str] | None = None,
    role_claim: str | None = None,
) -> tuple[str | None, str | None]:
    """(the refusal message, the scope to ask for), or (None, None) when the token may use the route.

    ``patient_id`` is the patient the request names (a patient page), ``patient_claim`` the token's launch context;
    ``roles`` the token's roles when service.yaml names a ``role_claim``, else None.
    """
    if roles is not None and not roles & set(rule.roles):
        named = ", ".join(sorted(roles)) or "no role"
        return (
            f"{rule.route} is for the role {' or '.join(rule.roles)}; the token's {role_claim} claim names {named}. "
            "Ask your administrator for that role",
            None,
        )
    granted, bad = parse_granted(scope)
    contexts = [c for c in rule.contexts if c != "patient" or (patient_id is not None and patient_claim == patient_id)]
    missing = [
        (rtype, letter)
        for rtype, letter in rule.needs
        if not any(s.allows(c, rtype, letter) for s in granted for c in contexts)
    ]
    if not missing:
        return None, None
    shown = [f"{rule.contexts[0]}/{rtype}.{letter}" for rtype, letter in missing]
    others = [c for c in rule.contexts[1:]]
    alt = f" (or the same in {' or '.join(c + '/' for c in others)})" if others else ""
    verb = " and ".join(sorted({_LETTER_NAMES[letter] for _, letter in missing}))
    message = (
        f"{rule.route} needs the SMART scope {' '.join(shown)}{alt} to {verb}; the token grants "
        f"{' '.join(s.text for s in granted if s.kind == 'clinical') or 'no clinical scope'}"
    )
    if "patient" in rule.contexts and any(s.context == "patient" for s in granted) and patient_claim != patient_id:
        message += (
            f"; its patient/ scopes are for patient {patient_claim or '(none named: no patient claim)'}, "
            f"not {patient_id}"
        )
    if bad:
        message += "; " + "; ".join(f"it also holds {b}, which grants nothing" for b in bad)
    return message + ". Ask your authorization server for a token with the scope", " ".join(shown)


# -- where a token is needed ---------------------------------------------------------------------------------------


def _loopback_address(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def required(config: ServiceConfig, request: Request) -> bool:
    """Whether this request needs a token: always with ``access: required``; with ``auto`` unless the service is
    loopback-only (``base_url`` on loopback and the request from loopback; see the module docstring)."""
    if config.access == "required" or not config.loopback_only:
        return True
    return not _loopback_address(request.client.host if request.client else None)


def _audience(base_url: str) -> tuple[str, ...]:
    return (base_url, base_url + "/")


async def check(request: Request, rule: Rule, patient_id: str | None = None) -> Principal | None:
    """The caller of a request to ``rule``'s route, or None where no token is needed; AccessDenied otherwise.

    Tells the audit guard the route and, once verified, who called, so the request's one record names them.
    """
    state = request.app.state.medml
    config: ServiceConfig = state.config
    guard = audit_state(request.scope)
    if guard is not None:
        guard["route"] = rule.route
    if not required(config, request):
        return None
    address = request.client.host if request.client else None
    try:
        token = await run_in_threadpool(
            state.verifier.verify_access, request.headers.get("authorization"), _audience(config.base_url)
        )
    except AuthError as e:  # the reason names claims and keys, never the token: for the log, not the caller
        log.warning("refused %s from %s: %s", rule.route, address, e.reason)
        no_header = request.headers.get("authorization") is None
        raise _refused(
            guard,
            AccessDenied(
                401,
                "no bearer token: send Authorization: Bearer <JWT> from a trusted issuer"
                if no_header
                else "the bearer token was refused (not signed by a trusted issuer's key, expired, or not for "
                "this service); get a new token from your authorization server",
                rule.kind,
            ),
        ) from None
    principal_role: str | None = None
    roles = token_roles(token.claims, config.role_claim) if config.role_claim else None
    message, wanted = decide(
        rule,
        token.scope,
        patient_claim=token.patient,
        patient_id=patient_id,
        roles=roles,
        role_claim=config.role_claim,
    )
    principal = Principal(token, None)
    if guard is not None:
        guard["caller"] = principal.audit_caller(address)
    if message is not None:
        log.warning("refused %s to %s (iss %s): %s", rule.route, token.caller.sub, token.caller.iss, message)
        raise _refused(guard, AccessDenied(403, message, rule.kind, wanted))
    if roles is not None:
        principal_role = next(r for r in rule.roles if r in roles)
    return Principal(token, principal_role)


def _refused(guard: dict[str, Any] | None, denied: AccessDenied) -> AccessDenied:
    if guard is not None:
        guard["refused"] = (denied.status, denied.message)
    return denied


def allow(name: str) -> Callable[[Request], Any]:
    """A FastAPI dependency for the route of ``RULES[name]``: its caller (None where no token is needed)."""
    rule = RULES[name]

    async def dependency(request: Request) -> Principal | None:
        patient = request.path_params.get("patient_id") if "patient" in rule.contexts else None
        return await check(request, rule, patient)

    return dependency


def denied_response(exc: AccessDenied) -> Response:
    """The answer to a refused request: JSON ``{"error": ...}``, or for a page a short HTML page with the message."""
    headers = {**exc.headers(), "Cache-Control": "no-store"}
    if exc.kind == "html":
        title = "Sign-in needed" if exc.status == 401 else "Not allowed"
        body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{html.escape(exc.message)}</p>"
        return HTMLResponse(body, status_code=exc.status, headers=headers)
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer :class:`AccessDenied` (raised by the :func:`allow` dependencies) and serve ``GET /audit``."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AccessDenied)
        return denied_response(exc)

    app.add_exception_handler(AccessDenied, handler)
    app.include_router(router)


# -- the auditor's endpoint ----------------------------------------------------------------------------------------

router = APIRouter()
MAX_ENTRIES = 10_000


def _records(sink: audit.AuditSink, path: Any, n: int) -> list[dict[str, Any]]:
    records = getattr(sink, "records", None)  # an in-memory sink (tests)
    if isinstance(records, list):
        return list(records[-n:])
    if not path.exists():
        return []
    return audit.read_last(path, n)


@router.get("/audit")
async def audit_log(
    request: Request, who: Annotated[Principal | None, Depends(allow("audit"))], n: str = "100", patient: str = ""
) -> Response:
    """The last ``n`` audit records (oldest first), or those of them that name ``patient``: who read what, when."""
    count = int(n) if n.isdigit() and len(n) < 7 else 0
    if not 1 <= count <= MAX_ENTRIES:
        return JSONResponse(
            {"error": f"n={n[:20]!r} is not a number of records from 1 to {MAX_ENTRIES}; ask e.g. /audit?n=100"},
            status_code=400,
        )
    state = request.app.state.medml
    records = await run_in_threadpool(_records, state.audit, state.config.audit_path, count)
    if patient:
        records = [r for r in records if r.get("patient") == patient]
    return JSONResponse({"entries": records, "count": len(records)}, headers={"Cache-Control": "no-store"})


# -- medml fhir serve ----------------------------------------------------------------------------------------------


def fhir_rule(resource_type: str, interaction: str) -> Rule:
    """A FHIR read (``r``) or search (``s``) of one type: any of patient/, user/ and system/ scopes."""
    return Rule(
        f"GET /{resource_type}" + ("/{id}" if interaction == "r" else ""),
        ROLES,
        ((resource_type, interaction),),
        ("user", "system", "patient"),
        "json",
    )


def fhir_read_entry(
    request: Request, caller: audit.Caller, status: int, patient: str | None, error: str | None, duration_ms: float
) -> audit.AuditEntry:
    """The audit record of one read or search of ``medml fhir serve``, whoever was let in and however."""
    return audit.AuditEntry(
        service="fhir",
        status=status,
        duration_ms=duration_ms,
        event="fhir-read",
        patient=patient,
        caller=caller,
        error=error,
        route=f"{request.method} {request.url.path}",
    )


def fhir_guard(
    verifier: JwtVerifier, sink: audit.AuditSink, audience: Iterable[str]
) -> Callable[[Request, str, str], Any]:
    """The check ``medml fhir serve`` runs on each read and search (see :func:`medml.fhir.server.create_fhir_app`):
    ``guard(request, resource_type, "read"|"search")`` returns a grant whose ``patient`` restricts the request to the
    token's patient (a ``patient/`` scope) and whose ``audit(status, patient)`` writes the request's record; a
    refusal is audited and raised as the server's own 401/403."""
    from medml.fhir.server import FhirHttpError, Grant

    audiences = tuple(audience)

    def record(
        request: Request,
        started: float,
        caller: audit.Caller,
        status: int,
        patient: str | None,
        error: str | None = None,
    ) -> None:
        sink.append(fhir_read_entry(request, caller, status, patient, error, (time.perf_counter() - started) * 1000))

    def guard(request: Request, resource_type: str, interaction: str) -> Any:
        started = time.perf_counter()
        address = request.client.host if request.client else None
        letter = INTERACTIONS[interaction]
        try:
            token = verifier.verify_access(request.headers.get("authorization"), audiences)
        except AuthError as e:
            log.warning("refused FHIR %s %s from %s: %s", interaction, resource_type, address, e.reason)
            given = request.headers.get("authorization") is not None
            message = (
                "the bearer token was refused (not signed by a trusted issuer's key, expired, or not for this "
                "server); get a new token from your authorization server"
                if given
                else "this server needs Authorization: Bearer <JWT> from a trusted issuer"
            )
            record(request, started, audit.Caller(address=address), 401, None, message)
            raise FhirHttpError(401, "login", message, {"WWW-Authenticate": f'Bearer realm="{REALM}"'}) from None
        caller = Principal(token, None).audit_caller(address)
        granted, _ = parse_granted(token.scope)
        wide = any(s.allows(c, resource_type, letter) for s in granted for c in ("user", "system"))
        narrow = token.patient is not None and any(s.allows("patient", resource_type, letter) for s in granted)
        if not wide and not narrow:
            refusal, wanted = decide(fhir_rule(resource_type, letter), token.scope)
            message = refusal or f"the token grants no {resource_type} {interaction}"
            if any(s.context == "patient" for s in granted) and token.patient is None:
                message += "; patient/ scopes need the token's patient claim (the SMART launch context)"
            record(request, started, caller, 403, None, message)
            raise FhirHttpError(
                403,
                "forbidden",
                message,
                {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{wanted}"'},
            )

        def audited(status: int, patient: str | None, error: str | None = None) -> None:
            record(request, started, caller, status, patient, error)

        return Grant(patient=None if wide else token.patient, audit=audited)

    return guard


__all__ = [
    "ROLES",
    "ROLE_SCOPES",
    "RULES",
    "AccessDenied",
    "Principal",
    "Rule",
    "allow",
    "check",
    "decide",
    "fhir_guard",
    "fhir_read_entry",
    "install",
    "parse_granted",
    "required",
    "token_roles",
]
