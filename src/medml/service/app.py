"""The CDS Hooks 2.0 service: discovery, one ``patient-view`` service per deployed model, feedback; and the PGx
drug-order services (``pgx-order-select``, ``pgx-order-sign``, :mod:`medml.service.pgx_services`) on the same endpoint.
Image models are served beside them at ``/imaging`` (:mod:`medml.service.imaging`), not as hooks.

Each hook call is verified (the EHR's JWT), rate-limited per caller, checked at the boundary, scored from FHIR
(prefetch, or fetched from ``fhirServer`` with the ``fhirAuthorization`` token), answered with cards, and recorded:
an audit record for every request and response, a PredictionRecord for every score. Errors are JSON
``{"error": ...}`` that say what was wrong and what to do; 401 is bare, as the specification asks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medml.config import Settings
from medml.errors import MedmlError
from medml.monitor.records import PredictionLog, PredictionRecord, summarize_inputs
from medml.registry import load_bundle
from medml.service import audit, cards, pgx_services
from medml.service.auth import AuthError, Caller, JwtVerifier
from medml.service.config import ServiceConfig
from medml.service.deploy import Deployment, deployments
from medml.service.fhir_client import FhirFetchError, fetch_prefetch
from medml.service.limits import BodySizeLimitMiddleware, PathLimit, RateLimiter, RateLimitMiddleware
from medml.service.scoring import Batcher, Job, NotScored, PrefetchError, Scorer, collect

log = logging.getLogger("medml.service")

HOOK_CONTEXT = {"patient-view": ("userId", "patientId")}
MAX_ID = 256


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


def discovery(scorers: Mapping[str, Scorer], *, pgx: bool = False) -> dict[str, Any]:
    """The discovery document: one patient-view service per deployed model, its prefetch from its features; with
    ``pgx``, the PGx drug-order services too."""
    services = []
    for sid, s in scorers.items():
        dep = s.deployment
        services.append(
            {
                "hook": dep.hook,
                "id": sid,
                "title": dep.title,
                "description": dep.description,
                "prefetch": s.templates,
                "usageRequirements": (
                    "Needs the patient's Encounters and the Observations named in the prefetch; "
                    "without prefetch, a fhirServer and fhirAuthorization with read access to them."
                ),
            }
        )
    if pgx:
        services += pgx_services.discovery_entries()
    return {"services": services}


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


def create_app(
    settings: Settings,
    config: ServiceConfig,
    *,
    verifier: JwtVerifier | None = None,
    audit_sink: audit.AuditSink | None = None,
    clock: Any = None,
) -> FastAPI:
    """The FastAPI app; ``verifier``, ``audit_sink`` and ``clock`` (-> aware datetime) may be given for tests."""
    config.home.mkdir(parents=True, exist_ok=True)
    state = ServiceState(
        settings=settings,
        config=config,
        verifier=verifier or JwtVerifier(config),
        audit=audit_sink or audit.JsonlAuditLog(config.audit_path),
        predictions=PredictionLog(config.predictions_path),
        per_caller=RateLimiter(config.rate_per_minute),
    )
    now = clock or (lambda: datetime.now(UTC))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.refresh()
        async with httpx.AsyncClient(timeout=config.fhir_timeout_s, follow_redirects=False) as client:
            state.http = client
            yield
        state.http = None

    app = FastAPI(title="medml CDS Hooks service", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.medml = state
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=config.max_body_bytes,
        per_path=[
            PathLimit(
                "/imaging/",
                config.max_dicom_bytes,
                "send a smaller DICOM file (one image), or raise max_dicom_bytes in service.yaml",
            )
        ],
    )
    # CORS (CDS Hooks 2.0: services called from browser-based clients); preflights need no token
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(config.rate_per_minute * 4))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s", ref, request.url.path)
        return _error(
            500,
            f"internal error (reference {ref}); the request was not scored. Tell the medml team "
            "the reference; the service keeps serving",
        )

    @app.get("/cds-services")
    async def services() -> Response:
        state.refresh()
        return _json(discovery(state.scorers, pgx=_pgx_offered(config)))

    @app.get("/healthz")
    async def health() -> Response:
        return _json({"status": "ok", "services": sorted(state.scorers), "imaging": sorted(state.images)})

    @app.post("/cds-services/{service_id}")
    async def hook(service_id: str, request: Request) -> Response:
        started = time.perf_counter()
        body: dict[str, Any] | None = None
        caller = Caller.anonymous()
        model = None
        try:
            state.refresh()
            scorer = state.scorers.get(service_id)
            if scorer is None and not _pgx_offered(config, service_id):
                raise HookError(404, f"no CDS service '{service_id}' here; GET /cds-services lists the services")
            model = scorer.deployment.model if scorer is not None else None
            caller = await _authenticate(state, request, config.service_url(service_id))
            body = _parse(await request.body())
            if scorer is not None:
                response = await answer(state, scorer, body, now())
            else:
                response, model = await run_in_threadpool(
                    pgx_services.answer, config.pgx_results_dir, service_id, body, authenticated=config.auth == "jwt"
                )
                for c in response["cards"]:
                    state.remember_card(c["uuid"], service_id)
            status = 200
        except Exception as e:  # the EHR gets a message or a reference; the call is audited either way
            response, status = failure(e, f"answering {service_id}", "the patient was not scored")
        duration = (time.perf_counter() - started) * 1000
        _audit(
            state,
            service_id,
            body,
            response if status == 200 else None,
            status,
            duration,
            caller,
            request,
            model,
            None if status == 200 else response.get("error", "unauthorised"),
        )
        if status == 401:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})
        return _json(response, status)

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
        started = time.perf_counter()
        body: dict[str, Any] | None = None
        caller = Caller.anonymous()
        try:
            state.refresh()
            if service_id not in state.scorers and not _pgx_offered(config, service_id):
                raise HookError(404, f"no CDS service '{service_id}' here; GET /cds-services lists the services")
            caller = await _authenticate(state, request, config.service_url(service_id))
            body = _parse(await request.body())
            stored = _store_feedback(state, service_id, body, caller)
            status, response = 200, {}
            event_note = f"{stored} feedback item(s) stored"
        except HookError as e:
            status, response, event_note = e.status, ({} if e.status == 401 else {"error": e.message}), e.message
        duration = (time.perf_counter() - started) * 1000
        entry = audit.hook_entry(
            service=service_id,
            request=None,
            response=None,
            status=status,
            duration_ms=duration,
            caller=_audit_caller(caller, request),
            error=None if status == 200 else event_note,
        )
        record = {
            **entry.to_dict(),
            "event": "feedback",
            "input_sha256": audit.digest(body) if body is not None else None,
        }
        state.audit.append(record)
        if status == 401:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})
        return _json(response, status)

    from medml.service import imaging  # imports this module: not at the top

    imaging.mount(app, state)
    if config.pages_on:
        from medml.service import web  # imports this module: not at the top

        web.mount(app, state)
    return app


def _pgx_offered(config: ServiceConfig, service_id: str | None = None) -> bool:
    return pgx_services.offered(config.pgx_services, config.pgx_results_dir, service_id)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _authenticate(state: ServiceState, request: Request, audience: str) -> Caller:
    try:
        caller = await run_in_threadpool(state.verifier.verify, request.headers.get("authorization"), audience)
    except AuthError as e:
        log.info("refused a call to %s: %s", audience, e.reason)
        raise HookError(401, "unauthorised") from None
    allowed, retry = state.per_caller.allow(("iss", caller.iss))
    if not allowed:
        raise HookError(429, f"too many requests from {caller.iss}; retry in {retry:.0f} s")
    return caller


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise HookError(400, f"the request body is not valid JSON ({e}); send a CDS Hooks request object") from None
    if not isinstance(body, dict):
        raise HookError(
            400, f"the request body is a JSON {type(body).__name__}, not an object; send a CDS Hooks request object"
        )
    return body


def check_request(body: Mapping[str, Any], dep: Deployment) -> tuple[str, str | None]:
    """The patient id and encounter id of a valid hook request, or a HookError (400) naming what is wrong."""
    for key in ("hook", "hookInstance", "context"):
        if key not in body:
            raise HookError(
                400, f"the request has no '{key}'; a CDS Hooks request needs hook, hookInstance and context"
            )
    if body["hook"] != dep.hook:
        raise HookError(400, f"service '{dep.service_id}' answers the {dep.hook} hook, not {body['hook']!r}")
    instance = body["hookInstance"]
    if not isinstance(instance, str) or not instance or len(instance) > MAX_ID:
        raise HookError(400, "hookInstance must be a non-empty string (a UUID for this hook call)")
    context = body["context"]
    if not isinstance(context, dict):
        raise HookError(400, "context must be a JSON object")
    for key in HOOK_CONTEXT[dep.hook]:
        value = context.get(key)
        if not isinstance(value, str) or not value or len(value) > MAX_ID:
            raise HookError(400, f"context.{key} is required for {dep.hook} and must be a non-empty string")
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
    return str(context["patientId"]), encounter


async def answer(state: ServiceState, scorer: Scorer, body: dict[str, Any], now: datetime) -> dict[str, Any]:
    dep = scorer.deployment
    patient_id, encounter_id = check_request(body, dep)
    # a prefetch key the EHR could not fill (an OperationOutcome in its place) counts as not prefetched
    prefetch: dict[str, Any] = {
        k: v
        for k, v in (body.get("prefetch") or {}).items()
        if not (isinstance(v, dict) and v.get("resourceType") == "OperationOutcome")
    }
    absent = {k: q for k, q in scorer.templates.items() if k not in prefetch}
    if absent:
        prefetch.update(await _fetch(state, body, absent, patient_id))
    try:
        resources = collect({k: prefetch.get(k) for k in scorer.templates}, patient_id)
    except PrefetchError as e:
        raise HookError(400, str(e)) from None
    result = await state.batchers[dep.service_id].score(Job(patient_id, resources, encounter_id, now))
    if isinstance(result, NotScored):
        log.info("%s not scored for a patient: %s", dep.service_id, result.reason)
        return {"cards": []}
    authenticated = state.config.auth == "jwt"
    model_card = f"{state.config.base_url}/models/{dep.name}/{dep.version}"
    card = cards.card(
        dep,
        result,
        patient_id,
        model_kind=scorer.bundle.metadata.model_kind,
        model_card_url=model_card,
        authenticated=authenticated,
    )
    state.remember_card(card["uuid"], dep.service_id)
    response: dict[str, Any] = {"cards": [card]}
    actions = cards.system_actions(dep, result, patient_id)
    if actions:
        response["systemActions"] = actions
    inputs = summarize_inputs(result.features, scorer.columns)
    state.predictions.append(
        PredictionRecord(
            model=dep.model,
            service=dep.service_id,
            patient=patient_id,
            time=_iso(now),
            score=result.risk,
            risk=result.category,
            inputs=inputs,
            index_time=_iso(result.index_time),
            hook_instance=str(body["hookInstance"]),
        )
    )
    return response


async def _fetch(
    state: ServiceState, body: Mapping[str, Any], queries: Mapping[str, str], patient_id: str
) -> dict[str, Any]:
    """What the EHR did not prefetch, from its FHIR server; 412 when there is no server to ask or it fails."""
    server = body.get("fhirServer")
    if not server:
        raise HookError(
            412,
            f"prefetch lacks {sorted(queries)} and the request names no fhirServer to fetch them "
            "from; send the prefetch of the discovery document, or fhirServer and fhirAuthorization",
        )
    filled = {k: q.replace("{{context.patientId}}", patient_id) for k, q in queries.items()}
    auth = body.get("fhirAuthorization") or {}
    assert state.http is not None
    try:
        return await fetch_prefetch(state.http, str(server), auth.get("access_token"), filled)
    except FhirFetchError as e:
        raise HookError(412, f"could not fetch what the service needs from fhirServer: {e}") from None


def _store_feedback(state: ServiceState, service_id: str, body: Mapping[str, Any], caller: Caller) -> int:
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise HookError(400, "feedback must be a non-empty list of {card, outcome, outcomeTimestamp} objects")
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("card"), str):
            raise HookError(400, f"feedback[{i}] needs 'card', the uuid of the card it is about")
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            raise HookError(400, f"feedback[{i}].outcome must be 'accepted' or 'overridden', got {outcome!r}")
        if not isinstance(item.get("outcomeTimestamp"), str):
            raise HookError(400, f"feedback[{i}] needs outcomeTimestamp (ISO 8601)")
        reason = item.get("overrideReason")
        if reason is not None and not isinstance(reason, dict):
            raise HookError(400, f"feedback[{i}].overrideReason must be an object with reason and userComment")
        accepted = item.get("acceptedSuggestions", [])
        if not isinstance(accepted, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) for a in accepted
        ):
            raise HookError(400, f"feedback[{i}].acceptedSuggestions must be a list of {{id}} objects")
        rows.append(
            {
                "received": _iso(datetime.now(UTC)),
                "service": service_id,
                "card": item["card"],
                "known_card": state.issued_cards.get(item["card"]) == service_id,
                "outcome": outcome,
                "outcomeTimestamp": item["outcomeTimestamp"],
                "acceptedSuggestions": accepted,
                "overrideReason": reason,
                "caller": {"iss": caller.iss, "sub": caller.sub},
            }
        )
    path: Path = state.config.feedback_path
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return len(rows)


def _audit_caller(caller: Caller, request: Request) -> audit.Caller:
    address = request.client.host if request.client else None
    if not caller.authenticated:
        return audit.Caller(address=address)
    return audit.Caller(iss=caller.iss, sub=caller.sub, address=address, jti=caller.jti)


def _audit(
    state: ServiceState,
    service_id: str,
    body: dict[str, Any] | None,
    response: dict[str, Any] | None,
    status: int,
    duration: float,
    caller: Caller,
    request: Request,
    model: str | None,
    error: str | None,
) -> None:
    entry = audit.hook_entry(
        service=service_id,
        request=body,
        response=response,
        status=status,
        duration_ms=duration,
        caller=_audit_caller(caller, request),
        model=model,
        error=error,
    )
    state.audit.append(entry)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def app_from_env() -> FastAPI:
    """The app `medml serve` runs in each worker: settings from MEDML_HOME and the MEDML_SERVICE_* variables."""
    import os

    from medml.config import get_settings
    from medml.service.config import load_config

    settings = get_settings()
    path = os.environ.get("MEDML_SERVICE_CONFIG")
    config = load_config(
        settings,
        Path(path) if path else None,
        base_url=os.environ.get("MEDML_SERVICE_BASE_URL"),
        auth=os.environ.get("MEDML_SERVICE_AUTH"),
    )
    return create_app(settings, config)
