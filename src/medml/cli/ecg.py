"""`medml vitals ecg ...`: R peaks and heart rate of an ECG record, and the atrial-fibrillation classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medml.cli._console import err, estimate_text, fmt, out, print_metrics, progress_bar
from medml.errors import DataError

ecg_app = typer.Typer(
    no_args_is_help=True,
    help="Single-lead ECG: R peaks and heart rate, and an atrial-fibrillation classifier (train, predict).",
)


@ecg_app.command("peaks")
def peaks_cmd(
    record: Annotated[Path, typer.Argument(help="a WFDB record (.hea with its signal) or a PhysioNet 2017 .mat")],
    channel: Annotated[str | None, typer.Option(help="the ECG channel (default: the first)")] = None,
) -> None:
    """Detect R peaks (NeuroKit2) and print the beat count, heart rate and RR variability of one record."""
    from medml.vitals.ecg import hrv_features, r_peaks
    from medml.vitals.signals import read_recording

    rec = read_recording(record)
    x = rec.channel(channel) if channel else rec.signals[:, 0]
    peaks = r_peaks(x, rec.fs, what=f"record {rec.name}")
    h = hrv_features(peaks, rec.fs)
    out.print(
        f"{rec.name}: {rec.seconds:.1f} s at {rec.fs:g} Hz, {len(peaks)} R peaks, "
        f"heart rate {fmt(h['hr_mean'], 1)}/min, SDNN {fmt(h['rr_sd'], 1)} ms, RMSSD {fmt(h['rmssd'], 1)} ms",
        highlight=False,
    )


@ecg_app.command("train")
def train_cmd(
    folder: Annotated[Path, typer.Argument(help="a folder in the PhysioNet/CinC 2017 layout (REFERENCE.csv)")],
    model: Annotated[str, typer.Option(help="model kind")] = "lgbm",
    budget_seconds: Annotated[float, typer.Option(help="time for the hyperparameter search")] = 60.0,
    max_trials: Annotated[int, typer.Option(help="most search trials")] = 60,
    seed: Annotated[int, typer.Option(help="seed for splits, search and model")] = 0,
    name: Annotated[str | None, typer.Option(help="registered model name (default cinc2017-af-MODEL)")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for intervals")] = 1000,
) -> None:
    """Train, calibrate, evaluate and register an AF classifier on the records' rhythm features."""
    from medml.cli.models import check_options
    from medml.config import get_settings
    from medml.models import check_model_kind
    from medml.pipelines.tabular import TrainConfig
    from medml.pipelines.tabular import train as run_train
    from medml.vitals.af import af_task

    check_model_kind(model)
    check_options(budget_seconds=budget_seconds, max_trials=max_trials, n_boot=n_boot, seed=seed)
    with progress_bar("reading and measuring the ECGs") as step:
        ds = af_task(folder, progress=lambda i, n: step(f"record {i}/{n}", i / n))
    config = TrainConfig(
        model=model, budget_seconds=budget_seconds, max_trials=max_trials, seed=seed, name=name, n_boot=n_boot
    )
    settings = get_settings()
    with progress_bar(f"{ds.name} {model}") as step:
        result = run_train(ds, config, settings, progress=step)
    md = result.bundle.metadata
    print_metrics(f"{md.name}@{md.version} on the held-out test split ({ds.task})", md.metrics)
    out.print(f"population: {ds.population}", highlight=False)
    out.print(f"model:  {md.name}@{md.version} in {settings.models_dir / md.name / str(md.version)}")
    out.print(f"report: {result.report_path}")
    out.print("Decision support, not a diagnosis: a clinician reads the ECG.")


@ecg_app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="a registered AF model, NAME or NAME@VERSION")],
    records: Annotated[list[Path], typer.Argument(help="ECG records (.hea or PhysioNet 2017 .mat)")],
) -> None:
    """The probability of atrial fibrillation for each record, with the model's evaluation beside it."""
    from medml.config import get_settings
    from medml.pipelines.tabular import score_table
    from medml.registry import load_bundle
    from medml.vitals.af import features_of

    bundle = load_bundle(model, get_settings())
    frame, unreadable = features_of(records)
    for name, why in unreadable.items():
        err.print(f"warning: record {name} not scored: {why}", highlight=False, soft_wrap=True)
    if frame.empty:
        raise DataError("no record could be scored", "check the records (see the warnings above)")
    scores = score_table(bundle, frame.reset_index(names="record"), id_column="record", top=2)
    md, h = bundle.metadata, bundle.metadata.headline
    out.print(f"{md.name}@{md.version}: {md.task}. Decision support, not a diagnosis.", highlight=False)
    if h is not None:
        out.print(
            f"Evaluated on {h.n:,} held-out records of {md.dataset}: AUROC {estimate_text(h.auroc)}, calibration "
            f"slope {fmt(h.calibration_slope.value, 2)}. Population: {md.population}",
            highlight=False,
        )
    t = Table(header_style="bold")
    for col in ("record", "P(atrial fibrillation)", "top factor"):
        t.add_column(col)
    for _, r in scores.iterrows():
        t.add_row(str(r["id"]), f"{r['risk']:.1%}", str(r.get("factor_1", "")))
    out.print(t)
