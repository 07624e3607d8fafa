"""The audit trail: what one record holds, every tampering a chained log can show, concurrent writers, the CLI.

Limits, stated by tests at the end: someone who can write both the log and its head can rewrite the whole chain
consistently, or delete both; a local file cannot show that (anchor the head hash elsewhere).
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from medml.errors import InputFileError
from medml.service.audit import (
    GENESIS,
    AuditEntry,
    AuditSink,
    Caller,
    CardSeen,
    InMemoryAuditSink,
    JsonlAuditLog,
    canonical_json,
    hook_entry,
    read_last,
    request_digest,
    verify,
    verify_lines,
)

TOKEN = "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJlLXNlY3JldA"  # a JWT: must never be written
ACCESS_TOKEN = "access-token-that-must-not-appear"


def request(i: int, token: str = ACCESS_TOKEN) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": f"hook-instance-{i:04d}",
        "fhirServer": "https://ehr.example/fhir",
        "fhirAuthorization": {"access_token": token, "token_type": "Bearer", "scope": "patient/*.read"},
        "context": {"userId": "Practitioner/7", "patientId": f"patient-{i:04d}"},
    }


RESPONSE = {
    "cards": [
        {
            "uuid": "c1",
            "summary": "30-day readmission risk 23% (high)",
            "indicator": "warning",
            "source": {"label": "medml readmission@3", "url": "https://cds.example/models/readmission"},
            "detail": "long markdown the audit does not need",
        }
    ]
}
CALLER = Caller(iss="https://ehr.example", sub="ehr-client-1", address="10.0.0.5:51234", jti="jti-1")


def entry(i: int) -> AuditEntry:
    return hook_entry(
        service="readmission",
        request=request(i),
        response=RESPONSE,
        status=200,
        duration_ms=12.5,
        caller=CALLER,
        model="readmission@3",
    )


def write_log(path: Path, n: int) -> Path:
    with JsonlAuditLog(path, durable=False) as log:
        for i in range(1, n + 1):
            log.append(entry(i))
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def save(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def forge(rec: dict[str, Any]) -> bytes:
    """A record as a forger who knows the scheme writes it: hash recomputed over the new content."""
    body = {k: v for k, v in rec.items() if k != "hash"}
    return canonical_json({**body, "hash": hashlib.sha256(canonical_json(body)).hexdigest()})


def rec(line: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed


@pytest.fixture()
def log6(tmp_path: Path) -> Path:
    return write_log(tmp_path / "audit.jsonl", 6)


def test_a_record_holds_who_what_and_when_and_no_token(log6: Path) -> None:
    records = [rec(line) for line in lines_of(log6)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    for r in records:
        body = {k: v for k, v in r.items() if k != "hash"}
        assert r["hash"] == hashlib.sha256(canonical_json(body)).hexdigest()
    first = records[0]
    assert first["caller"] == {
        "iss": "https://ehr.example",
        "sub": "ehr-client-1",
        "address": "10.0.0.5:51234",
        "jti": "jti-1",
    }
    assert (first["service"], first["hook"], first["hook_instance"], first["patient"], first["model"]) == (
        "readmission",
        "patient-view",
        "hook-instance-0001",
        "patient-0001",
        "readmission@3",
    )
    assert first["cards"] == [
        {"summary": "30-day readmission risk 23% (high)", "indicator": "warning", "source": "medml readmission@3"}
    ]
    assert first["status"] == 200 and first["duration_ms"] == 12.5
    assert first["output_sha256"] == hashlib.sha256(canonical_json(RESPONSE)).hexdigest()
    # the input hash leaves the access token out, so it identifies the clinical input whoever's token came with it
    assert first["input_sha256"] == request_digest(request(1, token="another-token"))
    assert first["input_sha256"] != request_digest(request(2))
    assert datetime.fromisoformat(first["time"]).utcoffset() == datetime.now(UTC).utcoffset()
    assert first["time"].endswith("Z")
    assert ACCESS_TOKEN.encode() not in log6.read_bytes()
    assert stat.S_IMODE(log6.stat().st_mode) == 0o600
    head = orjson.loads(log6.with_name("audit.jsonl.head").read_bytes())
    assert head == {"seq": 6, "hash": records[-1]["hash"], "size": log6.stat().st_size}
    result = verify(log6)
    assert (result.ok, result.records, result.problems, result.last_seq) == (True, 6, (), 6)
    assert str(result) == "audit log OK: 6 records, chain intact"


def test_text_shaped_like_a_credential_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLog(path, durable=False) as log:
        stored = log.append(
            hook_entry(
                service="s",
                request=None,
                response=None,
                status=401,
                duration_ms=0.4,
                caller=Caller(sub=TOKEN, address="10.0.0.9:4000"),
                error="rejected header Authorization: Bearer abcdefghijklmnop",
            )
        )
    data = path.read_bytes()
    assert TOKEN.encode() not in data and b"abcdefghijklmnop" not in data
    assert stored["caller"]["sub"] == "[redacted credential]"
    assert stored["error"] == "rejected header Authorization: [redacted credential]"
    assert stored["input_sha256"] is None and stored["cards"] == [] and stored["hook"] is None
    assert verify(path).ok


def test_an_entry_cannot_number_itself(tmp_path: Path) -> None:
    with JsonlAuditLog(tmp_path / "audit.jsonl", durable=False) as log, pytest.raises(ValueError, match="seq"):
        log.append({"seq": 99, "event": "hook"})


def _edit(lines: list[bytes]) -> None:
    lines[2] = lines[2].replace(b'"status":200', b'"status":500')


def _edit_and_rehash(lines: list[bytes]) -> None:
    lines[3] = forge({**rec(lines[3]), "status": 500})


def _insert_forged(lines: list[bytes]) -> None:
    lines.insert(3, forge({**rec(lines[3]), "patient": "patient-9999"}))  # a second record 4, chained to record 3


def _rechain(records: list[dict[str, Any]]) -> list[bytes]:
    """Number 1, 2, ... and chain records again with recomputed hashes, as a thorough forger would."""
    out: list[bytes] = []
    prev = GENESIS
    for seq, r in enumerate(records, start=1):
        line = forge({**r, "seq": seq, "prev": prev})
        prev = rec(line)["hash"]
        out.append(line)
    return out


def _insert_and_renumber(lines: list[bytes]) -> None:
    """The forger inserts a record after 3 and renumbers and rechains everything after it, but not the head."""
    records = [rec(line) for line in lines]
    records.insert(3, {**records[3], "patient": "patient-9999"})
    lines[:] = _rechain(records)


def _append_forged(lines: list[bytes]) -> None:
    last = rec(lines[-1])
    lines.append(forge({**last, "seq": 7, "prev": last["hash"], "patient": "patient-9999"}))


def _swap(lines: list[bytes]) -> None:
    lines[2], lines[3] = lines[3], lines[2]


def _not_json(lines: list[bytes]) -> None:
    lines[1] = lines[1][:40]


TAMPERING: list[tuple[str, Callable[[list[bytes]], None], set[str]]] = [
    ("edit a field", _edit, {"record 3 was edited: its hash does not match its content"}),
    (
        "edit and recompute the hash",
        _edit_and_rehash,
        {
            "record 5 does not chain to record 4: its prev is not that record's hash (a record before it was forged, "
            "replaced or removed)"
        },
    ),
    ("delete a middle record", lambda ls: ls.__delitem__(2), {"record 3 is missing (seq jumps from 2 to 4)"}),
    (
        "delete two middle records",
        lambda ls: ls.__delitem__(slice(1, 3)),
        {"records 2-3 are missing (seq jumps from 1 to 4)"},
    ),
    ("delete the first record", lambda ls: ls.__delitem__(0), {"record 1 is missing (the log starts at record 2)"}),
    (
        "delete the last record",
        lambda ls: ls.__delitem__(-1),
        {"the log ends at record 5 but the head says 6: records were deleted from the end"},
    ),
    (
        "delete the last two records",
        lambda ls: ls.__delitem__(slice(4, 6)),
        {"the log ends at record 4 but the head says 6: records were deleted from the end"},
    ),
    (
        "delete every record",
        lambda ls: ls.clear(),
        {"the log has no records but the head says it ends at record 6: the log was emptied or replaced"},
    ),
    ("reorder two records", _swap, {"record 3 is out of order: it comes after record 4"}),
    (
        "insert a forged record",
        _insert_forged,
        {
            "record 4 appears again on line 5 (a copy or a forged record)",
            "record 5 does not chain to record 4: its prev is not that record's hash (a record before it was forged, "
            "replaced or removed)",
        },
    ),
    (
        "insert a record and renumber the rest",
        _insert_and_renumber,
        {
            "record 6 is not the one the head recorded (its hash differs): the log was rewritten",
            "record 7 is after the head (record 6): written without updating the head (a process stopped during an "
            "append, or forged)",
        },
    ),
    (
        "append a forged record",
        _append_forged,
        {
            "record 7 is after the head (record 6): written without updating the head (a process stopped during an "
            "append, or forged)"
        },
    ),
    (
        "a line that is not JSON",
        _not_json,
        {"line 2 is not valid JSON (an edit or a write cut off)", "record 2 is missing (seq jumps from 1 to 3)"},
    ),
    ("a blank line", lambda ls: ls.insert(2, b"   "), {"line 3 is blank"}),
    (
        "a JSON line that is no record",
        lambda ls: ls.insert(2, b'{"seq": "3"}'),
        {"line 3 is not an audit record (it lacks seq, prev or hash)"},
    ),
]


@pytest.mark.parametrize(("tamper", "expected"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
def test_tampering_is_reported_in_plain_words(
    log6: Path, tamper: Callable[[list[bytes]], None], expected: set[str]
) -> None:
    lines = lines_of(log6)
    tamper(lines)
    save(log6, lines)
    result = verify(log6)
    assert not result.ok
    assert set(result.problems) == expected
    assert str(result).startswith(f"audit log NOT OK ({len(expected)} problems)")


def test_a_missing_or_broken_head_is_a_problem(log6: Path) -> None:
    head = log6.with_name("audit.jsonl.head")
    head.write_bytes(b"{not a head")
    assert verify(log6).problems == (
        "the head file audit.jsonl.head is not a valid head: records deleted from the end would go unnoticed",
    )
    head.unlink()
    assert verify(log6).problems == (
        "the head file audit.jsonl.head is missing: records deleted from the end would go unnoticed",
    )


def test_a_deleted_log_is_a_problem_while_its_head_remains(log6: Path) -> None:
    log6.unlink()
    result = verify(log6)
    assert not result.ok and result.records == 0
    assert result.problems == (
        f"the log file {log6} is missing but its head says it held 6 records: the log was deleted",
    )


def test_limit_deleting_log_and_head_together_leaves_no_trace(log6: Path) -> None:
    log6.unlink()
    log6.with_name("audit.jsonl.head").unlink()
    with pytest.raises(InputFileError, match="no audit log at"):
        verify(log6)


def test_limit_rewriting_log_and_head_together_goes_unnoticed(log6: Path) -> None:
    """Whoever can write both files can rebuild a consistent chain: anchor the head hash outside the machine."""
    records = [rec(line) for line in lines_of(log6)]
    records[1]["patient"] = "patient-9999"
    lines = _rechain(records)
    save(log6, lines)
    assert not verify(log6).ok  # the head still catches a rewrite of the chain alone
    log6.with_name("audit.jsonl.head").write_bytes(
        canonical_json({"seq": 6, "hash": rec(lines[-1])["hash"], "size": log6.stat().st_size})
    )
    assert verify(log6).ok


def test_appending_after_truncation_keeps_the_gap_visible(log6: Path) -> None:
    with JsonlAuditLog(log6, durable=False) as log:
        log.append(entry(7))  # this instance caches where the chain ends
        save(log6, lines_of(log6)[:4])  # someone removes records 5-7
        stored = log.append(entry(8))
    assert stored["seq"] == 8  # numbering continues from the head, not from the shortened file
    assert verify(log6).problems == ("records 5-7 are missing (seq jumps from 4 to 8)",)


def test_a_record_written_without_its_head_is_adopted_by_the_next_append(log6: Path) -> None:
    """A worker that stops between writing a record and its head: the next append continues after that record."""
    head = log6.with_name("audit.jsonl.head")
    old_head = head.read_bytes()
    write_log(log6, 1)  # record 7
    head.write_bytes(old_head)
    assert not verify(log6).ok
    with JsonlAuditLog(log6, durable=False) as log:
        assert log.append(entry(8))["seq"] == 8
    result = verify(log6)
    assert (result.ok, result.records) == (True, 8)


def test_a_torn_last_line_does_not_swallow_the_next_record(log6: Path) -> None:
    with log6.open("ab") as fh:
        fh.write(b'{"seq":7,"prev":"ab')  # a write cut off by a full disk
    with JsonlAuditLog(log6, durable=False) as log:
        assert log.append(entry(7))["seq"] == 7
    assert verify(log6).problems == ("line 7 is not valid JSON (an edit or a write cut off)",)
    assert rec(lines_of(log6)[-1])["hook_instance"] == "hook-instance-0007"


@pytest.mark.parametrize(("durable", "syncs"), [(True, 3), (False, 0)])
def test_durable_appends_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, syncs: int
) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    with JsonlAuditLog(tmp_path / "audit.jsonl", durable=durable) as log:
        for i in range(3):
            log.append(entry(i))
    assert len(calls) == syncs


def test_sinks_share_one_protocol_and_the_memory_sink_chains_the_same_way() -> None:
    sink = InMemoryAuditSink(clock=lambda: datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
    assert isinstance(sink, AuditSink) and isinstance(JsonlAuditLog(Path("unused.jsonl")), AuditSink)
    for i in range(4):
        sink.append(entry(i))
    assert sink.records[0]["time"] == "2024-05-01T08:30:00.000000Z"
    assert verify_lines(sink.lines()).ok
    lines = sink.lines()
    lines[1] = lines[1].replace(b"patient-0001", b"patient-0002")
    assert verify_lines(lines).problems == ("record 2 was edited: its hash does not match its content",)


def test_cards_and_entries_from_odd_bodies() -> None:
    e = hook_entry(
        service="s",
        request={"hook": "order-select", "context": "not a mapping"},
        response={"cards": [{"summary": "x"}, "junk"]},
        status=200,
        duration_ms=1.0,
    )
    assert e.patient is None and e.hook == "order-select" and e.hook_instance is None
    assert e.cards == (CardSeen(summary="x", indicator="", source=None),)


def test_read_last_gives_the_newest_records_oldest_first(log6: Path) -> None:
    assert [r["seq"] for r in read_last(log6, 3)] == [4, 5, 6]
    assert [r["seq"] for r in read_last(log6, 100)] == [1, 2, 3, 4, 5, 6]


def _append_many(log: JsonlAuditLog, tag: str, n: int) -> None:
    for i in range(n):
        log.append(
            hook_entry(
                service="readmission",
                request={"hook": "patient-view", "hookInstance": f"{tag}-{i}"},
                response=RESPONSE,
                status=200,
                duration_ms=1.0,
            )
        )


def _instances(path: Path) -> list[str]:
    return [rec(line)["hook_instance"] for line in lines_of(path)]


def test_threads_appending_at_once_keep_one_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    shared = JsonlAuditLog(path, durable=False)
    # half the threads share one writer (the lock), half have their own open file (flock between them)
    logs = [shared] * 4 + [JsonlAuditLog(path, durable=False) for _ in range(4)]
    threads = [threading.Thread(target=_append_many, args=(log, f"t{k}", 40)) for k, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(path)
    assert (result.ok, result.records) == (True, 320), result.problems
    assert sorted(_instances(path)) == sorted(f"t{k}-{i}" for k in range(8) for i in range(40))


def test_processes_appending_at_once_keep_one_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path, durable=False)
    _append_many(log, "parent", 1)  # the children inherit an open log, as forked uvicorn workers would
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(log, f"p{k}", 150)) for k in range(2)]
    for w in workers:
        w.start()
    _append_many(log, "parent-again", 50)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    result = verify(path)
    assert (result.ok, result.records) == (True, 351), result.problems
    expected = ["parent-0"] + [f"parent-again-{i}" for i in range(50)]
    expected += [f"p{k}-{i}" for k in range(2) for i in range(150)]
    assert sorted(_instances(path)) == sorted(expected)


MEDML = [sys.executable, "-m", "medml.cli"]


def medml(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*MEDML, "audit", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_verify_ok_tampered_and_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_log(home / "service" / "audit.jsonl", 6)  # where the service writes it under MEDML_HOME
    ok = medml("verify", home=home)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit log OK: 6 records, chain intact")

    lines = lines_of(path)
    del lines[2]
    save(path, lines)
    bad = medml("verify", "--log", str(path), home=tmp_path)
    assert bad.returncode == 1, bad.stderr
    assert "FAILED: 1 problems in 5 records" in bad.stdout
    assert "record 3 is missing (seq jumps from 2 to 4)" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr

    missing = medml("verify", "--log", str(tmp_path / "nowhere.jsonl"), home=tmp_path)
    assert missing.returncode == 2
    msg = " ".join(missing.stderr.split())
    assert msg.startswith("error: no audit log at") and "--log PATH" in msg


def test_cli_show_lists_the_latest_records_without_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_log(home / "service" / "audit.jsonl", 6)
    shown = medml("show", "--last", "2", home=home)
    assert shown.returncode == 0, shown.stderr
    assert "patient-0005" in shown.stdout and "patient-0006" in shown.stdout
    assert "patient-0004" not in shown.stdout
    assert "warning: 30-day" in shown.stdout  # the card as the clinician saw it (the table may wrap it)
    assert "ehr-client-1" in shown.stdout
    assert ACCESS_TOKEN not in shown.stdout
    bad = medml("show", "--last", "0", home=home)
    assert bad.returncode == 2 and "--last must be at least 1" in bad.stderr
