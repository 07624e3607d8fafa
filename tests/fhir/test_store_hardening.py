"""The FHIR store, its ingest and its server, held to what the security review of issue 13 found missing."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from medml.errors import DataError, InputFileError
from medml.fhir.ingest import ingest
from medml.fhir.server import FhirIndex, create_fhir_app
from medml.fhir.store import MAX_DEPTH, MAX_RESOURCE_BYTES, FhirStore

MEDML = [sys.executable, "-m", "medml.cli"]
GOOD = b'{"resourceType":"Patient","id":"good"}'
NESTED = b'{"resourceType":"Patient","id":"bad","extension":'  # a line that ends in `value}`

# what DuckDB's JSON reader (yyjson) takes and RFC 8259 (and orjson) refuses, each as the value of a Patient's field
NOT_JSON = {
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-inf": b"-inf",
    "nan in a list": b"[1, nan]",
    "trailing comma": b"[1,]",
    "trailing comma, object": b'{"a": 1 ,}',
    "1e400": b"1e400",
    "1.8e308": b"1.8e308",
    "310 digits": b"1" + b"0" * 309,
    "100,000 levels": b"[" * 100_000 + b"]" * 100_000,
    f"{MAX_DEPTH} levels": b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,  # with the Patient: one more than the limit
}


def _ndjson(path: Path, *lines: bytes, gz: bool = False) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _seeded(path: Path) -> Path:
    with FhirStore(path) as store:
        store.add([{"resourceType": "Patient", "id": "keep"}])
    return path


def _stored(path: Path) -> dict[str, Any]:
    """Every stored resource by type/id, each parsed strictly (orjson refuses what is not JSON)."""
    with FhirStore(path, read_only=True) as store:
        rows = store.con.execute("SELECT resource_type, id, resource FROM resources").fetchall()
    return {f"{t}/{i}": orjson.loads(r) for t, i, r in rows}


def _environ(home: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    environ = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    environ.pop("MEDML_FHIR_TOKEN", None)
    return environ | (env or {})


def cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`medml fhir ARGS`; a `serve` that should be refused gets a short timeout (it would serve on before the fix)."""
    cmd = [*MEDML, "fhir", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_environ(home), timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert message.startswith("error:"), message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)
    return message


# -- only strict JSON, within the limits, goes into the store (item 1) -------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["ndjson", "ndjson.gz"])
@pytest.mark.parametrize("value", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_a_line_that_is_not_strict_json_is_refused_by_file_and_line(tmp_path: Path, value: bytes, gz: bool) -> None:
    store_path = _seeded(tmp_path / "s.duckdb")
    before = store_path.read_bytes()
    f = _ndjson(tmp_path / ("Patient.ndjson" + (".gz" if gz else "")), GOOD, NESTED + value + b"}", gz=gz)
    with FhirStore(store_path) as store, pytest.raises(DataError, match=r"Patient\.ndjson(\.gz)?, line 2: .*nothing"):
        ingest(store, [f])
    assert store_path.read_bytes() == before
    with FhirStore(store_path) as store:
        report = ingest(store, [f], on_error="skip")
    assert [p.where for p in report.skipped] == ["line 2"]
    assert set(_stored(store_path)) == {"Patient/keep", "Patient/good"}


def test_what_only_looks_odd_keeps_the_bulk_path(tmp_path: Path) -> None:
    """Text that holds NaN, many shallow brackets, numbers with exponents: all strict JSON, all stored as given."""
    lines = [
        b'{"resourceType":"Patient","id":"t","text":{"div":"x: NaN, [inf, ]"},"name":[{"text":"Nancy"}]}',
        b'{"resourceType":"Observation","id":"o","valueQuantity":{"value":1.5e-300},"note":['
        + b",".join([b'{"text":"a"}'] * 150)
        + b"]}",
        b'{"resourceType":"Patient","id":"deep","x":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}",
    ]
    f = _ndjson(tmp_path / "x.ndjson", *lines)
    with FhirStore() as store, store.staging() as stage:
        assert stage.append_ndjson(f)  # staged whole by DuckDB, not sent back to the line-by-line reader
        staged = [r[0] for r in store.con.execute("SELECT resource FROM _medml_staging ORDER BY seq").fetchall()]
    assert [s.encode() for s in staged] == lines


def test_a_bundle_nested_300_levels_is_refused_in_one_line(tmp_path: Path) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    patient = {"resourceType": "Patient", "id": "p", "extension": deep}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}
    f = tmp_path / "deep.json"
    f.write_text(json.dumps(bundle))
    home = tmp_path / "home"
    assert_refused(cli("ingest", str(f), home=home), "deep.json, entry 1", f"more than {MAX_DEPTH} levels")
    skipped = cli("ingest", str(f), "--on-error", "skip", home=home)
    assert skipped.returncode == 0 and "entry 1" in skipped.stderr, skipped.stderr
    with pytest.raises(DataError, match=rf"Patient/p \(resource 1\) is nested more than {MAX_DEPTH} levels"):
        FhirStore.in_memory([patient])


def test_a_line_over_the_size_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = b'{"resourceType":"Patient","id":"big","text":"' + b"a" * MAX_RESOURCE_BYTES + b'"}'
    f = _ndjson(tmp_path / "Patient.ndjson", GOOD, big, b'{"resourceType":"Patient","id":"after"}')
    store_path = _seeded(tmp_path / "s.duckdb")
    with FhirStore(store_path) as store:
        with pytest.raises(DataError, match=r"Patient\.ndjson, line 2: longer than the 16,777,216 bytes"):
            ingest(store, [f])
        report = ingest(store, [f], on_error="skip")
    assert [p.where for p in report.skipped] == ["line 2"]
    assert set(_stored(store_path)) == {"Patient/keep", "Patient/good", "Patient/after"}


def test_get_and_the_server_read_what_ingest_kept(tmp_path: Path, serve: Callable[[Any], str]) -> None:
    home = tmp_path / "home"
    f = _ndjson(tmp_path / "Patient.ndjson", GOOD, NESTED + b"NaN}")
    assert_refused(cli("ingest", str(f), home=home), "Patient.ndjson, line 2", "not valid JSON", "--on-error skip")
    assert cli("ingest", str(f), "--on-error", "skip", home=home).returncode == 0
    got = cli("get", "Patient/good", home=home)
    assert got.returncode == 0 and orjson.loads(got.stdout)["id"] == "good"
    with httpx.Client(base_url=serve(create_fhir_app(home / "fhir.duckdb"))) as client:
        bundle = orjson.loads(client.get("/Patient").content)
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["good"]


# -- readers and the writer coexist (item 2) ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"medml fhir serve exited: {proc.communicate()}")
        try:
            if httpx.get(url, timeout=2).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("medml fhir serve did not answer")


@pytest.fixture()
def fhir_serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``start(*args, env=...)`` runs `medml fhir serve` on a free loopback port; yields its URL; stopped after."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            [*MEDML, "fhir", "serve", "--port", str(port), *args],
            env=_environ(tmp_path / "home", env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/metadata")
        return base

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_ingest_while_readers_and_the_fhir_server_are_open(tmp_path: Path, fhir_serve: Callable[..., str]) -> None:
    from medml.service.routers.pages import StoreView

    home = tmp_path / "home"
    store_path = home / "fhir.duckdb"
    first = _ndjson(tmp_path / "first.ndjson", b'{"resourceType":"Patient","id":"a"}')
    assert cli("ingest", str(first), home=home).returncode == 0
    index = FhirIndex(store_path)  # the server's index, held open as the service's pages hold it
    view = StoreView(store_path)
    reader = FhirStore(store_path, read_only=True)  # `medml fhir get`, a view run
    try:
        assert view.index().read("Patient", "a")
        base = fhir_serve("--store", str(store_path))
        assert httpx.get(f"{base}/Patient/b").status_code == 404

        second = _ndjson(tmp_path / "second.ndjson", b'{"resourceType":"Patient","id":"b"}')
        proc = cli("ingest", str(second), "--store", str(store_path), home=home)
        assert proc.returncode == 0, proc.stderr
        assert "holds 2" in proc.stdout

        assert httpx.get(f"{base}/Patient/b").json()["id"] == "b"  # the server answers from the new file
        assert httpx.get(f"{base}/Patient").json()["total"] == 2
        assert view.index().read("Patient", "b")  # the pages too
        assert reader.counts() == {"Patient": 1}  # an open reader keeps its snapshot, whole
        with FhirStore(store_path, read_only=True) as fresh:  # while one of the same process opens the new file
            assert fresh.counts() == {"Patient": 2}
        assert index.read("Patient", "a") and index.counts == {"Patient": 1}
    finally:
        reader.close()
        index.close()
        view.close()
    assert sorted(p.name for p in store_path.parent.iterdir() if p.name.startswith("fhir")) == ["fhir.duckdb"]


def test_a_second_writer_waits_its_turn_and_loses_nothing(tmp_path: Path) -> None:
    store_path = _seeded(tmp_path / "s.duckdb")
    first = FhirStore(store_path)
    first.add([{"resourceType": "Patient", "id": "one"}])
    with pytest.raises(InputFileError, match=rf"another process \(pid {os.getpid()}\) is writing .*still was after"):
        FhirStore(store_path, wait_seconds=0.3)

    def second_writer() -> None:
        with FhirStore(store_path, wait_seconds=30) as store:
            store.add([{"resourceType": "Patient", "id": "two"}])

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()  # waiting for the first
    first.close()
    thread.join(timeout=30)
    assert set(_stored(store_path)) == {"Patient/keep", "Patient/one", "Patient/two"}


def test_a_failed_ingest_leaves_the_store_file_as_it_was(tmp_path: Path) -> None:
    store_path = _seeded(tmp_path / "s.duckdb")
    before = (store_path.read_bytes(), store_path.stat().st_ino)
    bad = _ndjson(tmp_path / "Patient.ndjson", GOOD, b"{oops")
    with FhirStore(store_path) as store, pytest.raises(DataError):
        ingest(store, [bad])
    assert (store_path.read_bytes(), store_path.stat().st_ino) == before  # not even rewritten: readers keep theirs
    (tmp_path / "s.duckdb.writing").write_bytes(b"left by a writer that was killed")
    with FhirStore(store_path) as store:
        store.add([{"resourceType": "Patient", "id": "next"}])
    assert set(_stored(store_path)) == {"Patient/keep", "Patient/next"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == ["s.duckdb"]


# -- the token never on the command line (item 5) ----------------------------------------------------------------------


def _token(tmp_path: Path, value: str = "tok-" + "x" * 24) -> Path:
    path = tmp_path / "token"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_a_token_on_the_command_line_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _seeded(home / "fhir.duckdb")
    proc = cli("serve", "--token", "hunter2-secret", home=home, timeout=60)
    message = assert_refused(proc, "process list", "--token-file")
    assert "hunter2-secret" not in message


@pytest.mark.parametrize("source", ["file", "environment"])
def test_the_token_comes_from_a_file_or_the_environment(
    tmp_path: Path, fhir_serve: Callable[..., str], source: str
) -> None:
    secret = "tok-" + "y" * 24
    _seeded(tmp_path / "home" / "fhir.duckdb")
    args, env = (["--token-file", str(_token(tmp_path, secret))], None) if source == "file" else ([], secret)
    base = fhir_serve(*args, env={"MEDML_FHIR_TOKEN": env} if env else None)
    assert httpx.get(f"{base}/Patient/keep").status_code == 401
    assert httpx.get(f"{base}/Patient/keep", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "fhir serve" in listed and secret not in listed


# -- no open server off loopback (item 4) ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "fhir.example.org"])
def test_serving_off_loopback_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    home = tmp_path / "home"
    _seeded(home / "fhir.duckdb")
    refused = cli("serve", "--host", host, home=home, timeout=60)
    assert_refused(refused, "without a token", "--token-file", "--trusted-network")
    # the flag lifts the refusal: the command goes on, to find no store here
    missing = str(tmp_path / "none.duckdb")
    trusted = cli("serve", "--host", "192.0.2.7", "--trusted-network", "--store", missing, home=home, timeout=60)
    assert_refused(trusted, "no FHIR store")


# -- links from the configured base URL, never from the Host header (item 3) -------------------------------------------


@pytest.mark.parametrize("base_url", [None, "https://fhir.example.org/r4"])
def test_links_never_reflect_a_forged_host_header(
    tmp_path: Path, serve: Callable[[Any], str], base_url: str | None
) -> None:
    store_path = _seeded(tmp_path / "s.duckdb")
    url = serve(create_fhir_app(store_path, base_url=base_url))
    expected = "https://fhir.example.org/r4/" if base_url else url + "/"
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=url, headers=forged) as client:
        bundle = client.get("/Patient", params={"_count": 0}).json()
        page = client.get("/Patient").json()
        meta = client.get("/metadata").json()
    links = [link["url"] for link in bundle["link"] + page["link"]] + [e["fullUrl"] for e in page["entry"]]
    links.append(meta["implementation"]["url"])
    assert links and all(link.startswith(expected) for link in links), links
    assert page["entry"][0]["fullUrl"] == f"{expected}Patient/keep"


def test_a_bad_base_url_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _seeded(home / "fhir.duckdb")
    assert_refused(cli("serve", "--base-url", "fhir.example.org", home=home, timeout=60), "base URL", "--base-url")
    wildcard = cli("serve", "--host", "0.0.0.0", "--token-file", str(_token(tmp_path)), home=home, timeout=60)
    assert_refused(wildcard, "--base-url")
