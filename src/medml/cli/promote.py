"""`medml promote NAME@V` and `medml retrain NAME --until DATE`: champion and challenger through the gates.

Exit codes: 0 when the aliases moved (every gate passed), 1 when a gate failed (nothing moved: a verdict, not an
error), 2 for bad input (an unknown gates metric, a promotion onto itself, ...), as every medml command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medml.cli._console import out, progress_bar, split_list
from medml.errors import DataError

GATES_HELP = "YAML file of promotion gates (default: the gates.yaml shipped with medml)"
DATA_HELP = "dataset key, CSV/Parquet table or YAML spec of the patients to judge on"


def _print_report(report: Any) -> None:
    against = report.champion or "no champion yet"
    t = Table(
        title=f"{report.challenger} against {against}, on {report.n:,} patients of {report.data} "
        f"({report.n_events:,} events) neither model was trained on",
        header_style="bold",
    )
    for col in ("gate", "verdict", "measured", "rule"):
        t.add_column(col)
    for r in report.results:
        t.add_row(r.gate, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]", r.measured, r.rule)
    out.print(t)
    out.print(f"gates: {report.source}", highlight=False)


def _verdict(promotion: Any, name: str) -> None:
    from medml.monitor.promotion import aliases_text

    report = promotion.report
    if promotion.promoted:
        out.print(f"promoted: {report.challenger} is now the champion (aliases: {aliases_text(promotion.after)})")
        return
    failed = ", ".join(r.gate for r in report.failed)
    out.print(
        f"not promoted: {report.challenger} failed {failed}; the aliases of {name} are unchanged "
        f"({aliases_text(promotion.before)})",
        highlight=False,
    )
    raise typer.Exit(1)


def promote(
    model: Annotated[str, typer.Argument(help="NAME@VERSION: the challenger")],
    gates: Annotated[Path | None, typer.Option(help=GATES_HELP)] = None,
    data: Annotated[str | None, typer.Option(help=DATA_HELP + " (default: the challenger's dataset)")] = None,
    target: Annotated[str | None, typer.Option(help="outcome column (tables only)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="patient id column (tables only)")] = None,
    sensitive: Annotated[str | None, typer.Option(help="comma-separated sensitive attribute columns")] = None,
) -> None:
    """Judge a model version against its champion on the same unseen patients (paired AUROC difference,
    calibration slope, subgroup gaps, leakage); MLflow's `champion` alias moves to it only when every gate passes.
    Exit 1 when a gate fails."""
    from medml.cli.models import load_task
    from medml.config import get_settings
    from medml.monitor.gates import read_gates
    from medml.monitor.promotion import promote as run_promote
    from medml.registry.store import parse_ref

    name, _ = parse_ref(model)
    rules = read_gates(gates)  # a bad gates file is refused before anything is loaded or scored
    ds = None if data is None else load_task(data, target=target, id_column=id, sensitive=sensitive)
    with progress_bar(f"promoting {model}") as step:
        promotion = run_promote(model, get_settings(), rules, ds, progress=step)
    _print_report(promotion.report)
    _verdict(promotion, name)


def retrain(
    name: Annotated[str, typer.Argument(help="registered model NAME: its champion (or latest version) is re-fitted")],
    until: Annotated[str, typer.Option(help="re-fit on new rows dated up to this date (ISO, e.g. 1986-06-30)")],
    data: Annotated[str, typer.Option(help="the new data: " + DATA_HELP)],
    time_column: Annotated[
        str | None, typer.Option(help="column dating each row (tables); else the dataset's index times")
    ] = None,
    target: Annotated[str | None, typer.Option(help="outcome column (tables only)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="patient id column (tables only)")] = None,
    sensitive: Annotated[str | None, typer.Option(help="comma-separated sensitive attribute columns")] = None,
    base: Annotated[bool, typer.Option(help="also re-fit on the model's development data")] = True,
    gates: Annotated[Path | None, typer.Option(help=GATES_HELP)] = None,
    budget_seconds: Annotated[float, typer.Option(help="time for the hyperparameter search")] = 60.0,
    max_trials: Annotated[int, typer.Option(help="most search trials")] = 60,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for the new version's intervals")] = 1000,
) -> None:
    """Re-fit a model on its development data plus new data up to a date, register it, and promote it through the
    same gates as `medml promote` (exit 1, aliases unchanged, when a gate fails). Rows are dated by --time-column;
    the catalogued datasets carry no dates (replay them with a time column)."""
    import pandas as pd

    from medml.cli.models import check_options, load_task
    from medml.config import get_settings
    from medml.errors import ConfigError
    from medml.monitor.gates import read_gates
    from medml.monitor.promotion import retrain as run_retrain

    check_options(budget_seconds=budget_seconds, max_trials=max_trials, n_boot=n_boot)
    try:
        cut = pd.Timestamp(until)
    except (ValueError, TypeError):
        raise ConfigError(f"--until {until!r} is not a date", "write an ISO date, e.g. --until 1986-06-30") from None
    rules = read_gates(gates)
    columns = split_list(sensitive)
    if time_column is not None and time_column not in columns:
        columns = (*columns, time_column)  # read beside the features, then taken out of the sensitive attributes
    ds = load_task(data, target=target, id_column=id, sensitive=",".join(columns) or None)
    if time_column is not None:
        times = ds.sensitive[time_column].to_numpy(dtype=object)
        ds = _without_sensitive(ds, time_column)
    elif ds.index_time is not None:
        times = ds.index_time
    else:
        raise DataError(
            f"{ds.name} has no dates, so it cannot be cut at --until",
            "give a table with a column of dates (--time-column COLUMN), e.g. the admission or index time",
        )
    with progress_bar(f"retraining {name}") as step:
        done = run_retrain(
            name,
            cut,
            ds,
            times,
            get_settings(),
            rules,
            base=base,
            budget_seconds=budget_seconds,
            max_trials=max_trials,
            n_boot=n_boot,
            progress=step,
        )
    out.print(
        f"re-fitted {done.bundle.ref} on {done.rows_until:,} new rows up to {cut.date()}"
        f"{' and its development data' if base else ''}; {done.rows_after:,} later rows judged only. "
        f"report: {done.report_path}",
        highlight=False,
    )
    _print_report(done.promotion.report)
    _verdict(done.promotion, name)


def _without_sensitive(ds: Any, column: str) -> Any:
    import dataclasses

    return dataclasses.replace(ds, sensitive=ds.sensitive.drop(columns=[column]))


__all__ = ["promote", "retrain"]
