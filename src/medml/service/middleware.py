"""The service's own ASGI middleware: CORS for the API paths only, same-origin pages, and the audit guard.

- :class:`ScopedCORSMiddleware`: CORS headers (CDS Hooks 2.0: browser-based EHR clients) on the hook and image
  endpoints only. The pages show PHI and answer no other origin: :class:`SameOriginPages` refuses a request a
  browser marks as cross-site (``Sec-Fetch-Site``) or whose ``Origin`` is not the service's own, before anything is
  read or scored, and every page says ``Cross-Origin-Resource-Policy: same-origin``.
- :class:`AuditGuard` (outermost): every request that reaches the service leaves exactly one audit record with the
  status the client saw. A router writes its own record (:func:`medml.service.core.record_call`) and marks the
  request; a request answered before any router (413 over-size, 429 rate limit, 403 cross-site page, an unhandled
  error) gets its record here, once the status is known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("medml.service")

#: the scope key a call's audit state lives under: {"done": bool, "refused": (status, message) | None}
AUDIT_KEY = "medml.audit"
#: paths that are the API (CORS, bearer tokens); everything else but these is a page
API_PREFIXES = ("/cds-services", "/imaging", "/healthz", "/vitals")
#: requests that read nothing of a patient and are not audited: discovery, listings, health, CORS preflights
UNAUDITED = {("GET", "/cds-services"), ("GET", "/imaging"), ("GET", "/healthz")}


def audit_state(scope: Scope) -> dict[str, Any] | None:
    """The audit guard's state of this request, or None outside the guard (e.g. an app without it in a test)."""
    state: dict[str, Any] | None = scope.get(AUDIT_KEY)
    return state


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ScopedCORSMiddleware:
    """Starlette's CORS middleware for the paths under ``prefixes``; other paths pass through with no CORS header."""

    def __init__(
        self,
        app: ASGIApp,
        prefixes: Sequence[str],
        allow_origins: Sequence[str],
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        max_age: int,
    ) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.cors = CORSMiddleware(
            app, allow_origins=allow_origins, allow_methods=allow_methods, allow_headers=allow_headers, max_age=max_age
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self.prefixes):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class SameOriginPages:
    """403 for a page request from another site: the browser's ``Sec-Fetch-Site`` says cross-site (or same-site,
    another origin), or an ``Origin`` header names an origin other than the service's (``base_url``) or the
    request's own. Requests without either header (curl, the EHR's server) pass."""

    def __init__(self, app: ASGIApp, base_url: str) -> None:
        self.app = app
        parts = urlsplit(base_url)
        self.own = f"{parts.scheme}://{parts.netloc}".lower()

    def _foreign(self, scope: Scope) -> str | None:
        site = _header(scope, b"sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return f"the browser marks the request {site}"
        origin = _header(scope, b"origin")
        if origin is None:
            return None
        host = _header(scope, b"host") or ""
        mine = {self.own, f"{scope.get('scheme', 'http')}://{host}".lower()}
        return None if origin.lower() in mine else f"it comes from the origin {origin}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        why = self._foreign(scope)
        if why is not None:
            body = (
                "<!doctype html><title>Refused</title><p>These pages show patient data and answer only "
                f"themselves: {why}. Open the page from the service's own address.</p>"
            ).encode()
            state = audit_state(scope)
            if state is not None:
                state["refused"] = (403, f"page refused: {why}")
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cross-origin-resource-policy", b"same-origin"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def same_origin_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"cross-origin-resource-policy", b"same-origin")]
            await send(message)

        await self.app(scope, receive, same_origin_only)


def describe(method: str, path: str) -> tuple[str, str | None, str | None]:
    """What an audit record calls a request it did not reach a router with: (event, service, patient)."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "cds-services" and len(parts) >= 2:
        return ("feedback" if len(parts) >= 3 and parts[2] == "feedback" else "hook"), parts[1], None
    if parts[0] == "imaging" and len(parts) >= 2:
        return "imaging", parts[1], None
    if parts[0] == "vitals":
        return "vitals", "vitals-observations", None
    if parts[0] == "patients" and len(parts) >= 2:
        return "page", None, "/".join(parts[1:])
    return "page", None, None


class AuditGuard:
    """One audit record per request, with the status the client saw (see the module docstring).

    ``write(event, service, patient, status, error, address, duration_ms, caller, route)`` writes the record of a
    request no router recorded; its failure is logged and never changes the answer already sent.
    """

    def __init__(self, app: ASGIApp, write: Callable[..., None]) -> None:
        self.app = app
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or method == "OPTIONS" or (method, path.rstrip("/") or "/") in UNAUDITED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"done": False, "refused": None}
        scope[AUDIT_KEY] = state
        sent: list[int] = []

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            if not state["done"]:
                status = sent[0] if sent else 500
                refused = state["refused"]
                error = refused[1] if refused else (None if status < 400 else f"answered {status} before the service")
                event, service, patient = describe(method, path)
                client = scope.get("client")
                try:
                    self.write(
                        event=event,
                        service=service,
                        patient=patient,
                        status=status,
                        error=error,
                        address=str(client[0]) if client else None,
                        duration_ms=(time.perf_counter() - started) * 1000,
                        # set by the access check (medml.service.access): who called, the route they read
                        caller=state.get("caller"),
                        route=state.get("route"),
                    )
                except Exception:  # the answer has left; the log must say a record could not be written
                    log.exception("could not write the audit record of %s %s (status %d)", method, path, status)


__all__ = ["AUDIT_KEY", "AuditGuard", "SameOriginPages", "ScopedCORSMiddleware", "audit_state", "describe"]
