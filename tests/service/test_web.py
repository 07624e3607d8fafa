"""The web pages: the patient list, a patient's cards as the EHR receives them, model cards; in headless Chromium.

The reference for the cards is the service's own HTTP endpoint: a direct POST /cds-services/{id} with the prefetch an
EHR would send (built from the stay's resources, not by the pages' code) must give the cards the page shows. The
reference for the prefetch is the FHIR server and the service's FHIR client.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cds_requests import hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy
from medml.service.routers import pages as web

pytestmark = needs_physionet
SERVICE = "physionet-2012-lgbm"
MODEL = f"{SERVICE}@1"
PID = "pn2012-132539"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: markup in a patient id and an encounter id (no '/', which a FHIR reference could not carry)
EVIL_PATIENT = "x\"'><img src=x onerror=alert(1)><script>alert(2)<\\script>"
EVIL_ENCOUNTER = "enc<script>alert(3)<\\script>**b**"


def make_config(tmp_path: Path, store: Path, **extra: Any) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off", fhir_store=store, **extra)


def without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


def codes(client: httpx.Client) -> list[str]:
    tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
    return [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]


@pytest.fixture()
def config(tmp_path: Path, stay_store: Path) -> ServiceConfig:
    return make_config(tmp_path, stay_store)


@pytest.fixture()
def site(model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    """The service with the model deployed and the pages on, on real uvicorn."""
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    with httpx.Client(base_url=serve(create_app(model_home, config)), timeout=30) as client:
        yield client


# -- a browser that may talk to the app's origin only ---------------------------------------------------------------


@dataclass
class AppPage:
    """A page of the app and what it tried: requests elsewhere (blocked), failed requests, console errors, dialogs."""

    page: Any
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def clean(self) -> bool:
        return not (self.external or self.failed or self.errors or self.dialogs)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (run `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def open_app(chromium: Any) -> Iterator[Callable[[str], AppPage]]:
    """``open_app(url)``: the page loaded, every request not to ``url``'s origin aborted and recorded."""
    contexts: list[Any] = []

    def opener(url: str) -> AppPage:
        origin = re.match(r"^https?://[^/]+", url)
        assert origin is not None
        own = origin.group(0) + "/"
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        seen = AppPage(page)

        def only_own(route: Any) -> None:
            if route.request.url.startswith(own) or route.request.url == own[:-1]:
                route.continue_()
            else:
                seen.external.append(route.request.url)
                route.abort()

        def dialog(d: Any) -> None:
            seen.dialogs.append(d.message)
            d.dismiss()

        page.route("**/*", only_own)
        page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda err: seen.errors.append(str(err)))
        page.on("requestfailed", lambda r: seen.failed.append(r.url))
        page.on("dialog", dialog)
        page.goto(url, wait_until="load")
        return seen

    yield opener
    for context in contexts:
        context.close()


# -- in the browser ---------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_clinician_opens_a_stay_and_sees_the_card_the_ehr_would_receive(
    site: httpx.Client,
    open_app: Callable[[str], AppPage],
    stays: dict[str, list[dict[str, Any]]],
    config: ServiceConfig,
) -> None:
    seen = open_app(str(site.base_url))
    page = seen.page
    listed = page.locator("table.patients a.patient").all_inner_texts()
    assert sorted(listed) == sorted(stays)
    page.get_by_role("link", name=PID, exact=True).click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/patients/{PID}")
    shown = json.loads(page.locator("pre.response-json").text_content() or "")

    direct = site.post(f"/cds-services/{SERVICE}", json=hook_request(PID, prefetch_for(stays[PID], codes(site))))
    assert direct.status_code == 200, direct.text
    expected = direct.json()
    # the whole response, card for card, but for the uuids each call draws
    assert without_uuids(shown) == without_uuids(expected)
    (card,) = expected["cards"]
    risk = card["suggestions"][0]["actions"][0]["resource"]["prediction"][0]["probabilityDecimal"]
    article = page.locator("article.card")
    assert article.count() == 1
    assert article.locator(".summary").inner_text() == card["summary"]
    assert article.get_attribute("class") == f"card indicator-{card['indicator']}"
    assert f"{risk:.0%}" in card["summary"]
    assert MODEL in article.locator(".meta.source").inner_text()
    assert "not a diagnosis" in page.locator("body").inner_text()
    # the detail is rendered markdown: bold and a list, no asterisks left
    assert article.locator(".detail strong").count() >= 3 and article.locator(".detail li").count() >= 1
    assert "**" not in article.locator(".detail").inner_text()

    # the suggestion button shows the RiskAssessment it would create
    resource = article.locator("details.suggestion pre.resource")
    assert not resource.is_visible()
    article.locator("details.suggestion > summary").click()
    assert resource.is_visible()
    ra = json.loads(resource.inner_text())
    assert ra["resourceType"] == "RiskAssessment" and ra["prediction"][0]["probabilityDecimal"] == risk
    assert "RiskAssessment" in article.locator("details.suggestion").inner_text()
    assert article.locator("details.dismiss li").count() == len(card["overrideReasons"])

    # the raw request is the hook an EHR sends, its prefetch summarised
    request = json.loads(page.locator("details.request pre").text_content() or "")
    assert request["hook"] == "patient-view" and request["context"] == {
        "userId": "Practitioner/medml-demo",
        "patientId": PID,
    }
    n_obs = len(prefetch_for(stays[PID], codes(site))["observations"]["entry"])
    assert request["prefetch"]["observations"] == f"Bundle (searchset) of {n_obs} entries"

    # the source opens the model card
    article.locator(".meta.source a").click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/models/{SERVICE}/1")
    text = page.locator("body").inner_text()
    assert MODEL in text and "AUROC" in text and "not a diagnosis" in text
    assert seen.clean(), (seen.external, seen.failed, seen.errors, seen.dialogs)

    # the page's hook call is in the audit trail like any other, marked as the web page's
    records = [json.loads(line) for line in config.audit_path.read_text().splitlines()]
    web_calls = [r for r in records if r["caller"]["sub"] == "medml-web"]
    assert [r["patient"] for r in web_calls] == [PID]
    assert web_calls[0]["caller"]["address"] == "127.0.0.1" and web_calls[0]["model"] == MODEL
    assert web_calls[0]["cards"][0]["summary"] == card["summary"]
    assert verify(config.audit_path).ok


def evil_store(tmp_path: Path, stay: list[dict[str, Any]]) -> Path:
    """One stay whose patient id and encounter id carry markup."""
    from medml.fhir.store import FhirStore

    text = (
        json.dumps(stay)
        .replace('"pn2012-132539"', json.dumps(EVIL_PATIENT))
        .replace('"Patient/pn2012-132539"', json.dumps(f"Patient/{EVIL_PATIENT}"))
        .replace('"Encounter/pn2012-132539"', json.dumps(f"Encounter/{EVIL_ENCOUNTER}"))
    )
    resources = json.loads(text)
    for res in resources:
        if res["resourceType"] == "Encounter":
            res["id"] = EVIL_ENCOUNTER
    path = tmp_path / "evil.duckdb"
    with FhirStore(path) as store:
        store.add([*resources, {"resourceType": "Patient", "id": "lonely", "gender": "male"}])
    return path


@pytest.mark.browser
def test_markup_in_ids_and_card_text_renders_inert(
    model_home: Settings,
    tmp_path: Path,
    stays: dict[str, list[dict[str, Any]]],
    serve: Callable[[Any], str],
    open_app: Callable[[str], AppPage],
) -> None:
    config = make_config(tmp_path, evil_store(tmp_path, copy.deepcopy(stays[PID])))
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    base = serve(create_app(model_home, config))
    seen = open_app(base)
    page = seen.page
    link = page.locator("table.patients a.patient").filter(has_text="onerror")
    assert link.inner_text() == EVIL_PATIENT
    link.click()
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text() == f"Patient {EVIL_PATIENT}"
    detail = page.locator("article.card .detail").inner_text()
    assert f"encounter {EVIL_ENCOUNTER.removesuffix('**b**')}" in detail  # shown as text, markup and all
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0
    assert seen.clean(), (seen.external, seen.failed, seen.errors, seen.dialogs)

    with httpx.Client(base_url=base) as client:
        # a patient without an encounter: the service answers no card, and the page says why
        lonely = client.get("/patients/lonely").text
        assert "no card (the model does not apply: no encounter (" in lonely and "<article" not in lonely
        for path in ("/", f"/patients/{EVIL_PATIENT}"):
            r = client.get(path)
            assert r.status_code == 200
            # the pages have no script and no image of their own: any here would have come from the data
            assert "<script" not in r.text and "<img" not in r.text
            assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in r.text


# -- the HTML over HTTP ---------------------------------------------------------------------------------------------


def test_pages_are_self_contained_with_a_strict_policy(site: httpx.Client) -> None:
    for path in ("/", f"/patients/{PID}", "/models/no-such-model/1"):
        r = site.get(path)
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'none'" in csp and "unsafe" not in csp
        # the one inline stylesheet is the one the policy allows, by hash
        (style,) = re.findall(r"<style>(.*?)</style>", r.text, flags=re.S)
        allowed = "sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'{allowed}'" in csp
        assert "<script" not in r.text and "@import" not in r.text and 'rel="stylesheet"' not in r.text
        assert re.search(r"(src|href|action)=\"(https?:)?//", r.text) is None
        assert "Decision support, not a diagnosis." in r.text


def test_the_list_pages_and_searches_by_id(
    site: httpx.Client, monkeypatch: pytest.MonkeyPatch, stays: dict[str, list[dict[str, Any]]]
) -> None:
    monkeypatch.setattr(web, "PAGE_SIZE", 5)
    ids = []
    for n in (1, 2, 3):
        r = site.get("/", params={"page_no": n})
        assert f"page {n} of 3" in r.text
        ids += re.findall(r'class="patient" href="/patients/[^"]+">([^<]+)</a>', r.text)
    assert ids == sorted(stays)
    r = site.get("/", params={"q": "PN2012-1325"})
    found = re.findall(r'class="patient" href="/patients/[^"]+">([^<]+)</a>', r.text)
    matching = sorted(p for p in stays if "pn2012-1325" in p)
    assert found == matching[:5] and f"({len(matching)} matching" in r.text and len(matching) > 5
    assert "No patient id contains" in site.get("/", params={"q": "<nobody>"}).text
    # the row of a stay: its sex, birth year, one encounter and every observation
    row = re.search(rf">{PID}</a></td>(.*?)</tr>", site.get("/").text)
    assert row is not None
    n_obs = sum(r["resourceType"] == "Observation" for r in stays[PID])
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))[:5] == ["female", "1946", "≈54", "1", f"{n_obs}"]


def test_the_prefetch_is_what_the_fhir_server_returns(
    site: httpx.Client, stay_store: Path, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medml.fhir.server import FhirIndex, create_fhir_app
    from medml.service.fhir_client import fetch_prefetch

    templates = site.get("/cds-services").json()["services"][0]["prefetch"]
    fhir = serve(create_fhir_app(stay_store))
    filled = {k: q.replace("{{context.patientId}}", PID) for k, q in templates.items()}

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return await fetch_prefetch(client, fhir, None, filled)

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: the browser's event loop may run in this one
        reference = pool.submit(asyncio.run, fetch()).result()
    monkeypatch.setattr(web, "MAX_COUNT", 50)  # several pages for the observations, merged
    index = FhirIndex(stay_store)
    try:
        ours = web.prefetch(index, templates, PID)
        assert web.prefetch(index, templates, "no-such-patient")["patient"] is None
    finally:
        index.close()
    assert ours["patient"] == reference["patient"]
    for key in ("encounters", "observations"):
        assert ours[key]["type"] == "searchset" and ours[key]["total"] == reference[key]["total"]
        assert [e["resource"] for e in ours[key]["entry"]] == [e["resource"] for e in reference[key]["entry"]]
        assert all(e["search"] == {"mode": "match"} for e in ours[key]["entry"])
    assert ours["observations"]["total"] > 50


def test_without_a_store_the_page_says_how_to_load_one(
    model_home: Settings, tmp_path: Path, serve: Callable[[Any], str]
) -> None:
    config = make_config(tmp_path, tmp_path / "absent.duckdb")
    with httpx.Client(base_url=serve(create_app(model_home, config))) as client:
        for path in ("/", f"/patients/{PID}"):
            r = client.get(path)
            assert r.status_code == 200 and "medml fhir ingest" in r.text and "absent.duckdb" in r.text


def test_without_a_deployment_the_patient_page_says_how_to_deploy(
    model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str]
) -> None:
    with httpx.Client(base_url=serve(create_app(model_home, config))) as client:
        r = client.get(f"/patients/{PID}")
        assert r.status_code == 200 and "medml deploy MODEL" in r.text and "article" not in r.text
        assert client.get("/patients/pn2012-000000").status_code == 404
    assert not config.audit_path.exists() or "medml-web" not in config.audit_path.read_text()


def test_pages_off_serve_nothing(
    model_home: Settings, tmp_path: Path, stay_store: Path, serve: Callable[[Any], str]
) -> None:
    config = make_config(tmp_path, stay_store, pages=False)
    with httpx.Client(base_url=serve(create_app(model_home, config))) as client:
        for path in ("/", f"/patients/{PID}", f"/models/{SERVICE}/1"):
            assert client.get(path).status_code == 404
        assert client.get("/cds-services").status_code == 200


def test_the_model_card_without_a_report_comes_from_the_bundle(
    model_home: Settings, tmp_path: Path, stay_store: Path, serve: Callable[[Any], str]
) -> None:
    from medml.registry import show_model

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_home.models_dir)  # the registry, and no reports
    settings = Settings(home=home, data_root=model_home.data_root)
    config = make_config(tmp_path, stay_store)
    deploy(settings, config, SERVICE, thresholds=(0.15, 0.40))
    md = show_model(MODEL, settings)["metadata"]
    with httpx.Client(base_url=serve(create_app(settings, config))) as client:
        r = client.get(f"/models/{SERVICE}/1")
        assert r.status_code == 200
        text = r.text
        assert MODEL in text and f"{md['metrics']['auroc']:.3f} (95% CI {md['metrics']['auroc_low']:.3f}" in text
        assert web.esc(md["intended_use"]) in text and "warning from 15%, critical from 40%" in text
        slope = md["evaluation"]["calibration"]["slope"]
        assert f"{slope['value']:.2f} (95% CI {slope['low']:.2f}–{slope['high']:.2f})" in text
        curve = md["evaluation"]["calibration"]["curve"]
        deciles = re.search(r'<table class="deciles">.*?</table>', text, flags=re.S)
        assert deciles is not None and deciles.group(0).count("<tr>") == len(curve["count"]) + 1
        for path in (f"/models/{SERVICE}/2", "/models/nothing/1", f"/models/{SERVICE}/one", "/models/%2E%2E/1"):
            missing = client.get(path)
            assert missing.status_code == 404 and "No model" in missing.text, path
        assert client.get("/models/..%2F..%2Fx/1").status_code == 404


def test_card_markdown_keeps_emphasis_lists_and_links_and_drops_html() -> None:
    out = web.markdown(
        "**Risk** *high*\n\n- a <b>x</b>\n- [card](http://127.0.0.1:8800/models/m/1) "
        "[bad](javascript:alert(1)) <script>alert(1)</script>",
        "http://127.0.0.1:8800",
    )
    assert "<strong>Risk</strong> <em>high</em>" in out and out.count("<li>") == 2
    assert '<a href="/models/m/1" rel="noopener noreferrer">card</a>' in out
    assert "javascript:" not in out.replace("[bad](javascript:alert(1))", "") and "<script" not in out
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "&lt;script&gt;" in out
    card = {
        "summary": "<i>s</i>",
        "indicator": 'bogus" onclick="x',
        "detail": "d",
        "source": {"label": "L", "url": "javascript:alert(1)"},
        "links": [{"label": "x", "url": "data:x"}],
    }
    dep = type("Dep", (), {"model": "m@1"})()
    rendered = web.render_card(card, dep, "http://127.0.0.1:8800")
    assert "indicator-info" in rendered and "onclick" not in rendered and "&lt;i&gt;s&lt;/i&gt;" in rendered
    assert "href" not in rendered


def test_the_raw_response_is_json_as_returned(site: httpx.Client) -> None:
    r = site.get(f"/patients/{PID}")
    raw = re.search(r'<pre class="response-json">(.*?)</pre>', r.text, flags=re.S)
    assert raw is not None
    import html

    assert list(orjson.loads(html.unescape(raw.group(1)))) == ["cards"]
