"""The audit log's group commit: a durable append returns only after a sync that covers its record, and appends
that arrive together share syncs; the chain stays intact."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from medml.service.audit import AuditEntry, JsonlAuditLog, verify


def test_concurrent_appends_share_syncs_and_each_returns_after_its_record_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fdatasync
    lock = threading.Lock()
    synced_bytes = [0]  # how much of the file the last finished sync covered
    syncs: list[int] = []

    def slow_sync(fd: int) -> None:  # a disk that takes 20 ms per sync: appends pile up behind it
        size = os.fstat(fd).st_size
        time.sleep(0.02)
        real(fd)
        with lock:
            syncs.append(size)
            synced_bytes[0] = max(synced_bytes[0], size)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    path = tmp_path / "audit.jsonl"
    returned: list[tuple[int, int]] = []  # (seq, bytes synced when append returned)
    with JsonlAuditLog(path) as log:

        def caller(k: int) -> None:
            for i in range(5):
                record = log.append(AuditEntry(service=f"s{k}", status=200, duration_ms=float(i)))
                with lock:
                    returned.append((record["seq"], synced_bytes[0]))

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert verify(path).ok
    lines = path.read_bytes().splitlines(keepends=True)
    end_of = {}
    offset = 0
    for n, line in enumerate(lines, start=1):
        offset += len(line)
        end_of[n] = offset
    assert sorted(seq for seq, _ in returned) == list(range(1, 81))
    for seq, covered in returned:  # every append returned after a sync had covered its line
        assert covered >= end_of[seq], seq
    assert len(syncs) < 80 / 2  # grouped: far fewer syncs than appends
