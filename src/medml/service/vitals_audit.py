"""Vital-sign alerts in the audit trail: a NEWS2 escalation (from the device gateway or `medml vitals watch`) and a
wearable trend alert (`medml vitals wearable check`), each one record in the same hash-chained log as the hook calls.

A record names the patient, what raised it (``model``: the score or rules and their version), the alert as the card
a clinician would see (summary, indicator, source) and the SHA-256 of the whole alert as written
(``output_sha256``); the alert itself stays with its sender (the response, the ``--out`` file). A NEWS2 alert is
de-duplicated by the stream before it gets here (no repeat for the same band within the repeat window); a wearable
alert is written once: a rerun of the rules over the same store finds its digest in the log and writes nothing.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from medml.service import audit

__all__ = [
    "NEWS2_EVENT",
    "NEWS2_MODEL",
    "WEARABLE_EVENT",
    "append_all",
    "audited_digests",
    "cli_caller",
    "indicator",
    "news2_alert_entry",
    "wearable_alert_entry",
]

NEWS2_EVENT = "vitals-alert"
WEARABLE_EVENT = "wearable-alert"
NEWS2_MODEL = "NEWS2 (RCP 2017)"
#: the card indicator of each RCP clinical-risk band (Chart 2): high is an emergency, medium and a red score urgent
INDICATOR = {"low": "info", "low-medium": "warning", "medium": "warning", "high": "critical"}


def indicator(band: str) -> str:
    return INDICATOR.get(band, "warning")


def cli_caller(command: str) -> audit.Caller:
    """Who wrote a record from the command line: the command and the operating-system user (no address)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown user"
    return audit.Caller(iss=f"medml cli: {command}", sub=user)


def news2_alert_entry(
    alert: Mapping[str, Any], *, service: str, caller: audit.Caller, input_sha256: str | None = None
) -> audit.AuditEntry:
    """The audit record of one NEWS2 alert (:meth:`medml.vitals.stream.Assessment.to_dict`): the patient, the band
    it rose to and from, the total (a lower bound when parameters were missing or stale) and the alert's digest."""
    partial = "" if alert.get("complete") else f" (partial, not scored: {', '.join(_unscored(alert))})"
    summary = (
        f"NEWS2 {alert['total']}: {alert['band']} clinical risk, up from {alert['previous_band']}, "
        f"at {alert['time']}{partial}"
    )
    return audit.AuditEntry(
        service=service,
        status=200,
        duration_ms=0.0,
        event=NEWS2_EVENT,
        patient=str(alert["patient"]),
        caller=caller,
        model=NEWS2_MODEL,
        input_sha256=input_sha256,
        output_sha256=audit.digest(dict(alert)),
        cards=(audit.CardSeen(summary=summary, indicator=indicator(str(alert["band"])), source=NEWS2_MODEL),),
    )


def _unscored(alert: Mapping[str, Any]) -> list[str]:
    return [*alert.get("missing", ()), *(f"{s} (stale)" for s in alert.get("stale", ()))]


def wearable_alert_entry(alert: Mapping[str, Any], *, caller: audit.Caller) -> audit.AuditEntry:
    """The audit record of one wearable trend alert (:meth:`medml.vitals.wearables.WearableAlert.to_dict`)."""
    return audit.AuditEntry(
        service="wearable-check",
        status=200,
        duration_ms=0.0,
        event=WEARABLE_EVENT,
        patient=str(alert["patient"]),
        caller=caller,
        model=str(alert.get("source") or "wearable rules"),
        output_sha256=audit.digest(dict(alert)),
        cards=(
            audit.CardSeen(
                summary=f"{alert['rule']} at {alert['at']}: {alert['detail']}",
                indicator="warning",
                source=str(alert.get("source") or ""),
            ),
        ),
    )


def audited_digests(path: Path, event: str) -> set[str]:
    """The ``output_sha256`` of every record of ``event`` already in the audit log at ``path`` (none: no log)."""
    if not path.is_file():
        return set()
    found: set[str] = set()
    marker = f'"event":"{event}"'.encode()
    with path.open("rb") as fh:
        for line in fh:
            if marker not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # `medml audit verify` names a damaged line; it is no alert
            digest = record.get("output_sha256") if isinstance(record, dict) else None
            if isinstance(digest, str):
                found.add(digest)
    return found


def append_all(sink: audit.AuditSink, entries: Iterable[audit.AuditEntry]) -> int:
    """Append each entry; the number written."""
    n = 0
    for entry in entries:
        sink.append(entry)
        n += 1
    return n
