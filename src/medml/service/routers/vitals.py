"""The device gateway's endpoint: ``POST /vitals/observations`` takes vital-sign Observations and scores NEWS2 as they
arrive, with the same streaming scorer as `medml vitals watch` (:class:`~medml.vitals.stream.EarlyWarningStream`).

The body is FHIR R4: one Observation, a Bundle of them (a set sent together is scored once per patient), or NDJSON
(one resource per line; ``Content-Type: application/fhir+ndjson`` or ``application/x-ndjson``, or any body that is
not one JSON document). Calls are verified like hook calls: the sender's signed JWT, ``aud`` this endpoint's URL
(``base_url/vitals/observations``), and a SMART scope that grants creating Observations (``system/Observation.c``,
or ``.cruds``, ``.write``, ``system/*.c``); a refused call is a bare 401, a token without the scope a 403.

One scorer per service process keeps each patient's latest valid value of each measurement; each new observation
is scored, and an escalation to a higher RCP band raises an alert, de-duplicated as the stream does (no second
alert for the same band of a patient within an hour). Each alert is one record in the audit log beside the call's
own. The answer counts every observation used or not (by reason: no subject, unit refused, implausible, not JSON,
duplicate, out of order, ...), names what a sender must fix on one line each, and lists the alerts. A body that is
not FHIR at all (empty, no line of it JSON, a JSON array) is a 400. With several uvicorn workers each keeps its own
state: send one patient's observations to one worker (or run one worker for the gateway).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medml.service import audit, vitals_audit
from medml.service.auth import Caller
from medml.service.core import (
    HookError,
    ServiceState,
    audit_caller,
    authenticate,
    failure,
    json_response,
    record_call_async,
    state_of,
    unauthorised,
)
from medml.service.scopes import ScopeError, parse_scopes
from medml.vitals.stream import ALERTS, CORRECTED, HELD_BACK, LINES, NOT_JSON, USED, EarlyWarningStream, StreamConfig

__all__ = ["PATH", "SERVICE", "Gateway", "Intake", "endpoint_url", "router"]

PATH = "/vitals/observations"
#: what the audit records of the endpoint name as their service
SERVICE = "vitals-observations"
NDJSON_TYPES = ("application/fhir+ndjson", "application/x-ndjson", "application/ndjson")
#: the most problem lines one answer lists (the counts hold them all)
MAX_PROBLEMS = 100
#: counts that are not observations refused
_NOT_REFUSED = frozenset({LINES, USED, ALERTS, HELD_BACK, CORRECTED})
INTENDED_USE = (
    "Decision support, not a diagnosis: NEWS2 (RCP 2017) on each patient's latest valid vital signs; an alert asks "
    "a clinician to review the patient. Not validated under 16 years or in pregnancy."
)
_FIX = "POST FHIR R4 Observations: one Observation, a Bundle of them, or NDJSON (one resource per line)"

router = APIRouter()
State = Annotated[ServiceState, Depends(state_of)]


def endpoint_url(base_url: str) -> str:
    """The endpoint's URL, which the sender's JWT must carry as ``aud``."""
    return f"{base_url}{PATH}"


@dataclass(frozen=True)
class Intake:
    """What one POST did: the stream's counts for it, the problem lines and the alerts raised (as JSON)."""

    counts: dict[str, int]
    problems: list[str]
    alerts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        refused = {k: n for k, n in self.counts.items() if k not in _NOT_REFUSED and n}
        shown = self.problems[:MAX_PROBLEMS]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS} more problems (counted in not_used)")
        return {
            "accepted": self.counts.get(USED, 0),
            "not_used": refused,
            "counts": {k: n for k, n in self.counts.items() if n},
            "problems": shown,
            "alerts": self.alerts,
            "alerts_held_back": self.counts.get(HELD_BACK, 0),
            "score": vitals_audit.NEWS2_MODEL,
            "intended_use": INTENDED_USE,
        }


class Gateway:
    """The service process's streaming scorer, fed one request at a time (a lock keeps each request's counts its
    own). ``clock`` gives seconds since the epoch, for refusing observations dated in the future."""

    def __init__(self, clock: Callable[[], float], config: StreamConfig | None = None) -> None:
        self._problems: list[str] = []
        # every problem of every request is reported to its sender: no limit across the process's life
        self.stream = EarlyWarningStream(
            config or StreamConfig(max_messages_per_kind=sys.maxsize), clock=clock, on_problem=self._problems.append
        )
        self._lock = threading.Lock()

    def take(self, raw: bytes, content_type: str) -> Intake:
        """Score the observations of one request body; HookError 400 when the body is not FHIR at all."""
        with self._lock:
            self._problems.clear()
            before = self.stream.counts()
            alerts = [a.to_dict() for a in self._feed(raw, content_type)]
            after = self.stream.counts()
            problems = list(self._problems)
        counts = {k: n - before.get(k, 0) for k, n in after.items()}
        if counts.get(LINES, 0) and counts.get(NOT_JSON, 0) == counts[LINES]:
            raise HookError(400, f"the body is not JSON ({problems[0] if problems else 'no line parses'}); {_FIX}")
        return Intake(counts, problems, alerts)

    def _feed(self, raw: bytes, content_type: str) -> list[Any]:
        if not raw.strip():
            raise HookError(400, f"the body is empty; {_FIX}")
        ndjson = content_type.split(";")[0].strip().lower() in NDJSON_TYPES
        if not ndjson:
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError:
                document = None  # not one JSON document: NDJSON, or broken JSON (each line is then reported)
            if isinstance(document, dict):
                return self.stream.feed(raw)
            if document is not None:
                raise HookError(400, f"the body is a JSON {type(document).__name__}, not a FHIR resource; {_FIX}")
        out: list[Any] = []
        for number, line in enumerate(raw.splitlines(), start=1):
            out += self.stream.feed(line, number)
        return out


def gateway(state: ServiceState, request: Request) -> Gateway:
    """The process's gateway, made on the first call (its clock is the app's: a test may set one)."""
    found = state.resources.get("vitals.gateway")
    if found is None:
        app_clock = getattr(request.app.state, "clock", None)

        def clock() -> float:
            return (app_clock() if app_clock is not None else datetime.now(UTC)).timestamp()

        found = state.resources["vitals.gateway"] = Gateway(clock)
    gate: Gateway = found
    return gate


def check_scope(caller: Caller) -> None:
    """403 unless the verified token grants creating Observations (system or user context)."""
    if not caller.authenticated:
        return  # auth: off, a loopback demo
    try:
        scopes = parse_scopes(caller.scope or "")
    except ScopeError as e:
        raise HookError(403, f"the token's scope is not valid: {e}") from None
    if not any(scopes.allows(context, "Observation", "create") for context in ("system", "user")):
        raise HookError(
            403,
            "the token does not grant creating Observations; the device gateway's token needs the scope "
            "system/Observation.c (or .cruds)",
        )


@router.post(PATH)
async def observations(request: Request, state: State) -> Response:
    started = time.perf_counter()
    caller = Caller.anonymous()
    digest: str | None = None
    try:
        caller = await authenticate(state, request, endpoint_url(state.config.base_url))
        check_scope(caller)
        raw = await request.body()
        digest = hashlib.sha256(raw).hexdigest()
        intake = await run_in_threadpool(gateway(state, request).take, raw, request.headers.get("content-type", ""))
        response, status = intake.to_dict(), 200
    except Exception as e:  # the sender gets a message or a reference; the call is audited either way
        response, status = failure(e, "scoring vital-sign observations", "the observations were not scored")
        intake = None
    who = audit_caller(caller, request)
    if intake is not None and intake.alerts:
        entries = [
            vitals_audit.news2_alert_entry(a, service=SERVICE, caller=who, input_sha256=digest) for a in intake.alerts
        ]
        await run_in_threadpool(vitals_audit.append_all, state.audit, entries)
    await record_call_async(
        state,
        event="vitals",
        service=SERVICE,
        started=started,
        status=status,
        caller=who,
        request=request,
        response=response if status == 200 else None,
        model=vitals_audit.NEWS2_MODEL if status == 200 else None,
        error=None if status == 200 else response.get("error", "unauthorised"),
        details=audit.EntryDetails(input_sha256=digest),
    )
    if status == 401:
        return unauthorised("vitals")
    return json_response(response, status)
