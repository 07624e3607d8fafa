"""PredictionRecords: which model scored which patient, when, from which inputs, and with what result.

The service appends one record per prediction to a JSON lines file (``ServiceConfig.predictions_path``); the
monitor reads them back to follow drift and, once outcomes are known, performance. ``patient`` is the FHIR Patient
id exactly as the EHR sent it, not a pseudonym, because outcomes have to be joined to predictions later: the file
holds protected health information and is created readable by its owner only.

Appends are process-safe (``fcntl.flock``) and cheap: one ``write`` of one line, no ``fsync`` unless asked.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from medml.errors import DataError, InputFileError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InputSummary", "PredictionLog", "PredictionRecord", "summarize_inputs"]

_MODEL = re.compile(r"^[^@\s]+@[^@\s]+$")
_VERSION = 1


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def _plain(value: Any) -> float | str | None:
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class InputSummary:
    """The inputs of one prediction without their values: how many were present, which were missing, and a hash."""

    n_present: int
    n_missing: int
    missing: tuple[str, ...]
    #: SHA-256 of the feature vector (names and values, in the model's order): equal inputs give equal hashes
    features_sha256: str


def summarize_inputs(features: Mapping[str, Any], expected: Sequence[str] | None = None) -> InputSummary:
    """Summarise a feature vector; ``expected`` is the model's feature order (default: the keys, sorted).

    A feature is missing when it is absent, None or NaN.
    """
    names = list(expected) if expected is not None else sorted(features)
    missing = tuple(n for n in names if _is_missing(features.get(n)))
    vector = [[n, _plain(features.get(n))] for n in names]
    return InputSummary(
        n_present=len(names) - len(missing),
        n_missing=len(missing),
        missing=missing,
        features_sha256=hashlib.sha256(orjson.dumps(vector)).hexdigest(),
    )


def _check_time(name: str, value: str | None) -> None:
    if value is None:
        return
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} {value!r} is not an ISO 8601 time", "give e.g. 2024-05-01T08:30:00Z") from None
    if parsed.tzinfo is None:
        raise DataError(f"{name} {value!r} has no time zone", "give UTC times, e.g. 2024-05-01T08:30:00Z")


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction as the monitor sees it (times are ISO 8601 with a zone, UTC as written by the service)."""

    model: str  #: NAME@VERSION
    service: str  #: the CDS service id
    patient: str  #: the FHIR Patient id as given (see the module docstring)
    time: str  #: when the prediction was made
    score: float  #: the calibrated probability
    risk: str  #: the risk category shown, e.g. "high"
    inputs: InputSummary
    index_time: str | None = None  #: the moment the prediction is about (e.g. admission); None: ``time``
    hook_instance: str | None = None  #: the CDS Hooks hookInstance, to join the audit log

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not _MODEL.match(self.model):
            raise DataError(f"model {self.model!r} is not NAME@VERSION", "pass the bundle's name@version")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float) or not 0.0 <= self.score <= 1.0:
            raise DataError(
                f"score {self.score!r} is not a probability between 0 and 1", "record the calibrated probability"
            )
        object.__setattr__(self, "score", float(self.score))
        _check_time("time", self.time)
        _check_time("index_time", self.index_time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": _VERSION,
            "model": self.model,
            "service": self.service,
            "patient": self.patient,
            "time": self.time,
            "index_time": self.index_time,
            "score": self.score,
            "risk": self.risk,
            "hook_instance": self.hook_instance,
            "inputs": {
                "n_present": self.inputs.n_present,
                "n_missing": self.inputs.n_missing,
                "missing": list(self.inputs.missing),
                "features_sha256": self.inputs.features_sha256,
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PredictionRecord:
        inputs = raw["inputs"]
        return cls(
            model=raw["model"],
            service=raw["service"],
            patient=raw["patient"],
            time=raw["time"],
            index_time=raw.get("index_time"),
            score=raw["score"],
            risk=raw["risk"],
            hook_instance=raw.get("hook_instance"),
            inputs=InputSummary(
                n_present=int(inputs["n_present"]),
                n_missing=int(inputs["n_missing"]),
                missing=tuple(inputs["missing"]),
                features_sha256=str(inputs["features_sha256"]),
            ),
        )


class PredictionLog:
    """PredictionRecords in an append-only JSON lines file, one per line; safe for several threads and processes."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._end = -1  # the file's size after this process's last append

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # again after a fork: a worker needs its own lock
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid, self._end = os.getpid(), -1
        return self._fd

    def append(self, record: PredictionRecord) -> None:
        """Write one record as one line."""
        line = orjson.dumps(record.to_dict()) + b"\n"
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size != self._end and size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # after a torn line, start on a line of our own
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fdatasync(fd)
                self._end = size + len(line)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def read(self) -> list[PredictionRecord]:
        """Every record, in the order written; a line that is not a record is an error naming its number."""
        if not self.path.exists():
            raise InputFileError(
                f"no prediction log at {self.path}", "check the path; the service writes it with its first prediction"
            )
        with self.path.open("rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # no half-written line while we read
            data = fh.read()
        records = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
                if not isinstance(raw, dict):
                    raise TypeError("not a JSON object")
                records.append(PredictionRecord.from_dict(raw))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, DataError) as e:
                raise InputFileError(
                    f"{self.path}, line {number} is not a prediction record ({e})",
                    "fix or remove that line; the service only appends, so it was edited or torn",
                ) from None
        return records

    def frame(self) -> pd.DataFrame:
        """Every record as a table, one row each: inputs flattened, ``time`` and ``index_time`` as UTC datetimes."""
        import pandas as pd

        columns = [
            "model",
            "service",
            "patient",
            "time",
            "index_time",
            "score",
            "risk",
            "hook_instance",
            "n_present",
            "n_missing",
            "missing",
            "features_sha256",
        ]
        rows = [
            (
                r.model,
                r.service,
                r.patient,
                r.time,
                r.index_time,
                r.score,
                r.risk,
                r.hook_instance,
                r.inputs.n_present,
                r.inputs.n_missing,
                r.inputs.missing,
                r.inputs.features_sha256,
            )
            for r in self.read()
        ]
        df = pd.DataFrame(rows, columns=columns)
        for col in ("time", "index_time"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        return df.astype({"score": "float64", "n_present": "int64", "n_missing": "int64"})
