"""The answer to one patient-view request, shared by the hook endpoint and the pages (which call as an EHR would):
the prefetch (or what is missing of it, fetched from ``fhirServer``), the score, the card and the PredictionRecord;
and for the monitor, the features the model saw (and the shadow challenger's score, when one is deployed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool

from medml.monitor.records import PredictionRecord, summarize_inputs
from medml.monitor.store import PredictionRow
from medml.registry import load_bundle
from medml.service import cards
from medml.service.auth import Caller
from medml.service.config import ServiceConfig
from medml.service.core import HookError, HookRequest, ServiceState, iso, log
from medml.service.deploy import Deployment
from medml.service.fhir_client import FhirFetchError, fetch_prefetch
from medml.service.scoring import Job, NotScored, PrefetchError, Scored, Scorer, collect


async def answer(
    state: ServiceState, scorer: Scorer, req: HookRequest, now: datetime, caller: Caller | None = None
) -> dict[str, Any]:
    """The cards (and system actions) for one checked hook request; writes the PredictionRecord of its score."""
    dep = scorer.deployment
    patient_id = req.patient_id
    # a prefetch key the EHR could not fill (an OperationOutcome in its place) counts as not prefetched
    prefetch: dict[str, Any] = {
        k: v
        for k, v in req.prefetch.items()
        if not (isinstance(v, dict) and v.get("resourceType") == "OperationOutcome")
    }
    absent = {k: q for k, q in scorer.templates.items() if k not in prefetch}
    if absent:
        prefetch.update(await _fetch(state, req, absent, caller))
    try:
        resources = collect({k: prefetch.get(k) for k in scorer.templates}, patient_id)
    except PrefetchError as e:
        raise HookError(400, str(e)) from None
    job = Job(patient_id, resources, req.encounter_id, now)
    result = await state.batchers[dep.service_id].score(job)
    if dep.shadow is not None and state.recorder is not None:
        shadow_score(state, dep, job, req.hook_instance)
    authenticated = state.config.auth == "jwt"
    model_card = f"{state.config.base_url}/models/{dep.name}/{dep.version}"
    if isinstance(result, NotScored):
        log.info("%s not scored for a patient: %s", dep.service_id, result.reason)
        if not result.insufficient:  # the model does not apply: no card
            return {"cards": []}
        shown = cards.not_scored_card(dep, result, model_card_url=model_card, authenticated=authenticated)
        state.remember_card(shown["uuid"], dep.service_id)
        return {"cards": [shown]}
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
            time=iso(now),
            score=result.risk,
            risk=result.category,
            inputs=inputs,
            index_time=iso(result.index_time),
            hook_instance=req.hook_instance,
        )
    )
    if state.recorder is not None:
        state.recorder.record(prediction_row(dep, result, job, req.hook_instance))
    return response


def prediction_row(
    dep: Deployment, result: Scored, job: Job, hook_instance: str | None, *, shadow: bool = False
) -> PredictionRow:
    """What the monitor keeps of one score: the features as the model saw them, the score and the deployed
    threshold (the warning threshold: the risk from which the card alerts)."""
    return PredictionRow(
        model=dep.name,
        version=dep.version,
        service=dep.service_id,
        patient=job.patient_id,
        encounter=result.encounter_id or job.encounter_id,
        time=job.now,
        index_time=result.index_time,
        score=result.risk,
        risk=result.category,
        threshold=dep.thresholds[0],
        features=result.features,
        shadow=shadow,
        hook_instance=hook_instance,
    )


def shadow_score(state: ServiceState, champion: Deployment, job: Job, hook_instance: str) -> None:
    """Score ``champion``'s challenger on the same request in the background (the champion's answer does not wait
    for it) and record its score as a shadow one; it never shows a card, and its failures are only logged."""
    task = asyncio.get_running_loop().create_task(_shadow(state, champion, job, hook_instance))
    running: set[asyncio.Task[None]] = state.resources.setdefault("shadow.tasks", set())
    running.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(running.discard)


async def _shadow(state: ServiceState, champion: Deployment, job: Job, hook_instance: str) -> None:
    challenger = champion.shadow
    assert challenger is not None and state.recorder is not None
    try:
        scorer = await run_in_threadpool(_shadow_scorer, state, challenger)
        result = (await run_in_threadpool(scorer.score_many, [job]))[0]
    except Exception:
        log.exception("the shadow %s of %s was not scored", challenger.model, champion.service_id)
        return
    if isinstance(result, Scored):
        state.recorder.record(prediction_row(challenger, result, job, hook_instance, shadow=True))


_shadow_lock = threading.Lock()


def _shadow_scorer(state: ServiceState, challenger: Deployment) -> Scorer:
    """The challenger's scorer, loaded once per deployment of it (in a worker thread: loading reads the bundle)."""
    with _shadow_lock:
        scorers: dict[str, Scorer] = state.resources.setdefault("shadow.scorers", {})
        scorer = scorers.get(challenger.service_id)
        if scorer is None or scorer.deployment != challenger:
            scorer = Scorer(challenger, load_bundle(challenger.model, state.settings))
            scorers[challenger.service_id] = scorer
        return scorer


async def _fetch(
    state: ServiceState, req: HookRequest, queries: Mapping[str, str], caller: Caller | None
) -> dict[str, Any]:
    """What the EHR did not prefetch, from its FHIR server; 412 when there is no server to ask, the server is not
    one the caller's EHR is allowed to name, or it fails."""
    if not req.fhir_server:
        raise HookError(
            412,
            f"prefetch lacks {sorted(queries)} and the request names no fhirServer to fetch them "
            "from; send the prefetch of the discovery document, or fhirServer and fhirAuthorization",
        )
    why_not = fhir_server_refused(state.config, caller, req.fhir_server)
    if why_not is not None:
        raise HookError(412, why_not)
    filled = {k: q.replace("{{context.patientId}}", req.patient_id) for k, q in queries.items()}
    assert state.http is not None
    try:
        return await fetch_prefetch(state.http, req.fhir_server, req.access_token, filled)
    except FhirFetchError as e:
        raise HookError(412, f"could not fetch what the service needs from fhirServer: {e}") from None


def _under(url: str, base: str) -> bool:
    """Whether ``url`` is ``base`` or below it: same scheme and host, and a path under base's (on a '/' boundary)."""
    u, b = urlsplit(url), urlsplit(base)
    if (u.scheme.lower(), u.netloc.lower()) != (b.scheme.lower(), b.netloc.lower()):
        return False
    path, root = u.path.rstrip("/") + "/", b.path.rstrip("/") + "/"
    return path.startswith(root)


def fhir_server_refused(config: ServiceConfig, caller: Caller | None, server: str) -> str | None:
    """Why the service will not fetch from ``server`` for this caller, or None. A signed call may name only a FHIR
    server listed for its issuer (``fhir_servers`` in service.yaml); with authentication off (a loopback demo),
    only a loopback server. Otherwise any signed request could make the service fetch from any address."""
    if config.auth != "jwt" or caller is None or not caller.authenticated:
        host = urlsplit(server).hostname or ""
        if host in ("localhost", "::1") or host.startswith("127."):
            return None
        return (
            f"fhirServer {server} is not on loopback; with authentication off the service fetches only from a "
            "FHIR server on this machine: turn authentication on and list the EHR's FHIR server in fhir_servers"
        )
    issuer = next((i for i in config.issuers if i.iss == caller.iss), None)
    allowed = issuer.fhir_servers if issuer is not None else ()
    if any(_under(server, base) for base in allowed):
        return None
    return (
        f"fhirServer {server} is not one the service may fetch from for {caller.iss}; add it to that issuer's "
        "fhir_servers in service.yaml if it is the EHR's FHIR server, or send the prefetch"
    )


__all__ = ["answer", "fhir_server_refused", "prediction_row", "shadow_score"]
