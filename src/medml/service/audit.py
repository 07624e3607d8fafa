"""The audit trail: every CDS Hooks request and response, in an append-only, hash-chained JSON lines file.

Each record carries ``seq`` (1, 2, ...), ``prev`` (the ``hash`` of record ``seq - 1``; :data:`GENESIS` for the first)
and ``hash``, the SHA-256 of the record's canonical JSON (sorted keys, no spaces) without ``hash``. Editing,
removing, reordering or inserting a record breaks the chain; a head file beside the log (``audit.jsonl.head``: the
last seq, its hash and the log's size, rewritten in place under the log's lock) shows records deleted from the end.

What a local file cannot show: someone with write access to both the log and its head can rewrite the whole chain
and the head consistently, or delete both. Anchor the head elsewhere (copy ``medml audit verify`` output or the
head hash to another system now and then), or point the :class:`AuditSink` at a database with its own access control.

Appends are safe across threads (a lock) and processes (``fcntl.flock`` on the log): two uvicorn workers can share
one log. Durability is by group commit: a durable append returns once ``fdatasync`` has covered its record (and
every record written before it); appends that arrive while a sync runs are covered together by the next one, so
under load one sync serves many calls and the disk's latency is paid once per group, not once per call.

No token is ever written: the entry has no field for one, the request hash leaves out
``fhirAuthorization``, and any text shaped like a JWT or a bearer credential is replaced before writing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from medml.errors import InputFileError

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditSink",
    "AuditVerification",
    "Caller",
    "CardSeen",
    "EntryDetails",
    "InMemoryAuditSink",
    "JsonlAuditLog",
    "canonical_json",
    "cards_seen",
    "digest",
    "hook_entry",
    "read_last",
    "request_digest",
    "verify",
    "verify_lines",
]

log = logging.getLogger(__name__)

#: ``prev`` of the first record
GENESIS = "0" * 64
_RESERVED = ("seq", "prev", "hash")
_CHUNK = 65536
_HEAD_BYTES = 256
# a compact JWS/JWT (its header is base64url JSON, so it starts with "eyJ") or an HTTP bearer credential
_SECRET_PATTERN = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
_SECRET = re.compile(_SECRET_PATTERN)
_SECRET_BYTES = re.compile(_SECRET_PATTERN.encode())
_REDACTED = "[redacted credential]"


def canonical_json(obj: Any) -> bytes:
    """The bytes that are hashed: UTF-8 JSON with sorted keys and no spaces."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of an object's canonical JSON."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def request_digest(request: Mapping[str, Any]) -> str:
    """SHA-256 of a CDS Hooks request without its ``fhirAuthorization`` (the access token is no part of the input)."""
    return digest({k: v for k, v in request.items() if k != "fhirAuthorization"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("audit times must be timezone-aware (UTC)")
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Caller:
    """Who called: the JWT's ``iss`` and ``sub`` (and ``jti``, to trace one call), and the client's address."""

    iss: str | None = None
    sub: str | None = None
    address: str | None = None
    jti: str | None = None


@dataclass(frozen=True)
class CardSeen:
    """What the clinician saw of one card: its summary, indicator and source label."""

    summary: str
    indicator: str
    source: str | None = None


def cards_seen(cards: Any) -> tuple[CardSeen, ...]:
    """The part of each CDS Hooks card worth auditing, from a response's ``cards`` list (anything else -> ())."""
    if not isinstance(cards, list):
        return ()
    seen = []
    for card in cards:
        if not isinstance(card, Mapping):
            continue
        source = card.get("source")
        label = source.get("label") if isinstance(source, Mapping) else None
        seen.append(
            CardSeen(
                summary=str(card.get("summary", "")),
                indicator=str(card.get("indicator", "")),
                source=None if label is None else str(label),
            )
        )
    return tuple(seen)


@dataclass(frozen=True)
class EntryDetails:
    """What a call adds to its entry beyond the hook request: the patient it names (a DICOM PatientID), an uploaded
    file's digest, size and DICOM study, or the digest of a body that is not a hook request (feedback)."""

    patient: str | None = None
    study_uid: str | None = None
    input_sha256: str | None = None
    input_bytes: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One call as the audit trail keeps it (``event``: hook, feedback, imaging, page, fhir-read); the sink adds
    ``seq``, ``prev``, ``hash`` (and ``time``).

    ``patient`` is the FHIR Patient id from the hook context: an access log must say whose record was touched.
    ``study_uid`` and ``input_bytes`` are an image call's (the DICOM study, the file's size; never the pixels).
    """

    service: str | None
    status: int
    duration_ms: float
    event: str = "hook"
    hook: str | None = None
    hook_instance: str | None = None
    patient: str | None = None
    caller: Caller = field(default_factory=Caller)
    model: str | None = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    cards: tuple[CardSeen, ...] = ()
    error: str | None = None
    #: when the request arrived (UTC); None: when the sink writes the record
    time: datetime | None = None
    study_uid: str | None = None
    input_bytes: int | None = None
    #: the route read ("GET /patients/{patient_id}", "GET /Observation"): pages, /audit and FHIR reads
    route: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record = {
            "time": None if self.time is None else _iso(self.time),
            "event": self.event,
            "service": self.service,
            "hook": self.hook,
            "hook_instance": self.hook_instance,
            "patient": self.patient,
            "caller": {
                "iss": self.caller.iss,
                "sub": self.caller.sub,
                "address": self.caller.address,
                "jti": self.caller.jti,
            },
            "model": self.model,
            "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256,
            "cards": [{"summary": c.summary, "indicator": c.indicator, "source": c.source} for c in self.cards],
            "status": int(self.status),
            "duration_ms": round(float(self.duration_ms), 3),
            "error": self.error,
        }
        if self.event == "imaging":
            record["study_uid"] = self.study_uid
            record["input_bytes"] = self.input_bytes
        if self.route is not None:
            record["route"] = self.route
        return record


def hook_entry(
    *,
    service: str,
    request: Mapping[str, Any] | None,
    response: Mapping[str, Any] | None,
    status: int,
    duration_ms: float,
    caller: Caller | None = None,
    model: str | None = None,
    error: str | None = None,
    event: str = "hook",
    details: EntryDetails | None = None,
) -> AuditEntry:
    """An :class:`AuditEntry` from a call's request and response bodies (either may be None, e.g. on a 401), with
    what ``details`` adds or overrides (the patient, the input's digest and size, the DICOM study)."""
    request = request if isinstance(request, Mapping) else None
    context = request.get("context") if request else None
    patient = context.get("patientId") if isinstance(context, Mapping) else None
    details = details or EntryDetails()

    def text(v: Any) -> str | None:
        return None if v is None else str(v)

    return AuditEntry(
        service=service,
        status=status,
        duration_ms=duration_ms,
        event=event,
        hook=text(request.get("hook")) if request else None,
        hook_instance=text(request.get("hookInstance")) if request else None,
        patient=details.patient if details.patient is not None else text(patient),
        caller=caller or Caller(),
        model=model,
        input_sha256=details.input_sha256 or (request_digest(request) if request is not None else None),
        output_sha256=digest(response) if response is not None else None,
        cards=cards_seen(response.get("cards")) if isinstance(response, Mapping) else (),
        error=error,
        study_uid=details.study_uid,
        input_bytes=details.input_bytes,
    )


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET.sub(_REDACTED, value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _body(entry: AuditEntry, clock: Callable[[], datetime]) -> dict[str, Any]:
    if not isinstance(entry, AuditEntry):
        taken = [k for k in _RESERVED if isinstance(entry, Mapping) and k in entry]
        raise ValueError(
            f"an audit entry must be an AuditEntry, not a {type(entry).__name__}"
            + (f" that sets {taken}" if taken else "")
            + ": the sink numbers and chains records (seq, prev, hash); build it with hook_entry()"
        )
    body = entry.to_dict()
    if body.get("time") is None:
        body["time"] = _iso(clock())
    raw = orjson.dumps(body)  # one scan of the whole entry; walk it only when it holds something like a credential
    if (b"eyJ" in raw or b"bearer" in raw.lower()) and _SECRET_BYTES.search(raw):
        redacted: dict[str, Any] = _redact(body)
        return redacted
    return body


def _chain(body: dict[str, Any], seq: int, prev: str) -> tuple[dict[str, Any], bytes]:
    """The record after ``prev`` and its line (canonical JSON and a newline)."""
    record = {**body, "seq": seq, "prev": prev}
    record["hash"] = hashlib.sha256(canonical_json(record)).hexdigest()
    return record, canonical_json(record) + b"\n"


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go: ``append`` numbers, chains and stores one entry and returns the stored record."""

    def append(self, entry: AuditEntry) -> dict[str, Any]: ...


class InMemoryAuditSink:
    """An :class:`AuditSink` in a list, for tests; ``lines()`` can be checked with :func:`verify_lines`."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self.records: list[dict[str, Any]] = []
        self._clock = clock
        self._lock = threading.Lock()

    def append(self, entry: AuditEntry) -> dict[str, Any]:
        body = _body(entry, self._clock)
        with self._lock:
            prev = self.records[-1]["hash"] if self.records else GENESIS
            record, _ = _chain(body, len(self.records) + 1, prev)
            self.records.append(record)
        return record

    def lines(self) -> list[bytes]:
        return [canonical_json(r) for r in self.records]


@dataclass(frozen=True)
class _Tip:
    """The end of the chain: the last seq, its hash, and the log's size in bytes after it."""

    seq: int
    hash: str
    size: int


def _parse_tip(line: bytes) -> tuple[int, str] | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(rec, dict) and isinstance(rec.get("seq"), int) and isinstance(rec.get("hash"), str):
        return rec["seq"], rec["hash"]
    return None


def _parse_head(raw: bytes) -> _Tip | None:
    try:
        head = orjson.loads(raw)
        return _Tip(seq=int(head["seq"]), hash=str(head["hash"]), size=int(head["size"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _read_head(path: Path) -> _Tip | None:
    """The head file's content, or None when it is missing or not a head."""
    try:
        return _parse_head(path.read_bytes())
    except OSError:
        return None


def _lines_backwards(fd: int, size: int) -> Iterator[bytes]:
    """The complete lines of the first ``size`` bytes of a file, last first, reading 64 KiB at a time."""
    pos, carry = size, b""
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        parts = (os.pread(fd, step, pos) + carry).split(b"\n")
        carry = parts[0] if pos > 0 else b""
        for line in reversed(parts if pos == 0 else parts[1:]):
            if line.strip():
                yield line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class JsonlAuditLog:
    """The audit log as a JSON lines file with a head file beside it; the default :class:`AuditSink`.

    ``durable=True`` makes every append wait for the disk: when :meth:`append` returns, its record and every record
    before it in the log are on disk (``fdatasync``), so a record acknowledged is a record kept, even on power
    loss. The syncs are group commits: the record is written under the lock, then the append waits for a sync that
    started after its write; one thread syncs while the others wait, and one sync covers every record written
    before it began (under load, one sync per group of calls). The head file is not synced: after a power cut it
    may lag the log, which the next append repairs. Without ``durable`` the operating system writes when it likes
    (a crash of the process loses nothing, a crash of the machine may lose the last records; ``verify`` then
    reports the head ahead of the log).
    """

    def __init__(self, path: Path, *, durable: bool = True, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.durable = durable
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._head_fd = -1
        self._pid = 0
        self._tip: _Tip | None = None
        #: where this process's chain ended when its file was moved away (see _file)
        self._carried: _Tip | None = None
        # group commit: records written by this process (a count), and how many of them a finished sync covered
        self._written = 0
        self._synced = 0
        self._syncing = False
        self._sync_done = threading.Condition()

    def _replaced(self) -> str | None:
        """Why the open log or head is no longer the file at its path (moved, deleted or swapped), else None."""
        assert self._fd is not None
        for fd, path in ((self._fd, self.path), (self._head_fd, self.head_path)):
            try:
                on_disk = os.stat(path)
            except FileNotFoundError:
                return f"{path} was moved or deleted"
            held = os.fstat(fd)
            if (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
                return f"{path} was replaced by another file"
        return None

    def _file(self) -> int:
        # opened lazily and again after a fork: a forked worker must not share the parent's open file (and lock)
        if self._fd is not None and self._pid == os.getpid():
            why = self._replaced()
            if why is not None:
                # Writing on would put records into a file nobody reads. Reopen at the path and go on with the
                # chain from this process's last record: verify then shows the records that went with the old file
                # as missing, so the gap is visible, and no call goes unaudited.
                carried = self._tip
                log.error(
                    "audit log: %s while the service was running; records continue in a new file at %s from "
                    "record %s (the earlier records are in the moved file, if it still exists)",
                    why,
                    self.path,
                    "1" if carried is None else carried.seq + 1,
                )
                os.close(self._fd)
                os.close(self._head_fd)
                self._fd = None
                self._file()
                self._carried = carried
                return self._fd  # type: ignore[return-value]
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self.path, flags | os.O_APPEND, 0o600)
            self._head_fd = os.open(self.head_path, flags, 0o600)
            self._pid = os.getpid()
            self._tip = None
        return self._fd

    def _current_tip(self, fd: int, size: int) -> _Tip:
        """Where the chain ends now (under the lock): this process's last append, else the head, else the tail."""
        if self._tip is not None and self._tip.size == size:
            return self._tip
        head = _parse_head(os.pread(self._head_fd, _HEAD_BYTES, 0))
        if head is not None and head.size == size:
            return head
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            _write_all(fd, b"\n")  # a torn last line: start ours on a line of its own; verify reports the torn one
            size += 1
        last = next((t for t in map(_parse_tip, _lines_backwards(fd, size)) if t is not None), None)
        if head is not None and (last is None or last[0] <= head.seq):
            if head.size > size:
                log.warning(
                    "audit log %s is shorter than its head says (record %d): records were removed; "
                    "continuing the chain from the head so that the gap stays visible",
                    self.path,
                    head.seq,
                )
            return _Tip(head.seq, head.hash, size)
        if last is not None:  # records after the head: a process stopped between writing a record and its head
            return _Tip(last[0], last[1], size)
        if self._carried is not None:  # a new file after the old one was moved away: the chain goes on
            return _Tip(self._carried.seq, self._carried.hash, size)
        return _Tip(0, GENESIS, size)

    def _write_head(self, tip: _Tip) -> None:
        # One write of a fixed-size block in place: everyone who reads the head holds the log's lock, so no one
        # sees half of it, and it costs a microsecond where write-and-rename costs 200 (ext4 flushes on rename).
        # A head torn by a power cut reads as invalid; the next append rebuilds it from the log's last record.
        head = canonical_json({"seq": tip.seq, "hash": tip.hash, "size": tip.size})
        os.pwrite(self._head_fd, head.ljust(_HEAD_BYTES - 1) + b"\n", 0)

    def append(self, entry: AuditEntry) -> dict[str, Any]:
        """Number, chain and write one entry; returns the record as stored (with ``seq``, ``prev``, ``hash``)."""
        body = _body(entry, self._clock)
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                tip = self._current_tip(fd, os.fstat(fd).st_size)
                record, line = _chain(body, tip.seq + 1, tip.hash)
                _write_all(fd, line)
                self._tip = _Tip(record["seq"], record["hash"], tip.size + len(line))
                self._carried = None
                self._write_head(self._tip)
                self._written += 1
                mine = self._written
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if self.durable:
            self._sync_through(mine, fd)
        return record

    def _sync_through(self, mine: int, fd: int) -> None:
        """Return once a sync that began after record number ``mine`` was written has finished (group commit)."""
        with self._sync_done:
            while self._synced < mine:
                if self._syncing:  # a sync is running; it may have begun before our write: wait for the next
                    self._sync_done.wait()
                    continue
                self._syncing = True
                covered = self._written  # every record written so far is in the file: this sync covers them
                self._sync_done.release()
                try:
                    os.fdatasync(fd)
                except OSError as e:
                    if e.errno != errno.EBADF:
                        raise
                    # the log was moved away and reopened since this record was written (see _file): the record
                    # is in the moved file, which this process no longer holds; the new file's records sync anew
                    log.error("audit log: a record written to a file since moved away could not be synced")
                finally:
                    self._sync_done.acquire()
                    self._syncing = False
                    self._sync_done.notify_all()
                self._synced = max(self._synced, covered)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
                os.close(self._head_fd)
            self._fd, self._head_fd, self._tip = None, -1, None

    def __enter__(self) -> JsonlAuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :func:`verify`: ``ok`` when the chain is intact; else one sentence per problem."""

    ok: bool
    records: int
    problems: tuple[str, ...]
    last_seq: int = 0

    def __str__(self) -> str:
        if self.ok:
            return f"audit log OK: {self.records} records, chain intact"
        return f"audit log NOT OK ({len(self.problems)} problems):\n" + "\n".join(f"- {p}" for p in self.problems)


def _records_word(lo: int, hi: int) -> str:
    return f"record {lo} is" if lo == hi else f"records {lo}-{hi} are"


def verify_lines(
    lines: Iterable[bytes], head: Mapping[str, Any] | None = None, head_problem: str | None = None
) -> AuditVerification:
    """Check a chain given as lines in file order, and its end against ``head`` (``{"seq": ..., "hash": ...}``)."""
    problems: list[str] = []
    records = 0
    max_seq, hash_at_max = 0, GENESIS
    head_seq = int(head["seq"]) if head is not None else None
    hash_at_head: str | None = GENESIS if head_seq == 0 else None
    missing: list[tuple[int, int, int, int]] = []  # (lo, hi, from seq, to seq) still unseen
    prev_line_seq = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            problems.append(f"line {number} is blank")
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {number} is not valid JSON (an edit or a write cut off)")
            continue
        seq = rec.get("seq") if isinstance(rec, dict) else None
        if not (isinstance(seq, int) and isinstance(rec.get("prev"), str) and isinstance(rec.get("hash"), str)):
            problems.append(f"line {number} is not an audit record (it lacks seq, prev or hash)")
            continue
        records += 1
        stored = rec.pop("hash")
        if hashlib.sha256(canonical_json(rec)).hexdigest() != stored:
            problems.append(f"record {seq} was edited: its hash does not match its content")
        if seq == max_seq + 1:
            if rec["prev"] != hash_at_max:
                problems.append(
                    f"record {seq} does not chain to record {max_seq}: its prev is not that record's "
                    f"hash (a record before it was forged, replaced or removed)"
                )
        elif seq > max_seq + 1:
            missing.append((max_seq + 1, seq - 1, max_seq, seq))
        else:
            gap = next((g for g in missing if g[0] <= seq <= g[1]), None)
            if gap is None:
                problems.append(f"record {seq} appears again on line {number} (a copy or a forged record)")
            else:
                missing.remove(gap)
                missing += [g for g in ((gap[0], seq - 1, *gap[2:]), (seq + 1, gap[1], *gap[2:])) if g[0] <= g[1]]
                problems.append(f"record {seq} is out of order: it comes after record {prev_line_seq}")
        prev_line_seq = seq
        if seq > max_seq:
            max_seq, hash_at_max = seq, stored
        if seq == head_seq and hash_at_head is None:
            hash_at_head = stored
    for lo, hi, before, after in sorted(missing):
        where = f"the log starts at record {after}" if before == 0 else f"seq jumps from {before} to {after}"
        problems.append(f"{_records_word(lo, hi)} missing ({where})")
    if head_problem:
        problems.append(head_problem)
    elif head is not None and head_seq is not None:
        if records == 0 and head_seq > 0:
            problems.append(
                f"the log has no records but the head says it ends at record {head_seq}: "
                f"the log was emptied or replaced"
            )
        elif max_seq < head_seq:
            problems.append(
                f"the log ends at record {max_seq} but the head says {head_seq}: records were deleted from the end"
            )
        else:
            if hash_at_head is not None and hash_at_head != head["hash"]:
                problems.append(
                    f"record {head_seq} is not the one the head recorded (its hash differs): the log was rewritten"
                )
            if max_seq > head_seq:
                problems.append(
                    f"{_records_word(head_seq + 1, max_seq)} after the head (record {head_seq}): "
                    f"written without updating the head (a process stopped during an append, "
                    f"or forged)"
                )
    return AuditVerification(ok=not problems, records=records, problems=tuple(problems), last_seq=max_seq)


def _read_lines(path: Path, size: int) -> Iterator[bytes]:
    """The lines of the first ``size`` bytes of a file, streamed (a record longer than 64 KiB is fine)."""
    with path.open("rb") as fh:
        carry, left = b"", size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            yield from parts
        if carry:
            yield carry


def verify(path: Path) -> AuditVerification:
    """Check an audit log file and its head: every record unedited, numbered 1, 2, ... in order, chained, complete.

    Safe while the service appends: the size and head are read together under a shared lock, and only the records
    up to that size are checked.
    """
    path = Path(path)
    head_path = path.with_name(path.name + ".head")
    if not path.exists():
        head = _read_head(head_path)
        if head is None:
            raise InputFileError(
                f"no audit log at {path}", "pass the log with --log PATH, or let the service record a request first"
            )
        return AuditVerification(
            ok=False,
            records=0,
            last_seq=0,
            problems=(
                f"the log file {path} is missing but its head says it held {head.seq} records: the log was deleted",
            ),
        )
    try:
        with path.open("rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            size = os.fstat(fh.fileno()).st_size
            head = _read_head(head_path)
    except OSError as e:
        raise InputFileError(
            f"cannot read the audit log {path}: {e.strerror}", "check the path and its permissions"
        ) from None
    head_problem = None
    if head is None and size > 0:
        state = "not a valid head" if head_path.exists() else "missing"
        head_problem = f"the head file {head_path.name} is {state}: records deleted from the end would go unnoticed"
    head_map = None if head is None else {"seq": head.seq, "hash": head.hash}
    return verify_lines(_read_lines(path, size), head=head_map, head_problem=head_problem)


def read_last(path: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` records of an audit log, oldest first (lines that are not records are skipped)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"no audit log at {path}", "pass the log with --log PATH, or let the service record a request first"
        )
    found: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for line in _lines_backwards(fh.fileno(), os.fstat(fh.fileno()).st_size):
            if len(found) >= n:
                break
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                found.append(rec)
    return found[::-1]
