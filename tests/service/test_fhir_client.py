"""Fetching prefetch from a FHIR server: against the medml FHIR server on loopback, and odd servers mocked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from medml.config import get_settings
from medml.fhir.ingest import ingest
from medml.fhir.server import create_fhir_app
from medml.fhir.store import FhirStore
from medml.service.fhir_client import FhirFetchError, fetch_prefetch

SYNTHEA = get_settings().data_root / "fhir" / "synthea-r4"
TOKEN = "prefetch-token-0123456789"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fhir") / "synthea.duckdb"
    with FhirStore(path) as store:
        ingest(store, sorted(SYNTHEA.glob("*.json.gz"))[4:7])
    return path


@pytest.fixture(scope="module")
def busiest(store_path: Path) -> str:
    """The patient with the most Observations, straight from the store."""
    with FhirStore(store_path, read_only=True) as store:
        return str(
            store.con.execute("""SELECT resource->>'$.subject.reference' AS ref FROM resources
                                        WHERE resource_type = 'Observation' GROUP BY ref ORDER BY count(*) DESC
                                        LIMIT 1""").fetchall()[0][0]
        ).removeprefix("Patient/")


def _count(store_path: Path, sql: str, *args: Any) -> int:
    with FhirStore(store_path, read_only=True) as store:
        return int(store.con.execute(sql, list(args)).fetchall()[0][0])


def _fetch(
    base: str,
    token: str | None,
    queries: Mapping[str, str],
    *,
    max_pages: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, dict[str, Any] | None]:
    async def run() -> dict[str, dict[str, Any] | None]:
        async with httpx.AsyncClient(timeout=5, transport=transport) as client:
            return await fetch_prefetch(client, base, token, queries, max_pages=max_pages)

    return asyncio.run(run())


def test_reads_and_searches_run_together(serve: Callable[[Any], str], store_path: Path, busiest: str) -> None:
    base = serve(create_fhir_app(store_path))
    with FhirStore(store_path, read_only=True) as store:  # the patient's two commonest LOINC codes
        code1, code2 = [
            str(r[0])
            for r in store.con.execute(
                """
            SELECT resource->>'$.code.coding[0].code' AS code FROM resources WHERE resource_type = 'Observation'
            AND resource->>'$.subject.reference' = ? AND resource->>'$.code.coding[0].system' = 'http://loinc.org'
            GROUP BY code ORDER BY count(*) DESC, code LIMIT 2""",
                [f"Patient/{busiest}"],
            ).fetchall()
        ]
    got = _fetch(
        base,
        None,
        {
            "patient": f"Patient/{busiest}",
            "missing": "Patient/nobody",
            "vitals": f"Observation?patient={busiest}&code=http://loinc.org|{code1},http://loinc.org|{code2}",
            "conditions": f"Condition?patient=Patient/{busiest}&clinical-status=active",
        },
    )
    with FhirStore(store_path, read_only=True) as store:
        assert got["patient"] == store.get("Patient", busiest)
    assert got["missing"] is None
    vitals = got["vitals"]
    assert vitals is not None and vitals["resourceType"] == "Bundle" and vitals["type"] == "searchset"
    expected = _count(
        store_path,
        """SELECT count(*) FROM resources WHERE resource_type = 'Observation'
        AND resource->>'$.subject.reference' = ? AND list_has_any(
            list_transform(CAST(resource->'$.code.coding' AS JSON[]), lambda c: c->>'code'), [?, ?])""",
        f"Patient/{busiest}",
        code1,
        code2,
    )
    assert expected > 0 and vitals["total"] == expected == len(vitals["entry"])
    assert {e["resource"]["code"]["coding"][0]["code"] for e in vitals["entry"]} <= {code1, code2}
    conditions = got["conditions"]
    assert conditions is not None
    assert (
        conditions["total"]
        == len(conditions["entry"])
        == _count(
            store_path,
            """SELECT count(*) FROM resources
        WHERE resource_type = 'Condition' AND resource->>'$.subject.reference' = ?
        AND resource->>'$.clinicalStatus.coding[0].code' = 'active'""",
            f"Patient/{busiest}",
        )
    )


def test_pages_are_followed_and_merged(serve: Callable[[Any], str], store_path: Path, busiest: str) -> None:
    base = serve(create_fhir_app(store_path))
    expected = _count(
        store_path,
        """SELECT count(*) FROM resources WHERE resource_type = 'Observation'
                                     AND resource->>'$.subject.reference' = ?""",
        f"Patient/{busiest}",
    )
    per_page = expected // 4 + 1  # 4 pages, the last one short
    got = _fetch(base, None, {"obs": f"Observation?patient={busiest}&_count={per_page}&_sort=date"})["obs"]
    assert got is not None
    ids = [e["resource"]["id"] for e in got["entry"]]
    assert got["total"] == expected == len(ids) == len(set(ids))
    assert [link["relation"] for link in got["link"]] == ["self"]  # no next link left in the merged Bundle
    dates = [e["resource"]["effectiveDateTime"] for e in got["entry"]]
    assert dates == sorted(dates)  # the pages in order (Synthea's dates share one offset)
    with pytest.raises(FhirFetchError, match="more than 3 pages") as caught:
        _fetch(base, None, {"obs": f"Observation?patient={busiest}&_count={per_page}"}, max_pages=3)
    assert caught.value.key == "obs"


def test_date_filter(serve: Callable[[Any], str], store_path: Path, busiest: str) -> None:
    base = serve(create_fhir_app(store_path))
    with FhirStore(store_path, read_only=True) as store:  # a day inside the patient's record (Synthea's are UTC)
        day = str(
            store.con.execute(
                """SELECT quantile_disc(resource->>'$.effectiveDateTime', 0.5) FROM resources
            WHERE resource_type = 'Observation' AND resource->>'$.subject.reference' = ?""",
                [f"Patient/{busiest}"],
            ).fetchall()[0][0]
        )[:10]
    got = _fetch(
        base,
        None,
        {
            "recent": f"Observation?patient={busiest}&date=ge{day}&_count=1000",
            "old": f"Observation?patient={busiest}&date=lt{day}&_count=1000",
        },
    )
    recent = _count(
        store_path,
        """SELECT count(*) FROM resources WHERE resource_type = 'Observation'
        AND resource->>'$.subject.reference' = ? AND resource->>'$.effectiveDateTime' >= ?""",
        f"Patient/{busiest}",
        day,
    )
    total = _count(
        store_path,
        """SELECT count(*) FROM resources WHERE resource_type = 'Observation'
        AND resource->>'$.subject.reference' = ?""",
        f"Patient/{busiest}",
    )
    assert got["recent"] is not None and got["old"] is not None
    assert 0 < got["recent"]["total"] == recent < total
    assert got["old"]["total"] == total - recent


def test_bearer_token(serve: Callable[[Any], str], store_path: Path, busiest: str) -> None:
    base = serve(create_fhir_app(store_path, bearer_token=TOKEN))
    queries = {"patient": f"Patient/{busiest}", "obs": f"Observation?patient={busiest}&_count=5"}
    for token in (None, TOKEN + "-wrong"):
        with pytest.raises(FhirFetchError, match="refused the access token") as caught:
            _fetch(base, token, queries)
        assert caught.value.status == 401 and caught.value.key in queries
        assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.args)
    got = _fetch(base, TOKEN, queries)
    assert got["patient"] is not None and got["patient"]["id"] == busiest
    assert got["obs"] is not None and len(got["obs"]["entry"]) == got["obs"]["total"]  # next pages carried it too


def test_server_refusals_become_errors(serve: Callable[[Any], str], store_path: Path, busiest: str) -> None:
    base = serve(create_fhir_app(store_path))
    with pytest.raises(FhirFetchError, match="categroy") as caught:
        _fetch(base, None, {"labs": f"Observation?patient={busiest}&categroy=laboratory"})
    assert caught.value.status == 400 and caught.value.key == "labs"
    with pytest.raises(FhirFetchError, match="no 'Pateint' search") as missing:
        _fetch(base, None, {"p": "Pateint?_id=1"})
    assert missing.value.status == 404
    with pytest.raises(FhirFetchError, match="not relative"):
        _fetch(base, None, {"p": "https://elsewhere.example/Patient/1"})


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def _bundle(entries: list[str], next_url: str | None = None, total: int | None = None) -> dict[str, Any]:
    links = [{"relation": "self", "url": "x"}] + ([{"relation": "next", "url": next_url}] if next_url else [])
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total if total is not None else len(entries),
        "link": links,
        "entry": [{"resource": {"resourceType": "Observation", "id": i}, "search": {"mode": "match"}} for i in entries],
    }


def test_relative_next_links_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = request.url.params.get("page", "1")
        body = _bundle([f"o{page}a", f"o{page}b"], None if page == "3" else f"Observation?page={int(page) + 1}", 6)
        return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/fhir+json"})

    got = _fetch("https://ehr.example/fhir", TOKEN, {"obs": "Observation?patient=1"}, transport=_mock(handler))
    assert got["obs"] is not None
    assert [e["resource"]["id"] for e in got["obs"]["entry"]] == ["o1a", "o1b", "o2a", "o2b", "o3a", "o3b"]
    assert [str(r.url) for r in seen] == [
        "https://ehr.example/fhir/Observation?patient=1",
        "https://ehr.example/fhir/Observation?page=2",
        "https://ehr.example/fhir/Observation?page=3",
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in seen)
    assert all(r.headers["accept"] == "application/fhir+json" for r in seen)


@pytest.mark.parametrize(
    ("response", "status", "reason"),
    [
        (httpx.Response(500, text="boom"), 500, "server failed"),
        (httpx.Response(503), 503, "server failed"),
        (httpx.Response(403, json={"resourceType": "OperationOutcome"}), 403, "does not allow"),
        (httpx.Response(200, text="<html>login</html>"), 200, "not valid JSON"),
        (httpx.Response(200, json=[1, 2]), 200, "not a FHIR resource"),
        (httpx.Response(200, json={"resourceType": "Observation", "id": "1"}), 200, "asked for a Patient"),
        (
            httpx.Response(
                400,
                json={
                    "resourceType": "OperationOutcome",
                    "issue": [{"code": "invalid", "diagnostics": f"bad header Bearer {TOKEN}"}],
                },
            ),
            400,
            "bad header Bearer \\*\\*\\*",
        ),
    ],
)
def test_bad_answers_raise(response: httpx.Response, status: int, reason: str) -> None:
    with pytest.raises(FhirFetchError, match=reason) as caught:
        _fetch("https://ehr.example/fhir", TOKEN, {"patient": "Patient/1"}, transport=_mock(lambda r: response))
    assert caught.value.status == status and caught.value.key == "patient"
    assert TOKEN not in str(caught.value)


def test_a_search_answered_with_a_resource_raises() -> None:
    answer = httpx.Response(200, json={"resourceType": "Patient", "id": "1"})
    with pytest.raises(FhirFetchError, match="not a searchset Bundle"):
        _fetch("https://ehr.example/fhir", None, {"obs": "Observation?patient=1"}, transport=_mock(lambda r: answer))


def test_a_search_answered_with_other_resources_raises() -> None:
    bundle = _bundle(["a"])
    bundle["entry"][0]["resource"]["resourceType"] = "Condition"
    answer = httpx.Response(200, json=bundle)
    with pytest.raises(FhirFetchError, match="a search for Observation answered a Condition"):
        _fetch("https://ehr.example/fhir", None, {"obs": "Observation?patient=1"}, transport=_mock(lambda r: answer))


def test_next_link_to_another_server_is_not_followed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json=_bundle(["a"], "https://attacker.example/fhir/Observation?page=2"))

    with pytest.raises(FhirFetchError, match="another server"):
        _fetch("https://ehr.example/fhir", TOKEN, {"obs": "Observation?patient=1"}, transport=_mock(handler))
    assert calls == ["https://ehr.example/fhir/Observation?patient=1"]


def test_timeouts_and_unreachable_servers_raise() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(FhirFetchError, match="did not answer in time") as caught:
        _fetch(
            "https://ehr.example/fhir",
            TOKEN,
            {"patient": "Patient/1", "obs": "Observation?patient=1"},
            transport=_mock(slow),
        )
    assert caught.value.status is None
    with pytest.raises(FhirFetchError, match="cannot reach"):
        _fetch("http://127.0.0.1:9", None, {"patient": "Patient/1"})
