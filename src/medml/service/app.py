"""The service's composition root: the state, the middleware and the routers, in one FastAPI app.

What the app serves lives in :mod:`medml.service.routers` (CDS Hooks, image services, web pages), what they share in
:mod:`medml.service.core`. ``medml serve`` runs :func:`app_from_env` in each uvicorn worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from medml.config import Settings
from medml.monitor.recorder import Recorder
from medml.monitor.records import PredictionLog
from medml.monitor.store import MonitorStore
from medml.service import access, audit
from medml.service.auth import JwtVerifier
from medml.service.config import ServiceConfig
from medml.service.core import HookError, ServiceState, error_response, log, record_unrouted
from medml.service.limits import BodySizeLimitMiddleware, PathLimit, RateLimiter, RateLimitMiddleware
from medml.service.middleware import API_PREFIXES, AuditGuard, SameOriginPages, ScopedCORSMiddleware
from medml.service.routers import hooks, images, pages, vitals


def create_app(
    settings: Settings,
    config: ServiceConfig,
    *,
    verifier: JwtVerifier | None = None,
    audit_sink: audit.AuditSink | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The FastAPI app; ``verifier``, ``audit_sink`` and ``clock`` (-> aware datetime) may be given for tests."""
    config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = ServiceState(
        settings=settings,
        config=config,
        verifier=verifier or JwtVerifier(config),
        audit=audit_sink or audit.JsonlAuditLog(config.audit_path),
        predictions=PredictionLog(config.predictions_path),
        per_caller=RateLimiter(config.rate_per_minute),
        recorder=monitor_recorder(settings, config),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.refresh()
        try:
            async with httpx.AsyncClient(timeout=config.fhir_timeout_s, follow_redirects=False) as client:
                state.http = client
                yield
        finally:
            state.http = None
            pages.close(state)
            if state.recorder is not None:
                state.recorder.close()

    app = FastAPI(title="medml CDS Hooks service", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.medml = state
    app.state.clock = clock
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
    # CORS (CDS Hooks 2.0: services called from browser-based clients) on the API only; preflights need no token.
    # The pages show PHI: no CORS, and a cross-site page request is refused before anything is read.
    app.add_middleware(
        ScopedCORSMiddleware,
        prefixes=API_PREFIXES,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    if config.pages_on:
        app.add_middleware(SameOriginPages, base_url=config.base_url)
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(config.rate_per_minute * 4))
    # outermost: one audit record per request, with the status the client saw
    app.add_middleware(AuditGuard, write=lambda **record: record_unrouted(state, **record))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s", ref, request.url.path)
        return error_response(
            500,
            f"internal error (reference {ref}); the request was not scored. Tell the medml team "
            "the reference; the service keeps serving",
        )

    app.include_router(hooks.router)
    app.include_router(images.router)
    access.install(app)  # GET /audit for the auditor; the pages' 401 and 403 (issue 18)
    app.include_router(vitals.router)  # the device gateway: POST /vitals/observations
    if config.pages_on:
        pages.open_store(state)
        app.include_router(pages.router)
    return app


def monitor_recorder(settings: Settings, config: ServiceConfig) -> Recorder | None:
    """What records each score in the monitoring store (None with ``monitor: false``): its file, owner-only, under
    MEDML_HOME unless service.yaml names another, and its retention."""
    if not config.monitor:
        return None
    retention = config.monitor_retention_days or settings.monitor_retention_days
    return Recorder(MonitorStore(config.monitor_store or settings.monitor_store), retention_days=retention)


def service_logging() -> None:
    """medml's own log lines (refused calls and why, errors with their reference) to stderr beside uvicorn's."""
    logger = logging.getLogger("medml")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def app_from_env() -> FastAPI:
    """The app `medml serve` runs in each worker: settings from MEDML_HOME and the MEDML_SERVICE_* variables."""
    import os

    from medml.config import get_settings, private_files
    from medml.service.config import load_config

    private_files()  # each uvicorn worker: the feedback, audit, prediction and cache files it writes are 0600
    service_logging()
    settings = get_settings()
    settings.ensure_home()
    path = os.environ.get("MEDML_SERVICE_CONFIG")
    config = load_config(
        settings,
        Path(path) if path else None,
        base_url=os.environ.get("MEDML_SERVICE_BASE_URL"),
        auth=os.environ.get("MEDML_SERVICE_AUTH"),
    )
    return create_app(settings, config)


__all__ = ["HookError", "ServiceState", "app_from_env", "create_app"]
