"""What every part of the service shares: the running state, the refusal type and its answers, authentication, the
parsed hook request and the one place an audit entry is built.

The routers (:mod:`medml.service.routers`) import from here and never from each other's private names; the app
(:mod:`medml.service.app`) only composes them. Authentication is one call that each router makes inside the block it
audits: as a FastAPI dependency it would refuse a call before the handler could write the refusal's audit record.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medml.config import Settings
from medml.errors import MedmlError
from medml.monitor.recorder import Recorder
from medml.monitor.records import PredictionLog
from medml.registry import load_bundle
from medml.service import audit
from medml.service.auth import AuthError, Caller, JwtVerifier
from medml.service.config import ServiceConfig
from medml.service.deploy import Deployment, deployments
from medml.service.limits import RateLimiter
from medml.service.middleware import audit_state
from medml.service.scoring import Batcher, Scorer

log = logging.getLogger("medml.service")

#: the context keys each hook requires
HOOK_CONTEXT = {"patient-view": ("userId", "patientId")}
MAX_ID = 256
#: the deepest JSON a request body may nest (orjson's own limit for writing JSON)
MAX_DEPTH = 254


class HookError(Exception):
    """A request the service refuses: an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServiceState:
    """What the running app holds: the loaded services (reloaded when deployments change) and its stores."""

    settings: Settings
    config: ServiceConfig
    verifier: JwtVerifier
    audit: audit.AuditSink
    predictions: PredictionLog
    per_caller: RateLimiter
    scorers: dict[str, Scorer] = field(default_factory=dict)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    #: the image services (``POST /imaging/{id}``); their models are loaded on their first request (torch)
    images: dict[str, Deployment] = field(default_factory=dict)
    image_models: dict[str, Any] = field(default_factory=dict)
    deployed_mtime: float = -1.0
    issued_cards: dict[str, str] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    #: per-router resources opened at start-up and closed at shutdown (the pages' FHIR store index)
    resources: dict[str, Any] = field(default_factory=dict)
    recorder: Recorder | None = None  #: each score's inputs to the monitoring store, off the request path
    #: the hook calls this worker reads and answers at once (``max_in_flight``); the others wait, bodies unread
    in_flight: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.in_flight = asyncio.Semaphore(self.config.max_in_flight)

    def refresh(self) -> None:
        """Load the deployments again when ``medml deploy``/``undeploy`` changed them."""
        path = self.config.deployments_path
        mtime = path.stat().st_mtime if path.exists() else 0.0
        if mtime == self.deployed_mtime:
            return
        everything = deployments(self.config)
        current = {sid: d for sid, d in everything.items() if d.is_hook}
        self.images = {sid: d for sid, d in everything.items() if not d.is_hook}
        self.image_models = {
            sid: m for sid, m in self.image_models.items() if sid in self.images and m.deployment == self.images[sid]
        }
        kept = {sid: s for sid, s in self.scorers.items() if sid in current and s.deployment == current[sid]}
        for sid, dep in current.items():
            if sid not in kept:
                kept[sid] = Scorer(dep, load_bundle(dep.model, self.settings))
        self.scorers = kept
        self.batchers = {
            sid: self.batchers[sid] if sid in self.batchers and self.batchers[sid].scorer is s else Batcher(s)
            for sid, s in kept.items()
        }
        self.deployed_mtime = mtime

    def remember_card(self, card_uuid: str, service_id: str) -> None:
        if len(self.issued_cards) > 100_000:
            self.issued_cards.pop(next(iter(self.issued_cards)))
        self.issued_cards[card_uuid] = service_id


def state_of(request: Request) -> ServiceState:
    """The running app's :class:`ServiceState` (a FastAPI dependency for the routers)."""
    state: ServiceState = request.app.state.medml
    return state


# ---- answers ----------------------------------------------------------------------------------------------------


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def unauthorised(realm: str) -> Response:
    """The bare 401 the CDS Hooks specification asks for, with the realm of the refused endpoint."""
    return Response(status_code=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


def failure(exc: Exception, doing: str, consequence: str) -> tuple[dict[str, Any], int]:
    """The JSON answer and status for an exception raised while serving a call: the HookError's own status (a
    bare 401), 400 with the message for a user error, else 500 with a reference that the log holds the traceback
    of (``doing`` says what was being done, ``consequence`` what the caller did not get)."""
    if isinstance(exc, HookError):
        return ({} if exc.status == 401 else {"error": exc.message}), exc.status
    if isinstance(exc, MedmlError):
        return {"error": str(exc)}, 400
    ref = uuid.uuid4().hex[:12]
    log.error("error %s %s", ref, doing, exc_info=exc)
    return {
        "error": f"internal error (reference {ref}); {consequence}. Tell the medml team the reference; the "
        "service keeps serving"
    }, 500


# ---- authentication -------------------------------------------------------------------------------------------


async def authenticate(state: ServiceState, request: Request, audience: str) -> Caller:
    """The verified caller of a request whose JWT must name ``audience``; HookError 401 (the reason goes to the
    log, never the token) or 429 when the caller's issuer is over its rate."""
    try:
        caller = await run_in_threadpool(state.verifier.verify, request.headers.get("authorization"), audience)
    except AuthError as e:  # the reason names claims and keys, never the token
        log.warning("refused a call to %s: %s", audience, e.reason)
        raise HookError(401, "unauthorised") from None
    allowed, retry = state.per_caller.allow(("iss", caller.iss))
    if not allowed:
        raise HookError(429, f"too many requests from {caller.iss}; retry in {retry:.0f} s")
    return caller


# ---- the hook request, parsed once ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRequest:
    """A CDS Hooks request checked at the boundary: what the routers and the scorer read, parsed once.

    ``body`` is the JSON object as sent (audited by its digest); the other fields are its checked parts.
    """

    body: dict[str, Any]
    hook: str
    hook_instance: str
    context: dict[str, Any]
    patient_id: str
    encounter_id: str | None
    fhir_server: str | None
    access_token: str | None
    prefetch: dict[str, Any]

    @classmethod
    def parse(cls, body: Mapping[str, Any], hook: str, service_id: str) -> HookRequest:
        """The checked request for a service answering ``hook``, or a HookError (400) naming what is wrong."""
        for key in ("hook", "hookInstance", "context"):
            if key not in body:
                raise HookError(
                    400, f"the request has no '{key}'; a CDS Hooks request needs hook, hookInstance and context"
                )
        if body["hook"] != hook:
            raise HookError(400, f"service '{service_id}' answers the {hook} hook, not {body['hook']!r}")
        instance = body["hookInstance"]
        if not isinstance(instance, str) or not instance or len(instance) > MAX_ID:
            raise HookError(400, "hookInstance must be a non-empty string (a UUID for this hook call)")
        context = body["context"]
        if not isinstance(context, dict):
            raise HookError(400, "context must be a JSON object")
        for key in HOOK_CONTEXT[hook]:
            value = context.get(key)
            if not isinstance(value, str) or not value or len(value) > MAX_ID:
                raise HookError(400, f"context.{key} is required for {hook} and must be a non-empty string")
        encounter = context.get("encounterId")
        if encounter is not None and (not isinstance(encounter, str) or not encounter):
            raise HookError(400, "context.encounterId, when given, must be a non-empty string")
        fhir_server = body.get("fhirServer")
        if fhir_server is not None and (
            not isinstance(fhir_server, str) or not fhir_server.startswith(("http://", "https://"))
        ):
            raise HookError(400, "fhirServer must be the base URL of the EHR's FHIR server (http or https)")
        auth = body.get("fhirAuthorization")
        if auth is not None:
            if fhir_server is None:
                raise HookError(400, "fhirAuthorization is given without fhirServer; send both or neither")
            if (
                not isinstance(auth, dict)
                or not isinstance(auth.get("access_token"), str)
                or auth.get("token_type") != "Bearer"
            ):
                raise HookError(
                    400, "fhirAuthorization needs access_token and token_type 'Bearer' (and expires_in, scope, subject)"
                )
        prefetch = body.get("prefetch")
        if prefetch is not None and not isinstance(prefetch, dict):
            raise HookError(400, "prefetch must be a JSON object of prefetch keys")
        return cls(
            body=dict(body),
            hook=hook,
            hook_instance=instance,
            context=context,
            patient_id=str(context["patientId"]),
            encounter_id=encounter,
            fhir_server=fhir_server,
            access_token=auth.get("access_token") if isinstance(auth, dict) else None,
            prefetch=prefetch or {},
        )


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or HookError 400 saying what it is instead."""
    return read_body(raw)[0]


def read_body(raw: bytes) -> tuple[dict[str, Any], str]:
    """A request body as a JSON object and its audit digest (:func:`audit.request_digest`), or HookError 400 saying
    what it is instead. One parse and one serialisation: the canonical JSON that is hashed is also the check that
    the body can be written at all."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise HookError(400, f"the request body is not valid JSON ({e}); send a CDS Hooks request object") from None
    if not isinstance(body, dict):
        raise HookError(
            400, f"the request body is a JSON {type(body).__name__}, not an object; send a CDS Hooks request object"
        )
    try:  # orjson writes at most 254 levels: deeper JSON could be read but never hashed into the audit record
        digest = audit.request_digest(body)
        if "fhirAuthorization" in body:  # left out of the digest, but it must be writable too
            orjson.dumps({"fhirAuthorization": body["fhirAuthorization"]})
    except orjson.JSONEncodeError:
        raise HookError(
            400,
            f"the request body nests JSON more than {MAX_DEPTH} levels deep (in an extension, the prefetch or "
            "feedback); no CDS Hooks request or FHIR resource needs that: send it without the deep nesting",
        ) from None
    return body, digest


# ---- the audit entry: built here, for every router --------------------------------------------------------------


def audit_caller(caller: Caller, request: Request) -> audit.Caller:
    """Who called, as the audit trail keeps it: the verified issuer and subject (nothing else when unverified)."""
    address = request.client.host if request.client else None
    if not caller.authenticated:
        return audit.Caller(address=address)
    return audit.Caller(iss=caller.iss, sub=caller.sub, address=address, jti=caller.jti)


def record_call(
    state: ServiceState,
    *,
    event: str,
    service: str,
    started: float,
    status: int,
    caller: audit.Caller,
    request: Request | None = None,
    request_body: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    model: str | None = None,
    error: str | None = None,
    details: audit.EntryDetails | None = None,
) -> None:
    """Write the one audit record of a call: ``started`` is its ``time.perf_counter()`` at arrival; the request and
    response bodies are kept as digests (and the cards as seen), never whole.

    With ``request`` (the call itself, not a call the pages make on a patient's behalf) the audit guard is told the
    call has its record, and a refusal the middleware already answered (a body cut off at 413) is recorded with the
    status the client saw. The append blocks until the record is durable: from the event loop, prefer
    :func:`record_call_async`.
    """
    entry, guard = _audit_entry(
        state, event, service, started, status, caller, request, request_body, response, model, error, details
    )
    state.audit.append(entry)
    if guard is not None:
        guard["done"] = True


async def record_call_async(
    state: ServiceState,
    *,
    event: str,
    service: str,
    started: float,
    status: int,
    caller: audit.Caller,
    request: Request | None = None,
    request_body: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    model: str | None = None,
    error: str | None = None,
    details: audit.EntryDetails | None = None,
) -> None:
    """:func:`record_call` with the append in a worker thread: the event loop serves other calls while this one's
    record is synced, and the appends of calls in flight together share one ``fdatasync`` (group commit). It
    returns when the record is on disk, so the answer that follows leaves after its record is kept."""
    entry, guard = _audit_entry(
        state, event, service, started, status, caller, request, request_body, response, model, error, details
    )
    await run_in_threadpool(state.audit.append, entry)
    if guard is not None:
        guard["done"] = True


def _audit_entry(
    state: ServiceState,
    event: str,
    service: str,
    started: float,
    status: int,
    caller: audit.Caller,
    request: Request | None,
    request_body: Mapping[str, Any] | None,
    response: Mapping[str, Any] | None,
    model: str | None,
    error: str | None,
    details: audit.EntryDetails | None,
) -> tuple[audit.AuditEntry, dict[str, Any] | None]:
    guard = audit_state(request.scope) if request is not None else None
    if guard is not None and guard["refused"] is not None:
        status, error = guard["refused"]
        response = None
    try:
        entry = audit.hook_entry(
            service=service,
            request=request_body,
            response=response,
            status=status,
            duration_ms=(time.perf_counter() - started) * 1000,
            caller=caller,
            model=model,
            error=error,
            event=event,
            details=details,
        )
    except (TypeError, ValueError) as e:  # a body orjson cannot hash: keep the record, without the digests
        log.error("audit record of %s %s written without digests: %s", event, service, e)
        entry = audit.AuditEntry(
            service=service,
            status=status,
            duration_ms=(time.perf_counter() - started) * 1000,
            event=event,
            caller=caller,
            model=model,
            error=f"{error or ''} (the body could not be hashed: {e})".strip(),
        )
    return entry, guard


def record_unrouted(
    state: ServiceState,
    *,
    event: str,
    service: str | None,
    patient: str | None,
    status: int,
    error: str | None,
    address: str | None,
    duration_ms: float,
    caller: audit.Caller | None = None,
    route: str | None = None,
) -> None:
    """The audit record of a request no router recorded (the audit guard's writer): a page view, or a refusal
    answered by the middleware (413, 429, 403) or an unhandled error. ``caller``: the verified token's issuer and
    subject where the access check saw one (else only the address); ``route``: the route it asked for."""
    state.audit.append(
        audit.AuditEntry(
            service=service,
            status=status,
            duration_ms=duration_ms,
            event=event,
            patient=patient,
            caller=caller or audit.Caller(address=address),
            error=error,
            route=route,
        )
    )


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


__all__ = [
    "HOOK_CONTEXT",
    "HookError",
    "HookRequest",
    "ServiceState",
    "audit_caller",
    "authenticate",
    "error_response",
    "failure",
    "iso",
    "json_response",
    "parse_body",
    "read_body",
    "record_call",
    "record_call_async",
    "record_unrouted",
    "state_of",
    "unauthorised",
]
