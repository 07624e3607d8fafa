"""The audit-log options of the vitals commands that raise alerts (`medml vitals watch`, `medml vitals wearable
check`): where each alert is written, and the check that the log can be written before anything is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from medml.errors import InputFileError

__all__ = ["AuditLogOption", "NoAuditOption", "open_audit_log"]

AuditLogOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-log",
        help="the hash-chained audit log each alert is written to [default: the service's, "
        "MEDML_HOME/service/audit.jsonl, which `medml audit verify` checks]",
    ),
]
NoAuditOption = Annotated[bool, typer.Option("--no-audit", help="do not write the alerts to the audit log")]


def open_audit_log(path: Path | None) -> Any:
    """The audit log alerts are written to (a :class:`medml.service.audit.JsonlAuditLog`), checked writable now:
    a log that cannot be written must stop the command before any alert is raised, not after."""
    from medml.config import get_settings
    from medml.service.audit import JsonlAuditLog
    from medml.service.config import service_home

    target = path if path is not None else service_home(get_settings()) / "audit.jsonl"
    if target.is_dir():
        raise InputFileError(f"the audit log {target} is a folder", "give a file with --audit-log, or --no-audit")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))  # PHI: owner only
    except OSError as e:
        raise InputFileError(
            f"cannot write the audit log {target}: {e.strerror}", "give a writable --audit-log, or --no-audit"
        ) from None
    return JsonlAuditLog(target)
