"""The recorder: off the request path, in groups, and never in the service's way when the store is not."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medml.monitor.recorder import Recorder
from medml.monitor.store import MonitorStore, PredictionRow

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def row(i: int, **changes: object) -> PredictionRow:
    fields: dict[str, object] = {
        "model": "sepsis",
        "version": 1,
        "service": "sepsis-risk",
        "patient": f"p{i}",
        "time": datetime.now(UTC),
        "score": 0.25,
        "features": {"age": float(i), "lactate": 1.5},
    }
    fields.update(changes)
    return PredictionRow(**fields)  # type: ignore[arg-type]


class CountingStore(MonitorStore):
    """The real store, counting its write transactions."""

    def __init__(self, path: Path, **kw: float) -> None:
        super().__init__(path, **kw)
        self.groups: list[int] = []

    def record(self, rows: Iterable[PredictionRow]) -> int:
        rows = list(rows)
        n = super().record(rows)
        self.groups.append(n)
        return n


@contextmanager
def held(store: MonitorStore) -> Iterator[None]:
    """The store locked as another process (a long `medml monitor check`) would hold it."""
    store.path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.path.with_name(store.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def test_rows_are_written_in_groups_after_the_calls_return(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "monitor.duckdb")
    recorder = Recorder(store, interval_s=0.2, batch=10_000)
    for i in range(2000):
        recorder.record(row(i))
    assert recorder.flush(30)
    assert sorted(store.predictions("sepsis")["age"]) == [float(i) for i in range(2000)]
    assert sum(store.groups) == 2000 and len(store.groups) <= 5, store.groups
    recorder.close()


def test_a_locked_store_delays_rows_but_never_the_caller(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.duckdb", lock_timeout_s=0.5)
    store.record([row(-1)])
    recorder = Recorder(store, interval_s=0.05)
    with held(store):
        slowest = 0.0
        for i in range(200):
            t = time.perf_counter()
            recorder.record(row(i))
            slowest = max(slowest, time.perf_counter() - t)
        time.sleep(1.2)  # the writer has tried and waited (0.5 s each time) meanwhile
        assert recorder.written == 0
    assert slowest < 0.25  # no call waited for the lock (0.5 s): a loaded machine may pause any call briefly
    assert recorder.flush(30)
    assert len(store.predictions("sepsis")) == 201 and recorder.written == 200
    recorder.close()


def test_a_store_that_stays_locked_costs_the_oldest_rows_not_memory(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.duckdb", lock_timeout_s=0.05)
    store.record([row(-1)])
    recorder = Recorder(store, interval_s=0.05, max_pending=50)
    with held(store):
        for i in range(120):
            recorder.record(row(i))
        deadline = time.monotonic() + 10
        while recorder.dropped < 70 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert recorder.flush(30)
    kept = sorted(store.predictions("sepsis")["age"])
    assert recorder.dropped == 70 and kept == [-1.0] + [float(i) for i in range(70, 120)]
    recorder.close()


def test_a_row_the_store_refuses_costs_only_itself(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.duckdb")
    recorder = Recorder(store, interval_s=0.05)
    for i in range(5):
        recorder.record(row(i, score=1.7) if i == 2 else row(i))
    assert recorder.flush(30)
    assert sorted(store.predictions("sepsis")["age"]) == [0.0, 1.0, 3.0, 4.0]
    assert (recorder.written, recorder.refused) == (4, 1)
    recorder.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.duckdb")
    recorder = Recorder(store, interval_s=60)  # it would not write on its own for a minute
    for i in range(30):
        recorder.record(row(i))
    recorder.close()
    assert len(store.predictions("sepsis")) == 30


def test_the_retention_is_applied_by_the_recorder(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.duckdb")
    now = datetime.now(UTC)
    store.record([row(1, time=now - timedelta(days=400)), row(2, time=now - timedelta(days=10))])
    recorder = Recorder(store, interval_s=0.05, retention_days=365)
    recorder.record(row(3))
    assert recorder.flush(30)
    assert sorted(store.predictions("sepsis")["patient"]) == ["p2", "p3"]
    recorder.close()


def test_flush_without_anything_recorded_returns_at_once(tmp_path: Path) -> None:
    recorder = Recorder(MonitorStore(tmp_path / "monitor.duckdb"))
    t = time.perf_counter()
    assert recorder.flush(5)
    assert time.perf_counter() - t < 0.1
    assert not (tmp_path / "monitor.duckdb").exists()  # nothing recorded: no file created


@pytest.mark.parametrize("n", [1, 3])
def test_recording_from_several_threads(tmp_path: Path, n: int) -> None:
    import threading

    store = MonitorStore(tmp_path / "monitor.duckdb")
    recorder = Recorder(store, interval_s=0.05)

    def work(k: int) -> None:
        for i in range(300):
            recorder.record(row(k * 1000 + i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert recorder.flush(30)
    assert len(store.predictions("sepsis")) == 300 * n
    recorder.close()
