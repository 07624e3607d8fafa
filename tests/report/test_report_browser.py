"""The report opened from disk in headless Chromium: nothing fetched, no errors, every plot drawn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_report_html import HEADINGS

from medml.report import write_report

pytestmark = pytest.mark.browser


def check_in_chromium(open_offline: Callable[..., Any], report: Path, tmp_path: Path, n_plots: int) -> None:
    """Open ``report`` from disk with every non-file request blocked; assert it renders cleanly."""
    seen = open_offline(report)
    page = seen.page

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
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000

    assert seen.errors == []
    assert seen.external == [] and seen.failed == []


def test_report_renders_offline_in_chromium(inputs, tmp_path, open_offline):
    check_in_chromium(open_offline, write_report(inputs, tmp_path / "report.html"), tmp_path, n_plots=5)


def test_a_trained_models_report_renders_in_chromium(tmp_path, open_offline):
    """The report `medml train` writes for a real model on real data (Cleveland, externally validated)."""
    from medml.config import Settings, get_settings
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train

    settings = Settings(home=tmp_path / "home", data_root=get_settings().data_root)
    external = {k: load_dataset(k) for k in ("heart-hungary", "heart-va")}
    result = train(
        load_dataset("heart-cleveland"),
        TrainConfig(model="lgbm", budget_seconds=2, max_trials=5, n_boot=100),
        settings,
        external=external,
    )
    check_in_chromium(open_offline, result.report_path, tmp_path, n_plots=5)
