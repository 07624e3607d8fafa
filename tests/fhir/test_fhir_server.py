"""The read-only FHIR server: reads, searches and paging checked against the store's own rows, read in plain Python."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from medml.config import get_settings
from medml.errors import NotFoundError
from medml.fhir.ingest import ingest
from medml.fhir.server import create_fhir_app
from medml.fhir.store import FhirStore

SYNTHEA = get_settings().data_root / "fhir" / "synthea-r4"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fhir") / "synthea.duckdb"
    with FhirStore(path) as store:
        ingest(store, sorted(SYNTHEA.glob("*.json.gz"))[:4])
    return path


@pytest.fixture(scope="module")
def stored(store_path: Path) -> list[dict[str, Any]]:
    """Every stored resource, parsed: the reference the server's answers are checked against."""
    with FhirStore(store_path, read_only=True) as store:
        return [orjson.loads(r[0]) for r in store.con.execute("SELECT resource FROM resources").fetchall()]


@pytest.fixture()
def fhir(serve: Callable[[Any], str], store_path: Path) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(create_fhir_app(store_path)), timeout=10) as client:
        yield client


def _patient_of(resource: dict[str, Any]) -> str | None:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.removeprefix("Patient/") if ref.startswith("Patient/") else None


def _codes(resource: dict[str, Any], element: str = "code") -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (resource.get(element) or {}).get("coding", [])}


def _when(obs: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obs.get("effectiveDateTime") or obs["effectivePeriod"]["start"])


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _all_pages(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], int]:
    """Every page of a search, following next links; (pages, total of the first)."""
    pages = [client.get(url).raise_for_status().json()]
    while nxt := [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]:
        pages.append(client.get(nxt[0]).raise_for_status().json())
    return pages, pages[0]["total"]


def _busiest_patient(stored: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in stored:
        if r["resourceType"] == "Observation":
            counts[_patient_of(r) or ""] = counts.get(_patient_of(r) or "", 0) + 1
    return max(counts, key=lambda p: counts[p])


def test_metadata_lists_types_and_search_parameters(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    r = fhir.get("/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    cap = r.json()
    assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
    by_type = {res["type"]: {p["name"] for p in res["searchParam"]} for res in cap["rest"][0]["resource"]}
    assert {r["resourceType"] for r in stored} <= set(by_type)
    assert {"_id", "patient", "subject", "code", "category", "status", "date"} <= by_type["Observation"]
    assert "vaccine-code" in by_type["Immunization"] and "subject" not in by_type["Immunization"]
    assert "clinical-status" in by_type["Condition"] and by_type["Patient"] == {"_id"}


def test_read_returns_the_stored_resource_and_404_otherwise(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    for resource in [r for r in stored if r["resourceType"] in ("Patient", "Observation", "Practitioner")][:5]:
        r = fhir.get(f"/{resource['resourceType']}/{resource['id']}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
        assert r.json() == resource
    missing = fhir.get("/Patient/no-such-patient")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert "Patient/no-such-patient" in missing.json()["issue"][0]["diagnostics"]
    bad_type = fhir.get("/Pateint/1")
    assert bad_type.status_code == 404 and "Pateint" in bad_type.json()["issue"][0]["diagnostics"]
    assert fhir.get("/Pateint").status_code == 404
    assert fhir.post("/Patient", content=b"{}").json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "rtype",
    [
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "Procedure",
        "DiagnosticReport",
        "Immunization",
        "AllergyIntolerance",
    ],
)
def test_search_by_patient_matches_the_store(fhir: httpx.Client, stored: list[dict[str, Any]], rtype: str) -> None:
    patients = sorted(r["id"] for r in stored if r["resourceType"] == "Patient")
    for pid in patients:
        expected = sorted(r["id"] for r in stored if r["resourceType"] == rtype and _patient_of(r) == pid)
        bundle = fhir.get(f"/{rtype}", params={"patient": pid, "_count": 1000}).json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        assert bundle["total"] == len(expected)
        assert sorted(_ids(bundle)) == expected
        for entry in bundle.get("entry", []):
            assert entry["search"] == {"mode": "match"}
            assert entry["fullUrl"].endswith(f"/{rtype}/{entry['resource']['id']}")
        if rtype != "AllergyIntolerance" and rtype != "Immunization":  # these have no subject parameter
            by_subject = fhir.get(f"/{rtype}", params={"subject": f"Patient/{pid}", "_count": 1000}).json()
            assert sorted(_ids(by_subject)) == expected
    assert fhir.get(f"/{rtype}", params={"patient": "nobody"}).json()["total"] == 0


def test_code_tokens_match_any_coding(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    pid = _busiest_patient(stored)
    mine = [r for r in stored if r["resourceType"] == "Observation" and _patient_of(r) == pid]
    common = sorted({c for r in mine for c in _codes(r)}, key=lambda c: -sum(c in _codes(r) for r in mine))[:2]
    (sys1, code1), (sys2, code2) = common

    def search(code: str) -> list[str]:
        return sorted(_ids(fhir.get("/Observation", params={"patient": pid, "code": code, "_count": 1000}).json()))

    one = sorted(r["id"] for r in mine if (sys1, code1) in _codes(r))
    either = sorted(r["id"] for r in mine if {(sys1, code1), (sys2, code2)} & _codes(r))
    assert one and len(either) > len(one)
    assert search(f"{sys1}|{code1}") == one
    assert search(str(code1)) == one  # any system
    assert search(f"{sys1}|{code1},{sys2}|{code2}") == either
    assert search(f"|{code1}") == []  # Synthea's codings all name their system
    assert search(f"{sys1}|") == sorted(r["id"] for r in mine if any(s == sys1 for s, _ in _codes(r)))
    assert search(f"http://example.org/other|{code1}") == []
    vaccine = next(r for r in stored if r["resourceType"] == "Immunization")
    system, code = next(iter(_codes(vaccine, "vaccineCode")))
    found = fhir.get("/Immunization", params={"vaccine-code": f"{system}|{code}", "_count": 1000}).json()
    assert sorted(_ids(found)) == sorted(
        r["id"] for r in stored if r["resourceType"] == "Immunization" and (system, code) in _codes(r, "vaccineCode")
    )


def test_status_and_category(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    active = fhir.get("/Condition", params={"clinical-status": "active", "_count": 1000}).json()
    assert sorted(_ids(active)) == sorted(
        r["id"]
        for r in stored
        if r["resourceType"] == "Condition"
        and "active" in [c["code"] for c in r.get("clinicalStatus", {}).get("coding", [])]
    )
    final = fhir.get("/Observation", params={"status": "final,amended", "_count": 0}).json()
    assert (
        final["total"]
        == sum(r["resourceType"] == "Observation" and r["status"] in ("final", "amended") for r in stored)
        and "entry" not in final
    )
    labs = fhir.get("/Observation", params={"category": "laboratory", "_count": 0}).json()
    assert labs["total"] == sum(
        r["resourceType"] == "Observation"
        and "laboratory" in [c["code"] for cat in r.get("category", []) for c in cat["coding"]]
        for r in stored
    )
    assert labs["total"] > 0


@pytest.mark.parametrize(
    ("param", "test"),
    [
        ("ge2015-01-01", lambda d: d >= datetime(2015, 1, 1, tzinfo=UTC)),
        ("lt2015-01-01", lambda d: d < datetime(2015, 1, 1, tzinfo=UTC)),
        ("gt2015", lambda d: d >= datetime(2016, 1, 1, tzinfo=UTC)),
        ("le2015-06", lambda d: d < datetime(2015, 7, 1, tzinfo=UTC)),
        ("2016", lambda d: datetime(2016, 1, 1, tzinfo=UTC) <= d < datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_date_prefixes_on_observations(
    fhir: httpx.Client, stored: list[dict[str, Any]], param: str, test: Callable[[datetime], bool]
) -> None:
    expected = sorted(r["id"] for r in stored if r["resourceType"] == "Observation" and test(_when(r)))
    assert len(expected) > 0
    pages, total = _all_pages(fhir, f"/Observation?date={param}&_count=1000")
    assert total == len(expected)
    assert sorted(i for p in pages for i in _ids(p)) == expected


def test_date_range_and_sort_on_encounters(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    pid = _busiest_patient(stored)
    mine = [r for r in stored if r["resourceType"] == "Encounter" and _patient_of(r) == pid]
    starts = sorted(datetime.fromisoformat(r["period"]["start"]).astimezone(UTC) for r in mine)
    low = starts[len(starts) // 4].replace(hour=0, minute=0, second=0)  # whole days: the search's day boundaries
    high = starts[3 * len(starts) // 4].replace(hour=0, minute=0, second=0)
    expected = [r for r in mine if low <= datetime.fromisoformat(r["period"]["start"]) < high]
    params = [
        ("patient", pid),
        ("date", f"ge{low:%Y-%m-%d}"),
        ("date", f"lt{high:%Y-%m-%dT%H:%M:%S}Z"),
        ("_sort", "-date"),
    ]
    bundle = fhir.get("/Encounter", params=params).json()
    assert 0 < len(expected) < len(mine)
    assert sorted(_ids(bundle)) == sorted(r["id"] for r in expected)
    starts = [datetime.fromisoformat(e["resource"]["period"]["start"]) for e in bundle["entry"]]
    assert starts == sorted(starts, reverse=True)


def test_paging_walks_every_match_once(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    pid = _busiest_patient(stored)
    expected = sorted(r["id"] for r in stored if r["resourceType"] == "Observation" and _patient_of(r) == pid)
    count = math.ceil(len(expected) / 4)
    pages, total = _all_pages(fhir, f"/Observation?patient=Patient/{pid}&_count={count}&_sort=date")
    assert total == len(expected) and len(pages) == 4
    ids = [i for p in pages for i in _ids(p)]
    assert sorted(ids) == expected  # each once: no overlap, no gap
    dates = [_when(e["resource"]) for p in pages for e in p["entry"]]
    assert dates == sorted(dates)
    second = pages[1]["link"]
    assert any(link["relation"] == "previous" for link in second)
    self_link = next(link["url"] for link in pages[0]["link"] if link["relation"] == "self")
    assert f"_count={count}" in self_link and "_offset=0" in self_link


def test_count_is_capped_and_id_search(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    bundle = fhir.get("/Observation", params={"_count": 5000}).json()
    assert len(bundle["entry"]) == min(1000, bundle["total"])
    assert "_count=1000" in bundle["link"][0]["url"]
    two = [r["id"] for r in stored if r["resourceType"] == "Patient"][:2]
    found = fhir.get("/Patient", params={"_id": ",".join(two)}).json()
    assert sorted(_ids(found)) == sorted(two)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("/Observation?patient=1&categroy=laboratory", "categroy"),
        ("/Observation?code:text=pulse", "code:text"),
        ("/Encounter?code=1234", "'code'"),
        ("/Observation?date=sa2015", "sa"),
        ("/Observation?date=2015-13-45", "2015-13-45"),
        ("/Observation?_count=ten", "_count"),
        ("/Observation?_sort=value", "value"),
        ("/Observation?patient=Group/1", "Patient only"),
        ("/Observation?patient=", "empty"),
        ("/Observation?code=a|b|c", "a|b|c"),
    ],
)
def test_bad_searches_are_refused_with_the_reason(fhir: httpx.Client, query: str, named: str) -> None:
    r = fhir.get(query)
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and named in outcome["issue"][0]["diagnostics"]


def test_bearer_token_is_required(serve: Callable[[Any], str], store_path: Path, stored: list[dict[str, Any]]) -> None:
    base = serve(create_fhir_app(store_path, bearer_token=TOKEN))
    pid = next(r["id"] for r in stored if r["resourceType"] == "Patient")
    with httpx.Client(base_url=base) as client:
        for path in ("/metadata", f"/Patient/{pid}", f"/Observation?patient={pid}"):
            none = client.get(path)
            assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
            assert none.json()["resourceType"] == "OperationOutcome"
            wrong = client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"})
            assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
            assert TOKEN not in wrong.text
            assert client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_concurrent_searches_each_get_their_own_answer(fhir: httpx.Client, stored: list[dict[str, Any]]) -> None:
    patients = sorted(r["id"] for r in stored if r["resourceType"] == "Patient")
    expected = {p: sum(r["resourceType"] == "Observation" and _patient_of(r) == p for r in stored) for p in patients}

    def total(pid: str) -> int:
        return int(fhir.get("/Observation", params={"patient": pid, "_count": 50}).json()["total"])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(total, patients * 6))
    assert got == [expected[p] for p in patients * 6]


def test_a_missing_store_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no FHIR store"):
        create_fhir_app(tmp_path / "none.duckdb")
