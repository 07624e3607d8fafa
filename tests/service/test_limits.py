"""Body-size and rate limits: a unit test of the token bucket on a fake clock, and the middlewares under uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from medml.service.limits import BodySizeLimitMiddleware, RateLimiter, RateLimitMiddleware, client_address


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    return app


# --- RateLimiter --------------------------------------------------------------------------------------------------


def test_bucket_allows_the_burst_then_refuses_until_a_token_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock)  # one token a second
    assert limiter.allow("a") == (True, 0.0)
    assert limiter.allow("a") == (True, 0.0)
    allowed, retry = limiter.allow("a")
    assert not allowed and retry == pytest.approx(1.0)
    clock.now += 0.25
    allowed, retry = limiter.allow("a")
    assert not allowed and retry == pytest.approx(0.75)
    clock.now += 0.75
    assert limiter.allow("a") == (True, 0.0)
    assert not limiter.allow("a")[0]


def test_long_run_rate_is_rate_per_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, burst=1, clock=clock)
    allowed = 0
    for _ in range(6000):  # one attempt every 10 ms for a minute
        allowed += limiter.allow("ehr")[0]
        clock.now += 0.01
    assert allowed == pytest.approx(120, abs=1)


def test_keys_have_their_own_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=1, clock=clock)
    assert limiter.allow("10.0.0.1")[0]
    assert not limiter.allow("10.0.0.1")[0]
    assert limiter.allow("10.0.0.2")[0]
    assert limiter.allow(("iss", "https://ehr.example/"))[0]


def test_default_burst_is_a_minutes_allowance() -> None:
    limiter = RateLimiter(5, clock=FakeClock())
    assert [limiter.allow("a")[0] for _ in range(6)] == [True] * 5 + [False]


def test_idle_buckets_are_forgotten_and_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock, max_keys=50)
    for i in range(200):
        limiter.allow(f"client-{i}")
    assert len(limiter) == 50
    clock.now += 2.0  # every bucket is full again: keeping any would change nothing
    limiter.allow("late")
    assert len(limiter) == 1
    # a forgotten client starts with a full bucket, as it would have had anyway
    assert limiter.allow("client-199") == (True, 0.0)


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst=0)


def test_client_address_is_the_peer_host() -> None:
    assert client_address({"type": "http", "client": ("10.1.2.3", 5555)}) == "10.1.2.3"
    assert client_address({"type": "http", "client": None}) == "unknown"


# --- middlewares under uvicorn ------------------------------------------------------------------------------------


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@contextmanager
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at ERROR (an exception escaping the app) inside the block; enter it after the server
    started, since uvicorn's logging set-up replaces the handlers of its loggers."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_declared_oversize_body_gets_413_and_the_server_keeps_serving(
    serve: Callable[[Any], str], client: httpx.Client
) -> None:
    url = serve(BodySizeLimitMiddleware(echo_app(), max_body_bytes=1000))
    response = client.post(f"{url}/echo", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert "1001 bytes" in error and "1000 bytes" in error and "max_body_bytes" in error
    ok = client.post(f"{url}/echo", content=b"x" * 1000)
    assert ok.status_code == 200 and ok.json() == {"received": 1000}
    assert client.get(f"{url}/ping").json() == {"ok": "yes"}


def test_streamed_oversize_body_is_counted_and_refused(serve: Callable[[Any], str], client: httpx.Client) -> None:
    url = serve(BodySizeLimitMiddleware(echo_app(), max_body_bytes=1000))

    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"y" * 400

    small = client.post(f"{url}/echo", content=chunks(2))  # chunked transfer encoding: no Content-Length
    assert small.request.headers.get("transfer-encoding") == "chunked"
    assert small.status_code == 200 and small.json() == {"received": 800}
    with uvicorn_errors() as errors:
        big = client.post(f"{url}/echo", content=chunks(5))
        after = client.post(f"{url}/echo", content=chunks(1))
    assert big.status_code == 413
    assert "at least" in big.json()["error"] and "max_body_bytes" in big.json()["error"]
    assert after.json() == {"received": 400}
    assert [r.getMessage() for r in errors] == []  # the app's failure on the cut body is not a server error


def test_burst_over_the_limit_gets_429_with_retry_after(serve: Callable[[Any], str], client: httpx.Client) -> None:
    limiter = RateLimiter(6, burst=3)  # one token every 10 s: the test cannot refill by accident
    url = serve(RateLimitMiddleware(echo_app(), limiter))
    statuses = [client.get(f"{url}/ping").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = client.get(f"{url}/ping")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert "too many requests" in refused.json()["error"]
    assert "retry after" in refused.json()["error"]


def test_rate_limit_key_can_be_chosen(serve: Callable[[Any], str], client: httpx.Client) -> None:
    limiter = RateLimiter(6, burst=1)
    url = serve(RateLimitMiddleware(echo_app(), limiter, key=lambda scope: scope["path"]))
    assert client.get(f"{url}/ping").status_code == 200
    assert client.get(f"{url}/ping").status_code == 429
    assert client.post(f"{url}/echo", content=b"{}").status_code == 200  # another path: another bucket
