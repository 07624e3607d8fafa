"""The FHIR store: resources kept whole as JSON in DuckDB, one row per (type, id), upserted on re-ingest.

What is stored is valid JSON as RFC 8259 (and orjson) reads it: no NaN or Infinity, no trailing commas, numbers
within a double's range, at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_RESOURCE_BYTES` per resource.
Every reader (``medml fhir get``, the FHIR server, views) can then parse what it reads.

A store file is never written in place. A writer (``FhirStore(path)``) takes the store's lock (waiting a bounded
time for another writer), works on a copy beside it, and on a clean close atomically renames the copy over the store.
Readers never block the writer nor it them: a reader that opened the store before keeps reading the file it opened
(its snapshot) until it reopens, and one that opens it after sees the new file.
"""

from __future__ import annotations

import os
import shutil
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson
import pyarrow as pa

from medml.errors import DataError, InputFileError, NotFoundError
from medml.fhir._r4types import R4_RESOURCE_TYPES

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    resource_type VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    last_updated VARCHAR,
    resource JSON NOT NULL,
    PRIMARY KEY (resource_type, id)
)
"""

Row = tuple[str, str, str | None, str]  # resource_type, id, meta.lastUpdated, the resource as JSON text

#: the most bytes of JSON one stored resource may have (DuckDB's own default for one JSON object)
MAX_RESOURCE_BYTES = 16 * 1024 * 1024
#: the most levels of nesting a stored resource may have, the resource itself being 1 (FHIR's own resources nest
#: about 10 deep; orjson cannot write more than 254)
MAX_DEPTH = 100
#: how long a writer waits for another to finish before it gives up
WRITE_WAIT_SECONDS = 60.0

_LIMITS_FIX = "check the export or the system that wrote it"
DEPTH_PROBLEM = f"nested more than {MAX_DEPTH} levels deep, the most a stored resource may be"


def check_resource(resource: Any, where: str = "") -> tuple[str, str]:
    """The (type, id) of a resource, or a DataError that says which one is wrong and why."""
    at = f" ({where})" if where else ""
    if not isinstance(resource, dict):
        raise DataError(
            f"expected a FHIR resource (a JSON object){at}, got {type(resource).__name__}",
            "each resource must be a JSON object with resourceType and id",
        )
    rtype = resource.get("resourceType")
    if rtype not in R4_RESOURCE_TYPES:
        raise DataError(
            f"unknown FHIR R4 resource type {rtype!r}{at}",
            "resourceType must be one of the FHIR R4 resource types, spelt as in the specification",
        )
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        raise DataError(f"{rtype} without an id{at}", "every stored resource needs an id; add one or export with ids")
    return rtype, rid


def json_depth(value: Any, stop: int = MAX_DEPTH) -> int:
    """How many containers deep a parsed JSON value nests (a scalar 0, ``{}`` 1); counting ends past ``stop``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > stop:
                break
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def limits_problem(resource: Any, text: str) -> str | None:
    """What breaks the store's limits in a parsed resource and its JSON text, or None when it is within them."""
    if len(text) * 4 > MAX_RESOURCE_BYTES and (size := len(text.encode())) > MAX_RESOURCE_BYTES:
        return f"{size:,} bytes of JSON, more than the {MAX_RESOURCE_BYTES:,} a stored resource may have"
    # a resource cannot nest deeper than it has brackets: most need no walk
    if text.count("[") + text.count("{") > MAX_DEPTH and json_depth(resource) > MAX_DEPTH:
        return DEPTH_PROBLEM
    return None


def json_text_problem(text: str) -> str | None:
    """What keeps a JSON text out of the store (not valid JSON, too large, too deep), or None when it may go in."""
    if len(text) * 4 > MAX_RESOURCE_BYTES and (size := len(text.encode())) > MAX_RESOURCE_BYTES:
        return f"{size:,} bytes of JSON, more than the {MAX_RESOURCE_BYTES:,} a stored resource may have"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    return limits_problem(value, text)


def resource_row(resource: Any, where: str = "", text: str | None = None) -> Row:
    """A checked resource as a store row; ``text`` is its JSON when the caller already has it (parsed strictly).

    A DataError when the resource is not one, or breaks the store's limits (:data:`MAX_RESOURCE_BYTES`,
    :data:`MAX_DEPTH`).
    """
    rtype, rid = check_resource(resource, where)
    at = f" ({where})" if where else ""
    if text is None:
        try:
            text = orjson.dumps(resource).decode()
        except orjson.JSONEncodeError as exc:  # nested past orjson's 254 levels, or a value JSON cannot hold
            if json_depth(resource) > MAX_DEPTH:
                raise DataError(f"{rtype}/{rid}{at} is {DEPTH_PROBLEM}", _LIMITS_FIX) from None
            raise DataError(f"{rtype}/{rid}{at} cannot be stored as JSON ({exc})", _LIMITS_FIX) from None
    problem = limits_problem(resource, text)
    if problem is not None:
        raise DataError(f"{rtype}/{rid}{at} is {problem}", _LIMITS_FIX)
    meta = resource.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return rtype, rid, updated if isinstance(updated, str) else None, text


def split_reference(reference: str) -> tuple[str, str]:
    """``Patient/123`` (or an absolute URL ending so, or ``Patient/123/_history/2``) as ("Patient", "123")."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or parts[-2] not in R4_RESOURCE_TYPES or not parts[-1]:
        raise DataError(
            f"cannot resolve reference {reference!r}",
            "a resolvable reference looks like Patient/123 (urn:uuid: ones resolve only inside a Bundle)",
        )
    return parts[-2], parts[-1]


# yyjson (DuckDB's JSON reader) accepts what RFC 8259 and orjson refuse: trailing commas, NaN and Infinity
# literals (any case, signed), numbers past a double's range; and it has no depth limit. A staged line that may hold
# any of these is a suspect, checked again with orjson; what is not a suspect cannot hold them. A literal needs
# [nNiI][aAnN] where a value starts; an overflowing number needs an exponent of 3 digits or 200 digits before its
# point; nesting deeper than MAX_DEPTH needs more brackets than MAX_DEPTH.
_VALUE = r"[-+]?[nNiI][aAnN]|-?[0-9.]+[eE]\+?[0-9]{3}|-?[0-9]{200}"
_SUSPECT = f"""(regexp_matches(t, ':\\s*(?:{_VALUE})') OR regexp_matches(t, ',\\s*(?:[\\]}}]|{_VALUE})')
    OR regexp_matches(t, '\\[\\s*(?:{_VALUE})')
    OR strlen(t) - strlen(replace(replace(t, '{{', ''), '[', '')) > {MAX_DEPTH})"""


class Staging:
    """Rows checked and waiting in a temporary table; the store changes only in :meth:`commit`."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.seq = 0
        self.files = 0
        # resource is JSON here already (validated once, on the way in), so the final insert need not parse it again
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _medml_staging (seq BIGINT, file INTEGER, resource_type VARCHAR, "
            "id VARCHAR, last_updated VARCHAR, resource JSON, id_type VARCHAR, suspect BOOLEAN)"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _medml_r4types AS SELECT unnest(?::VARCHAR[]) AS t",
            [sorted(R4_RESOURCE_TYPES)],
        )

    def append(self, rows: list[Row]) -> None:
        """Rows already checked (by :func:`resource_row`)."""
        rtypes, ids, updated, texts = zip(*rows, strict=True)
        batch = pa.table(
            {
                "seq": pa.array(range(self.seq, self.seq + len(rows)), pa.int64()),
                "file": pa.array([-1] * len(rows), pa.int32()),
                "resource_type": pa.array(rtypes, pa.string()),
                "id": pa.array(ids, pa.string()),
                "last_updated": pa.array(updated, pa.string()),
                "resource": pa.array(texts, pa.string()),
            }
        )
        self.seq += len(rows)
        self.con.register("_medml_batch", batch)
        try:
            self.con.execute("INSERT INTO _medml_staging SELECT *, 'VARCHAR', false FROM _medml_batch")
        finally:
            self.con.unregister("_medml_batch")

    def append_ndjson(self, path: Path) -> bool:
        """Stage a clean NDJSON file at DuckDB's speed; False (nothing staged) when any line needs a closer look.

        A line that is not strict JSON, breaks the store's limits, is not a resource of a known type, has no id, or
        is a Bundle sends the caller back to the line-by-line reader, which says which line is wrong.
        """
        self.files += 1
        try:
            # one parse per line for the three fields (a multi-path extraction), and the type of id from that
            self.con.execute(
                f"""
                INSERT INTO _medml_staging
                SELECT {self.seq} + row_number() OVER () - 1, {self.files}, e[1] ->> '$', e[2] ->> '$', e[3] ->> '$',
                       j, json_type(e[2]), {_SUSPECT}
                FROM (SELECT j, j::VARCHAR AS t, json_extract(j, ['$.resourceType', '$.id', '$.meta.lastUpdated']) AS e
                      FROM read_json_objects(?, format = 'newline_delimited',
                                             maximum_object_size = {MAX_RESOURCE_BYTES + 2}) AS r(j))""",
                [str(path)],
            )
        except duckdb.Error:
            self._forget(self.files)
            return False
        bad = self.con.execute(f"""
            SELECT count(*) FROM _medml_staging WHERE file = {self.files} AND (
                id IS NULL OR id = '' OR resource_type = 'Bundle' OR id_type IS DISTINCT FROM 'VARCHAR'
                OR resource_type IS NULL OR resource_type NOT IN (SELECT t FROM _medml_r4types)
                OR strlen(resource::VARCHAR) > {MAX_RESOURCE_BYTES})""").fetchall()[0][0]
        if bad or not self._suspects_pass(self.files):
            self._forget(self.files)
            return False
        self.seq = int(self.con.execute("SELECT coalesce(max(seq) + 1, 0) FROM _medml_staging").fetchall()[0][0])
        return True

    def _suspects_pass(self, file: int) -> bool:
        """Whether every suspect line of a staged file is strict JSON within the store's limits."""
        cur = self.con.execute(f"SELECT resource::VARCHAR FROM _medml_staging WHERE file = {file} AND suspect")
        while batch := cur.fetchmany(1000):
            if any(json_text_problem(text) is not None for (text,) in batch):
                return False
        return True

    def _forget(self, file: int) -> None:
        self.con.execute(f"DELETE FROM _medml_staging WHERE file = {file}")

    def commit(self) -> dict[str, int]:
        """Upsert the staged rows (the last of each type and id wins) in one transaction; counts per type."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("""DELETE FROM resources r USING _medml_staging s
                                WHERE r.resource_type = s.resource_type AND r.id = s.id""")
            duplicates = self.con.execute(
                "SELECT count(*) - count(DISTINCT (resource_type, id)) FROM _medml_staging"
            ).fetchall()[0][0]
            last = "QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY seq DESC) = 1"
            self.con.execute(f"""INSERT INTO resources SELECT resource_type, id, last_updated, resource
                                 FROM _medml_staging {last if duplicates else ""}""")
            counts = self.con.execute(
                "SELECT resource_type, count(DISTINCT id) FROM _medml_staging GROUP BY 1"
            ).fetchall()
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return {str(t): int(n) for t, n in counts}

    def drop(self) -> None:
        self.con.execute("DROP TABLE IF EXISTS _medml_staging")
        self.con.execute("DROP TABLE IF EXISTS _medml_r4types")


class _WriteLock:
    """One writer of a store at a time, across processes: ``flock`` on a file beside the store, waited for a while.

    The holder removes the file as it leaves, so a lock taken on a file that is no longer at that path is taken again.
    """

    def __init__(self, store: Path, wait_seconds: float) -> None:
        import fcntl

        self.path = store.with_name(store.name + ".lock")
        deadline = time.monotonic() + wait_seconds
        while True:
            fh = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fh.read(20).decode(errors="replace").strip()
                fh.close()
                if time.monotonic() >= deadline:
                    raise InputFileError(
                        f"another process ({f'pid {holder}' if holder else f'see {self.path}'}) is writing the FHIR "
                        f"store {store}, and still was after {wait_seconds:.0f} s",
                        "wait for it to finish, then run this again",
                    ) from None
                time.sleep(0.1)
                continue
            try:
                taken = os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                taken = False
            if taken:
                break
            fh.close()
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        self.fh: IO[bytes] | None = fh

    def release(self) -> None:
        if self.fh is not None:
            with suppress(FileNotFoundError):
                self.path.unlink()
            self.fh.close()
            self.fh = None


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Writer:
    """A writer's copy of a store file: made under the lock, renamed over the store when it holds new commits."""

    def __init__(self, store: Path, wait_seconds: float) -> None:
        self.store = store
        self.copy = store.with_name(store.name + ".writing")
        self.lock = _WriteLock(store, wait_seconds)
        try:
            for stale in (self.copy, _wal(self.copy)):  # left by a writer that was killed
                stale.unlink(missing_ok=True)
            self.new = not store.exists()
            if not self.new:
                shutil.copyfile(store, self.copy)
                shutil.copymode(store, self.copy)
                if _wal(store).exists():  # a writer of an older medml died before its checkpoint
                    shutil.copyfile(_wal(store), _wal(self.copy))
                # an mtime no write can give: any change DuckDB makes to the copy shows
                os.utime(self.copy, ns=(time.time_ns(), 0))
        except OSError as exc:
            self.discard()
            raise InputFileError(
                f"cannot copy the FHIR store {store} to write it: {exc}",
                "a write needs room for a second copy of the store beside it; free some disk space",
            ) from exc
        except BaseException:
            self.discard()
            raise

    def changed(self) -> bool:
        return self.new or (self.copy.exists() and self.copy.stat().st_mtime_ns != 0)

    def publish(self) -> None:
        """Put the copy in the store's place (its connection closed), if it holds anything new; then let go."""
        try:
            if self.changed():
                if _wal(self.copy).exists():
                    raise InputFileError(
                        f"the FHIR store {self.store} was not checkpointed; nothing was written",
                        "run the ingest again",
                    )
                _fsync(self.copy)
                _wal(self.store).unlink(missing_ok=True)  # in the copy already; never to be replayed onto it
                os.replace(self.copy, self.store)
                _fsync(self.store.parent)
        finally:
            self.discard()

    def discard(self) -> None:
        for path in (self.copy, _wal(self.copy)):
            path.unlink(missing_ok=True)
        self.lock.release()


def _connect(target: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to write ``target``, or to read the store file now at it.

    A reader attaches the file to a database of its own, with ``resources`` as a view (seen by its cursors too):
    ``duckdb.connect(path)`` would hand it the database another connection of this process already has open at that
    path, which after an ingest is the file that was replaced.
    """
    if target == ":memory:" or not read_only:
        con = duckdb.connect(target)
        try:
            con.execute(SCHEMA)
        except BaseException:
            con.close()
            raise
        return con
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS store (READ_ONLY)", [target])
        con.execute("CREATE VIEW resources AS SELECT * FROM store.resources")
    except BaseException:
        con.close()
        raise
    return con


def _close(con: duckdb.DuckDBPyConnection, writer: _Writer | None) -> None:
    if writer is None:
        con.close()
        return
    try:
        con.execute("CHECKPOINT")
        con.close()
    except BaseException:
        writer.discard()
        raise
    writer.publish()


class FhirStore:
    """FHIR R4 resources in a DuckDB database (a file, or in memory for a request or a test).

    Opened to write a file (the default), it works on a copy of the store under the store's lock (waiting up to
    ``wait_seconds`` for another writer); what was committed replaces the store when it is closed (or collected).
    Opened ``read_only``, it reads the store as it was when opened, whatever a writer does meanwhile.
    """

    def __init__(
        self, path: str | Path = ":memory:", *, read_only: bool = False, wait_seconds: float = WRITE_WAIT_SECONDS
    ) -> None:
        self.path = str(path)
        self._writer: _Writer | None = None
        target = self.path
        if self.path != ":memory:":
            if read_only and not Path(self.path).exists():
                raise NotFoundError(f"no FHIR store at {self.path}", "run `medml fhir ingest PATH...` first")
            if not read_only:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._writer = _Writer(Path(self.path), wait_seconds)
                target = str(self._writer.copy)
        try:
            self.con = _connect(target, read_only)
        except duckdb.Error as exc:
            if self._writer is not None:
                self._writer.discard()
            raise InputFileError(
                f"cannot open the FHIR store {self.path}: {exc}", "is it a medml FHIR store (medml fhir ingest)?"
            ) from exc
        self._closer = weakref.finalize(self, _close, self.con, self._writer)

    @classmethod
    def in_memory(cls, resources: Iterable[dict[str, Any]] = ()) -> FhirStore:
        store = cls(":memory:")
        store.add(resources)
        return store

    def __enter__(self) -> FhirStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, resources: Iterable[dict[str, Any]]) -> int:
        """Upsert resources in one transaction; a bad resource raises and nothing is written."""
        rows = [resource_row(res, f"resource {i + 1}") for i, res in enumerate(resources)]
        if not rows:
            return 0
        with self.staging() as stage:
            stage.append(rows)
            return sum(stage.commit().values())

    def replace_all(self, resources: Iterable[dict[str, Any]]) -> int:
        """Make these resources the store's whole content, in one transaction (the last of a type and id wins).

        For a small in-memory store reused across CDS requests: no staging tables, one insert.
        """
        rows = {(r[0], r[1]): r for r in (resource_row(res, f"resource {i + 1}") for i, res in enumerate(resources))}
        batch = (
            pa.table(
                {
                    name: pa.array(col, pa.string())
                    for name, col in zip(
                        ("resource_type", "id", "last_updated", "resource"),
                        zip(*rows.values(), strict=True),
                        strict=True,
                    )
                }
            )
            if rows
            else None
        )
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("DELETE FROM resources")
            if batch is not None:
                self.con.register("_medml_batch", batch)
                try:
                    self.con.execute("INSERT INTO resources SELECT * FROM _medml_batch")
                finally:
                    self.con.unregister("_medml_batch")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return len(rows)

    @contextmanager
    def staging(self) -> Iterator[Staging]:
        """A staging area for a large ingest: append chunks, then commit them to the store in one transaction."""
        stage = Staging(self.con)
        try:
            yield stage
        finally:
            stage.drop()

    def counts(self) -> dict[str, int]:
        """Resources per type, largest first."""
        rows = self.con.execute(
            "SELECT resource_type, count(*) AS n FROM resources GROUP BY 1 ORDER BY n DESC, resource_type"
        ).fetchall()
        return {str(t): int(n) for t, n in rows}

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """One resource, or NotFoundError."""
        rows = self.con.execute(
            "SELECT resource FROM resources WHERE resource_type = ? AND id = ?", [resource_type, resource_id]
        ).fetchall()
        if not rows:
            raise NotFoundError(
                f"{resource_type}/{resource_id} is not in the FHIR store",
                "ingest the export or bundle that holds it (medml fhir ingest PATH)",
            )
        try:
            resource: dict[str, Any] = orjson.loads(rows[0][0])
        except orjson.JSONDecodeError as exc:  # written by a medml that did not check
            raise DataError(
                f"{resource_type}/{resource_id} in the FHIR store is not valid JSON ({exc})",
                "ingest the file that holds it again: medml fhir ingest now checks and names the line",
            ) from None
        return resource

    def resolve(self, reference: str | dict[str, Any]) -> dict[str, Any]:
        """The resource a reference (``"Patient/1"`` or ``{"reference": ...}``) points to."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str):
            raise DataError(f"not a reference: {reference!r}", "give a string like Patient/123")
        return self.get(*split_reference(ref))

    def dangling_references(self, limit: int = 10) -> tuple[int, list[str]]:
        """How many literal references point to no stored resource, and a few of them."""
        sql = """
        WITH refs AS (
            SELECT DISTINCT unnest(regexp_extract_all(resource::VARCHAR, '"reference":"([A-Za-z]+/[^"/]+)"', 1)) AS ref
            FROM resources),
        split AS (SELECT ref, split_part(ref, '/', 1) AS t, split_part(ref, '/', 2) AS i FROM refs)
        SELECT ref FROM split s WHERE NOT EXISTS (
            SELECT 1 FROM resources r WHERE r.resource_type = s.t AND r.id = s.i) ORDER BY ref
        """
        missing = [str(r[0]) for r in self.con.execute(sql).fetchall()]
        return len(missing), missing[:limit]

    def close(self) -> None:
        """Close the connection; a writer's commits then replace the store file, in one rename."""
        self._closer()
