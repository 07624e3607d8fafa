"""Limits that keep one caller from exhausting the service: the size of a request body and the rate of requests.

Both middlewares are plain ASGI (no Starlette ``BaseHTTPMiddleware``, which buffers and costs a task per request)
and answer a refused request themselves with a JSON ``{"error": ...}`` that says what was wrong and what to do.
:class:`RateLimiter` is usable on its own, e.g. keyed by a verified JWT's ``iss``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimitMiddleware", "PathLimit", "RateLimitMiddleware", "RateLimiter", "client_address"]

log = logging.getLogger(__name__)


async def _send_error(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _refused(scope: Scope, status: int, message: str) -> None:
    """Tell the audit guard (if any) that this request was refused here, with the status the client gets."""
    state = scope.get("medml.audit")
    if state is not None:
        state["refused"] = (status, message)


@dataclass(frozen=True)
class PathLimit:
    """A body size limit of its own for the paths under ``prefix`` (e.g. DICOM uploads), and what to do above it."""

    prefix: str
    max_bytes: int
    hint: str


class BodySizeLimitMiddleware:
    """Answers 413 when a request body is larger than ``max_body_bytes`` (or the ``per_path`` limit of its path).

    A declared ``Content-Length`` over the limit is refused before any of the body is read; a chunked or
    under-declared body is counted as it arrives and refused when the count passes the limit (the app then sees
    the client as disconnected, and whatever it answers is dropped). The connection is closed after a 413, since
    the rest of the body was not read.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, per_path: Sequence[PathLimit] = ()) -> None:
        for limit in (max_body_bytes, *(p.max_bytes for p in per_path)):
            if limit < 1:
                raise ValueError(f"a body size limit must be at least 1, got {limit}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.per_path = tuple(per_path)

    def _limit(self, path: str) -> PathLimit:
        for limit in self.per_path:
            if path.startswith(limit.prefix):
                return limit
        return PathLimit(
            "/",
            self.max_body_bytes,
            "send a smaller request (fewer prefetch resources), or raise max_body_bytes in service.yaml",
        )

    @staticmethod
    def _message(limit: PathLimit, size: str) -> str:
        return f"the request body is {size}, more than the {limit.max_bytes} bytes this service accepts; {limit.hint}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = [(b"connection", b"close")]
        limit = self._limit(str(scope.get("path", "")))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    _refused(scope, 400, "the Content-Length header is not a number")
                    await _send_error(
                        send, 400, "the Content-Length header is not a number; send a valid request", close
                    )
                    return
                if declared > limit.max_bytes:
                    _refused(scope, 413, self._message(limit, f"{declared} bytes"))
                    await _send_error(send, 413, self._message(limit, f"{declared} bytes"), close)
                    return
        received = 0
        refused = answered = app_started = False

        async def counting_receive() -> Message:
            nonlocal received, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    refused = True
                    _refused(scope, 413, self._message(limit, f"at least {received} bytes"))
                    if not app_started:
                        answered = True
                        await _send_error(send, 413, self._message(limit, f"at least {received} bytes"), close)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if answered:
                return  # we have answered 413; the app's reply to the "disconnect" is dropped
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception as e:
            if not answered:
                raise
            # the app failed on the body we cut short (e.g. Starlette's ClientDisconnect); the client has its 413
            log.debug("after a 413 the app raised %s: %s", type(e).__name__, e)


class RateLimiter:
    """A token bucket per key: ``rate_per_minute`` calls a minute on average, up to ``burst`` at once.

    ``burst`` defaults to ``rate_per_minute`` (a minute's allowance). Buckets idle long enough to be full again
    are forgotten (that changes nothing), and past ``max_keys`` the least recently used are dropped, so memory
    stays bounded. Thread-safe.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute}")
        self.rate_per_minute = rate_per_minute
        self.burst = burst if burst is not None else max(1, math.ceil(rate_per_minute))
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._per_s = rate_per_minute / 60.0
        self._refill_s = self.burst / self._per_s
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, time of last update); ordered oldest update first
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> tuple[bool, float]:
        """Take one token from ``key``'s bucket: (True, 0.0), or (False, seconds until a token is there)."""
        with self._lock:
            now = self._clock()
            self._forget_idle(now)
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self._per_s)
            if tokens >= 1.0 - 1e-9:  # float sums of elapsed time fall a hair short of a whole token
                self._buckets[key] = (max(0.0, tokens - 1.0), now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / self._per_s

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            key, (_, last) = next(iter(self._buckets.items()))
            if now - last < self._refill_s and len(self._buckets) < self._max_keys:
                break
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(scope: Scope) -> str:
    """The peer's IP address (behind a proxy, run uvicorn with ``--proxy-headers`` so that this is the client's)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """Answers 429 with ``Retry-After`` when a client (by default its address) calls faster than ``limiter`` allows."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, key: Callable[[Scope], Hashable] = client_address) -> None:
        self.app = app
        self.limiter = limiter
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed, retry_after = self.limiter.allow(self.key(scope))
        if allowed:
            await self.app(scope, receive, send)
            return
        seconds = max(1, math.ceil(retry_after))
        _refused(scope, 429, f"rate limit: too many requests from {self.key(scope)}")
        await _send_error(
            send,
            429,
            f"too many requests from this client (the limit is "
            f"{self.limiter.rate_per_minute:g} a minute, {self.limiter.burst} at once); retry after "
            f"{seconds} s",
            [(b"retry-after", str(seconds).encode())],
        )
