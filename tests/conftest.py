"""Shared test harness: an HTML file opened from disk in headless Chromium with every network request blocked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loopback import running

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class OfflinePage:
    """A loaded page and what it tried: requests other than file:// (blocked), failed requests, console errors."""

    page: Any
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture()
def open_offline() -> Iterator[Callable[..., OfflinePage]]:
    """``open_offline(path, console=("error",))`` -> OfflinePage; the browser closes after the test."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (run `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

        def opener(path: Path, console: tuple[str, ...] = ("error",)) -> OfflinePage:
            page = browser.new_page(viewport=VIEWPORT)
            seen = OfflinePage(page)

            def only_local(route: Any) -> None:
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    seen.external.append(route.request.url)
                    route.abort()

            page.route("**/*", only_local)
            page.on("console", lambda m: seen.errors.append(m.text) if m.type in console else None)
            page.on("pageerror", lambda e: seen.errors.append(str(e)))
            page.on("requestfailed", lambda r: seen.failed.append(r.url))
            page.goto(path.as_uri(), wait_until="load")
            return seen

        try:
            yield opener
        finally:
            browser.close()


@pytest.fixture()
def serve() -> Iterator[Callable[[Any], str]]:
    """Start an ASGI app under uvicorn on 127.0.0.1 (a free port); yields a starter; stops every server after."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(running(app))
