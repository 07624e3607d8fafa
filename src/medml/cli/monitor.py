"""`medml monitor ...`: the models in production: outcomes, alarms and reports from the monitoring store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medml.cli._console import out
from medml.errors import ConfigError, DataError, clip, quote

monitor_app = typer.Typer(
    no_args_is_help=True,
    help="Watch deployed models: load outcomes, check drift and performance, write reports.",
)


def _store(path: Path | None) -> Any:
    from medml.config import get_settings
    from medml.monitor.store import MonitorStore

    return MonitorStore(path or get_settings().monitor_store)


StoreOption = Annotated[
    Path | None, typer.Option("--store", help="monitoring store [default: MEDML_HOME/monitor.duckdb]")
]


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {quote(text)} is not an ISO 8601 date or time", "give e.g. 2024-05-01") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@monitor_app.command("outcomes")
def outcomes_cmd(
    file: Annotated[Path, typer.Argument(help="CSV (patient, value, [encounter, outcome, time]) or FHIR NDJSON/JSON")],
    outcome: Annotated[
        str | None, typer.Option(help="the outcome's name (a CSV without an outcome column, FHIR)")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="FHIR: discharge (Encounter disposition), death (Patient), observation:CODE, condition:CODE"
        ),
    ] = None,
    event_codes: Annotated[
        str, typer.Option(help="--from discharge: the disposition codes that are the event, comma-separated")
    ] = "exp",
    timezone: Annotated[
        str | None, typer.Option(help="the zone of times written without one, e.g. Europe/Berlin")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv or fhir [default: from the file's suffix]")] = None,
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="leave out outcomes of patients never scored, instead of refusing")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Load outcomes that arrived after the predictions; they join by patient and encounter. Loading the same file
    again changes nothing; an outcome that contradicts one loaded before is refused, and nothing is written."""
    from medml.monitor.outcomes import read_outcomes

    codes = tuple(c.strip() for c in event_codes.split(",") if c.strip())
    rows = read_outcomes(file, fmt=fmt, outcome=outcome, rule=from_, event_codes=codes, timezone=timezone)
    s = _store(store)
    if not s.path.exists():
        raise DataError(
            f"no monitoring store at {s.path}: no prediction has been recorded to join outcomes to",
            "load outcomes after the service (or `medml predict`) has scored patients",
        )
    summary = s.load_outcomes(rows, skip_unknown=skip_unknown)
    out.print(
        f"loaded {summary.new:,} new outcome(s) of {summary.patients:,} patient(s) from {file.name}"
        + (f"; {summary.already:,} were loaded before (unchanged)" if summary.already else "")
        + (f"; {summary.unknown_skipped:,} of patients never scored left out" if summary.unknown_skipped else ""),
        highlight=False,
    )
    for name, n in summary.joined.items():
        out.print(f"  {name}: {n:,} prediction(s) now have this outcome", highlight=False)


@monitor_app.command("check")
def check_cmd(
    model: Annotated[str | None, typer.Argument(help="NAME or NAME@VERSION [default: every model recorded]")] = None,
    window: Annotated[str, typer.Option(help="predictions per window (200), or a time span (7D, 12h)")] = "200",
    outcome: Annotated[str | None, typer.Option(help="the outcome the model predicts, if several are loaded")] = None,
    since: Annotated[str | None, typer.Option(help="only predictions from this date or time on")] = None,
    alpha: Annotated[float, typer.Option(help="family-wise error per window of the drift tests")] = 0.05,
    store: StoreOption = None,
) -> None:
    """Drift and performance of the deployed models now: prints what is wrong and exits 1 on any alarm (for a
    scheduler); 0 when nothing alarms."""
    from medml.config import get_settings
    from medml.monitor.check import check_models
    from medml.registry.store import parse_ref

    name, version = parse_ref(model) if model else (None, None)
    span: int | str = int(window) if window.isdigit() else window
    s = _store(store)
    if not s.path.exists():
        raise DataError(f"no monitoring store at {s.path}", "the service creates it with the first prediction")
    results = check_models(
        s, get_settings(), name, version, window=span, outcome=outcome, since=_since(since), alpha=alpha
    )
    alarmed = False
    for r in results:
        t = Table(title=f"{r.model}: {r.n:,} predictions, {r.outcomes:,} with outcomes", header_style="bold")
        for col in (
            "window",
            "n",
            "alarm",
            "features",
            "estimated AUROC",
            "alarms under",
            "realised AUROC",
            "calibration slope",
            "expected/observed",
            "outcomes",
        ):
            t.add_column(col)
        for row in r.windows.to_dict("records"):
            t.add_row(
                str(row["window"]),
                f"{row['n']:,}",
                "[red]ALARM[/]" if row["alarm"] else "ok",
                escape(clip(str(row["features"]), 60)),
                _interval(row, "estimated_auroc"),
                _number(row.get("estimated_floor")),
                _interval(row, "realised_auroc"),
                _interval(row, "realised_calibration_slope"),
                _expected_observed(row),
                f"{row['n_outcomes']:,}",
            )
        out.print(t)
        _print_subgroups(r)
        for f in r.findings:
            alarmed = True
            out.print(f"[bold red]alarm[/] {escape(f.model)} {escape(f.message)}", highlight=False, soft_wrap=True)
        if r.dev_auroc is not None:
            out.print(
                f"development AUROC of {r.model}: {r.dev_auroc[0]:.3f} ({r.dev_auroc[1]:.3f}-{r.dev_auroc[2]:.3f})"
            )
    out.print(
        f"alarm rule: {results[0].rule}; performance alarms when the realised AUROC's interval is below the "
        "development AUROC's",
        highlight=False,
        soft_wrap=True,
    )
    for line in dict.fromkeys(x for r in results for x in (r.estimated_rule, r.subgroup_rule) if x):
        out.print(f"alarm rule: {escape(line)}", highlight=False, soft_wrap=True)
    if alarmed:
        raise typer.Exit(1)
    out.print("no alarm")


def _print_subgroups(r: Any) -> None:
    """Realised performance per subgroup over all windows (bootstrap 95% intervals), and the unwatched attributes."""
    if not r.subgroups.empty and r.outcomes:
        t = Table(title=f"{r.model} by subgroup, all windows (realised, 95% intervals)", header_style="bold")
        for col in ("attribute", "group", "n", "outcomes", "events", "AUROC", "calibration slope", "intercept", "E/O"):
            t.add_column(col)
        alarmed = set()
        if not r.subgroup_windows.empty:
            hit = r.subgroup_windows[r.subgroup_windows["alarm"]]
            alarmed = set(zip(hit["attribute"], hit["group"], strict=True))
        for row in r.subgroups.to_dict("records"):
            flag = " [red]ALARM[/]" if (row["attribute"], row["group"]) in alarmed else ""
            t.add_row(
                escape(str(row["attribute"])),
                escape(str(row["group"])) + flag,
                f"{row['n']:,}",
                f"{row['n_outcomes']:,}",
                f"{row['events']:,}",
                _interval(row, "auroc"),
                _interval(row, "calibration_slope"),
                _interval(row, "calibration_intercept"),
                _expected_observed(row, expected="expected", observed="prevalence"),
            )
        out.print(t)
    for name, why in r.unwatched.items():
        out.print(f"subgroup {escape(name)} not watched: {escape(why)}", highlight=False, soft_wrap=True)


def _number(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _expected_observed(row: Mapping[Any, Any], expected: str = "expected", observed: str = "observed") -> str:
    e, o = row.get(expected), row.get(observed)
    if e is None or o is None or not (math.isfinite(e) and math.isfinite(o)):
        return "-"
    return f"{e:.3f}/{o:.3f}"


def _interval(row: Mapping[Any, Any], name: str) -> str:
    v, lo, hi = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f} ({lo:.3f}-{hi:.3f})" if math.isfinite(lo) and math.isfinite(hi) else f"{v:.3f}"


@monitor_app.command("status")
def status_cmd(store: StoreOption = None) -> None:
    """What the monitoring store holds: predictions per model, version and shadow, and the outcomes loaded."""
    s = _store(store)
    models = s.models()
    if models.empty:
        out.print(f"no predictions recorded in {s.path}")
        return
    t = Table(title=f"monitoring store {s.path}", header_style="bold")
    for col in ("model", "shadow", "predictions", "first", "last"):
        t.add_column(col)
    for r in models.to_dict("records"):
        t.add_row(
            f"{r['model']}@{r['version']}", "yes" if r["shadow"] else "", f"{r['n']:,}", str(r["first"]), str(r["last"])
        )
    out.print(t)
    o = s.outcomes()
    out.print(
        f"{len(o):,} outcome(s) of {o['patient'].nunique():,} patient(s) loaded" if len(o) else "no outcomes loaded"
    )


@monitor_app.command("purge")
def purge_cmd(
    days: Annotated[
        int | None, typer.Option(help="keep this many days [default: MEDML_MONITOR_RETENTION_DAYS, 365]")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Delete predictions and outcomes older than the retention (the service also does this once a day)."""
    from medml.config import get_settings

    keep = days if days is not None else get_settings().monitor_retention_days
    s = _store(store)
    if not s.path.exists():
        raise DataError(f"no monitoring store at {s.path}", "nothing to purge")
    predictions, outcomes = s.purge(keep)
    out.print(f"deleted {predictions:,} prediction(s) and {outcomes:,} outcome(s) older than {keep} days")


@monitor_app.command("report")
def report_cmd(
    model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION [NAME: its newest version recorded]")],
    window: Annotated[str, typer.Option(help="predictions per window (200), or a time span (7D, 12h)")] = "200",
    outcome: Annotated[str | None, typer.Option(help="the outcome the model predicts, if several are loaded")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="HTML file [default: MEDML_HOME/reports/NAME@V-monitor.html]")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write a self-contained HTML page of a deployed model: drift over time, estimated and realised AUROC and
    calibration, and the alarms (the service shows the same at /monitor)."""
    from medml.cli.pgx import check_output, write_atomically
    from medml.config import get_settings
    from medml.monitor.page import monitor_view, render_document

    if out_path is not None:
        check_output(out_path, example="monitor.html")
    settings = get_settings()
    span: int | str = int(window) if window.isdigit() else window
    view = monitor_view(_store(store), settings, model, window=span, outcome=outcome)
    path = out_path or settings.reports_dir / f"{view.ref}-monitor.html"
    write_atomically(path, render_document(view))
    alarms = len(view.check.findings)
    out.print(
        f"{view.ref}: {view.check.n:,} predictions in {len(view.windows)} windows, {alarms} alarm(s); report: {path}",
        highlight=False,
    )
