"""`medml audit ...`: check the service's hash-chained audit log, and list its latest records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medml.cli._console import out
from medml.errors import ConfigError

audit_app = typer.Typer(no_args_is_help=True, help="The CDS service's audit log: verify its chain, show records.")


LogOption = Annotated[Path | None, typer.Option("--log", help="audit log [default: MEDML_HOME/service/audit.jsonl]")]


def _log_path(log: Path | None) -> Path:
    if log is not None:
        return log
    from medml.config import get_settings
    from medml.service.config import load_config

    return load_config(get_settings()).audit_path


@audit_app.command("verify")
def verify_cmd(log: LogOption = None) -> None:
    """Check every record's hash, their order and chain, and the end against the head; exit 1 on any problem."""
    from medml.service.audit import verify

    path = _log_path(log)
    result = verify(path)
    if result.ok:
        out.print(f"audit log OK: {result.records} records, chain intact ({path})", highlight=False)
        return
    out.print(
        f"audit log {escape(str(path))} FAILED: {len(result.problems)} problems in {result.records} records",
        highlight=False,
    )
    for problem in result.problems:
        out.print(f"  {escape(problem)}", highlight=False)
    raise typer.Exit(1)


def _text(v: Any) -> str:
    return "" if v is None else escape(str(v))


@audit_app.command("show")
def show_cmd(
    log: LogOption = None, last: Annotated[int, typer.Option(help="how many of the latest records")] = 20
) -> None:
    """The latest records: when, who, which service and model, the answer and the cards shown."""
    from medml.service.audit import read_last

    if last < 1:
        raise ConfigError(f"--last must be at least 1, got {last}", "pass e.g. --last 20")
    path = _log_path(log)
    records = read_last(path, last)
    table = Table(title=f"audit log {escape(str(path))}: the last {len(records)} records", header_style="bold")
    for col in ("seq", "time (UTC)", "caller", "service / hook", "patient", "model", "status", "ms"):
        table.add_column(
            col,
            justify="right" if col in ("seq", "status", "ms") else "left",
            no_wrap=col not in ("caller", "service / hook"),
        )
    table.add_column("cards", ratio=1)
    for r in records:
        caller = r["caller"] if isinstance(r.get("caller"), dict) else {}
        who = " ".join(str(v) for v in (caller.get("iss"), caller.get("sub")) if v) or "-"
        if caller.get("address"):
            who += f" ({caller['address']})"
        cards = r["cards"] if isinstance(r.get("cards"), list) else []
        shown = "; ".join(f"{c.get('indicator', '')}: {c.get('summary', '')}" for c in cards if isinstance(c, dict))
        duration = r.get("duration_ms")
        when = str(r.get("time") or "")[:19].replace("T", " ")
        table.add_row(
            _text(r.get("seq")),
            escape(when),
            escape(who),
            _text(" / ".join(str(v) for v in (r.get("service"), r.get("hook")) if v)),
            _text(r.get("patient")),
            _text(r.get("model")),
            _text(r.get("status")),
            f"{duration:.0f}" if isinstance(duration, int | float) else "",
            escape(shown),
        )
    out.print(table)
