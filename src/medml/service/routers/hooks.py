"""The CDS Hooks 2.0 endpoints: discovery, one ``patient-view`` service per deployed model, feedback; and the PGx
drug-order services (``pgx-order-select``, ``pgx-order-sign``, :mod:`medml.service.pgx_services`) on the same endpoint.

Each hook call is verified (the EHR's JWT), rate-limited per caller, checked at the boundary (one
:class:`~medml.service.core.HookRequest`), scored from FHIR (prefetch, or fetched from ``fhirServer`` with the
``fhirAuthorization`` token), answered with cards, and recorded: an audit record for every request and response, a
PredictionRecord for every score. Errors are JSON ``{"error": ...}`` that say what was wrong and what to do; 401 is
bare, as the specification asks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medml.service import audit, news2_service, pgx_services
from medml.service.auth import Caller
from medml.service.config import ServiceConfig
from medml.service.core import (
    HookError,
    HookRequest,
    ServiceState,
    audit_caller,
    authenticate,
    failure,
    iso,
    json_response,
    parse_body,
    read_body,
    record_call_async,
    state_of,
    unauthorised,
)
from medml.service.patient_view import answer
from medml.service.scoring import Scorer

router = APIRouter()
State = Annotated[ServiceState, Depends(state_of)]


def discovery(scorers: Mapping[str, Scorer], *, pgx: bool = False, news2: bool = False) -> dict[str, Any]:
    """The discovery document: one patient-view service per deployed model, its prefetch from its features; with
    ``pgx``, the PGx drug-order services too; with ``news2``, the NEWS2 card."""
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
    if news2:
        services.append(news2_service.discovery_entry())
    return {"services": services}


def pgx_offered(config: ServiceConfig, service_id: str | None = None) -> bool:
    return pgx_services.offered(config.pgx_services, config.pgx_results_dir, service_id)


@router.get("/cds-services")
async def services(state: State) -> Response:
    state.refresh()
    config = state.config
    return json_response(discovery(state.scorers, pgx=pgx_offered(config), news2=news2_service.offered(config)))


@router.get("/healthz")
async def health(state: State) -> Response:
    return json_response({"status": "ok", "services": sorted(state.scorers), "imaging": sorted(state.images)})


@router.post("/cds-services/{service_id}")
async def hook(service_id: str, request: Request, state: State) -> Response:
    started = time.perf_counter()
    # A burst waits here with its bodies unread (in the socket), not parsed in memory: each call holds a parsed
    # prefetch (about 1 MB of Python objects for 300 Observations) until its audit record is written, and memory
    # freed after a burst is mostly not returned to the system. The answers do not change, only where calls wait.
    async with state.in_flight:
        return await _hook(service_id, request, state, started)


async def _hook(service_id: str, request: Request, state: ServiceState, started: float) -> Response:
    config = state.config
    body: dict[str, Any] | None = None
    digest: str | None = None
    caller = Caller.anonymous()
    model = None
    try:
        state.refresh()
        scorer = state.scorers.get(service_id)
        news2 = scorer is None and news2_service.offered(config, service_id)
        if scorer is None and not news2 and not pgx_offered(config, service_id):
            raise HookError(404, f"no CDS service '{service_id}' here; GET /cds-services lists the services")
        model = scorer.deployment.model if scorer is not None else None
        caller = await authenticate(state, request, config.service_url(service_id))
        body, digest = read_body(await request.body())
        if scorer is not None:
            dep = scorer.deployment
            hook_request = HookRequest.parse(body, dep.hook, dep.service_id)
            response = await answer(state, scorer, hook_request, now_of(request), caller)
        elif news2:
            response, model = await news2_service.answer(state, body, now_of(request), caller)
            for c in response["cards"]:
                state.remember_card(c["uuid"], service_id)
        else:
            response, model = await run_in_threadpool(
                pgx_services.answer, config.pgx_results_dir, service_id, body, authenticated=config.auth == "jwt"
            )
            for c in response["cards"]:
                state.remember_card(c["uuid"], service_id)
        status = 200
    except Exception as e:  # the EHR gets a message or a reference; the call is audited either way
        response, status = failure(e, f"answering {service_id}", "the patient was not scored")
    # the answer leaves after its audit record is on disk (group commit with the calls in flight)
    await record_call_async(
        state,
        event="hook",
        service=service_id,
        started=started,
        status=status,
        caller=audit_caller(caller, request),
        request=request,
        request_body=body,
        response=response if status == 200 else None,
        model=model,
        error=None if status == 200 else response.get("error", "unauthorised"),
        details=audit.EntryDetails(input_sha256=digest),
    )
    if status == 401:
        return unauthorised("cds-services")
    return json_response(response, status)


@router.post("/cds-services/{service_id}/feedback")
async def feedback(service_id: str, request: Request, state: State) -> Response:
    started = time.perf_counter()
    body: dict[str, Any] | None = None
    caller = Caller.anonymous()
    try:
        state.refresh()
        offered = pgx_offered(state.config, service_id) or news2_service.offered(state.config, service_id)
        if service_id not in state.scorers and not offered:
            raise HookError(404, f"no CDS service '{service_id}' here; GET /cds-services lists the services")
        caller = await authenticate(state, request, state.config.service_url(service_id))
        body = parse_body(await request.body())
        stored = _store_feedback(state, service_id, body, caller)
        status, response = 200, {}
        event_note = f"{stored} feedback item(s) stored"
    except HookError as e:
        status, response, event_note = e.status, ({} if e.status == 401 else {"error": e.message}), e.message
    await record_call_async(
        state,
        event="feedback",
        service=service_id,
        started=started,
        status=status,
        caller=audit_caller(caller, request),
        request=request,
        error=None if status == 200 else event_note,
        details=audit.EntryDetails(input_sha256=audit.digest(body) if body is not None else None),
    )
    if status == 401:
        return unauthorised("cds-services")
    return json_response(response, status)


def now_of(request: Request) -> datetime:
    """The app's clock (a test may set one), else the time now in UTC."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


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
                "received": iso(datetime.now(UTC)),
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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)  # clinicians' words: PHI
    with os.fdopen(fd, "ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return len(rows)


__all__ = ["discovery", "now_of", "pgx_offered", "router"]
