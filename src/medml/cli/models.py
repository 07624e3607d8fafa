"""Tabular risk models: datasets, train, evaluate, report, predict, and the registry's list and show."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table

from medml.cli._console import err, estimate_text, fmt, out, print_metrics, progress_bar, split_list
from medml.errors import ConfigError, DataError, InputFileError, NotFoundError, quote

models_app = typer.Typer(no_args_is_help=True, help="The model registry.")

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz")
SPEC_SUFFIXES = (".yaml", ".yml")


def load_task(
    source: str,
    *,
    target: str | None = None,
    id_column: str | None = None,
    sensitive: str | None = None,
    positive: str | None = None,
    features: str | None = None,
) -> Any:
    """A dataset key, a YAML spec, or a CSV/Parquet table (with --target) as a TaskDataset."""
    from medml.data.datasets import TableSpec, load_spec_yaml, load_table
    from medml.pipelines.catalogue import list_datasets, load_dataset

    keys = [d.key for d in list_datasets()]
    if source in keys:
        return load_dataset(source)
    lower = source.lower()
    path = Path(source)
    if lower.endswith(SPEC_SUFFIXES):
        table_path, spec = load_spec_yaml(path)
        return load_table(table_path, spec)
    if lower.endswith(TABLE_SUFFIXES) or path.exists():
        if not path.exists():
            raise InputFileError(f"file not found: {source}", "check the path")
        if not target:
            raise click.UsageError(f"a table needs --target COLUMN (the outcome column of {path.name})")
        spec = TableSpec(
            target=target,
            id=id_column,
            sensitive=split_list(sensitive),
            positive=positive,
            features=split_list(features) or None,
        )
        return load_table(path, spec)
    raise NotFoundError(
        f"unknown dataset '{source}'", f"use one of {', '.join(keys)}, a CSV/Parquet file with --target, or a YAML spec"
    )


#: the least value of each numeric option, and what the option is for (said when a value is refused)
OPTION_MINIMA: dict[str, tuple[int, str]] = {
    "max_trials": (1, "most search trials, e.g. 60"),
    "n_boot": (1, "bootstrap resamples for the 95% intervals every evaluation carries, e.g. 1000"),
    "seed": (0, "a seed is a whole number from 0"),
    "top": (0, "contributing factors shown per patient, e.g. 3"),
    "epochs": (1, "most training epochs, e.g. 20"),
    "ensemble": (1, "networks to train and average, e.g. 1"),
    "size": (8, "the side of the square images in pixels, e.g. 28 or 224"),
    "frame": (0, "the index of a frame, from 0"),
    "cv": (2, "patient-grouped folds, e.g. --cv 5"),
    "repeats": (1, "repetitions of the cross-validation, e.g. --repeats 5"),
    "bootstraps": (1, "bootstrap samples for the optimism correction, e.g. --bootstraps 200"),
}


def check_options(**values: float | None) -> None:
    """Refuse an option value out of its range in one line naming the option: ``--max-trials 0`` ran no trial and
    then failed with "No trials are completed yet". Seconds and minutes must be finite and positive."""
    for key, value in values.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key in ("budget_seconds", "budget_minutes"):
            if not (math.isfinite(value) and value > 0):
                unit = key.split("_")[1]
                raise ConfigError(f"{flag} must be a positive number of {unit}, got {value:g}", f"e.g. {flag} 60")
            continue
        least, what = OPTION_MINIMA[key]
        if value < least:
            raise ConfigError(f"{flag} must be {least} or more, got {value:g}", what)


def datasets() -> None:
    """List the bundled real datasets with rows, patients, prevalence and task."""
    from medml.pipelines.catalogue import dataset_summary, list_datasets

    t = Table(title="medml datasets (../shared/data)", header_style="bold")
    for col in ("key", "rows", "patients", "prevalence", "task"):
        t.add_column(col, justify="right" if col in ("rows", "patients", "prevalence") else "left")
    infos = list_datasets()
    with progress_bar("loading datasets") as step:
        for i, info in enumerate(infos):
            step(info.key, i / len(infos))
            # a derived entry (the same stays read through FHIR) shows its source's counts: loading it would
            # convert and ingest the whole set first
            s = dataset_summary(info.derived_from or info.key)
            t.add_row(info.key, f"{s['rows']:,}", f"{s['patients']:,}", f"{s['prevalence']:.1%}", info.task)
    out.print(t)


def train(
    dataset: Annotated[str, typer.Argument(help="dataset key (`medml datasets`), CSV/Parquet file or YAML spec")],
    model: Annotated[str, typer.Option(help="model kind (an unknown kind is refused with the list of kinds)")] = "lgbm",
    budget_seconds: Annotated[float, typer.Option(help="time for the hyperparameter search")] = 60.0,
    max_trials: Annotated[int, typer.Option(help="most search trials")] = 60,
    seed: Annotated[int, typer.Option(help="seed for splits, search and model")] = 0,
    name: Annotated[str | None, typer.Option(help="registered model name (default DATASET-MODEL)")] = None,
    target: Annotated[str | None, typer.Option(help="outcome column (tables only)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="patient id column (tables only)")] = None,
    sensitive: Annotated[str | None, typer.Option(help="comma-separated sensitive attribute columns")] = None,
    positive: Annotated[str | None, typer.Option(help="value of the target that means yes")] = None,
    n_boot: Annotated[
        int | None, typer.Option(help="bootstrap resamples for intervals [default: 1000; survival tasks 200]")
    ] = None,
    validation: Annotated[
        str, typer.Option(help="split (60/20/20 by patient), cv (repeated grouped CV) or bootstrap (Harrell)")
    ] = "split",
    cv: Annotated[int | None, typer.Option("--cv", help="patient-grouped folds (implies --validation cv)")] = None,
    repeats: Annotated[int, typer.Option(help="repetitions of the cross-validation")] = 1,
    bootstraps: Annotated[int, typer.Option(help="bootstrap samples (--validation bootstrap)")] = 50,
    horizons: Annotated[
        str | None, typer.Option(help="survival tasks (DATASET-survival) only: days at which risk is predicted")
    ] = None,
) -> None:
    """Train, calibrate, evaluate and register a risk model; print its test metrics and where things are.

    With --cv K [--repeats N] or --validation bootstrap the whole search-calibrate-fit pipeline is validated on all
    the data and the registered model is developed on all of it. A survival task, DATASET-survival (e.g.
    support2-survival), is `medml survival train DATASET` with --model coxph|rsf|gbsurv and --horizons."""
    if dataset.endswith("-survival") and not Path(dataset).exists():
        refused = {"--target": target, "--positive": positive, "--cv": cv}
        given = [k for k, v in refused.items() if v is not None] + (["--validation"] if validation != "split" else [])
        if given:
            raise click.UsageError(
                f"{', '.join(given)} do not apply to a survival task; its model is evaluated on a held-out split "
                "at each horizon (`medml survival train --help`)"
            )
        from medml.cli.survival import train as survival_train

        survival_train(
            dataset.removesuffix("-survival"),
            model="gbs" if model == "lgbm" else model,  # the default kind's survival analogue: boosted trees
            horizons=horizons,
            id=id,
            sensitive=sensitive,
            seed=seed,
            n_boot=200 if n_boot is None else n_boot,
            budget_seconds=budget_seconds,
            max_trials=max_trials,
            name=name,
        )
        return
    if horizons is not None:
        raise click.UsageError("--horizons is for survival tasks: train DATASET-survival, e.g. support2-survival")
    n_boot = 1000 if n_boot is None else n_boot
    from medml.config import get_settings
    from medml.models import check_model_kind
    from medml.pipelines.catalogue import list_datasets, load_dataset
    from medml.pipelines.tabular import TrainConfig
    from medml.pipelines.tabular import train as run_train

    check_model_kind(model)
    check_options(budget_seconds=budget_seconds, max_trials=max_trials, n_boot=n_boot, seed=seed)
    internal = internal_validation(validation, cv, repeats, bootstraps)
    ds = load_task(dataset, target=target, id_column=id, sensitive=sensitive, positive=positive)
    infos = {d.key: d for d in list_datasets()}
    external = {k: load_dataset(k) for k in infos[ds.name].external} if ds.name in infos else {}
    config = TrainConfig(
        model=model,
        budget_seconds=budget_seconds,
        max_trials=max_trials,
        seed=seed,
        name=name,
        n_boot=n_boot,
        validation=internal,
    )
    settings = get_settings()
    with progress_bar(f"{ds.name} {model}") as step:
        result = run_train(ds, config, settings, progress=step, external=external)
    md = result.bundle.metadata
    where = "the held-out test split" if internal is None else result.evaluation.split.split(" (")[0] + " predictions"
    print_metrics(f"{md.name}@{md.version} on {where} ({ds.task})", md.metrics)
    print_validation(md.extra)
    for key, rep in result.external.items():
        from medml.evaluate import headline

        print_metrics(f"external validation: {key}", headline(rep))
    out.print(
        f"calibration: {md.calibration}; search: {result.n_trials} trials in {result.timings['tune']:.0f} s; "
        f"total {result.seconds:.0f} s"
    )
    out.print(f"model:  {md.name}@{md.version} in {settings.models_dir / md.name / str(md.version)}")
    out.print(f"report: {result.report_path}")
    out.print(
        f"Decision support, not a diagnosis. Intended use, evaluation population and calibration: the "
        f"report's model card, or `medml models show {md.name}@{md.version}`."
    )


def internal_validation(validation: str, cv: int | None, repeats: int, bootstraps: int) -> Any:
    """The validation the options ask for (None: the split), or the one clear error for options that disagree."""
    from medml.errors import quote
    from medml.pipelines.validation import METHODS, InternalValidation

    check_options(cv=cv, repeats=repeats, bootstraps=bootstraps)
    if validation not in ("split", *METHODS):
        raise ConfigError(f"unknown --validation {quote(validation)}", f"choose one of: split, {', '.join(METHODS)}")
    if cv is not None and validation == "bootstrap":
        raise ConfigError("--cv and --validation bootstrap exclude each other", "choose one of them")
    method = "cv" if cv is not None else validation
    if method != "cv" and repeats != 1:
        raise ConfigError("--repeats repeats a cross-validation", "add --cv 5 (or --validation cv)")
    if method == "split":
        return None
    return InternalValidation(method=method, folds=cv or 5, repeats=repeats, n_bootstrap=bootstraps)  # type: ignore[arg-type]


def print_validation(extra: dict[str, Any]) -> None:
    """The internal validation and the sample size in a few lines, with a warning when the data are short."""
    from medml.report.validation import sample_size_lines, summary_lines

    if extra.get("internal_validation"):
        for line in summary_lines(extra["internal_validation"]):
            out.print(line, highlight=False, soft_wrap=True, markup=False)
    size = extra.get("sample_size")
    if size:
        lines = sample_size_lines(size)
        for line in lines[:-1] if size.get("warning") else lines:
            out.print(line, highlight=False, soft_wrap=True, markup=False)
        if size.get("warning"):
            err.print(f"warning: {size['warning']}", highlight=False, soft_wrap=True, markup=False)


def evaluate(
    model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")],
    dataset: Annotated[str | None, typer.Option(help="dataset key, table or spec; default: own test split")] = None,
    target: Annotated[str | None, typer.Option(help="outcome column (tables only)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="patient id column (tables only)")] = None,
    sensitive: Annotated[str | None, typer.Option(help="comma-separated sensitive attribute columns")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for intervals")] = 1000,
) -> None:
    """Evaluate a registered model on its test split or on another dataset or site (external validation)."""
    from medml.config import get_settings
    from medml.evaluate import headline
    from medml.pipelines.tabular import evaluate_registered
    from medml.registry import load_bundle

    check_options(n_boot=n_boot)
    settings = get_settings()
    key = dataset or load_bundle(model, settings).metadata.dataset
    ds = load_task(key, target=target, id_column=id, sensitive=sensitive)
    with progress_bar(f"evaluating {model} on {ds.name}") as step:
        step("scoring and bootstrapping", 0.1)
        bundle, report, path = evaluate_registered(model, ds, settings, n_boot=n_boot)
    md = bundle.metadata
    print_metrics(f"{md.name}@{md.version} on {ds.name} ({report.split})", headline(report))
    out.print(f"report: {path}")


def report(model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")]) -> None:
    """Write the HTML report and model card of a registered model (from the bundle, no retraining)."""
    from medml.config import get_settings
    from medml.pipelines.tabular import write_model_report
    from medml.registry import load_bundle

    settings = get_settings()
    path = write_model_report(load_bundle(model, settings), settings)
    out.print(f"report: {path}")


def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")],
    table: Annotated[Path | None, typer.Argument(help="CSV or Parquet with the model's input columns")] = None,
    id: Annotated[str | None, typer.Option("--id", help="column that identifies each patient")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="write all rows to this CSV")] = None,
    top: Annotated[int, typer.Option(help="contributing factors per patient")] = 3,
    encounter: Annotated[
        str | None, typer.Option("--encounter", help="column with each row's encounter id (for the monitor)")
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="record the scores and inputs in the monitoring store")
    ] = True,
    engine: Annotated[
        str, typer.Option("--engine", help="local (pandas), or spark (medml[spark]): --input, --id, --out FOLDER")
    ] = "local",
    input_path: Annotated[Path | None, typer.Option("--input", help="--engine spark: Parquet file or folder")] = None,
    master: Annotated[str, typer.Option("--master", help="--engine spark: local[N], spark://HOST:PORT, yarn")] = (
        "local[2]"
    ),
) -> None:
    """Score new patients: calibrated risk and top contributing factors, with the model's evaluation beside it.
    Each score is recorded with the inputs the model saw in the monitoring store (`medml monitor`). A survival
    model (`medml survival train`) gives the risk by each of its horizons and S(t) on a grid (all in --out).

    With --engine spark: the Parquet at --input is scored on Spark (mapInPandas) into the new Parquet folder --out
    (batch scoring: not recorded for the monitor)."""
    if engine == "spark":
        _predict_spark(model, input_path, out_path, id, top, master)
        return
    if engine != "local":
        raise ConfigError(f"--engine {engine!r} is not known", "use --engine local (the default) or --engine spark")
    if table is None:
        raise click.UsageError("give the TABLE to score (CSV or Parquet), or --engine spark --input PARQUET")
    from medml.cli.pgx import check_output, write_atomically
    from medml.config import get_settings
    from medml.data.datasets import read_table
    from medml.pipelines.tabular import score_table
    from medml.registry import load_bundle

    check_options(top=top)
    if out_path is not None:
        check_output(out_path, example="scores.csv")
    bundle = load_bundle(model, get_settings())
    frame = read_table(table)
    if encounter is not None and encounter not in frame.columns:
        raise DataError(f"no encounter column {quote(encounter)} in {table.name}", "name a column of the table")
    if "survival" in bundle.metadata.extra:  # a survival model: the risk by each horizon and the survival curve
        from medml.cli.survival import predict_survival

        predict_survival(bundle, frame, id_column=id, out_path=out_path, top=top, encounter=encounter, record=record)
        return
    with progress_bar(f"scoring {len(frame):,} rows") as step:
        step("predicting and explaining", 0.2)
        scores = score_table(bundle, frame, id_column=id, top=top)
        if record:
            step("recording in the monitoring store", 0.9)
            recorded = _record_scores(bundle, frame, scores, encounter)
    md = bundle.metadata
    h = md.headline
    out.print(
        f"{md.name}@{md.version}: {md.task} ({md.model_kind}, calibration {md.calibration}). "
        f"Decision support, not a diagnosis.",
        highlight=False,
    )
    evaluated = (
        "No evaluation is stored with this model"
        if h is None
        else f"Evaluated on {h.n:,} held-out patients of {md.dataset}: AUROC {estimate_text(h.auroc)}, calibration "
        f"slope {fmt(h.calibration_slope.value, 2)}, ICI {fmt(h.ici)}"
    )
    out.print(f"{evaluated}. Population: {md.population}", highlight=False)
    if out_path is not None:
        write_atomically(out_path, scores.to_csv(index=False))
        out.print(f"wrote {len(scores):,} rows to {out_path}")
    t = Table(header_style="bold")
    for col in ("id", "risk", "top factor"):
        t.add_column(col, justify="right" if col == "risk" else "left")
    for _, r in scores.head(10).iterrows():
        t.add_row(str(r["id"]), f"{r['risk']:.1%}", str(r.get("factor_1", "")))
    out.print(t)
    if len(scores) > 10:
        out.print(f"... {len(scores) - 10:,} more rows" + ("" if out_path else " (use --out FILE.csv for all)"))
    if record:
        out.print(
            f"recorded {recorded:,} score(s) with their inputs in the monitoring store"
            + ("" if id else " (rows numbered: pass --id so that outcomes can be joined to them later)"),
            highlight=False,
        )
    warn_left_out(scores)


def warn_left_out(scores: Any) -> None:
    """One warning line for the scored rows whose values were outside their plausible ranges (column left_out)."""
    flagged = scores[scores["left_out"] != ""]
    if len(flagged):
        first = flagged.iloc[0]
        err.print(
            f"warning: {len(flagged):,} row(s) had values outside their plausible ranges, left out and scored as "
            f"missing (column left_out), e.g. row {first['id']}: {first['left_out']}",
            highlight=False,
            soft_wrap=True,
        )


def _record_scores(bundle: Any, frame: Any, scores: Any, encounter: str | None) -> int:
    """Write each row's score and the inputs the model saw (a value outside its plausible range left out, as
    scoring leaves it out) to the monitoring store, as the service does for a hook call."""
    from datetime import UTC, datetime

    import pandas as pd

    from medml.config import get_settings
    from medml.data.task import implausible
    from medml.monitor.store import MonitorStore, PredictionRow

    frame = frame.reset_index(drop=True)
    seen = frame[bundle.feature_names].copy()
    for name, mask in implausible(frame, bundle.features).items():
        seen[name] = pd.to_numeric(seen[name], errors="coerce").where(~mask)
    md = bundle.metadata
    now = datetime.now(UTC)
    encounters = frame[encounter].astype(str).tolist() if encounter else [None] * len(frame)
    rows = [
        PredictionRow(
            model=md.name,
            version=md.version,
            service="medml predict",
            patient=str(patient),
            encounter=enc,
            time=now,
            score=float(risk),
            features=features,
        )
        for patient, risk, enc, features in zip(
            scores["id"], scores["risk"], encounters, seen.to_dict("records"), strict=True
        )
    ]
    return MonitorStore(get_settings().monitor_store).record(rows)


def _predict_spark(
    model: str, input_path: Path | None, out_path: Path | None, id: str | None, top: int, master: str
) -> None:
    from medml.config import get_settings
    from medml.registry import load_bundle
    from medml.scale import spark_session
    from medml.scale._output import check_new_folder
    from medml.scale.scoring import write_scores

    check_options(top=top)
    if input_path is None or out_path is None or id is None:
        raise ConfigError(
            "--engine spark needs --input (Parquet), --out (a new folder) and --id (the patient id column)",
            f"e.g. medml predict {model} --engine spark --input rows.parquet --id patient_id --out scores/",
        )
    check_new_folder(out_path)
    bundle = load_bundle(model, get_settings())
    md = bundle.metadata
    spark = spark_session(master)
    rows = write_scores(spark, bundle, input_path, out_path, id_column=id, top=top)
    out.print(
        f"{md.name}@{md.version}: {md.task} ({md.model_kind}, calibration {md.calibration}). "
        f"Decision support, not a diagnosis. Population: {md.population}",
        highlight=False,
    )
    out.print(f"wrote {rows:,} scored rows to {out_path} (Parquet; Spark {spark.version} on {master})")


@models_app.command("list")
def models_list() -> None:
    """Registered models with their latest version, dataset and test AUROC; then where the bundle store and
    MLflow disagree (what a killed registration left), and what repairs it."""
    from medml.config import get_settings
    from medml.registry import list_models
    from medml.registry.repair import MlflowUnavailable, check
    from medml.registry.store import StoreBusy

    settings = get_settings()
    rows = list_models(settings)
    if rows:
        t = Table(header_style="bold")
        for col in rows[0]:
            t.add_column(str(col))
        for r in rows:
            t.add_row(*(fmt(v) if isinstance(v, float) else str(v) for v in r.values()))
        out.print(t)
    try:
        problems = check(settings)
    except StoreBusy:
        out.print("not compared with MLflow: a registration is under way; list again when it has finished")
        return
    except MlflowUnavailable as e:
        out.print(f"not compared with MLflow: {e}", highlight=False, soft_wrap=True, markup=False)
        return
    if not rows and not problems:
        out.print("no models registered yet: run `medml train DATASET`")
    if problems:
        out.print(f"[bold]the bundle store and MLflow disagree ({len(problems)}):[/]")
        for p in problems:
            out.print(f"  {p}", highlight=False, soft_wrap=True, markup=False)


@models_app.command("repair")
def models_repair() -> None:
    """Make the bundle store and MLflow agree after a registration was killed: end its stuck run, delete its
    half-made MLflow version, or restore a bundle MLflow has in full (training does this first, too)."""
    from medml.config import get_settings
    from medml.registry.repair import repair

    result = repair(get_settings())
    for line in result.done:
        out.print(f"repaired: {line}", highlight=False, soft_wrap=True, markup=False)
    for p in result.left:
        out.print(f"not repaired: {p}", highlight=False, soft_wrap=True, markup=False)
    if not result.done and not result.left:
        out.print("nothing to repair: the bundle store and MLflow agree")


@models_app.command("show")
def models_show(model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")]) -> None:
    """A registered model's metadata: data, task, intended use, metrics, files and their verified hashes."""
    import json

    from medml.config import get_settings
    from medml.registry import show_model

    info = show_model(model, get_settings())
    out.print_json(json.dumps(info, default=str))


__all__ = ["datasets", "evaluate", "load_task", "models_app", "predict", "report", "train"]
