"""The report opened from disk in headless Chromium: nothing fetched, no errors, every plot drawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_html import HEADINGS

from medml.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (run `make chromium`)"),
]


def check_in_chromium(report: Path, tmp_path: Path, n_plots: int) -> None:
    """Open ``report`` from disk with every non-file request blocked; assert it renders cleanly."""
    from playwright.sync_api import sync_playwright

    external: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def only_local(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", only_local)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(report.as_uri(), wait_until="load")

            svgs = page.locator("svg.plot")
            assert svgs.count() == n_plots
            for k in range(svgs.count()):
                svg = svgs.nth(k)
                box = svg.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100, k
                assert svg.locator("path").count() > 10, k
                assert svg.locator("use").count() > 0, k  # glyphs of the axis labels resolve to their defs

            assert page.get_by_role("heading", level=1).is_visible()
            for heading in HEADINGS:
                assert page.get_by_role("heading", level=2, name=heading, exact=True).is_visible(), heading
            # nothing wider than the window: tables wrap or scroll inside their own box
            assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
        finally:
            browser.close()

    assert errors == []
    assert external == [] and failed == []


def test_report_renders_offline_in_chromium(inputs, tmp_path):
    check_in_chromium(write_report(inputs, tmp_path / "report.html"), tmp_path, n_plots=5)


def test_a_trained_models_report_renders_in_chromium(tmp_path):
    """The report `medml train` writes for a real model on real data (Cleveland, externally validated)."""
    from medml.config import Settings, get_settings
    from medml.data.datasets import load_dataset
    from medml.workflow import TrainConfig, train

    settings = Settings(home=tmp_path / "home", data_root=get_settings().data_root)
    external = {k: load_dataset(k) for k in ("heart-hungary", "heart-va")}
    result = train(load_dataset("heart-cleveland"),
                   TrainConfig(model="lgbm", budget_seconds=2, max_trials=5, n_boot=100), settings,
                   external=external)
    check_in_chromium(result.report_path, tmp_path, n_plots=5)
