"""Pages an EHR user would recognise, over the running CDS service: a patient list, each patient's cards, model cards.

``GET /`` lists the patients of the FHIR store (``ServiceConfig.fhir_store``); ``GET /patients/{id}`` sends each
deployed ``patient-view`` service the request an EHR would send (prefetch filled from the store by the service's own
templates, through :class:`~medml.fhir.server.FhirIndex`, so each key is the searchset Bundle a FHIR server
returns) through :func:`~medml.service.app.answer`, audits the call like any other, and shows the cards as the CDS
Hooks sandbox does; ``GET /models/{name}/{version}`` is the model card. Served only when ``config.pages_on``.

The pages have no script at all: suggestions and raw JSON open with ``<details>``. Every value from data is escaped;
a card's markdown detail goes through markdown-it with raw HTML off and only http(s) and same-site links.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from markdown_it import MarkdownIt
from starlette.concurrency import run_in_threadpool

from medml.errors import MedmlError, NotFoundError
from medml.evaluate.schema import CalibrationCurve, Headline
from medml.fhir.server import MAX_COUNT, FhirHttpError, FhirIndex, searchset
from medml.registry import show_model
from medml.service import audit
from medml.service.access import Principal, allow
from medml.service.core import HookError, HookRequest, ServiceState, record_call, state_of
from medml.service.deploy import Deployment
from medml.service.patient_view import answer
from medml.service.scoring import PrefetchError, Scorer, choose_encounter, collect

log = logging.getLogger("medml.service.web")

PAGE_SIZE = 50
#: the highest page number asked of the store (50 million patients)
MAX_PAGE = 1_000_000
#: who the audit trail says called, for hook calls made by these pages
WEB_CALLER = "medml-web"
DEMO_USER = "Practitioner/medml-demo"
#: fullUrl base of prefetched entries: the store is read directly, not through a FHIR server with a URL
STORE_BASE = "urn:medml:fhir-store/"
DISCLAIMER = "Decision support, not a diagnosis."
INDICATORS = {"info": ("ℹ", "Info"), "warning": ("⚠", "Warning"), "critical": ("⛔", "Critical")}


# -- the store ----------------------------------------------------------------------------------------------------


class StoreView:
    """The FHIR store behind the pages: a :class:`FhirIndex`, built on first use and again when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: FhirIndex | None = None
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def index(self) -> FhirIndex:
        """The current index; NotFoundError when there is no store, InputFileError when it cannot be read."""
        if not self.path.is_file():
            raise NotFoundError(f"no FHIR store at {self.path}", "run `medml fhir ingest PATH...` first")
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if self._index is None or stamp != self._stamp:
                # the old index is left to the garbage collector: a request may still be reading it
                self._index = FhirIndex(self.path)
                self._stamp = stamp
            return self._index

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None


@dataclass(frozen=True)
class PatientRow:
    """What the list shows of one patient (no name: medml's data is de-identified)."""

    id: str
    gender: str | None
    birth_date: str | None
    encounters: int
    observations: int
    latest_encounter: str | None
    latest_start: datetime | None


def find_patients(index: FhirIndex, query: str, offset: int, limit: int) -> tuple[int, list[PatientRow]]:
    """(how many Patients' ids contain ``query``, case-insensitive, and the page of them, by id)."""
    where = "resource_type = 'Patient'" + (" AND contains(lower(id), lower(?))" if query else "")
    args: list[Any] = [query] if query else []
    with index.cursor() as cur:
        total = int(cur.execute(f"SELECT count(*) FROM idx WHERE {where}", args).fetchall()[0][0])
        ids = [
            str(r[0])
            for r in cur.execute(
                f"SELECT id FROM idx WHERE {where} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        ]
    return total, patient_rows(index, ids)


def patient_rows(index: FhirIndex, ids: Sequence[str]) -> list[PatientRow]:
    """The rows of these Patients (those in the store), in the order given."""
    if not ids:
        return []
    with index.cursor() as cur:
        rids = [
            int(r[0])
            for r in cur.execute(
                "SELECT rid FROM idx WHERE resource_type = 'Patient' AND list_contains(?::VARCHAR[], id)", [list(ids)]
            ).fetchall()
        ]
        # the rows by rowid, given as a list (as FhirIndex.search reads them): only those are read from the store
        stored = dict(
            cur.execute(
                "SELECT id, resource FROM store.resources WHERE rowid IN (SELECT unnest(?::BIGINT[]))", [rids]
            ).fetchall()
        )
        counts = {
            str(r[0]): r[1:]
            for r in cur.execute(
                """
            SELECT p.patient,
                   count(*) FILTER (WHERE i.resource_type = 'Encounter'),
                   count(*) FILTER (WHERE i.resource_type = 'Observation'),
                   max(i.date) FILTER (WHERE i.resource_type = 'Encounter'),
                   arg_max(i.id, i.date) FILTER (WHERE i.resource_type = 'Encounter')
            FROM patients p JOIN idx i ON i.pkey = p.pkey
            WHERE list_contains(?::VARCHAR[], p.patient) AND i.resource_type IN ('Encounter', 'Observation')
            GROUP BY p.patient""",
                [list(ids)],
            ).fetchall()
        }
    rows = []
    for pid in ids:
        if pid not in stored:
            continue
        res = orjson.loads(stored[pid])
        enc, obs, latest, latest_id = counts.get(pid, (0, 0, None, None))
        gender, birth = res.get("gender"), res.get("birthDate")
        rows.append(
            PatientRow(
                id=pid,
                gender=gender if isinstance(gender, str) else None,
                birth_date=birth if isinstance(birth, str) else None,
                encounters=int(enc),
                observations=int(obs),
                latest_encounter=None if latest_id is None else str(latest_id),
                latest_start=None if latest is None else datetime.fromtimestamp(int(latest) / 1e6, UTC),
            )
        )
    return rows


def prefetch(index: FhirIndex, templates: Mapping[str, str], patient_id: str) -> dict[str, Any]:
    """Each prefetch template run against the store: a read gives the resource (None if absent), a search the
    searchset Bundle of all its matches (pages merged, as the service's own FHIR client merges them)."""
    out: dict[str, Any] = {}
    for key, template in templates.items():
        query = template.replace("{{context.patientId}}", quote(patient_id, safe=""))
        path, _, qs = query.partition("?")
        parts = path.strip("/").split("/")
        if not qs and len(parts) == 2:
            try:
                out[key] = orjson.loads(index.read(parts[0], unquote(parts[1])))
            except FhirHttpError as err:
                if err.status != 404:
                    raise
                out[key] = None  # as an EHR sends a read that found nothing
            continue
        params = parse_qsl(qs, keep_blank_values=True)
        pages: list[dict[str, Any]] = []
        while not pages or len(pages) * MAX_COUNT < pages[0]["total"]:
            found = index.search(
                parts[0], [*params, ("_count", str(MAX_COUNT)), ("_offset", str(len(pages) * MAX_COUNT))]
            )
            pages.append(orjson.loads(searchset(STORE_BASE, parts[0], params, found)))
        # the first page's total and self link (its first link), every page's entries
        out[key] = {**pages[0], "link": pages[0]["link"][:1], "entry": [x for p in pages for x in p.get("entry", [])]}
    return out


def prefetch_summary(prefetch: Mapping[str, Any]) -> dict[str, str]:
    """What each prefetch key holds, in a few words (the raw request shows this instead of every resource)."""
    return {
        k: "null (nothing found)"
        if v is None
        else f"Bundle ({v.get('type')}) of {len(v.get('entry') or [])} entries"
        if v.get("resourceType") == "Bundle"
        else f"{v.get('resourceType')}/{v.get('id')}"
        for k, v in prefetch.items()
    }


# -- one hook call, as the EHR makes it ---------------------------------------------------------------------------


@dataclass
class HookCall:
    """One service called for one patient: the request sent, the response (or error) returned."""

    scorer: Scorer
    request: dict[str, Any]
    response: dict[str, Any]
    status: int
    not_applied: str | None = None


async def call_service(
    state: ServiceState,
    scorer: Scorer,
    patient_id: str,
    prefetched: dict[str, Any],
    address: str | None,
    caller: audit.Caller | None = None,
) -> HookCall:
    """The request an EHR sends for patient-view, answered by the endpoint's own path and audited as it is: by
    ``caller`` (the signed-in user of the page), else as the web pages' own call."""
    dep = scorer.deployment
    body: dict[str, Any] = {
        "hook": dep.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": DEMO_USER, "patientId": patient_id},
        "prefetch": prefetched,
    }
    started = time.perf_counter()
    try:
        response = await answer(state, scorer, HookRequest.parse(body, dep.hook, dep.service_id), datetime.now(UTC))
        status = 200
    except HookError as err:
        response, status = {"error": err.message}, err.status
    except MedmlError as err:
        response, status = {"error": str(err)}, 400
    except Exception:  # as the endpoint: the page gets a reference, the log the traceback; audited either way
        ref = uuid.uuid4().hex[:12]
        log.exception("error %s answering %s from the web page", ref, dep.service_id)
        response, status = {"error": f"internal error (reference {ref}); the patient was not scored"}, 500
    record_call(
        state,
        event="hook",
        service=dep.service_id,
        started=started,
        status=status,
        caller=caller or audit.Caller(sub=WEB_CALLER, address=address),
        request_body=body,
        response=response if status == 200 else None,
        model=dep.model,
        error=None if status == 200 else str(response.get("error")),
    )
    call = HookCall(scorer, body, response, status)
    if status == 200 and not response.get("cards"):
        call.not_applied = _why_not(scorer, prefetched, patient_id)
    return call


def _why_not(scorer: Scorer, prefetched: Mapping[str, Any], patient_id: str) -> str:
    """Why a service gave no card (answer() returns none when the model does not apply), said without scoring."""
    spec = scorer.spec
    if spec.anchor != "encounter-start":
        return "the service returned no card"
    try:
        resources = collect({k: prefetched.get(k) for k in scorer.templates}, patient_id)
    except PrefetchError as err:
        return str(err)
    found = choose_encounter(resources, None, spec.encounter_classes)
    kinds = "/".join(spec.encounter_classes) or "any"
    if found is None:
        return f"no encounter ({kinds}) with a start time for this patient"
    if found[1] > datetime.now(UTC):
        return f"encounter {found[0]} starts in the future"
    return "the service returned no card"


# -- HTML -----------------------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Escaped text of any value (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


@cache
def _css() -> tuple[str, str]:
    """The pages' stylesheet and its CSP hash (the only style the pages may use)."""
    css = resources.files("medml.service").joinpath("web/pages.css").read_text(encoding="utf-8")
    return css, "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()


def _headers(style_src: str) -> dict[str, str]:
    csp = (
        f"default-src 'none'; style-src {style_src}; img-src data:; script-src 'none'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
    }


def page(state: ServiceState, title: str, body: str, status: int = 200) -> HTMLResponse:
    css, css_hash = _css()
    auth = "" if state.config.auth == "jwt" else " Unauthenticated demo service: not for clinical use."
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)} · medml</title><style>{css}</style></head><body>'
        '<header class="bar"><a href="/">medml · patients</a><span>CDS Hooks patient-view demo</span>'
        f'<span class="note">{DISCLAIMER}{esc(auth)}</span></header>'
        f"<main>{body}</main><footer>{DISCLAIMER} Cards come from the models named on each card; the risk is a "
        f"calibrated probability from data, not a clinical judgement.{esc(auth)}</footer></body></html>\n"
    )
    return HTMLResponse(doc, status_code=status, headers=_headers(f"'{css_hash}'"))


SAFE_URL = re.compile(r"^(https?://|/(?!/))", re.IGNORECASE)


class _CardMarkdown(MarkdownIt):
    """CommonMark's bold, italic, lists, paragraphs, code and links; raw HTML stays text, links only http(s) or /."""

    def __init__(self) -> None:
        super().__init__("zero", {"html": False, "linkify": False, "typographer": False})
        self.enable(["emphasis", "list", "link", "escape", "backticks", "newline"])

    def validateLink(self, url: str) -> bool:
        return SAFE_URL.match(url.strip()) is not None


@cache
def _markdown() -> MarkdownIt:
    return _CardMarkdown()


def markdown(text: str, base_url: str) -> str:
    """A card's markdown as safe HTML; links to this service become same-site paths."""
    md = _markdown()
    tokens = md.parse(text)
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "link_open":
                child.attrSet("href", local_url(str(child.attrGet("href")), base_url))
                child.attrSet("rel", "noopener noreferrer")
    return md.renderer.render(tokens, md.options, {})


def local_url(url: str, base_url: str) -> str:
    """A URL under the service's base_url as a path on this site (the page may be opened on another port)."""
    return url[len(base_url) :] if url.startswith(base_url + "/") else url


def _link(url: Any, label: Any, base_url: str) -> str:
    href = local_url(str(url), base_url) if isinstance(url, str) else ""
    if SAFE_URL.match(href):
        return f'<a href="{esc(href)}" rel="noopener noreferrer">{esc(label)}</a>'
    return f'{esc(label)} <span class="muted">({esc(url)})</span>'


def _json(value: Any) -> str:
    return esc(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def render_card(card: Mapping[str, Any], dep: Deployment, base_url: str) -> str:
    """One card as the CDS Hooks sandbox shows it: indicator, summary, detail, source, links, suggestions, dismiss."""
    indicator = card.get("indicator") if card.get("indicator") in INDICATORS else "info"
    icon, word = INDICATORS[str(indicator)]
    source: Mapping[str, Any] = card["source"] if isinstance(card.get("source"), Mapping) else {}
    parts = [
        f'<article class="card indicator-{indicator}" data-indicator="{indicator}" '
        f'data-uuid="{esc(card.get("uuid"))}">',
        f'<div class="head"><span class="icon" role="img" aria-label="{word}" title="{word}">{icon}</span>'
        f'<h3 class="summary">{esc(card.get("summary"))}</h3></div>',
    ]
    if isinstance(card.get("detail"), str):
        parts.append(f'<div class="detail">{markdown(card["detail"], base_url)}</div>')
    parts.append(
        f'<p class="meta source">Source: {_link(source.get("url"), source.get("label"), base_url)} · '
        f'produced by model <b class="model">{esc(dep.model)}</b> · {DISCLAIMER}</p>'
    )
    links = [link for link in card.get("links") or [] if isinstance(link, Mapping)]
    if links:
        items = "".join(
            f"<li>{_link(link.get('url'), link.get('label'), base_url)}"
            + (
                ' <span class="muted">(SMART app: not launched from this page)</span>'
                if link.get("type") == "smart"
                else ""
            )
            + "</li>"
            for link in links
        )
        parts.append(f'<ul class="meta links">{items}</ul>')
    actions = ['<div class="actions">']
    for sug in card.get("suggestions") or []:
        if not isinstance(sug, Mapping):
            continue
        lines = []
        for act in sug.get("actions") or []:
            res = act.get("resource") if isinstance(act.get("resource"), Mapping) else {}
            lines.append(
                f"<p><b>{esc(act.get('type'))}</b> {esc(res.get('resourceType'))}: "
                f'{esc(act.get("description"))}</p><pre class="resource">{_json(res)}</pre>'
            )
        actions.append(
            f'<details class="suggestion"><summary>{esc(sug.get("label"))}</summary>'
            f'<p class="muted">In an EHR this button accepts the suggestion; this page records nothing.</p>'
            f"{''.join(lines)}</details>"
        )
    reasons = [r for r in card.get("overrideReasons") or [] if isinstance(r, Mapping)]
    if reasons:
        items = "".join(f"<li>{esc(r.get('display'))} <code>{esc(r.get('code'))}</code></li>" for r in reasons)
        actions.append(
            f'<details class="dismiss"><summary>Dismiss: override reasons</summary><ul>{items}</ul></details>'
        )
    actions.append("</div>")
    parts += [*actions, "</article>"]
    return "".join(parts)


def render_call(call: HookCall, base_url: str) -> str:
    dep = call.scorer.deployment
    head = (
        f'<section class="service" data-service="{esc(dep.service_id)}"><h2>{esc(dep.title)} '
        f"<small>service {esc(dep.service_id)} · model {esc(dep.model)}</small></h2>"
    )
    if call.status != 200:
        body = f'<p class="error">The service answered HTTP {call.status}: {esc(call.response.get("error"))}</p>'
    elif call.not_applied is not None:
        body = f'<p class="notice no-card">no card (the model does not apply: {esc(call.not_applied)})</p>'
    else:
        body = "".join(render_card(c, dep, base_url) for c in call.response.get("cards", []))
        for act in call.response.get("systemActions") or []:
            body += (
                f'<p class="muted">System action: {esc(act.get("type"))} '
                f"{esc((act.get('resource') or {}).get('resourceType'))}: {esc(act.get('description'))}</p>"
            )
    shown = {**call.request, "prefetch": prefetch_summary(call.request.get("prefetch") or {})}
    raw = (
        f'<details class="raw request"><summary>Request sent (POST /cds-services/{esc(dep.service_id)}; '
        f"prefetch summarised)</summary><pre>{_json(shown)}</pre></details>"
        f'<details class="raw response"><summary>Response returned (HTTP {call.status}, JSON as the EHR receives '
        f'it)</summary><pre class="response-json">{_json(call.response)}</pre></details>'
    )
    return head + body + raw + "</section>"


def _age(birth: str | None, at: datetime | None) -> str:
    """Whole years at ``at``; about (≈) when only the year of birth is known."""
    m = re.match(r"^(\d{4})(?:-(\d{2})-(\d{2}))?", birth or "")
    if m is None or at is None:
        return ""
    if m.group(2) is None:
        return f"≈{at.year - int(m.group(1))}"
    return str(at.year - int(m.group(1)) - ((at.month, at.day) < (int(m.group(2)), int(m.group(3)))))


def _banner(row: PatientRow) -> str:
    latest = "none" if row.latest_start is None else f"{row.latest_start:%Y-%m-%d %H:%M} UTC ({row.latest_encounter})"
    cells = [
        ("Patient", row.id),
        ("Sex", row.gender or "unknown"),
        ("Birth date", row.birth_date or "unknown"),
        ("Age at latest encounter", _age(row.birth_date, row.latest_start) or "unknown"),
        ("Encounters", row.encounters),
        ("Observations", row.observations),
        ("Latest encounter", latest),
    ]
    return (
        '<div class="banner">'
        + "".join(f"<div><span>{esc(k)}</span><b>{esc(v)}</b></div>" for k, v in cells)
        + "</div>"
    )


def _store_problem(state: ServiceState, path: Path, err: MedmlError) -> HTMLResponse:
    if isinstance(err, NotFoundError):
        body = (
            f'<h1>No patients yet</h1><div class="notice no-store"><p>There is no FHIR store at '
            f"<code>{esc(path)}</code>.</p><p>Load patients with <code>medml fhir ingest PATH... --store "
            f"{esc(path)}</code> (FHIR Bundles, Bulk Data NDJSON, or a folder of them), or set "
            "<code>fhir_store</code> in service.yaml to an existing store; then reload this page.</p></div>"
        )
        return page(state, "No FHIR store", body)
    return page(
        state, "FHIR store unreadable", f'<h1>The FHIR store cannot be read</h1><p class="error">{esc(err)}</p>', 503
    )


# -- routes ---------------------------------------------------------------------------------------------------------


router = APIRouter()
State = Annotated[ServiceState, Depends(state_of)]
#: the caller of each page, checked against its rule in medml.service.access.RULES (None: loopback, no token needed)
Patients = Annotated[Principal | None, Depends(allow("patients"))]
PatientReader = Annotated[Principal | None, Depends(allow("patient"))]
ModelReader = Annotated[Principal | None, Depends(allow("model"))]
MonitorLister = Annotated[Principal | None, Depends(allow("monitor"))]
MonitorReader = Annotated[Principal | None, Depends(allow("monitor-model"))]


def open_store(state: ServiceState) -> None:
    """The FHIR store behind the pages (``fhir_store`` in service.yaml, else MEDML_HOME's), opened on first use."""
    state.resources["pages.store"] = StoreView(state.config.fhir_store or state.settings.fhir_store)


def close(state: ServiceState) -> None:
    """Close the pages' store index when the app shuts down."""
    store = state.resources.pop("pages.store", None)
    if store is not None:
        store.close()


def _store(state: ServiceState) -> StoreView:
    store: StoreView = state.resources["pages.store"]
    return store


@router.get("/", response_class=HTMLResponse)
async def patients(state: State, who: Patients, q: str = "", page_no: int = 1) -> Response:
    store = _store(state)
    path = store.path
    state.refresh()
    query = q.strip()[:128]
    number = max(1, min(page_no, MAX_PAGE))  # a page number past any store's end must not overflow the query
    try:
        index = await run_in_threadpool(store.index)
        total, rows = await run_in_threadpool(find_patients, index, query, (number - 1) * PAGE_SIZE, PAGE_SIZE)
    except MedmlError as err:
        return _store_problem(state, path, err)
    pages = max(1, -(-total // PAGE_SIZE))
    body = [
        f'<h1>Patients <small class="muted">({total:,}{" matching" if query else ""} in '
        f"<code>{esc(path.name)}</code>)</small></h1>",
        '<form class="search" method="get" action="/"><label for="q">Patient id</label>'
        f'<input id="q" name="q" type="search" value="{esc(query)}" placeholder="search by id">'
        '<button type="submit">Search</button></form>',
    ]
    if not state.scorers:
        body.append(
            '<p class="notice">No CDS service is deployed: patients open without cards. Deploy a model '
            "with <code>medml deploy MODEL</code>.</p>"
        )
    if rows:
        body.append(
            '<table class="patients"><thead><tr><th>Patient id</th><th>Sex</th><th>Birth date</th>'
            '<th class="num">Age at latest encounter</th><th class="num">Encounters</th>'
            '<th class="num">Observations</th><th>Latest encounter</th></tr></thead><tbody>'
        )
        for r in rows:
            latest = "" if r.latest_start is None else f"{r.latest_start:%Y-%m-%d %H:%M} · {r.latest_encounter}"
            body.append(
                f'<tr><td><a class="patient" href="/patients/{esc(quote(r.id, safe=""))}">{esc(r.id)}</a>'
                f"</td><td>{esc(r.gender)}</td><td>{esc(r.birth_date)}</td>"
                f'<td class="num">{esc(_age(r.birth_date, r.latest_start))}</td>'
                f'<td class="num">{r.encounters:,}</td><td class="num">{r.observations:,}</td>'
                f"<td>{esc(latest)}</td></tr>"
            )
        body.append("</tbody></table>")
    else:
        body.append(
            f'<p class="notice">No patient id contains “{esc(query)}”.</p>'
            if query
            else '<p class="notice">The store holds no Patient resources.</p>'
        )
    if pages > 1:

        def at(n: int) -> str:
            return "/?" + urlencode({**({"q": query} if query else {}), "page_no": n})

        prev = f'<a rel="prev" href="{esc(at(number - 1))}">← previous</a>' if number > 1 else ""
        nxt = f'<a rel="next" href="{esc(at(number + 1))}">next →</a>' if number < pages else ""
        body.append(f'<nav class="pager">{prev}<span>page {number} of {pages}</span>{nxt}</nav>')
    return page(state, "Patients", "".join(body))


@router.get("/patients/{patient_id:path}", response_class=HTMLResponse)
async def patient(patient_id: str, request: Request, state: State, who: PatientReader) -> Response:
    store = _store(state)
    path = store.path
    base_url = state.config.base_url
    try:
        index = await run_in_threadpool(store.index)
        rows = await run_in_threadpool(patient_rows, index, [patient_id])
    except MedmlError as err:
        return _store_problem(state, path, err)
    if not rows:
        return page(
            state,
            "Patient not found",
            f'<h1>No patient {esc(patient_id)}</h1><p class="error">'
            f'Patient/{esc(patient_id)} is not in the FHIR store. <a href="/">Back to the list</a>.</p>',
            404,
        )
    state.refresh()
    body = [
        f"<h1>Patient {esc(patient_id)}</h1>",
        _banner(rows[0]),
        '<h2>CDS Hooks: patient-view <small class="muted">(the cards as the EHR receives them)</small></h2>',
    ]
    scorers = [s for s in state.scorers.values() if s.deployment.hook == "patient-view"]
    if not scorers:
        body.append(
            '<p class="notice no-deployment">No CDS service is deployed, so there are no cards. Deploy a '
            "registered model with <code>medml deploy MODEL</code> (see <code>medml models list</code>); "
            "a running service picks it up without a restart.</p>"
        )
    address = request.client.host if request.client else None
    fetched: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for scorer in scorers:
        key = tuple(sorted(scorer.templates.items()))
        if key not in fetched:
            try:
                fetched[key] = await run_in_threadpool(prefetch, index, scorer.templates, patient_id)
            except FhirHttpError as err:
                body.append(
                    f'<p class="error">Prefetch for {esc(scorer.deployment.service_id)} failed: '
                    f"{esc(err.diagnostics)}</p>"
                )
                continue
        caller = who.audit_caller(address) if who is not None else None
        call = await call_service(state, scorer, patient_id, fetched[key], address, caller)
        body.append(render_call(call, base_url))
    return page(state, f"Patient {patient_id}", "".join(body))


@router.get("/models/{name}/{version}", response_class=HTMLResponse)
async def model_card(name: str, version: str, state: State, who: ModelReader) -> Response:
    ref = f"{name}@{version}"
    try:
        if not version.isdigit():
            raise NotFoundError(f"{version!r} is not a version number", "")
        shown = await run_in_threadpool(show_model, ref, state.settings)
    except MedmlError as err:
        return page(state, "No such model", f'<h1>No model {esc(ref)}</h1><p class="error">{esc(err)}</p>', 404)
    state.refresh()
    using = [s.deployment for s in state.scorers.values() if s.deployment.model == shown["ref"]]
    using += [d for d in state.images.values() if d.model == shown["ref"]]
    report = state.settings.reports_dir / f"{shown['ref']}.html"
    if report.is_file() and report.resolve().parent == state.settings.reports_dir.resolve():
        return _report(report, shown["ref"], using)
    return page(state, f"Model card {shown['ref']}", _model_card(shown, using))


def monitor_url(ref: str) -> str:
    """The service's monitoring page of ``name@version``."""
    name, _, version = ref.rpartition("@")
    return f"/monitor/{quote(name, safe='')}/{quote(version, safe='')}"


def _monitor_store(state: ServiceState) -> Any:
    from medml.monitor.store import MonitorStore

    return MonitorStore(getattr(state.config, "monitor_store", None) or state.settings.monitor_store)


@router.get("/monitor", response_class=HTMLResponse)
async def monitor_index(state: State, who: MonitorLister) -> Response:
    """The model versions with predictions in the monitoring store, each linking to its monitoring page."""
    from medml.monitor.page import recorded_models

    refs = await run_in_threadpool(recorded_models, _monitor_store(state))
    items = "".join(f'<li><a href="{esc(monitor_url(r))}">{esc(r)}</a></li>' for r in refs)
    body = (
        f"<h1>Monitoring</h1><ul>{items}</ul>"
        if refs
        else "<h1>Monitoring</h1><p>No prediction has been recorded yet: deployed models appear here once the "
        "service has scored patients.</p>"
    )
    return page(state, "Monitoring", body)


@router.get("/monitor/{name}/{version}", response_class=HTMLResponse)
async def monitor_model(name: str, version: str, state: State, who: MonitorReader, window: str = "200") -> Response:
    """One model version in production: drift, estimated and realised AUROC and calibration, alarms."""
    from medml.monitor.page import monitor_view, render_body

    ref = f"{name}@{version}"
    span: int | str = int(window) if window.isdigit() else window
    try:
        if not version.isdigit():
            raise NotFoundError(f"{version!r} is not a version number", "")
        view = await run_in_threadpool(monitor_view, _monitor_store(state), state.settings, ref, window=span)
    except MedmlError as err:
        body = f'<h1>Monitoring: {esc(ref)}</h1><p class="error">{esc(err)}</p><p><a href="/monitor">All models</a></p>'
        return page(state, f"Monitoring {ref}", body, 404 if isinstance(err, NotFoundError) else 422)
    return page(state, f"Monitoring {ref}", render_body(view, links=True))


def _deployment_list(using: Sequence[Deployment]) -> str:
    if not using:
        return "<p>Not deployed as a CDS service.</p>"
    items = "".join(
        f"<li>service <code>{esc(d.service_id)}</code>: warning from {d.thresholds[0]:.0%}, critical "
        f"from {d.thresholds[1]:.0%} ({esc(d.thresholds_note)})</li>"
        if d.is_hook
        else f"<li>image service <code>{esc(d.service_id)}</code>: POST a DICOM file to "
        f"<code>/imaging/{esc(d.service_id)}</code> ({esc(d.thresholds_note)})</li>"
        for d in using
    )
    return f'<ul class="deployments">{items}</ul>'


def _report(path: Path, ref: str, using: Sequence[Deployment]) -> HTMLResponse:
    """The HTML report medml wrote at training, with a bar on top: back to the patients, where the model is deployed."""
    text = path.read_text(encoding="utf-8")
    bar = (
        "<style>.medml-web{background:#16324f;color:#fff;padding:.5rem 1rem;font:14px system-ui,sans-serif}"
        ".medml-web a{color:#fff}.medml-web ul{margin:.2rem 0}</style>"
        f'<div class="medml-web"><a href="/">← patients</a> · model card of <b>{esc(ref)}</b> (the report '
        f'written at training) · <a href="{esc(monitor_url(ref))}">monitoring</a> · {DISCLAIMER}'
        f"{_deployment_list(using)}</div>"
    )
    at = text.find("<body>")
    text = text[: at + 6] + bar + text[at + 6 :] if at >= 0 else bar + text
    # the report's own CSS is inline (no script, nothing fetched), as its meta CSP says
    return HTMLResponse(text, headers=_headers("'unsafe-inline'"))


def _ci(v: Any, fmt: str) -> str:
    """A value with its 95% CI, from [value, low, high] or {"value", "low", "high"}."""
    value, low, high = (
        [v.get("value"), v.get("low"), v.get("high")]
        if isinstance(v, Mapping)
        else [*v, None, None][:3]
        if isinstance(v, list)
        else [v, None, None]
    )
    num = [format(float(x), fmt) if isinstance(x, int | float) else "n/a" for x in (value, low, high)]
    return num[0] + (f" (95% CI {num[1]}–{num[2]})" if low is not None and high is not None else "")


def _model_card(shown: Mapping[str, Any], using: Sequence[Deployment]) -> str:
    """A model card from the bundle's metadata, for models without a training report."""
    md = shown["metadata"]
    h = Headline.from_dict(md["headline"]) if md.get("headline") else None  # what cards and `medml predict` show
    curve = (h.curve if h else CalibrationCurve()).to_dict()
    facts = [
        ("Model", shown["ref"]),
        ("Kind", md.get("model_kind")),
        ("Task", md.get("task")),
        ("Dataset", md.get("dataset")),
        ("Created", md.get("created")),
        ("Intended use", md.get("intended_use")),
        ("Population", md.get("population")),
        (
            "Evaluated on",
            f"{h.n if h else 'n/a'} {h.split if h else 'test'} patients, "
            f"{'n/a' if h is None or h.n_events is None else h.n_events} events",
        ),
        ("AUROC", _ci(h.auroc.to_dict() if h else None, ".3f")),
        ("Calibration slope", _ci(h.calibration_slope.to_dict() if h else None, ".2f")),
        ("Calibration intercept", _ci(h.calibration_intercept.to_dict() if h else None, ".2f")),
        ("Calibration method", md.get("calibration")),
    ]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    out = [
        f"<h1>Model card: {esc(shown['ref'])}</h1>",
        f'<table class="facts">{rows}</table>',
        "<h2>Calibration by decile of predicted risk</h2>",
    ]
    predicted, observed, count = (list(curve.get(k) or []) for k in ("predicted", "observed", "count"))
    if predicted and len(predicted) == len(observed) == len(count):
        out.append(
            '<table class="deciles"><thead><tr><th class="num">Mean predicted risk</th>'
            '<th class="num">Observed rate</th><th class="num">Patients</th></tr></thead><tbody>'
        )
        out += [
            f'<tr><td class="num">{float(p):.1%}</td><td class="num">{float(o):.1%}</td>'
            f'<td class="num">{int(n)}</td></tr>'
            for p, o, n in zip(predicted, observed, count, strict=True)
        ]
        out.append("</tbody></table>")
    else:
        out.append("<p>The bundle records no calibration curve.</p>")
    out += [
        "<h2>Deployments</h2>",
        _deployment_list(using),
        f'<h2>Monitoring</h2><p><a href="{esc(monitor_url(shown["ref"]))}">Drift, estimated and realised performance '
        "in production, and the alarms</a></p>",
        f'<p class="muted">No training report was found; this page is built from the bundle\'s metadata. '
        f"{DISCLAIMER}</p>",
    ]
    return "".join(out)


__all__ = [
    "PatientRow",
    "StoreView",
    "call_service",
    "close",
    "esc",
    "find_patients",
    "markdown",
    "open_store",
    "patient_rows",
    "prefetch",
    "render_card",
    "router",
]
