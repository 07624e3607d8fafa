"""`medml monitor report` and the service's /monitor page, opened in headless Chromium.

A logistic model of the Cleveland heart patients (with its reference profile) scores 300 Cleveland patients and
then the 200 VA patients (a real site shift); the outcomes are loaded afterwards. The reference numbers are
scikit-learn's AUROC of each window's patients, and the windows are known: 0-2 Cleveland, 3-4 VA.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medml.config import Settings, get_settings
from medml.data.splits import patient_split
from medml.models import make_model
from medml.monitor.profile import PROFILE_KEY
from medml.monitor.store import MonitorStore, OutcomeRow, PredictionRow
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import data_hash, development_profile
from medml.registry import BundleMetadata, ModelBundle, register
from medml.service.app import create_app
from medml.service.config import ServiceConfig

MEDML = [sys.executable, "-m", "medml.cli"]
CHROMIUM = Path("/usr/bin/chromium")
WINDOW = 100
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _bundle(name: str, *, profile: bool) -> ModelBundle:
    ds = load_dataset("heart-cleveland")
    split = patient_split(ds.groups, ds.binary_target.values, seed=0)
    train = ds.subset(split.train)
    model = make_model("logistic", ds.features, {}, seed=0).fit(train.X, train.binary_target.values)
    parts = (ds.subset(split.calibration), ds.subset(split.test))
    extra = {PROFILE_KEY: development_profile(model, parts, seed=0).to_dict()} if profile else {}
    md = BundleMetadata(
        name=name,
        model_kind="logistic",
        dataset=ds.name,
        task=ds.task,
        target=ds.binary_target.name,
        intended_use="Tests only: not for clinical use.",
        population=ds.population,
        data_hash=data_hash(ds),
        seed=0,
        extra={"fractions": [0.6, 0.2, 0.2], **extra},
    )
    return ModelBundle(model, list(ds.features), md)


def _features(X: pd.DataFrame, i: int) -> dict[str, Any]:
    row = X.iloc[i]
    return {k: (None if pd.isna(v) else (v if isinstance(v, str) else float(v))) for k, v in row.items()}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("monitor-page")
    settings = Settings(home=root / "home", data_root=get_settings().data_root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        bundle = register(_bundle("heart", profile=True), settings)
        register(_bundle("heart-old", profile=False), settings)
        cleveland, va = load_dataset("heart-cleveland"), load_dataset("heart-va")
        stream = [(cleveland, i) for i in range(300)] + [(va, i) for i in range(len(va))]
        store = MonitorStore(settings.monitor_store)
        rows, outcomes, ys, scores = [], [], [], []
        for k, (ds, i) in enumerate(stream):
            X = ds.X.iloc[[i]]
            p = float(bundle.predict_proba(X)[0, 1])
            pid = str(ds.groups[i])
            when = START + timedelta(hours=k)
            for name in ("heart", "heart-old"):
                rows.append(PredictionRow(name, 1, "heart", pid, when, p, _features(ds.X, i), threshold=0.5))
            outcomes.append(OutcomeRow(pid, "cad", float(ds.binary_target.values[i]), time=when + timedelta(days=3)))
            ys.append(int(ds.binary_target.values[i]))
            scores.append(p)
        store.record(rows)
        store.load_outcomes(outcomes)
        yield {"settings": settings, "store": store, "y": np.array(ys), "scores": np.array(scores)}


def run(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(settings.home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=600)


def _counts(store: MonitorStore) -> tuple[int, int]:
    return int(store.models()["n"].sum()), len(store.outcomes())


@pytest.mark.browser
def test_the_report_shows_the_site_shift_and_the_realised_auroc_per_window(
    home: dict[str, Any], tmp_path: Path, open_offline: Callable[..., Any]
) -> None:
    out = tmp_path / "heart-monitor.html"
    proc = run(["monitor", "report", "heart@1", "--window", str(WINDOW), "--out", str(out)], home["settings"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "heart@1: 500 predictions in 5 windows" in proc.stdout
    seen = open_offline(out)
    page = seen.page
    assert seen.external == [] and seen.failed == [] and seen.errors == []
    assert page.locator("svg.monitor-chart").count() == 4
    rows = page.locator("table.monitor-windows tbody tr")
    assert rows.count() == 5
    alarmed = [i for i in range(5) if "alarm" in (rows.nth(i).get_attribute("class") or "")]
    assert {3, 4} <= set(alarmed)  # the VA windows alarm
    y, s = home["y"], home["scores"]
    for w in range(5):
        cells = rows.nth(w).locator("td")
        shown = float(re.match(r"[0-9.]+", cells.nth(8).inner_text()).group())  # realised AUROC
        rows_w = slice(w * WINDOW, (w + 1) * WINDOW)
        assert shown == pytest.approx(roc_auc_score(y[rows_w], s[rows_w]), abs=5e-4)
    text = page.inner_text("body")
    assert "Intended use" in text and "Tests only" in text and "Decision support, not a diagnosis" in text
    assert "No alarm in any window" not in text


def test_a_model_without_a_reference_profile_gets_one_line_and_no_report(home: dict[str, Any], tmp_path: Path) -> None:
    before = _counts(home["store"])
    reports = home["settings"].reports_dir
    proc = run(["monitor", "report", "heart-old@1"], home["settings"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "reference profile" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(reports.glob("heart-old*")) if reports.exists() else True
    assert _counts(home["store"]) == before


@pytest.mark.browser
def test_the_service_shows_the_monitoring_page_linked_from_the_model_card(
    home: dict[str, Any], tmp_path: Path, serve: Callable[[Any], str]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    settings = home["settings"]
    config = ServiceConfig(home=tmp_path / "service", auth="off", pages=True)
    base = serve(create_app(settings, config))
    with httpx.Client(base_url=base, timeout=60) as client:
        assert "/monitor/heart/1" in client.get("/monitor").text
        missing = client.get("/monitor/heart-old/1")
        assert missing.status_code == 422 and "reference profile" in missing.text
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/models/heart/1")
            page.click("text=Drift, estimated and realised performance")
            page.wait_for_url(f"{base}/monitor/heart/1")
            assert page.locator("h1").inner_text() == "Monitoring: heart@1"
            assert page.locator("svg.monitor-chart").count() == 4
            page.goto(f"{base}/monitor/heart/1?window={WINDOW}")
            rows = page.locator("table.monitor-windows tbody tr")
            assert rows.count() == 5 and "alarm" in (rows.nth(4).get_attribute("class") or "")
            assert errors == []  # the CSP lets the page's own style and SVG through, and nothing else is needed
        finally:
            browser.close()
