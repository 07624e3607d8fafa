"""The FHIR store and ingest: Bundles and NDJSON in, idempotent upserts, references resolved, bad input refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from medml.config import get_settings
from medml.errors import DataError, InputFileError, NotFoundError
from medml.fhir.ingest import bundle_resources, ingest, read_resources
from medml.fhir.store import FhirStore

SYNTHEA = get_settings().data_root / "fhir" / "synthea-r4"


def _read_gz(path: str | Path) -> Any:
    with gzip.open(path) as fh:
        return json.loads(fh.read())


def _bundle(kind: str, *resources: dict[str, Any], urn: bool = False) -> dict[str, Any]:
    entries = []
    for r in resources:
        e: dict[str, Any] = {"resource": r}
        if urn:
            e["fullUrl"] = f"urn:uuid:{r['id']}"
            e["request"] = {"method": "POST", "url": r["resourceType"]}
        entries.append(e)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


def _obs(oid: str, subject: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def _write_ndjson(path: Path, resources: list[Any], gz: bool = False) -> Path:
    data = b"".join(orjson.dumps(r) + b"\n" for r in resources)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_synthea_bundles_ingest_with_every_reference_resolved(tmp_path: Path) -> None:
    files = sorted(SYNTHEA.glob("*.json.gz"))[:6] + sorted(SYNTHEA.glob("hospital*.json.gz"))
    expected: dict[str, set[str]] = {}
    for f in files:  # counted independently of the ingest code: unique ids per type in the raw bundles
        for e in _read_gz(f)["entry"]:
            expected.setdefault(e["resource"]["resourceType"], set()).add(e["resource"]["id"])
    with FhirStore(tmp_path / "s.duckdb") as store:
        report = ingest(store, files)
        assert store.counts() == {t: len(ids) for t, ids in expected.items()}
        assert report.resources == sum(len(v) for v in expected.values())
        obs = store.con.execute("SELECT resource FROM resources WHERE resource_type = 'Observation' LIMIT 1").fetchall()
        subject = orjson.loads(obs[0][0])["subject"]["reference"]
        assert subject.startswith("Patient/")  # urn:uuid: rewritten as a server would
        assert store.resolve(subject)["resourceType"] == "Patient"
        assert store.dangling_references()[0] == 0


def test_reingest_is_idempotent_and_upserts(tmp_path: Path) -> None:
    f = _write_ndjson(tmp_path / "Patient.ndjson", [_patient("a", gender="male"), _patient("b")])
    with FhirStore(tmp_path / "s.duckdb") as store:
        ingest(store, [f])
        ingest(store, [f])
        assert store.counts() == {"Patient": 2}
        _write_ndjson(f, [_patient("a", gender="female", meta={"lastUpdated": "2024-01-02T00:00:00Z"})])
        ingest(store, [f])
        assert store.counts() == {"Patient": 2}
        assert store.get("Patient", "a")["gender"] == "female"
        assert store.con.execute("SELECT last_updated FROM resources WHERE id = 'a'").fetchall() == [
            ("2024-01-02T00:00:00Z",)
        ]


def test_ndjson_gzip_and_directories(tmp_path: Path) -> None:
    d = tmp_path / "export"
    d.mkdir()
    _write_ndjson(d / "Patient.ndjson.gz", [_patient("p1"), _patient("p2")], gz=True)
    _write_ndjson(d / "Observation.ndjson", [_obs("o1", "Patient/p1", 80), _obs("o2", "Patient/p2", 95)])
    (d / "notes.txt").write_text("not FHIR")
    with FhirStore() as store:
        report = ingest(store, [d])
        assert report.files == 2 and dict(report.by_type) == {"Patient": 2, "Observation": 2}
        assert store.resolve({"reference": "Patient/p2"})["id"] == "p2"


@pytest.mark.parametrize("kind", ["transaction", "collection", "searchset"])
def test_bundle_kinds(tmp_path: Path, kind: str) -> None:
    bundle = _bundle(kind, _patient("p1"), _obs("o1", "urn:uuid:p1", 70), urn=True)
    if kind == "searchset":
        bundle["entry"].append(
            {"resource": {"resourceType": "OperationOutcome", "id": "x", "issue": []}, "search": {"mode": "outcome"}}
        )
    f = tmp_path / "b.json"
    f.write_bytes(orjson.dumps(bundle))
    with FhirStore() as store:
        ingest(store, [f])
        assert store.counts() == {"Observation": 1, "Patient": 1}
        assert store.get("Observation", "o1")["subject"] == {"reference": "Patient/p1"}


def test_transaction_post_without_id_takes_its_uuid() -> None:
    p = {"resourceType": "Patient"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:9f1c", "resource": p, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:77aa", "resource": _obs("o", "urn:uuid:9f1c", 1), "request": {"method": "POST"}},
        ],
    }
    resources = list(bundle_resources(bundle))
    assert [r["id"] for r in resources] == ["9f1c", "o"]
    assert resources[1]["subject"]["reference"] == "Patient/9f1c"


# --- bad input: a clear error that names the place, and the store unchanged ---------------------------------


def _seeded(tmp_path: Path) -> FhirStore:
    store = FhirStore(tmp_path / "s.duckdb")
    store.add([_patient("keep")])
    return store


def _assert_unchanged(store: FhirStore) -> None:
    assert store.counts() == {"Patient": 1}
    assert store.get("Patient", "keep")["id"] == "keep"


def test_malformed_ndjson_line_aborts_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "Patient.ndjson"
    f.write_bytes(orjson.dumps(_patient("a")) + b"\n{not json\n" + orjson.dumps(_patient("c")) + b"\n")
    store = _seeded(tmp_path)
    with pytest.raises(DataError, match=r"Patient\.ndjson, line 2: not valid JSON.*nothing was ingested"):
        ingest(store, [f])
    _assert_unchanged(store)
    report = ingest(store, [f], on_error="skip")
    assert [str(p.where) for p in report.skipped] == ["line 2"]
    assert store.counts() == {"Patient": 3}


def test_bundle_that_is_not_json(tmp_path: Path) -> None:
    f = tmp_path / "bundle.json"
    f.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    store = _seeded(tmp_path)
    with pytest.raises(DataError, match="bundle.json, whole file: not valid JSON"):
        ingest(store, [f])
    _assert_unchanged(store)


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Patiant", "id": "x"}, "unknown FHIR R4 resource type 'Patiant'"),
        ({"resourceType": "Patient"}, "Patient without an id"),
        ([1, 2], "expected a FHIR resource"),
    ],
)
def test_bad_resources_are_refused(tmp_path: Path, resource: Any, message: str) -> None:
    f = _write_ndjson(tmp_path / "x.ndjson", [_patient("new"), resource])
    store = _seeded(tmp_path)
    with pytest.raises(DataError, match=message):
        ingest(store, [f])
    _assert_unchanged(store)


def test_urn_reference_to_nothing_in_the_bundle(tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_bytes(orjson.dumps(_bundle("transaction", _patient("p1"), _obs("o1", "urn:uuid:nobody", 1), urn=True)))
    store = _seeded(tmp_path)
    with pytest.raises(DataError, match="entry 2: reference urn:uuid:nobody points to no entry"):
        ingest(store, [f])
    _assert_unchanged(store)


def test_missing_reference_and_paths(tmp_path: Path) -> None:
    store = _seeded(tmp_path)
    store.add([_obs("o", "Patient/ghost", 1)])
    with pytest.raises(NotFoundError, match="Patient/ghost is not in the FHIR store"):
        store.resolve(store.get("Observation", "o")["subject"])
    assert store.dangling_references() == (1, ["Patient/ghost"])
    with pytest.raises(DataError, match="cannot resolve reference"):
        store.resolve("ghost")
    with pytest.raises(InputFileError, match="does not exist"):
        read_resources([tmp_path / "nope.ndjson"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no FHIR files"):
        read_resources([tmp_path / "empty"])
    (tmp_path / "s.csv").write_text("id\n1\n")
    with pytest.raises(InputFileError, match="not a FHIR JSON or NDJSON file"):
        read_resources([tmp_path / "s.csv"])


def test_truncated_gzip(tmp_path: Path) -> None:
    f = tmp_path / "Patient.ndjson.gz"
    f.write_bytes(gzip.compress(orjson.dumps(_patient("a")) * 50)[:30])
    with pytest.raises(InputFileError, match="cannot read"):
        read_resources([f])
