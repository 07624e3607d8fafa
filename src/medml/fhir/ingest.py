"""Ingest FHIR R4 Bundles and Bulk Data NDJSON into a :class:`FhirStore`, all or nothing.

Files are read and checked first; only then is everything upserted in one transaction. With
``on_error="abort"`` (the default) the first problem stops the ingest and the store is unchanged; with
``"skip"`` the bad lines or entries are reported (file and line) and the rest is written.

Inside a Bundle, ``urn:uuid:`` references are rewritten to ``Type/id`` as a FHIR server does when it processes a
transaction, so that references resolve once the Bundle is gone. A ``urn:uuid:`` reference to nothing in its Bundle
can never resolve: it is an error.
"""

from __future__ import annotations

import gzip
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from medml.errors import DataError, InputFileError, MedmlError
from medml.fhir.store import DEPTH_PROBLEM, MAX_RESOURCE_BYTES, FhirStore, Row, Staging, resource_row

OnError = Literal["abort", "skip"]
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
JSON_SUFFIXES = (".json",)
BUNDLE_TYPES = frozenset(
    {
        "transaction",
        "batch",
        "collection",
        "searchset",
        "document",
        "transaction-response",
        "batch-response",
        "history",
        "message",
    }
)
_URN_REF = re.compile(r'"reference":"(urn:(?:uuid|oid):[^"]+)"')


@dataclass(frozen=True)
class IngestProblem:
    """One resource or line that could not be ingested, and where it was."""

    path: str
    where: str  # "line 12" or "entry 3"
    what: str

    def __str__(self) -> str:
        return f"{self.path}, {self.where}: {self.what}"


@dataclass
class IngestReport:
    """What an ingest read and wrote."""

    files: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    skipped: list[IngestProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def resources(self) -> int:
        return sum(self.by_type.values())

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds > 0 else 0.0


def fhir_files(paths: Sequence[str | Path]) -> list[Path]:
    """The FHIR files among ``paths`` (directories are searched recursively), in a stable order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not found:
                raise InputFileError(
                    f"no FHIR files in {path}",
                    "expected .json/.ndjson files (optionally .gz): Bundles or Bulk Data exports",
                )
            out += found
        elif path.is_file():
            if _kind(path) is None:
                raise InputFileError(
                    f"{path} is not a FHIR JSON or NDJSON file",
                    "give .json (a Bundle or a resource) or .ndjson files, optionally gzipped",
                )
            out.append(path)
        else:
            raise InputFileError(f"{path} does not exist", "check the path")
    return out


def _kind(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}", "check that the file is complete and not corrupt") from exc


class _Collector:
    """Rows read so far, with the problems met; raises at once when aborting, hands full chunks to ``flush``."""

    def __init__(
        self, on_error: OnError, flush: Callable[[list[Row]], None] | None = None, chunk: int = 50_000
    ) -> None:
        self.on_error = on_error
        self.rows: list[Row] = []
        self.problems: list[IngestProblem] = []
        self.flush = flush
        self.chunk = chunk

    def problem(self, path: Path, where: str, what: str) -> None:
        issue = IngestProblem(str(path), where, what)
        if self.on_error == "abort":
            raise DataError(
                f"{issue}; nothing was ingested",
                "fix the file, or rerun with --on-error skip to ingest the rest and list what was skipped",
            )
        self.problems.append(issue)

    def add(self, path: Path, where: str, resource: Any, text: str | None = None) -> None:
        try:
            self.rows.append(resource_row(resource, text=text))
        except MedmlError as exc:
            self.problem(path, where, str(exc))
            return
        if self.flush is not None and len(self.rows) >= self.chunk:
            self.done()

    def done(self) -> None:
        if self.flush is not None and self.rows:
            self.flush(self.rows)
            self.rows = []

    def unique_rows(self) -> list[Row]:
        """The rows kept in memory, the last of each (type, id) winning."""
        return list({(r[0], r[1]): r for r in self.rows}.values())


def _lines(path: Path) -> Iterator[bytes | None]:
    """The lines of a (gzipped) file, streamed: a Bulk Data export can be larger than memory.

    A line longer than a stored resource may be is not read into memory: it comes as None.
    """
    limit = MAX_RESOURCE_BYTES + 2  # and its line end
    try:
        with gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb") as fh:
            while line := fh.readline(limit):
                if len(line) < limit or line.endswith(b"\n"):
                    yield line
                    continue
                while line and not line.endswith(b"\n"):  # the rest of the long line
                    line = fh.readline(1 << 20)
                yield None
    except (OSError, EOFError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}", "check that the file is complete and not corrupt") from exc


def _not_json(exc: orjson.JSONDecodeError) -> str:
    if str(exc).startswith("depth limit exceeded"):  # orjson stops at 1024 levels
        return DEPTH_PROBLEM
    return f"not valid JSON ({exc})"


def _read_ndjson(path: Path, sink: _Collector) -> None:
    for lineno, line in enumerate(_lines(path), start=1):
        if line is None:
            sink.problem(path, f"line {lineno}", f"longer than the {MAX_RESOURCE_BYTES:,} bytes a resource may have")
            continue
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a byte order mark, as DuckDB's reader also allows
        if not line.strip():
            continue
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            sink.problem(path, f"line {lineno}", _not_json(exc))
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            _read_bundle(path, resource, sink, prefix=f"line {lineno} ")
            continue
        sink.add(path, f"line {lineno}", resource, line.decode("utf-8", errors="replace").strip())


def _read_json(path: Path, sink: _Collector) -> None:
    try:
        doc = orjson.loads(_read_bytes(path))
    except orjson.JSONDecodeError as exc:
        sink.problem(path, "whole file", _not_json(exc))
        return
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        _read_bundle(path, doc, sink)
    else:
        sink.add(path, "whole file", doc)


def _read_bundle(path: Path, bundle: dict[str, Any], sink: _Collector, prefix: str = "") -> None:
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        sink.problem(path, f"{prefix}Bundle", f"unknown Bundle type {btype!r}")
        return
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        sink.problem(path, f"{prefix}Bundle", "Bundle.entry is not a list")
        return
    local: dict[str, str] = {}  # fullUrl (urn:uuid:...) -> Type/id
    kept: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries, start=1):
        where = f"{prefix}entry {i}"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # a DELETE or GET entry in a batch: nothing to store
        if _member(entry, "search", "mode") == "outcome":
            continue  # an OperationOutcome about the search, not data
        full_url = entry.get("fullUrl")
        if isinstance(resource, dict) and isinstance(full_url, str) and full_url.startswith("urn:"):
            if "id" not in resource and _member(entry, "request", "method") == "POST":
                resource = {**resource, "id": full_url.rsplit(":", 1)[-1]}  # a server would assign one
            if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
                local[full_url] = f"{resource['resourceType']}/{resource['id']}"
        kept.append((where, resource))
    for where, resource in kept:
        try:
            text = orjson.dumps(resource).decode()
        except orjson.JSONEncodeError:  # orjson writes at most 254 levels
            sink.problem(path, where, DEPTH_PROBLEM)
            continue
        if "urn:" in text:
            missing = [m for m in _URN_REF.findall(text) if m not in local]
            if missing:
                sink.problem(path, where, f"reference {missing[0]} points to no entry of this Bundle")
                continue
            text = _URN_REF.sub(lambda m: f'"reference":"{local[m.group(1)]}"', text)
        sink.add(path, where, resource, text)


def _member(entry: dict[str, Any], element: str, member: str) -> Any:
    """``entry[element][member]``, or None when either is absent or the element is not an object."""
    value = entry.get(element)
    return value.get(member) if isinstance(value, dict) else None


def _read_all(paths: Sequence[str | Path], sink: _Collector, stage: Staging | None = None) -> int:
    files = fhir_files(paths)
    for path in files:
        if _kind(path) == "ndjson":
            sink.done()  # keep the staging order (the last of a type and id wins) equal to the reading order
            if stage is None or not stage.append_ndjson(path):
                _read_ndjson(path, sink)
        else:
            _read_json(path, sink)
    sink.done()
    return len(files)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("abort", "skip"):
        raise DataError(f"unknown on_error {on_error!r}", "use 'abort' or 'skip'")


def read_resources(paths: Sequence[str | Path], *, on_error: OnError = "abort") -> tuple[list[Row], IngestReport]:
    """Read and check every resource in ``paths`` into memory, without touching a store."""
    _check_on_error(on_error)
    sink = _Collector(on_error)
    n_files = _read_all(paths, sink)
    rows = sink.unique_rows()
    report = IngestReport(files=n_files, skipped=sink.problems)
    report.by_type.update(r[0] for r in rows)
    return rows, report


def ingest(store: FhirStore, paths: Sequence[str | Path], *, on_error: OnError = "abort") -> IngestReport:
    """Read ``paths`` (Bundles, NDJSON, gzip, directories) and upsert their resources in one transaction.

    Resources are checked and staged in chunks (memory stays bounded for exports larger than memory); the store
    itself changes only in the final transaction, after every file has been read.
    """
    _check_on_error(on_error)
    start = time.perf_counter()
    with store.staging() as stage:
        sink = _Collector(on_error, flush=stage.append)
        n_files = _read_all(paths, sink, stage)
        by_type = stage.commit()
    report = IngestReport(files=n_files, skipped=sink.problems, seconds=time.perf_counter() - start)
    report.by_type.update(by_type)
    return report


def bundle_resources(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The resources of an in-memory Bundle (a CDS prefetch, a test), with ``urn:uuid:`` references resolved."""
    sink = _Collector("abort")
    _read_bundle(Path("<bundle>"), bundle, sink)
    for _, _, _, text in sink.unique_rows():
        yield orjson.loads(text)
