"""A read-only FHIR R4 REST server over a medml FHIR store, for the service's tests and the demo.

``create_fhir_app(store)`` serves ``GET /metadata``, ``GET /{type}/{id}`` for any stored resource, and
``GET /{type}?...`` searches (a ``searchset`` Bundle, paged with ``_count`` and ``_offset``). The searches are those
CDS prefetch templates use: by patient, code, category, status and date, for the clinical types in :data:`SEARCHES`.

At start the store is attached read-only and an index of every resource (type, id, patient, codes, status, date and
its row in the store) is built in memory, sorted by type and patient; a search by patient reads one row group of that
index and then only the rows of the page from the store. An ingest replaces the store file (see
:mod:`medml.fhir.store`): the server keeps answering from the file it attached, and the first request that finds a new
file at the path builds the index of that one (:class:`LiveFhirIndex`).

Links (``Bundle.link``, ``fullUrl``, the CapabilityStatement's URL) start with the base URL the server was given, or
else with the address it listens on: never with the request's ``Host`` header, which a client can forge.

Searches are strict: an unknown parameter, modifier or prefix is a 400 OperationOutcome that names it. FHIR lets a
server ignore what it does not understand (and report it only in the self link), but a CDS service whose template
asks for ``Observation?patient=1&categroy=laboratory`` would then score on every Observation of the patient.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import duckdb
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from medml.errors import ConfigError, InputFileError, NotFoundError
from medml.fhir._r4types import R4_RESOURCE_TYPES

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 100
MAX_COUNT = 1000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSpec:
    """The elements one resource type's search parameters read (names as in the FHIR R4 search parameter registry)."""

    patient: str = "subject"  # the Reference element to the patient (`patient` parameter; `subject` too if so named)
    code: tuple[str, str] | None = ("code", "code")  # (parameter, CodeableConcept element)
    category: bool = False  # `category`: a list of CodeableConcept named category
    status: tuple[str, str] | None = ("status", "status")  # (parameter, element: a code, or clinicalStatus)
    dates: tuple[str, ...] = ()  # `date`: the first present of these dateTime elements (a Period: its start)


SEARCHES: dict[str, SearchSpec] = {
    "Observation": SearchSpec(category=True, dates=("effectiveDateTime", "effectivePeriod", "effectiveInstant")),
    "Condition": SearchSpec(category=True, status=("clinical-status", "clinicalStatus")),
    "Encounter": SearchSpec(code=None, dates=("period",)),
    "MedicationRequest": SearchSpec(code=("code", "medicationCodeableConcept")),
    "Procedure": SearchSpec(dates=("performedDateTime", "performedPeriod")),
    "DiagnosticReport": SearchSpec(category=True, dates=("effectiveDateTime", "effectivePeriod")),
    "AllergyIntolerance": SearchSpec(patient="patient", status=("clinical-status", "clinicalStatus")),
    "Immunization": SearchSpec(patient="patient", code=("vaccine-code", "vaccineCode"), dates=("occurrenceDateTime",)),
}
RESULT_PARAMS = ("_count", "_offset", "_sort")


class FhirHttpError(Exception):
    """A request the server answers with an OperationOutcome: HTTP status, FHIR issue code and a diagnostic (and
    any headers, e.g. ``WWW-Authenticate`` on a 401)."""

    def __init__(self, status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers


@dataclass(frozen=True)
class Grant:
    """What an access check allowed one read or search: all the store (``patient`` None) or one patient's
    compartment; ``audit(status, patient, error)``, when given, records the request once its answer is known."""

    patient: str | None = None
    audit: Callable[..., None] | None = None


#: ``guard(request, resource_type, "read" | "search") -> Grant``, raising FhirHttpError (401, 403) to refuse
Guard = Callable[[Request, str, str], Grant]


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


# -- the index ---------------------------------------------------------------------------------------------------

_CODING = {"system": "VARCHAR", "code": "VARCHAR"}
_TOKENS = "list_transform({}, lambda c: coalesce(c.system, '') || '|' || coalesce(c.code, ''))"


def _index_select(rtype: str, spec: SearchSpec) -> str:
    """One type's rows of the index: its search values read from one json_transform (one parse per resource)."""
    shape: dict[str, Any] = {spec.patient: {"reference": "VARCHAR"}}
    if spec.code:
        shape[spec.code[1]] = {"coding": [_CODING]}
    if spec.category:
        shape["category"] = [{"coding": [_CODING]}]
    if spec.status:
        shape[spec.status[1]] = "VARCHAR" if spec.status[1] == "status" else {"coding": [_CODING]}
    for element in spec.dates:
        shape[element] = {"start": "VARCHAR"} if element.endswith("Period") or element == "period" else "VARCHAR"
    codes = _TOKENS.format(f"s.{spec.code[1]}.coding") if spec.code else "NULL"
    category = (
        f"flatten(list_transform(s.category, lambda cc: {_TOKENS.format('cc.coding')}))" if spec.category else "NULL"
    )
    if spec.status is None:
        status = "NULL"
    elif spec.status[1] == "status":
        status = "[s.status]"
    else:
        status = f"list_transform(s.{spec.status[1]}.coding, lambda c: c.code)"
    dates = [f"s.{e}.start" if isinstance(shape[e], dict) else f"s.{e}" for e in spec.dates]
    date = "NULL"
    if dates:
        raw = f"coalesce({', '.join(dates)})" if len(dates) > 1 else dates[0]
        # partial dates (2019, 2019-02) count from their first instant; a dateTime without offset as UTC
        date = (
            f"epoch_us(TRY_CAST(CASE length({raw}) WHEN 4 THEN {raw} || '-01-01' WHEN 7 THEN {raw} || '-01' "
            f"ELSE {raw} END AS TIMESTAMPTZ))"
        )
    shape_json = orjson.dumps(shape).decode().replace("'", "''")
    return f"""
        SELECT resource_type, id, rid,
               nullif(regexp_extract(s.{spec.patient}.reference, '(^|/)Patient/([^/]+)(/_history/.*)?$', 2), '')
                   AS patient,
               {codes} AS codes, {category} AS category, {status} AS status, {date} AS date
        FROM (SELECT resource_type, id, rowid AS rid, json_transform(resource, '{shape_json}') AS s
              FROM store.resources WHERE resource_type = '{rtype}')"""


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: the total of matches, the page's (id, stored JSON), and the paging it used."""

    total: int
    resources: list[tuple[str, bytes]]
    count: int
    offset: int


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one store file from the next at the same path (an ingest renames a new one there); None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


class FhirIndex:
    """The store, attached read-only, and the search index built over it; one cursor per request.

    It reads the file it attached for as long as it lives, even once an ingest has put a new file at the path.
    """

    def __init__(self, store_path: Path) -> None:
        # taken before the file is opened: if a new file comes between the two, the index is only rebuilt once more
        self.identity = file_identity(store_path)
        if self.identity is None or not store_path.is_file():
            raise NotFoundError(f"no FHIR store at {store_path}", "run `medml fhir ingest PATH...` first")
        start = time.perf_counter()
        self.con = duckdb.connect()
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute("ATTACH ? AS store (READ_ONLY)", [str(store_path)])
            self.con.execute("SELECT resource_type, id, resource FROM store.resources LIMIT 0")
        except duckdb.Error as exc:
            self.con.close()
            raise InputFileError(
                f"cannot serve the FHIR store {store_path}: {exc}", "is it a medml FHIR store (medml fhir ingest)?"
            ) from exc
        try:
            self._build()
        except BaseException:
            self.con.close()
            raise
        self.counts: dict[str, int] = {
            str(t): int(n)
            for t, n in self.con.execute("SELECT resource_type, count(*) FROM idx GROUP BY 1 ORDER BY 1").fetchall()
        }
        self.started = datetime.now(UTC)
        self.build_seconds = time.perf_counter() - start
        log.info("FHIR index of %d resources built in %.1f s", sum(self.counts.values()), self.build_seconds)

    def _build(self) -> None:
        others = ", ".join(f"'{t}'" for t in SEARCHES)
        rest = f"""SELECT resource_type, id, rowid AS rid, NULL::VARCHAR AS patient, NULL::VARCHAR[] AS codes,
                          NULL::VARCHAR[] AS category, NULL::VARCHAR[] AS status, NULL::BIGINT AS date
                   FROM store.resources WHERE resource_type NOT IN ({others})"""
        union = " UNION ALL ".join([*(_index_select(t, s) for t, s in SEARCHES.items()), rest])
        self.con.execute(f"CREATE TEMP TABLE _rows AS {union}")
        # patients as integers: the index sorted by (type, pkey) lets a search by patient skip all other row groups
        self.con.execute("""CREATE TABLE patients AS SELECT patient, row_number() OVER (ORDER BY patient) AS pkey
                            FROM (SELECT DISTINCT patient FROM _rows WHERE patient IS NOT NULL)""")
        self.con.execute("""CREATE TABLE idx AS SELECT r.resource_type, p.pkey, r.id, r.rid, r.codes, r.category,
                                   r.status, r.date
                            FROM _rows r LEFT JOIN patients p USING (patient)
                            ORDER BY r.resource_type, p.pkey, r.id""")
        self.con.execute("DROP TABLE _rows")

    def close(self) -> None:
        self.con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def read(self, rtype: str, rid: str) -> bytes:
        """The stored JSON of one resource, or a 404."""
        _check_type(rtype)
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT resource FROM store.resources WHERE resource_type = ? AND id = ?", [rtype, rid]
            ).fetchall()
        if not rows:
            raise FhirHttpError(404, "not-found", f"{rtype}/{rid} is not on this server")
        return str(rows[0][0]).encode()

    def patient_of(self, rtype: str, rid: str) -> str | None:
        """The id of the Patient whose compartment holds a resource (a Patient's own id), or None."""
        if rtype == "Patient":
            return rid
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT p.patient FROM idx i JOIN patients p USING (pkey) WHERE i.resource_type = ? AND i.id = ?",
                [rtype, rid],
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def search(self, rtype: str, params: Sequence[tuple[str, str]]) -> SearchPage:
        """One page of a search; a 400 FhirHttpError for what it cannot do."""
        _check_type(rtype)
        query = _parse_search(rtype, params)
        with self.cursor() as cur:
            where: list[str] = ["resource_type = ?"]
            args: list[Any] = [rtype]
            for ids in query.patients:
                keys = [
                    int(r[0])
                    for r in cur.execute(
                        "SELECT pkey FROM patients WHERE patient IN (SELECT unnest(?::VARCHAR[]))", [ids]
                    ).fetchall()
                ]
                if not keys:
                    return SearchPage(0, [], query.count, query.offset)
                # one key as `=` so that DuckDB prunes row groups by their min and max
                where.append("pkey = ?" if len(keys) == 1 else "pkey IN (SELECT unnest(?::BIGINT[]))")
                args.append(keys[0] if len(keys) == 1 else keys)
            where += query.where
            args += query.args
            sql_where = " AND ".join(where)
            total = int(cur.execute(f"SELECT count(*) FROM idx WHERE {sql_where}", args).fetchall()[0][0])
            if query.count == 0 or query.offset >= total:
                return SearchPage(total, [], query.count, query.offset)
            rows = cur.execute(
                f"SELECT rid, id FROM idx WHERE {sql_where} ORDER BY {query.order} LIMIT ? OFFSET ?",
                [*args, query.count, query.offset],
            ).fetchall()
            found = dict(
                cur.execute(
                    "SELECT rowid, resource FROM store.resources WHERE rowid IN (SELECT unnest(?::BIGINT[]))",
                    [[r[0] for r in rows]],
                ).fetchall()
            )
        return SearchPage(total, [(str(rid), str(found[row]).encode()) for row, rid in rows], query.count, query.offset)


class LiveFhirIndex:
    """The index of the store file now at a path: rebuilt, on the first use after an ingest put a new file there.

    A request keeps the index it got for as long as it reads; the index it replaced is closed by the last one.
    """

    def __init__(self, store_path: Path) -> None:
        self.path = Path(store_path)
        self._index = FhirIndex(self.path)
        self._failed: tuple[int, int, int, int] | None = None
        self._lock = threading.Lock()

    def current(self) -> FhirIndex:
        found = file_identity(self.path)
        index = self._index
        if found is None or found == index.identity or found == self._failed:
            return index  # the store removed, or a new file that could not be read: keep answering from the last
        with self._lock:
            if file_identity(self.path) != self._index.identity:
                try:
                    self._index = FhirIndex(self.path)
                except (NotFoundError, InputFileError) as exc:
                    self._failed = found
                    log.warning("serving the FHIR store as it was: the new file cannot be read (%s)", exc)
            return self._index

    def close(self) -> None:
        with self._lock:
            self._index.close()


def _check_type(rtype: str) -> None:
    if rtype not in R4_RESOURCE_TYPES or rtype == "Bundle":
        raise FhirHttpError(404, "not-supported", f"{rtype!r} is not a FHIR R4 resource type served here")


# -- search parameters -------------------------------------------------------------------------------------------


@dataclass
class _Query:
    patients: list[list[str]]  # each `patient`/`subject` parameter: its ids, any of which matches
    where: list[str]
    args: list[Any]
    count: int = DEFAULT_COUNT
    offset: int = 0
    order: str = "id"


def search_params(rtype: str) -> dict[str, str]:
    """The search parameters of a type, with their FHIR types."""
    spec = SEARCHES.get(rtype)
    params = {"_id": "token"}
    if spec is None:
        return params
    params["patient"] = "reference"
    if spec.patient == "subject":
        params["subject"] = "reference"
    if spec.code:
        params[spec.code[0]] = "token"
    if spec.category:
        params["category"] = "token"
    if spec.status:
        params[spec.status[0]] = "token"
    if spec.dates:
        params["date"] = "date"
    return params


def _split(value: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash; the FHIR escapes (``\\,`` ``\\|`` ``\\$``) undone."""
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", value)


def _values(name: str, value: str) -> list[str]:
    values = [_unescape(v) for v in _split(value, ",")]
    if not all(values):
        raise FhirHttpError(400, "invalid", f"parameter {name!r} has an empty value")
    return values


def _token_match(column: str, name: str, value: str) -> tuple[str, list[Any]]:
    """A token parameter (``system|code``, ``code``, ``|code``, ``system|``; commas = or) over a list column."""
    ors, args = [], []
    for raw in _split(value, ","):
        pieces = _split(raw, "|")
        if len(pieces) > 2 or not raw:
            raise FhirHttpError(400, "invalid", f"parameter {name!r}: {raw!r} is not a token (system|code)")
        if len(pieces) == 1:
            ors.append(f"list_contains(list_transform({column}, lambda c: substr(c, strpos(c, '|') + 1)), ?)")
            args.append(_unescape(pieces[0]))
        elif pieces[1] == "":
            if not pieces[0]:
                raise FhirHttpError(400, "invalid", f"parameter {name!r}: '|' names neither system nor code")
            ors.append(f"list_contains(list_transform({column}, lambda c: split_part(c, '|', 1)), ?)")
            args.append(_unescape(pieces[0]))
        else:
            ors.append(f"list_contains({column}, ?)")
            args.append(f"{_unescape(pieces[0])}|{_unescape(pieces[1])}")
    return "(" + " OR ".join(ors) + ")", args


_DATE = re.compile(
    r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?)$"
)


def _date_range(name: str, text: str) -> tuple[str, int, int]:
    """(prefix, low, high) of a date parameter: the instants, in epoch microseconds, its precision covers."""
    m = _DATE.match(text)
    if m is None:
        raise FhirHttpError(400, "invalid", f"parameter {name!r}: {text!r} is not a FHIR date (e.g. ge2024-01-31)")
    prefix, value = m.group(1) or "eq", m.group(2)
    if prefix in ("sa", "eb", "ap"):
        raise FhirHttpError(
            400,
            "not-supported",
            f"parameter {name!r}: prefix {prefix!r} is not supported; use eq, ne, gt, lt, ge or le",
        )
    try:
        if len(value) == 4:
            low = datetime(int(value), 1, 1, tzinfo=UTC)
            high = low.replace(year=low.year + 1)
        elif len(value) == 7:
            low = datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
            high = low.replace(year=low.year + 1, month=1) if low.month == 12 else low.replace(month=low.month + 1)
        elif len(value) == 10:
            low = datetime.fromisoformat(value).replace(tzinfo=UTC)
            high = low + timedelta(days=1)
        else:
            low = datetime.fromisoformat(value)
            low = low if low.tzinfo is not None else low.replace(tzinfo=UTC)
            fraction = m.group(7)
            if fraction:
                step = timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction) - 1, 6))))
            else:
                step = timedelta(seconds=1) if m.group(6) else timedelta(minutes=1)
            high = low + step
    except ValueError as exc:
        raise FhirHttpError(400, "invalid", f"parameter {name!r}: {text!r} is not a valid date ({exc})") from None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return prefix, (low - epoch) // timedelta(microseconds=1), (high - epoch) // timedelta(microseconds=1)


_DATE_SQL = {
    "eq": "(date >= ? AND date < ?)",
    "ne": "(date < ? OR date >= ?)",
    "ge": "date >= ?",
    "gt": "date >= ?",
    "le": "date < ?",
    "lt": "date < ?",
}


def _int_param(name: str, value: str, low: int) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < low:
        raise FhirHttpError(400, "invalid", f"{name} must be an integer of at least {low}, got {value!r}")
    return int(value)


def _parse_search(rtype: str, params: Sequence[tuple[str, str]]) -> _Query:
    allowed = search_params(rtype)
    spec = SEARCHES.get(rtype)
    q = _Query(patients=[], where=[], args=[])
    seen: set[str] = set()
    for name, value in params:
        if name in RESULT_PARAMS:
            if name in seen:
                raise FhirHttpError(400, "invalid", f"{name} is given more than once")
            seen.add(name)
        elif name not in allowed:
            known = ", ".join([*allowed, *RESULT_PARAMS])
            raise FhirHttpError(
                400, "not-supported", f"unknown search parameter {name!r} for {rtype}; this server supports {known}"
            )
        if name == "_count":
            q.count = min(_int_param(name, value, 0), MAX_COUNT)
        elif name == "_offset":
            q.offset = _int_param(name, value, 0)
        elif name == "_sort":
            orders = {"_id": "id", "-_id": "id DESC"}
            if spec is not None and spec.dates:
                orders |= {"date": "date NULLS LAST, id", "-date": "date DESC NULLS LAST, id"}
            if value not in orders:
                raise FhirHttpError(
                    400,
                    "not-supported",
                    f"_sort={value!r} is not supported for {rtype}; use one of {', '.join(orders)}",
                )
            q.order = orders[value]
        elif name == "_id":
            q.where.append("list_contains(?::VARCHAR[], id)")
            q.args.append(_values(name, value))
        elif name in ("patient", "subject"):
            ids = []
            for ref in _values(name, value):
                parts = ref.rstrip("/").split("/")
                if (len(parts) >= 2 and parts[-2] != "Patient") or not parts[-1]:
                    raise FhirHttpError(
                        400,
                        "invalid",
                        f"{name}={ref!r}: this server searches by Patient only (give 123 or Patient/123)",
                    )
                ids.append(parts[-1])
            q.patients.append(ids)
        elif name == "date":
            prefix, low, high = _date_range(name, value)
            q.where.append(_DATE_SQL[prefix])
            q.args += {"eq": [low, high], "ne": [low, high], "ge": [low], "gt": [high], "le": [high], "lt": [low]}[
                prefix
            ]
        elif spec is not None and name == "category":
            sql, args = _token_match("category", name, value)
            q.where.append(sql)
            q.args += args
        elif spec is not None and spec.code and name == spec.code[0]:
            sql, args = _token_match("codes", name, value)
            q.where.append(sql)
            q.args += args
        elif spec is not None and spec.status and name == spec.status[0]:
            # a status is a code of a known value set: match the code, whatever system is named
            q.where.append("list_has_any(status, ?::VARCHAR[])")
            q.args.append([v.rsplit("|", 1)[-1] for v in _values(name, value)])
    return q


# -- the HTTP layer ----------------------------------------------------------------------------------------------


def capability_statement(index: FhirIndex, base_url: str, secured: bool) -> dict[str, Any]:
    """What this server does: read and search-type for each type, with the search parameters it understands."""
    resources = []
    for rtype in sorted(set(index.counts) | set(SEARCHES)):
        params = [{"name": n, "type": t} for n, t in search_params(rtype).items()]
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params,
                "documentation": f"{index.counts.get(rtype, 0)} resources; results: _count (default "
                f"{DEFAULT_COUNT}, at most {MAX_COUNT}), _offset, _sort",
            }
        )
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "documentation": "read-only; unknown search parameters are refused (400)",
    }
    if secured:
        rest["security"] = {"description": "every request needs Authorization: Bearer <token>"}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "date": index.started.isoformat(timespec="seconds"),
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON],
        "software": {"name": "medml FHIR server"},
        "implementation": {"description": "medml FHIR store, read-only", "url": base_url},
        "rest": [rest],
    }


def searchset(base: str, rtype: str, params: Sequence[tuple[str, str]], page: SearchPage) -> bytes:
    """The searchset Bundle, built around the stored JSON of each resource (not parsed again)."""
    kept = [(k, v) for k, v in params if k not in ("_count", "_offset")]
    total, count, offset = page.total, page.count, page.offset

    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{base}{rtype}?{query}"}

    links = [link("self", offset)]
    if count and offset + count < total:
        links.append(link("next", offset + count))
    if count and offset > 0:
        links.append(link("previous", max(0, offset - count)))
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links})
    entries = []
    for rid, raw in page.resources:
        entries.append(
            b'{"fullUrl":'
            + orjson.dumps(f"{base}{rtype}/{rid}")
            + b',"resource":'
            + raw
            + b',"search":{"mode":"match"}}'
        )
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}" if entries else head


def _fhir_response(body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content=content, status_code=status, media_type=FHIR_JSON, headers=headers)


def check_base_url(url: str) -> str:
    """An absolute http(s) URL for the server's links, ending in ``/``; a ConfigError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"the base URL {url!r} is not an absolute http(s) URL without query or fragment",
            "give the address clients reach the server at, e.g. --base-url https://fhir.example.org/r4/",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"the base URL {url!r} holds a user name or password", "give the URL without them")
    return url if url.endswith("/") else url + "/"


def _listening_base(request: Request) -> str:
    """The address of the socket that took the request (not its Host header), as a base URL."""
    server = request.scope.get("server")
    if not server:
        return "http://localhost/"
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in host else host
    root = request.scope.get("root_path", "").rstrip("/")
    return f"http://{host}{f':{port}' if port else ''}{root}/"


def _compartment(rtype: str, params: list[tuple[str, str]], patient: str) -> list[tuple[str, str]]:
    """The search restricted to one patient's compartment, or a 403 for a type this server cannot restrict."""
    if rtype == "Patient":
        return [*params, ("_id", patient)]
    if rtype in SEARCHES:
        return [*params, ("patient", patient)]
    raise FhirHttpError(
        403,
        "forbidden",
        f"the token's patient/ scopes read only patient {patient}'s records, and {rtype} is not searched by "
        "patient here; ask for a user/ or system/ scope",
    )


def _searched_patient(rtype: str, params: Sequence[tuple[str, str]]) -> str | None:
    """The one patient a search names (patient=, subject=, or a Patient's _id), for its audit record."""
    names = ("_id",) if rtype == "Patient" else ("patient", "subject")
    found = {v.rsplit("/", 1)[-1] for k, v in params if k in names and "," not in v}
    return found.pop() if len(found) == 1 else None


#: ``record(request, status, patient, error, duration_ms)``: one audit record of a read or search
ReadAudit = Callable[[Request, int, "str | None", "str | None", float], None]


def create_fhir_app(
    store_path: Path,
    *,
    bearer_token: str | None = None,
    base_url: str | None = None,
    guard: Guard | None = None,
    read_audit: ReadAudit | None = None,
) -> FastAPI:
    """A FastAPI app serving the store read-only; with ``bearer_token``, every request must carry it.

    With ``guard``, each read and search is checked (and audited) by it instead: a request carrying exactly
    ``bearer_token`` (if any) is let through as before, any other is the guard's to grant, refuse or restrict to
    one patient (``GET /metadata`` stays open, as a SMART server's CapabilityStatement is).

    ``read_audit`` records each read and search the guard does not (the shared token's, or all of them on a
    server without a guard), so that every read of the store leaves a record whoever made it.

    Links start with ``base_url`` (else with the address the server listens on). The index is built here, so a
    missing or unreadable store fails at once; it is rebuilt when an ingest replaces the store file, and closed at
    shutdown.
    """
    if bearer_token is not None and not bearer_token.strip():
        raise InputFileError("the bearer token is empty", "give a non-empty token, or none for an open server")
    base = check_base_url(base_url) if base_url is not None else None
    live = LiveFhirIndex(Path(store_path))
    expected = f"Bearer {bearer_token}".encode() if bearer_token is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        live.close()

    app = FastAPI(
        title="medml FHIR server (read-only)", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.fhir_index = live

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Any:
        if expected is None:
            return await call_next(request)
        given = request.headers.get("authorization")
        if given is None and guard is not None:
            return await call_next(request)  # the guard answers 401 where a route needs a token
        if given is None:
            return _fhir_response(
                operation_outcome("login", "this server needs Authorization: Bearer <token>"),
                401,
                {"WWW-Authenticate": 'Bearer realm="medml-fhir"'},
            )
        # compared in constant time; the token itself is never logged nor echoed
        if hmac.compare_digest(given.encode(), expected):
            request.scope["medml.shared_token"] = True
            return await call_next(request)
        if guard is not None:
            return await call_next(request)  # a JWT, for the guard of each route
        return _fhir_response(
            operation_outcome("login", "the bearer token is not valid for this server"),
            401,
            {"WWW-Authenticate": 'Bearer realm="medml-fhir", error="invalid_token"'},
        )

    @app.exception_handler(FhirHttpError)
    async def fhir_error(request: Request, exc: FhirHttpError) -> Any:
        return _fhir_response(operation_outcome(exc.code, exc.diagnostics), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return _fhir_response(
            operation_outcome(code, f"{request.method} {request.url.path}: {exc.detail}"), exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        return _fhir_response(operation_outcome("invalid", f"{request.method} {request.url.path}: {exc}"), 400)

    def links_base(request: Request) -> str:
        return base if base is not None else _listening_base(request)

    def checked(request: Request, rtype: str, interaction: str) -> Grant:
        if guard is None or request.scope.get("medml.shared_token"):
            if read_audit is None:
                return Grant()
            started, record = time.perf_counter(), read_audit

            def audited(status: int, patient: str | None, error: str | None = None) -> None:
                record(request, status, patient, error, (time.perf_counter() - started) * 1000)

            return Grant(audit=audited)
        _check_type(rtype)  # an unknown type is a 404 before any token is looked at
        return guard(request, rtype, interaction)

    def answered(grant: Grant, answer: Callable[[], tuple[Response, str | None]]) -> Response:
        """``answer()`` -> (response, the patient it read), audited with its status either way."""
        try:
            response, patient = answer()
        except FhirHttpError as exc:
            if grant.audit is not None:
                grant.audit(exc.status, grant.patient, exc.diagnostics)
            raise
        if grant.audit is not None:
            grant.audit(response.status_code, patient)
        return response

    @app.get("/metadata")
    def metadata(request: Request) -> Any:
        statement = capability_statement(live.current(), links_base(request), expected is not None or guard is not None)
        if guard is not None:
            statement["rest"][0]["security"] = {
                "service": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                "code": "SMART-on-FHIR",
                            }
                        ]
                    }
                ],
                "description": "Authorization: Bearer <JWT> from a trusted issuer, with SMART App Launch 2.0 scopes: "
                "patient/, user/ or system/<Type>.r to read, .s to search (patient/: the token's patient only)",
            }
        return _fhir_response(statement)

    @app.get("/{rtype}/{rid}")
    def read(rtype: str, rid: str, request: Request) -> Any:
        grant = checked(request, rtype, "read")

        def answer() -> tuple[Response, str | None]:
            index = live.current()
            body = index.read(rtype, rid)
            patient = index.patient_of(rtype, rid) if guard is not None or grant.audit is not None else None
            if grant.patient is not None and patient != grant.patient:
                raise FhirHttpError(
                    403,
                    "forbidden",
                    f"the token's patient/ scopes read only patient {grant.patient}'s records; {rtype}/{rid} is not "
                    "one of them",
                )
            return _fhir_response(body), patient

        return answered(grant, answer)

    @app.get("/{rtype}")
    def search(rtype: str, request: Request) -> Any:
        grant = checked(request, rtype, "search")
        params = list(request.query_params.multi_items())

        def answer() -> tuple[Response, str | None]:
            asked = params if grant.patient is None else _compartment(rtype, params, grant.patient)
            page = live.current().search(rtype, asked)
            return _fhir_response(searchset(links_base(request), rtype, params, page)), (
                grant.patient or _searched_patient(rtype, params)
            )

        return answered(grant, answer)

    return app


__all__ = [
    "DEFAULT_COUNT",
    "FHIR_JSON",
    "MAX_COUNT",
    "SEARCHES",
    "FhirHttpError",
    "FhirIndex",
    "Grant",
    "Guard",
    "LiveFhirIndex",
    "SearchPage",
    "SearchSpec",
    "capability_statement",
    "check_base_url",
    "create_fhir_app",
    "file_identity",
    "operation_outcome",
    "search_params",
]
