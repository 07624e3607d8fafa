"""The monitoring store: what each deployed model saw and said, and the outcomes that arrive later (DuckDB).

One DuckDB file (``Settings.monitor_store``, ``MEDML_HOME/monitor.duckdb``) with two tables:

- ``predictions``: one row per scored patient: model NAME and version, the service (or ``medml predict``), the
  patient and encounter ids as the EHR gave them, when the score was made and the moment it is about, the score,
  the risk category and deployed threshold, the features as the model saw them, whether it was a shadow
  (challenger) score, and the CDS Hooks ``hookInstance`` that joins the audit log. The features are stored as two
  lists in the order of a ``feature_sets`` row (the model's names, stored once): ``numbers`` (DOUBLE[]) and, only
  when some are text, ``texts`` (VARCHAR[]). As JSON (name -> value) a row of 225 features took 5 kB and DuckDB's
  checkpoint of 5,000 such rows 10 s on the shared 2-core machine; as a list of doubles it took 0.35 s.
- ``outcomes``: one row per (patient, encounter, outcome name), with its value, when it happened, where it came
  from and when it was loaded. Outcomes join predictions by patient and encounter whenever they arrive.

The file holds protected health information: it is created readable by its owner only (0600), its write-ahead
log too. DuckDB lets one process write a file at a time, so every operation opens the file, works and closes it
again, waiting (``lock_timeout_s``) while another process (a service worker, a CLI command) has it open: the
service's recorder writes in groups, a few times a second at most, so the file is free most of the time.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from medml.errors import DataError, IntegrityError, clip, quote

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["PREDICTION_COLUMNS", "LoadSummary", "MonitorStore", "OutcomeRow", "PredictionRow"]

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS prediction_id START 1;
CREATE TABLE IF NOT EXISTS predictions (
    id BIGINT PRIMARY KEY DEFAULT nextval('prediction_id'),
    model VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    service VARCHAR NOT NULL,
    patient VARCHAR NOT NULL,
    encounter VARCHAR,
    time TIMESTAMPTZ NOT NULL,
    index_time TIMESTAMPTZ,
    score DOUBLE NOT NULL,
    risk VARCHAR,
    threshold DOUBLE,
    shadow BOOLEAN NOT NULL DEFAULT false,
    hook_instance VARCHAR,
    feature_set INTEGER NOT NULL,
    numbers DOUBLE[] NOT NULL,
    texts VARCHAR[]
);
CREATE TABLE IF NOT EXISTS feature_sets (
    id INTEGER PRIMARY KEY,
    key VARCHAR NOT NULL UNIQUE,
    names VARCHAR[] NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    patient VARCHAR NOT NULL,
    encounter VARCHAR NOT NULL DEFAULT '',
    outcome VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    time TIMESTAMPTZ,
    source VARCHAR NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (patient, encounter, outcome)
);
"""

#: the columns of :meth:`MonitorStore.predictions` before the features (one column each, after these)
PREDICTION_COLUMNS = (
    "id",
    "model",
    "version",
    "service",
    "patient",
    "encounter",
    "time",
    "index_time",
    "score",
    "risk",
    "threshold",
    "shadow",
    "hook_instance",
)
#: the columns :meth:`MonitorStore.joined` adds
OUTCOME_COLUMNS = ("outcome", "outcome_time", "outcome_name")
_INSERT_COLUMNS = (*PREDICTION_COLUMNS[1:], "feature_set", "numbers", "texts")


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One score as the monitor keeps it. Built on the request path, so checked only when written
    (:meth:`MonitorStore.record`): ``time`` and ``index_time`` aware datetimes, ``score`` a probability."""

    model: str  #: the registered model's NAME
    version: int
    service: str  #: the CDS service id, or ``medml predict``
    patient: str
    time: datetime  #: when the score was made
    score: float
    #: the model's inputs as it saw them, name -> value (None or NaN for a missing one)
    features: Mapping[str, Any]
    encounter: str | None = None
    index_time: datetime | None = None  #: the moment the score is about (e.g. 48 h after admission)
    risk: str | None = None  #: the category shown (info, warning, critical)
    threshold: float | None = None  #: the deployed threshold: a score at or above it alerts
    shadow: bool = False  #: a challenger scored silently beside the champion
    hook_instance: str | None = None


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One outcome of one patient (and encounter, when it belongs to one): ``value`` 1/0 for an event, or a
    measured number; ``time`` when it happened (aware), if known; ``source`` the file it came from."""

    patient: str
    outcome: str
    value: float
    encounter: str | None = None
    time: datetime | None = None
    source: str = ""


@dataclass(frozen=True)
class LoadSummary:
    """What one load of outcomes did: rows new to the store, rows it held already (the same value, skipped), rows
    of patients never scored that were skipped when asked, and the outcome names seen."""

    new: int
    already: int
    unknown_skipped: int = 0
    outcomes: tuple[str, ...] = ()
    patients: int = 0
    joined: dict[str, int] = field(default_factory=dict)  #: per outcome name, predictions that now have it


def _aware(name: str, t: datetime | None, where: str) -> datetime | None:
    if t is None:
        return None
    if not isinstance(t, datetime):
        raise DataError(f"{where}: {name} {quote(t)} is not a datetime", "pass an aware datetime")
    if t.tzinfo is None or t.utcoffset() is None:
        raise DataError(f"{where}: {name} {t.isoformat()} has no time zone", "record times with their zone (UTC)")
    return t.astimezone(UTC)


def _prediction_tuple(row: PredictionRow) -> tuple[Any, ...]:
    where = f"prediction of {clip(row.model)} for patient {clip(str(row.patient))}"
    score = row.score
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= float(score) <= 1.0:
        raise DataError(f"{where}: score {quote(score)} is not a probability between 0 and 1", "record the risk")
    if not row.model or "@" in row.model or isinstance(row.version, bool) or not isinstance(row.version, int):
        raise DataError(f"{where}: model {quote(row.model)} version {quote(row.version)}", "give NAME and version")
    return (
        row.model,
        row.version,
        row.service,
        str(row.patient),
        row.encounter,
        _aware("time", row.time, where),
        _aware("index_time", row.index_time, where),
        float(score),
        row.risk,
        None if row.threshold is None or math.isnan(row.threshold) else float(row.threshold),
        bool(row.shadow),
        row.hook_instance,
    )


def _encode(features: Sequence[Mapping[str, Any]], names: tuple[str, ...]) -> tuple[Any, Any]:
    """The rows' features as two Arrow list columns in ``names`` order: numbers (null where missing or text) and
    texts (null where a number; the whole column null when no value is text)."""
    import numpy as np
    import pyarrow as pa

    values = [list(f.values()) for f in features]  # grouped by their keys, so in ``names`` order
    k = len(names)
    offsets = pa.array(np.arange(0, len(values) * k + 1, k, dtype=np.int32))
    try:
        matrix = np.array(values, dtype=float).reshape(len(values), k)  # None -> NaN
        texts = pa.nulls(len(values), pa.list_(pa.string()))
    except (TypeError, ValueError):  # some values are text (a category as the model saw it)
        matrix = np.array([[_number(v) for v in row] for row in values], dtype=float).reshape(len(values), k)
        texts = pa.array([[v if isinstance(v, str) else None for v in row] for row in values], pa.list_(pa.string()))
    flat = matrix.ravel()
    numbers = pa.ListArray.from_arrays(offsets, pa.array(flat, mask=np.isnan(flat)))
    return numbers, texts


def _number(v: Any) -> float:
    if v is None or isinstance(v, str):
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _one(cursor: Any) -> Any:
    """The first row of a result, reading it to the end (DuckDB refuses other work on a connection while a result
    is not read to its end)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _is_lock_conflict(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() and ("Could not set lock" in text or "Conflicting lock" in text)


class MonitorStore:
    """Predictions and outcomes in one DuckDB file (see the module docstring); every method opens and closes it."""

    def __init__(self, path: Path, *, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._schema_of: tuple[int, int] | None = None  # (device, inode) of the file the schema was checked in

    # ---- the file ---------------------------------------------------------------------------------------------

    def _create(self) -> None:
        """Create the file owner-only: built in a private temporary folder, made 0600, then linked in place (so
        no other user ever sees it readable, whatever the process's umask)."""
        import duckdb

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.path.parent, prefix=".monitor-") as tmp:
            built = Path(tmp) / "monitor.duckdb"
            con = duckdb.connect(str(built))
            try:
                con.execute(SCHEMA)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            built.chmod(0o600)
            with contextlib.suppress(FileExistsError):  # never over a store another process created meanwhile
                os.link(built, self.path)

    @contextmanager
    def _connect(self, *, create: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists():
            if not create:
                raise DataError(
                    f"no monitoring store at {self.path}",
                    "the service (or `medml predict`) creates it with the first prediction it records",
                )
            self._create()
        deadline = time.monotonic() + self.lock_timeout_s
        with self._locked(deadline):
            con = self._open(deadline)
            try:
                con.execute("SET TimeZone = 'UTC'")
                st = self.path.stat()
                if self._schema_of != (st.st_dev, st.st_ino):  # once per file, not on every group write
                    con.execute(SCHEMA)
                    self._schema_of = (st.st_dev, st.st_ino)
                yield con
            finally:
                con.close()
                for p in (self.path, self.path.with_name(self.path.name + ".wal")):
                    try:
                        if p.stat().st_mode & 0o077:
                            p.chmod(0o600)
                    except FileNotFoundError:
                        pass

    @contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """Hold the store's own lock file (``flock``) while the database is open. With DuckDB's own file lock alone,
        three processes writing at once (tests/monitor/test_store.py) left one reading past the end of the file
        another had just rewritten: a POSIX ``fcntl`` lock, as DuckDB takes, is lost when any descriptor of the
        file in that process closes, which is the likely cause; a ``flock`` on a file of our own is not."""
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            wait = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DataError(
                            f"the monitoring store {self.path} stayed locked by another process for "
                            f"{self.lock_timeout_s:g} s",
                            "try again; the service writes in short groups",
                        ) from None
                    time.sleep(wait)
                    wait = min(wait * 2, 0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open(self, deadline: float) -> duckdb.DuckDBPyConnection:
        """The database, waiting while a process that does not take the lock file (a DuckDB shell) holds it."""
        import duckdb

        wait = 0.005
        while True:
            try:
                # one thread: the service's scoring (its own DuckDB stores) runs beside the writer on few cores
                return duckdb.connect(str(self.path), config={"threads": 1})
            except duckdb.IOException as e:
                if not _is_lock_conflict(e) or time.monotonic() > deadline:
                    if _is_lock_conflict(e):
                        raise DataError(
                            f"the monitoring store {self.path} stayed locked by another process for "
                            f"{self.lock_timeout_s:g} s",
                            "try again; the service writes in short groups",
                        ) from None
                    raise IntegrityError(
                        f"the monitoring store {self.path} cannot be opened ({e})",
                        "restore it from a backup, or move it aside to start a new one",
                    ) from None
                time.sleep(wait)
                wait = min(wait * 2, 0.2)

    # ---- predictions --------------------------------------------------------------------------------------------

    def record(self, rows: Iterable[PredictionRow]) -> int:
        """Write predictions in one transaction; returns how many. A row that is not valid (a score outside 0-1, a
        time without a zone) is a DataError and nothing is written."""
        import pyarrow as pa

        rows = list(rows)
        tuples = [_prediction_tuple(r) for r in rows]
        if not tuples:
            return 0
        by_names: dict[tuple[str, ...], list[int]] = {}
        for k, r in enumerate(rows):
            by_names.setdefault(tuple(r.features), []).append(k)
        types = {
            "version": pa.int32(),
            "time": pa.timestamp("us", tz="UTC"),
            "index_time": pa.timestamp("us", tz="UTC"),
            "score": pa.float64(),
            "threshold": pa.float64(),
            "shadow": pa.bool_(),
        }
        names = ", ".join(_INSERT_COLUMNS)
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for feature_names, members in by_names.items():
                    fs = self._feature_set(con, feature_names)
                    numbers, texts = _encode([rows[k].features for k in members], feature_names)
                    columns = list(zip(*(tuples[k] for k in members), strict=True))
                    arrays = {
                        name: pa.array(col, type=types.get(name, pa.string()))
                        for name, col in zip(PREDICTION_COLUMNS[1:], columns, strict=True)
                    }
                    arrays["feature_set"] = pa.array([fs] * len(members), pa.int32())
                    arrays["numbers"] = numbers
                    arrays["texts"] = texts
                    con.register("incoming", pa.table(arrays))
                    con.execute(f"INSERT INTO predictions ({names}) SELECT {names} FROM incoming")
                    con.unregister("incoming")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return len(tuples)

    @staticmethod
    def _feature_set(con: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> int:
        names = tuple(str(n) for n in names)
        key = orjson.dumps(names).decode()
        found = _one(con.execute("SELECT id FROM feature_sets WHERE key = ?", [key]))
        if found is not None:
            return int(found[0])
        new = _one(con.execute("SELECT coalesce(max(id), 0) + 1 FROM feature_sets"))
        assert new is not None
        con.execute("INSERT INTO feature_sets VALUES (?, ?, ?)", [int(new[0]), key, list(names)])
        return int(new[0])

    def predictions(
        self,
        model: str,
        version: int | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        shadow: bool | None = False,
        features: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The model's predictions in time order, one column per feature after :data:`PREDICTION_COLUMNS` (numbers
        as float, text as str, missing as NaN/None). ``version`` None: every version; ``since`` (inclusive) and
        ``until`` (exclusive) bound ``time``; ``shadow`` False: the champion's scores, True: the shadow's, None:
        both. ``features``: these columns in this order (a name never recorded is all missing); default: every
        feature recorded, in the order first seen."""
        where, params = self._where(model, version, since, until, shadow)
        with self._connect() as con:
            return self._frame(con, f"SELECT * FROM predictions p WHERE {where}", params, features, outcome=None)

    def joined(
        self,
        model: str,
        version: int | None = None,
        *,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        shadow: bool | None = False,
        features: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """:meth:`predictions` with their outcome: ``outcome`` (the value, NaN while unknown), ``outcome_time`` and
        ``outcome_name``. An outcome joins a prediction of the same patient and, when both name one, the same
        encounter; an outcome of the patient without an encounter joins each of its predictions unless one of the
        encounter's own does. ``outcome`` None: the one outcome name loaded for these patients (an error if
        several)."""
        where, params = self._where(model, version, since, until, shadow)
        with self._connect() as con:
            if outcome is None:
                names = [
                    r[0]
                    for r in con.execute(
                        f"SELECT DISTINCT o.outcome FROM predictions p JOIN outcomes o ON o.patient = p.patient "
                        f"WHERE {where} ORDER BY 1",
                        params,
                    ).fetchall()
                ]
                if len(names) > 1:
                    raise DataError(
                        f"the patients of {clip(model)} have {len(names)} outcomes loaded: {clip(', '.join(names))}",
                        "name the one the model predicts (--outcome)",
                    )
                outcome = names[0] if names else None
            frame = self._frame(con, f"SELECT * FROM predictions p WHERE {where}", params, features, outcome=outcome)
        if outcome is None:  # no outcome loaded yet: every prediction's is unknown
            import pandas as pd

            frame["outcome"] = float("nan")
            frame["outcome_time"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
            frame["outcome_name"] = None
        return frame

    @staticmethod
    def _where(
        model: str, version: int | None, since: datetime | None, until: datetime | None, shadow: bool | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = ["p.model = ?"]
        params: list[Any] = [model]
        if version is not None:
            clauses.append("p.version = ?")
            params.append(int(version))
        if since is not None:
            clauses.append("p.time >= ?")
            params.append(_aware("since", since, "predictions"))
        if until is not None:
            clauses.append("p.time < ?")
            params.append(_aware("until", until, "predictions"))
        if shadow is not None:
            clauses.append("p.shadow = ?")
            params.append(bool(shadow))
        return " AND ".join(clauses), params

    def _frame(
        self,
        con: duckdb.DuckDBPyConnection,
        selected: str,
        params: list[Any],
        features: Sequence[str] | None,
        *,
        outcome: str | None,
    ) -> pd.DataFrame:
        sets = con.execute(
            f"SELECT f.id, f.names, (SELECT bool_or(q.texts IS NOT NULL) FROM ({selected}) q "
            "WHERE q.feature_set = f.id) FROM feature_sets f "
            f"WHERE f.id IN (SELECT DISTINCT feature_set FROM ({selected}) p) ORDER BY f.id",
            params * 2,
        ).fetchall()
        position: dict[str, dict[int, int]] = {}  # name -> feature set -> 1-based index in its lists
        for fs, fs_names, _ in sets:
            for k, n in enumerate(fs_names, start=1):
                position.setdefault(n, {})[int(fs)] = k
        text = self._text_features(con, selected, params, [(int(fs), list(n)) for fs, n, t in sets if t])
        names = list(features) if features is not None else list(position)
        clash = sorted(set(names) & set(PREDICTION_COLUMNS + OUTCOME_COLUMNS))
        if clash:
            raise DataError(
                f"features named like the store's own columns: {clip(', '.join(clash))}",
                "rename those features in the model",
            )
        expressions = []
        for n in names:
            where = position.get(n, {})
            if n in text:
                per = {fs: f"coalesce(p.texts[{k}], CAST(p.numbers[{k}] AS VARCHAR))" for fs, k in where.items()}
                default = "CAST(NULL AS VARCHAR)"
            else:
                per = {fs: f"p.numbers[{k}]" for fs, k in where.items()}
                default = "CAST(NULL AS DOUBLE)"
            if len(per) == 1 and len(sets) == 1:
                expr = next(iter(per.values()))
            elif per:
                cases = " ".join(f"WHEN {fs} THEN {e}" for fs, e in per.items())
                expr = f"CASE p.feature_set {cases} ELSE {default} END"
            else:
                expr = default
            expressions.append(f'{expr} AS "{n.replace(chr(34), chr(34) * 2)}"')
        base = ", ".join(f"p.{c}" for c in PREDICTION_COLUMNS)
        expanded = "".join(f", {e}" for e in expressions)
        if outcome is None:
            extra = join = if_joined = ""
        else:
            extra = ", o.value AS outcome, o.time AS outcome_time, o.outcome AS outcome_name"
            # the encounter's own outcome first, else the patient's
            join = (
                "LEFT JOIN outcomes o ON o.patient = p.patient AND o.outcome = ? AND "
                "(o.encounter = '' OR p.encounter IS NULL OR o.encounter = p.encounter)"
            )
            if_joined = "QUALIFY row_number() OVER (PARTITION BY p.id ORDER BY (o.encounter = '') ASC) = 1"
        query = f"SELECT {base}{expanded}{extra} FROM ({selected}) p {join} {if_joined} ORDER BY p.time, p.id"
        args = params + ([outcome] if outcome is not None else [])
        df = con.execute(query, args).df()
        if outcome is not None and "outcome" not in df:
            df["outcome"] = float("nan")
        return df

    @staticmethod
    def _text_features(
        con: duckdb.DuckDBPyConnection, selected: str, params: list[Any], sets: list[tuple[int, list[str]]]
    ) -> set[str]:
        """The features recorded as text in the feature sets that have any."""
        out: set[str] = set()
        for fs, names in sets:
            flags = ", ".join(f"bool_or(p.texts[{k}] IS NOT NULL)" for k in range(1, len(names) + 1))
            row = _one(con.execute(f"SELECT {flags} FROM ({selected}) p WHERE p.feature_set = {fs}", params))
            out |= {n for n, flag in zip(names, row or (), strict=False) if flag}
        return out

    def models(self) -> pd.DataFrame:
        """Per model, version and shadow flag: how many predictions, the first and last time."""
        with self._connect(create=False) as con:
            return con.execute(
                "SELECT model, version, shadow, count(*) AS n, min(time) AS first, max(time) AS last "
                "FROM predictions GROUP BY ALL ORDER BY model, version, shadow"
            ).df()

    # ---- outcomes -------------------------------------------------------------------------------------------------

    def load_outcomes(self, rows: Iterable[OutcomeRow], *, skip_unknown: bool = False) -> LoadSummary:
        """Add outcomes; loading the same ones again changes nothing (idempotent). Refused, with nothing written:
        the same outcome twice in ``rows`` (a duplicate, or two values: a contradiction), a value other than the
        one stored for that patient, encounter and outcome, a time without a zone, and outcomes of patients the
        store has no prediction of (unless ``skip_unknown``: those are left out and counted)."""
        import pyarrow as pa

        seen: dict[tuple[str, str, str], OutcomeRow] = {}
        for r in rows:
            if not r.patient or not r.outcome:
                raise DataError("an outcome without a patient or an outcome name", "give both on every row")
            if isinstance(r.value, bool) or not isinstance(r.value, int | float) or not math.isfinite(r.value):
                raise DataError(
                    f"outcome {clip(r.outcome)} of patient {clip(r.patient)} has value {quote(r.value)}, not a number",
                    "give 1/0 for an event, or the measured number",
                )
            key = (r.patient, r.encounter or "", r.outcome)
            where = f"patient {clip(r.patient)}" + (f", encounter {clip(r.encounter)}" if r.encounter else "")
            _aware("time", r.time, f"outcome {clip(r.outcome)} of {where}")
            if key in seen:
                first = seen[key]
                kind = "contradictory" if (first.value, first.time) != (r.value, r.time) else "duplicate"
                raise DataError(
                    f"{kind} outcomes: {clip(r.outcome)} of {where} is given twice"
                    + (f" ({first.value:g} and {r.value:g})" if first.value != r.value else ""),
                    "give each outcome of a patient (and encounter) once",
                )
            seen[key] = r
        if not seen:
            raise DataError("no outcomes to load", "give at least one row")
        now = datetime.now(UTC)
        items = list(seen.values())
        table = pa.table(
            {
                "patient": pa.array([r.patient for r in items], pa.string()),
                "encounter": pa.array([r.encounter or "" for r in items], pa.string()),
                "outcome": pa.array([r.outcome for r in items], pa.string()),
                "value": pa.array([float(r.value) for r in items], pa.float64()),
                "time": pa.array(
                    [None if r.time is None else r.time.astimezone(UTC) for r in items], pa.timestamp("us", tz="UTC")
                ),
                "source": pa.array([r.source for r in items], pa.string()),
            }
        )
        with self._connect() as con:
            con.register("incoming", table)
            con.execute("BEGIN TRANSACTION")
            try:
                summary = self._load(con, skip_unknown, now)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return summary

    @staticmethod
    def _load(con: duckdb.DuckDBPyConnection, skip_unknown: bool, now: datetime) -> LoadSummary:
        unknown = _one(
            con.execute(
                "SELECT count(*), count(DISTINCT patient), min(patient) FROM incoming i "
                "WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.patient = i.patient)"
            )
        )
        assert unknown is not None
        n_unknown, n_unknown_patients, example = unknown
        if n_unknown and not skip_unknown:
            raise DataError(
                f"{n_unknown_patients} patient(s) in the outcomes were never scored (e.g. {quote(example)}); "
                "an outcome must join a recorded prediction",
                "check the patient ids are the EHR's FHIR Patient ids the service saw, or pass --skip-unknown "
                "to load only the outcomes of scored patients",
            )
        con.execute(
            "CREATE TEMP TABLE known AS SELECT * FROM incoming i "
            "WHERE EXISTS (SELECT 1 FROM predictions p WHERE p.patient = i.patient)"
        )
        clash = _one(
            con.execute(
                "SELECT count(*), min(k.patient || CASE WHEN k.encounter = '' THEN '' "
                "ELSE ', encounter ' || k.encounter END || ': ' || k.outcome || ' ' || o.value || ' stored, ' "
                "|| k.value || ' now') "
                "FROM known k JOIN outcomes o USING (patient, encounter, outcome) "
                "WHERE o.value <> k.value OR o.time IS DISTINCT FROM k.time"
            )
        )
        assert clash is not None
        if clash[0]:
            raise DataError(
                f"{clash[0]} outcome(s) contradict the ones loaded before (patient {clip(str(clash[1]))})",
                "an outcome, once loaded, stays: correct the file, or ask the store's owner to remove the wrong one",
            )
        already = _one(con.execute("SELECT count(*) FROM known k JOIN outcomes o USING (patient, encounter, outcome)"))
        new = _one(
            con.execute(
                "INSERT INTO outcomes SELECT k.patient, k.encounter, k.outcome, k.value, k.time, k.source, ? "
                "FROM known k ANTI JOIN outcomes o USING (patient, encounter, outcome)",
                [now],
            )
        )
        names = tuple(r[0] for r in con.execute("SELECT DISTINCT outcome FROM known ORDER BY 1").fetchall())
        patients = _one(con.execute("SELECT count(DISTINCT patient) FROM known"))
        joined = dict(
            con.execute(
                "SELECT o.outcome, count(DISTINCT p.id) FROM predictions p JOIN outcomes o ON o.patient = p.patient "
                "AND (o.encounter = '' OR p.encounter IS NULL OR o.encounter = p.encounter) "
                "WHERE o.outcome IN (SELECT DISTINCT outcome FROM known) GROUP BY 1"
            ).fetchall()
        )
        con.execute("DROP TABLE known")
        return LoadSummary(
            new=int(new[0]) if new else 0,
            already=int(already[0]) if already else 0,
            unknown_skipped=int(n_unknown),
            outcomes=names,
            patients=int(patients[0]) if patients else 0,
            joined={str(k): int(v) for k, v in joined.items()},
        )

    def outcomes(self) -> pd.DataFrame:
        """Every outcome loaded (encounter None where the outcome is the patient's)."""
        with self._connect(create=False) as con:
            return con.execute(
                "SELECT patient, NULLIF(encounter, '') AS encounter, outcome, value, time, source, loaded_at "
                "FROM outcomes ORDER BY patient, encounter, outcome"
            ).df()

    # ---- retention ----------------------------------------------------------------------------------------------

    def purge(self, older_than_days: float, *, now: datetime | None = None) -> tuple[int, int]:
        """Delete predictions made, and outcomes that happened (or, without a time, were loaded), more than
        ``older_than_days`` ago; returns how many of each."""
        if not older_than_days > 0:
            raise DataError(f"retention of {older_than_days} days", "keep predictions for at least a day")
        cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            p = _one(con.execute("DELETE FROM predictions WHERE time < ?", [cutoff]))
            o = _one(con.execute("DELETE FROM outcomes WHERE coalesce(time, loaded_at) < ?", [cutoff]))
            con.execute("COMMIT")
        return (int(p[0]) if p else 0, int(o[0]) if o else 0)
