"""Reading FHIR input (a resource or Bundle, NDJSON, gzipped or not, or a Bulk Data folder) and writing the
de-identified output: NDJSON a line at a time, every output first to a temporary name beside it and renamed only
when complete, so that a failed run leaves nothing behind."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from medml.deid._engine import Anonymizer
from medml.deid._errors import DeidProcessingError, InvalidResourceError
from medml.deid._parallel import MIN_PARALLEL_BYTES, ParallelRun, chunks_of
from medml.deid._parallel import raise_result as _raise_result
from medml.errors import InputFileError

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
_FIX_FORMAT = "give FHIR R4 JSON (.json), NDJSON (.ndjson), either gzipped (.gz), or a folder of them"


@dataclass(frozen=True)
class RunSummary:
    """What a run did: files, resources (a Bundle counts as its entries), top-level resources emptied by
    processingErrors ``skip``, and how long it took."""

    files: int
    resources: int
    emptied: int
    seconds: float
    output: Path


def kind_of(path: Path) -> str:
    """``ndjson`` or ``json`` by the file's name; InputFileError for anything else."""
    name = path.name.lower()
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    raise InputFileError(f"{path} is neither .json nor .ndjson (optionally .gz)", _FIX_FORMAT)


def _open_read(path: Path) -> IO[bytes]:
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return path.open("rb")
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}", "check that it exists and is readable") from None


def read_json(path: Path) -> Any:
    """A whole JSON file (gzipped or not), a leading BOM allowed; InputFileError if it is not JSON."""
    try:
        with _open_read(path) as handle:
            raw = handle.read()
    except (OSError, EOFError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "check that the file is complete") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InputFileError(f"{path} is not JSON ({e})", _FIX_FORMAT) from None


def iter_ndjson(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line, read a line at a time."""
    try:
        with _open_read(path) as handle:
            for n, line in enumerate(handle, 1):
                if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line or line.isspace():  # blank (what strip() would empty, without the copy)
                    continue
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise InputFileError(f"{path} line {n} is not JSON ({e})", _FIX_FORMAT) from None
    except (OSError, EOFError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "check that the file is complete") from None


def iter_ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each non-blank line, unparsed (for the workers of a parallel run)."""
    try:
        with _open_read(path) as handle:
            for n, line in enumerate(handle, 1):
                if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if line and not line.isspace():
                    yield n, line
    except (OSError, EOFError) as e:
        raise InputFileError(f"cannot read {path}: {e}", "check that the file is complete") from None


def input_files(folder: Path) -> list[Path]:
    """The FHIR files of a Bulk Data folder (its NDJSON and JSON files, sorted; no subfolders)."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(NDJSON_SUFFIXES + JSON_SUFFIXES)
    )
    if not files:
        raise InputFileError(f"{folder} holds no .json or .ndjson files", _FIX_FORMAT)
    return files


@contextmanager
def atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """A file handle whose content appears at ``target`` only if the block completes (gzipped for ``.gz``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    raw = os.fdopen(fd, "wb")
    handle: IO[bytes] = raw
    if target.name.endswith(".gz"):
        handle = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)  # type: ignore[assignment]
    try:
        yield handle
        handle.close()
        raw.close()
        os.replace(tmp, target)
    except BaseException:
        handle.close()
        raw.close()
        Path(tmp).unlink(missing_ok=True)
        raise


class _Counter:
    def __init__(self) -> None:
        self.resources = 0
        self.emptied = 0


def _anonymize(
    anonymizer: Anonymizer, resource: Any, source: Path, line: int, file_name: str, folder: str, n: _Counter
) -> Any:
    """One resource de-identified and counted; an error names the file (and the line, where ``line`` > 0)."""
    try:
        out = anonymizer.anonymize(resource, file_name=file_name, folder_name=folder)
    except (InvalidResourceError, DeidProcessingError) as e:
        where = f"{source} line {line}" if line else str(source)
        raise type(e)(f"{where}: {e.what}", e.fix) from None
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    n.resources += len(entries) if isinstance(entries, list) else 1
    if out is not resource:
        n.emptied += 1
    return out


def deidentify_file(
    anonymizer: Anonymizer, source: Path, handle: IO[bytes], folder: str, n: _Counter, tick: Callable[[], None]
) -> None:
    """One input file's de-identified content, written to ``handle`` in the same format."""
    name = source.name
    if kind_of(source) == "ndjson":
        for line, resource in iter_ndjson(source):
            out = _anonymize(anonymizer, resource, source, line, name, folder, n)
            handle.write(orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE))
            tick()
        return
    resource = read_json(source)
    handle.write(orjson.dumps(_anonymize(anonymizer, resource, source, 0, name, folder, n)))
    tick()


def _parallel_file(
    run: ParallelRun, source: Path, handle: IO[bytes], folder: str, n: _Counter, tick: Callable[[], None]
) -> None:
    if kind_of(source) == "ndjson":
        r, x = run.ndjson(chunks_of(iter_ndjson_lines(source)), source, folder, handle, tick)
    else:
        data, r, x = _raise_result(run.whole(source, folder).get())
        handle.write(data)
        tick()
    n.resources += r
    n.emptied += x


def _parallel_folder(
    run: ParallelRun,
    files: list[Path],
    staging: Path,
    folder: str,
    n: _Counter,
    tick: Callable[[], None],
    on_file: Callable[[Path, int, int], None] | None,
) -> None:
    """A folder's files on the workers: JSON files whole, several at a time; NDJSON files in chunks."""
    pending: deque[tuple[Path, Any]] = deque()

    def drain() -> None:
        f, result = pending.popleft()
        data, r, x = _raise_result(result.get())
        with atomic_file(staging / f.name) as handle:
            handle.write(data)
        n.resources += r
        n.emptied += x
        tick()

    for i, f in enumerate(files):
        if on_file:
            on_file(f, i, len(files))
        if kind_of(f) == "ndjson":
            while pending:
                drain()
            with atomic_file(staging / f.name) as handle:
                _parallel_file(run, f, handle, folder, n, tick)
        else:
            pending.append((f, run.whole(f, folder)))
            if len(pending) >= 2 * run.workers:
                drain()
    while pending:
        drain()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def deidentify_path(
    anonymizer: Anonymizer,
    source: Path,
    target: Path,
    *,
    overwrite: bool = False,
    on_file: Callable[[Path, int, int], None] | None = None,
    tick: Callable[[], None] = lambda: None,
    workers: int = 1,
) -> RunSummary:
    """De-identify a file into a file of the same format, or a folder into a new folder of the same files.

    ``target`` may not be ``source``; an existing target is replaced only with ``overwrite``. ``on_file(path,
    i, n)`` is called before each file; ``tick`` after each resource (for a progress bar), or each chunk of
    them. ``workers`` > 1 spreads the work over that many processes where the input is large enough to gain
    (:mod:`medml.deid._parallel`); the output is the same. The workers are spawned, so a script that asks for
    them calls this under ``if __name__ == "__main__":``, as Python's multiprocessing requires.
    """
    if source.exists() and workers > 1 and _size(source) >= MIN_PARALLEL_BYTES:
        with ParallelRun(anonymizer, workers) as run:
            return _deidentify_path(anonymizer, source, target, overwrite, on_file, tick, run)
    return _deidentify_path(anonymizer, source, target, overwrite, on_file, tick, None)


def _deidentify_path(
    anonymizer: Anonymizer,
    source: Path,
    target: Path,
    overwrite: bool,
    on_file: Callable[[Path, int, int], None] | None,
    tick: Callable[[], None],
    run: ParallelRun | None,
) -> RunSummary:
    start = time.perf_counter()
    if not source.exists():
        raise InputFileError(f"{source} does not exist", _FIX_FORMAT)
    if target.resolve() == source.resolve():
        raise InputFileError(f"the output {target} is the input", "write the de-identified data to another path")
    if target.exists() and not overwrite:
        raise InputFileError(f"{target} already exists", "choose a new output path, or pass --overwrite")
    if not target.parent.is_dir():
        raise InputFileError(f"the folder of {target} does not exist", "create it first")
    n = _Counter()
    if source.is_dir():
        files = input_files(source)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        try:
            if run is not None:
                _parallel_folder(run, files, staging, source.resolve().name, n, tick, on_file)
            for i, f in enumerate(files if run is None else ()):
                if on_file:
                    on_file(f, i, len(files))
                with atomic_file(staging / f.name) as handle:
                    deidentify_file(anonymizer, f, handle, source.resolve().name, n, tick)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return RunSummary(len(files), n.resources, n.emptied, time.perf_counter() - start, target)
    if target.is_dir():
        raise InputFileError(f"{target} is a folder but {source} is a file", "give an output file name")
    kind_of(source)
    if kind_of(target) != kind_of(source):
        raise InputFileError(
            f"{source} is {kind_of(source).upper()} but {target} is named as {kind_of(target).upper()}",
            "give the output the input's format (.json or .ndjson, .gz allowed)",
        )
    if on_file:
        on_file(source, 0, 1)
    with atomic_file(target) as handle:
        if run is None:
            deidentify_file(anonymizer, source, handle, source.resolve().parent.name, n, tick)
        else:
            _parallel_file(run, source, handle, source.resolve().parent.name, n, tick)
    return RunSummary(1, n.resources, n.emptied, time.perf_counter() - start, target)


def iter_resources(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, resource) for every top-level resource of a file or folder, Bundles as they are."""
    files = input_files(path) if path.is_dir() else [path]
    for f in files:
        if kind_of(f) == "ndjson":
            for line, resource in iter_ndjson(f):
                yield f"{f.name} line {line}", _resource(resource, f"{f} line {line}")
        else:
            yield f.name, _resource(read_json(f), str(f))


def _resource(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise InputFileError(f"{where} is not a FHIR resource (no resourceType)", _FIX_FORMAT)
    return value


__all__ = [
    "RunSummary",
    "atomic_file",
    "deidentify_path",
    "input_files",
    "iter_ndjson",
    "iter_resources",
    "kind_of",
    "read_json",
]
