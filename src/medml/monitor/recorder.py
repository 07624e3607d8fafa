"""The service's recorder: predictions written to the monitoring store off the request path, in groups.

A hook call only appends its :class:`~medml.monitor.store.PredictionRow` to a queue (a few microseconds); one
background thread writes what has queued in one transaction every ``interval_s`` seconds (5), or as soon as
``batch`` rows wait. DuckDB's cost is per transaction far more than per row (opening the file, writing, and the
checkpoint when it is closed: about 30 ms of CPU whether for 1 row or 50, measured on the shared 2-core machine),
so writing every 0.5 s cost a busy service about 6% of a core and every 5 s about 0.6%; and the store's file is free
for other processes (another worker, `medml monitor check`) between groups.

Nothing the store does reaches a request: a row the store refuses is logged and left out, and while the store
cannot be opened the rows wait (at most ``max_pending``; beyond that the oldest are dropped and counted, so a
store that stays locked costs memory, never the service).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from medml.errors import MedmlError
from medml.monitor.store import MonitorStore, PredictionRow

__all__ = ["Recorder"]

log = logging.getLogger("medml.monitor")

#: a day, in seconds: how often the recorder applies the retention
PURGE_EVERY_S = 86_400.0


class Recorder:
    """Queue predictions for ``store`` and write them in the background; :meth:`flush` waits for them."""

    def __init__(
        self,
        store: MonitorStore,
        *,
        interval_s: float = 5.0,
        batch: int = 1000,
        max_pending: int = 100_000,
        retention_days: float | None = None,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch = batch
        self.max_pending = max_pending
        self.retention_days = retention_days
        self._pending: deque[PredictionRow] = deque()
        self._count_lock = threading.Lock()  # the event loop and worker threads (a shadow's score) both record
        self._last_queued = 0
        self._done = 0  # rows written, refused or dropped (the writer thread's count)
        self.written = 0
        self.refused = 0
        self.dropped = 0
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._purged_at = -PURGE_EVERY_S

    def record(self, row: PredictionRow) -> None:
        """Queue one prediction (the only call on the request path)."""
        with self._count_lock:
            self._pending.append(row)
            self._last_queued += 1
        if self._thread is None or self._pid != os.getpid():
            self._start()
        if len(self._pending) >= self.batch:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="medml-monitor-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            stopping = self._stop
            self._write_pending()
            if stopping:
                if self._pending:
                    log.error("monitoring store: %d prediction(s) not recorded at shutdown", len(self._pending))
                return

    def _write_pending(self) -> None:
        if self.retention_days is not None and time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            try:
                self.store.purge(self.retention_days)
            except (MedmlError, OSError) as e:
                log.warning("monitoring store: retention not applied now: %s", e)
        while self._pending:
            rows: list[PredictionRow] = []
            while self._pending and len(rows) < self.batch:
                rows.append(self._pending.popleft())
            try:
                self.store.record(rows)
                self.written += len(rows)
            except MedmlError as e:
                if not self._write_each(rows, e):
                    self._pending.extendleft(reversed(rows))  # the store cannot be written now: keep them
                    self._trim()
                    return
            except Exception:  # never let the recorder's thread die: the rows are lost, the service goes on
                log.exception("monitoring store: %d prediction(s) not recorded", len(rows))
                self.refused += len(rows)
            self._advance(len(rows))

    def _write_each(self, rows: list[PredictionRow], error: MedmlError) -> bool:
        """After a group failed: each row alone, so one bad row costs only itself; False when the store itself
        cannot be written (nothing was)."""
        from medml.errors import DataError

        if not isinstance(error, DataError) or "locked" in str(error):
            log.warning("monitoring store: %d prediction(s) wait: %s", len(rows), error)
            return False
        for row in rows:
            try:
                self.store.record([row])
                self.written += 1
            except MedmlError as e:
                log.warning("monitoring store: a prediction was not recorded: %s", e)
                self.refused += 1
        return True

    def _trim(self) -> None:
        over = len(self._pending) - self.max_pending
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            self.dropped += over
            log.error("monitoring store: %d prediction(s) dropped: the store stayed unwritable", over)
            self._advance(over)

    def _advance(self, n: int) -> None:
        with self._progress:
            self._done += n
            self._progress.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every prediction queued before this call is written (or refused); False on timeout."""
        target = self._last_queued
        if self._thread is None or target <= self._done:
            return True
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._progress:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, self.interval_s))
                self._wake.set()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the thread (the service's shutdown)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stop = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None
