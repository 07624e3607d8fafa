"""Survival models: ``medml survival train`` and ``medml survival datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table

from medml.cli._console import estimate_text, fmt, out, progress_bar, split_list
from medml.errors import ConfigError

survival_app = typer.Typer(no_args_is_help=True, help="Survival models: the risk of an event within each horizon.")


def parse_horizons(text: str) -> tuple[float, ...]:
    """``"180,365,730"`` -> ``(180.0, 365.0, 730.0)``, or a ConfigError saying what is wrong."""
    parts = split_list(text)
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--horizons must be numbers of days, got '{text}'", "write e.g. --horizons 180,365,730"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--horizons must be days above zero, got '{text}'", "write e.g. --horizons 180,365,730")
    return values


def load_task(source: str, *, time: str | None, event: str | None, id_column: str | None, sensitive: str | None) -> Any:
    """A survival dataset key, or a CSV/Parquet table with --time and --event."""
    from medml.pipelines.survival import SURVIVAL_DATASETS, load_survival_dataset, load_survival_table

    if source in SURVIVAL_DATASETS:
        return load_survival_dataset(source)
    if time is None or event is None:
        if not Path(source).exists():
            return load_survival_dataset(source)  # the clear "unknown dataset" error
        raise click.UsageError("a table needs --time COLUMN and --event COLUMN")
    return load_survival_table(source, time=time, event=event, id_column=id_column, sensitive=split_list(sensitive))


@survival_app.command("datasets")
def datasets() -> None:
    """List the survival datasets with patients, events and the longest follow-up."""
    from medml.pipelines.survival import SURVIVAL_DATASETS, load_survival_dataset, survival_target

    t = Table(title="medml survival datasets", header_style="bold")
    for col in ("key", "patients", "events", "longest follow-up", "task"):
        t.add_column(col, justify="left" if col in ("key", "task") else "right")
    for key in SURVIVAL_DATASETS:
        ds = load_survival_dataset(key)
        y = survival_target(ds)
        t.add_row(key, f"{len(ds):,}", f"{int(y.event.sum()):,}", f"{y.time.max():,.0f} {y.time_unit}", ds.task)
    out.print(t)


#: other names of the kinds: the ones the issue and other tools use (scikit-survival's CoxPH, gradient-boosted survival)
SURVIVAL_ALIASES = {"coxph": "cox", "gbsurv": "gbs"}


@survival_app.command("train")
def train(
    dataset: Annotated[str, typer.Argument(help="survival dataset key (`medml survival datasets`) or CSV/Parquet")],
    model: Annotated[
        str, typer.Option(help="model kind: cox (or coxph), gbs (or gbsurv: boosted) or rsf (random survival forest)")
    ] = "cox",
    horizons: Annotated[
        str | None,
        typer.Option(
            help="times (the data's unit, e.g. days) at which risk is predicted and checked; first = headline "
            "[default: the dataset's, else 180,365,730]"
        ),
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="follow-up time column, days (tables only)")] = None,
    event: Annotated[str | None, typer.Option("--event", help="event column, 1 = event, 0 = censored (tables)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="patient id column (tables only)")] = None,
    sensitive: Annotated[str | None, typer.Option(help="comma-separated sensitive attribute columns")] = None,
    seed: Annotated[int, typer.Option(help="seed for the split and the model")] = 0,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for intervals")] = 200,
    budget_seconds: Annotated[
        float, typer.Option(help="seconds of hyperparameter search on the training patients (0: defaults)")
    ] = 30.0,
    max_trials: Annotated[int, typer.Option(help="most search trials")] = 40,
    name: Annotated[str | None, typer.Option(help="registered model name (default DATASET-MODEL)")] = None,
) -> None:
    """Fit, evaluate at each horizon, explain and register a survival model; print its test metrics."""
    from medml.cli.models import check_options
    from medml.config import get_settings
    from medml.models.survival import survival_model_kind
    from medml.pipelines.survival import SurvivalConfig, check_survival_task, default_horizons, train_survival

    model = SURVIVAL_ALIASES.get(model, model)
    survival_model_kind(model)
    given = parse_horizons(horizons) if horizons is not None else None
    ds = load_task(dataset, time=time, event=event, id_column=id, sensitive=sensitive)
    hs = given if given is not None else default_horizons(ds)
    check_survival_task(ds, hs)
    check_options(
        n_boot=n_boot, max_trials=max_trials, seed=seed, budget_seconds=budget_seconds if budget_seconds else None
    )
    config = SurvivalConfig(
        model=model,
        horizons=hs,
        seed=seed,
        n_boot=n_boot,
        name=name,
        budget_seconds=budget_seconds,
        max_trials=max_trials,
    )
    settings = get_settings()
    with progress_bar(f"{ds.name} {model}") as step:
        result = train_survival(ds, config, settings, progress=step)
    print_survival(result.evaluation, f"{result.bundle.ref} on the held-out test split ({ds.task})")
    md = result.bundle.metadata
    out.print(f"total {result.seconds:.0f} s (fit {result.timings['fit']:.1f} s)")
    out.print(f"model:  {md.ref} in {settings.models_dir / md.name / str(md.version)}")
    out.print(f"report: {result.report_path}")


def print_survival(report: Any, title: str) -> None:
    """The headline numbers of a survival evaluation and one row per horizon."""
    d, c = report.discrimination, report.calibration
    dcal = c["d_calibration"]
    top = Table(title=title, header_style="bold")
    for col in ("n", "events", "Harrell's C (95% CI)", "Uno's C", "IBS", "D-calibration p"):
        top.add_column(col, justify="right")
    top.add_row(
        str(report.n),
        str(report.n_events),
        estimate_text(d["harrell_c"]),
        estimate_text(d["uno_c"]),
        estimate_text(c["ibs"]),
        fmt(dcal["p_value"]),
    )
    out.print(top)
    per = Table(title="at each horizon", header_style="bold")
    for col in ("horizon", "AUC (95% CI)", "Brier", "predicted risk", "observed (Kaplan-Meier)", "ICI"):
        per.add_column(col, justify="right")
    for h in c["horizons"]:
        per.add_row(
            f"{h['horizon']:g}",
            estimate_text(h["auc"]),
            fmt(h["brier"].value),
            fmt(h["mean_predicted"]),
            fmt(h["observed"]),
            fmt(h["ici"]),
        )
    out.print(per)


def predict_survival(
    bundle: Any,
    frame: Any,
    *,
    id_column: str | None,
    out_path: Path | None,
    top: int,
    encounter: str | None,
    record: bool,
) -> None:
    """``medml predict`` for a survival model: per row the risk by each horizon and S(t) on a grid (all in --out),
    the top factors, the model's evaluation and censoring; the risk by the first horizon is recorded for the
    monitor, as a binary model's risk is."""
    from medml.cli.models import _record_scores, warn_left_out
    from medml.cli.pgx import write_atomically
    from medml.pipelines.survival import score_survival_table

    md = bundle.metadata
    info = md.extra["survival"]
    unit = info.get("time_unit", "days")
    with progress_bar(f"scoring {len(frame):,} rows") as step:
        step("predicting survival curves and explaining", 0.2)
        scores = score_survival_table(bundle, frame, id_column=id_column, top=top)
        if record:
            step("recording in the monitoring store", 0.9)
            recorded = _record_scores(bundle, frame, scores, encounter)
    horizons = [float(h) for h in info["horizons"]]
    m = md.metrics
    out.print(
        f"{md.name}@{md.version}: {md.task} ({md.model_kind}, survival: risk of {info.get('outcome', 'the event')} "
        f"by {', '.join(f'{h:g}' for h in horizons)} {unit}). Decision support, not a diagnosis.",
        highlight=False,
    )
    c, ibs = m.get("harrell_c") or {}, m.get("ibs") or {}
    out.print(
        f"Evaluated on {m.get('n', 0):,} held-out patients of {md.dataset}: Harrell's C "
        f"{fmt(c.get('value'))} ({fmt(c.get('low'))}-{fmt(c.get('high'))}), IBS {fmt(ibs.get('value'))}, "
        f"time-dependent AUC at {horizons[0]:g} {unit} {fmt((m.get('auroc') or {}).get('value'))}. "
        f"Censoring: {info.get('censoring', 'see the model card')}. Population: {md.population}",
        highlight=False,
    )
    if out_path is not None:
        write_atomically(out_path, scores.to_csv(index=False))
        grid = [c for c in scores.columns if c.startswith("survival_at_")]
        out.print(f"wrote {len(scores):,} rows to {out_path} (S(t) at {len(grid)} times, the risk by each horizon)")
    t = Table(header_style="bold")
    risk_columns = [f"risk_by_{h:g}_{unit}" for h in horizons]
    for col in ("id", *(f"risk by {h:g} {unit}" for h in horizons), "top factor"):
        t.add_column(col, justify="right" if col.startswith("risk") else "left")
    for _, r in scores.head(10).iterrows():
        t.add_row(str(r["id"]), *(f"{r[c]:.1%}" for c in risk_columns), str(r.get("factor_1", "")))
    out.print(t)
    if len(scores) > 10:
        out.print(f"... {len(scores) - 10:,} more rows" + ("" if out_path else " (use --out FILE.csv for all)"))
    if record:
        out.print(
            f"recorded {recorded:,} score(s) (the risk by {horizons[0]:g} {unit}) with their inputs in the "
            "monitoring store",
            highlight=False,
        )
    warn_left_out(scores)
