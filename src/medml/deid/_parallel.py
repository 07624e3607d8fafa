"""De-identification on several processes: NDJSON in chunks of lines, JSON files whole, results written in order.

The walk of a resource is pure Python and holds the interpreter's lock, so more cores need more processes. Each
worker builds its own :class:`Anonymizer` from the configuration (spawned, not forked: the command's progress bar
runs a thread) and parses, de-identifies and writes JSON; the parent reads, hands out at most two chunks a worker,
and writes the results in input order, so the output is the same file a single process writes (hashes and
per-patient date shifts depend on the values alone) and memory stays bounded. A failure in a worker comes back as
the same one-line error, naming the file and line.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator
from datetime import date
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import IO, Any

import orjson

from medml.deid._config import DeidConfig
from medml.deid._engine import Anonymizer
from medml.deid._errors import DeidProcessingError, InvalidResourceError, RuleNotApplicableError
from medml.errors import InputFileError, MedmlError

#: lines handed to a worker at a time: large enough to amortise the hand-over, small enough to stream
CHUNK_LINES = 2000
#: below this many bytes of input, starting workers costs more than it saves
MIN_PARALLEL_BYTES = 2 * 1024 * 1024
_ERRORS: dict[str, type[MedmlError]] = {
    c.__name__: c for c in (InputFileError, InvalidResourceError, DeidProcessingError, RuleNotApplicableError)
}
_FIX_FORMAT = "give FHIR R4 JSON (.json), NDJSON (.ndjson), either gzipped (.gz), or a folder of them"
_worker: Anonymizer | None = None

Result = tuple[bytes, int, int] | tuple[str, str, str]  # (output, resources, emptied) or (error class, what, fix)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _init(config: DeidConfig, today: date) -> None:
    global _worker
    _worker = Anonymizer(config, today=today)


def _one(resource: Any, source: str, line: int, file_name: str, folder: str) -> tuple[Any, int, int]:
    """One resource de-identified; an error names the file (and the line, where ``line`` > 0)."""
    assert _worker is not None
    try:
        out = _worker.anonymize(resource, file_name=file_name, folder_name=folder)
    except (InvalidResourceError, DeidProcessingError) as e:
        where = f"{source} line {line}" if line else source
        raise type(e)(f"{where}: {e.what}", e.fix) from None
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    return out, len(entries) if isinstance(entries, list) else 1, int(out is not resource)


def _lines(chunk: list[tuple[int, bytes]], source: str, file_name: str, folder: str) -> Result:
    """A chunk of NDJSON lines de-identified (in a worker)."""
    parts: list[bytes] = []
    resources = emptied = 0
    try:
        for n, line in chunk:
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise InputFileError(f"{source} line {n} is not JSON ({e})", _FIX_FORMAT) from None
            out, r, x = _one(resource, source, n, file_name, folder)
            parts.append(orjson.dumps(out))
            resources += r
            emptied += x
    except MedmlError as e:
        return type(e).__name__, e.what, e.fix
    parts.append(b"")
    return b"\n".join(parts), resources, emptied


def _whole(path: str, file_name: str, folder: str) -> Result:
    """A JSON file (a resource or Bundle) de-identified (in a worker)."""
    from medml.deid._io import read_json

    try:
        out, r, x = _one(read_json(Path(path)), path, 0, file_name, folder)
    except MedmlError as e:
        return type(e).__name__, e.what, e.fix
    return orjson.dumps(out), r, x


def raise_result(result: Result) -> tuple[bytes, int, int]:
    first, second, third = result
    if isinstance(first, str):
        raise _ERRORS.get(first, InputFileError)(str(second), str(third))
    return first, int(second), int(third)


class ParallelRun:
    """A pool of workers for one run; use as a context manager."""

    def __init__(self, anonymizer: Anonymizer, workers: int) -> None:
        self.workers = workers
        ctx = mp.get_context("spawn")
        self.pool: Pool = ctx.Pool(workers, initializer=_init, initargs=(anonymizer.config, anonymizer.methods.today))

    def __enter__(self) -> ParallelRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.pool.close()
        else:
            self.pool.terminate()
        self.pool.join()

    def ndjson(
        self, chunks: Iterator[list[tuple[int, bytes]]], source: Path, folder: str, handle: IO[bytes], tick: Any
    ) -> tuple[int, int]:
        """Write the de-identified chunks to ``handle`` in order; (resources, emptied)."""
        pending: deque[AsyncResult[Result]] = deque()
        resources = emptied = 0

        def drain() -> None:
            nonlocal resources, emptied
            data, r, x = raise_result(pending.popleft().get())
            handle.write(data)
            resources += r
            emptied += x
            tick()

        for chunk in chunks:
            pending.append(self.pool.apply_async(_lines, (chunk, str(source), source.name, folder)))
            if len(pending) >= 2 * self.workers:
                drain()
        while pending:
            drain()
        return resources, emptied

    def whole(self, path: Path, folder: str) -> AsyncResult[Result]:
        return self.pool.apply_async(_whole, (str(path), path.name, folder))


def chunks_of(lines: Iterator[tuple[int, bytes]], size: int = CHUNK_LINES) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for item in lines:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["CHUNK_LINES", "MIN_PARALLEL_BYTES", "ParallelRun", "chunks_of", "raise_result", "usable_cpus"]
