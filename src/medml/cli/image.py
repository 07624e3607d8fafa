"""`medml image ...`: train, run and report image classifiers (the ``imaging`` extra: torch and MONAI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medml.cli._console import interval, out, print_metrics, progress_bar
from medml.cli.models import check_options
from medml.errors import ConfigError, InputFileError, MedmlError, quote

image_app = typer.Typer(
    no_args_is_help=True, help="Image classifiers (MONAI): MedMNIST .npz, PNG/JPEG class folders, DICOM with labels."
)


@image_app.command("train")
def train_cmd(
    data: Annotated[str, typer.Argument(help="a MedMNIST .npz, a folder of class sub-folders, or a DICOM folder")],
    epochs: Annotated[int, typer.Option(help="most training epochs (early stopping may end sooner)")] = 20,
    budget_minutes: Annotated[float | None, typer.Option(help="wall-clock limit for training")] = None,
    seed: Annotated[int, typer.Option(help="seed for the split, initial weights and augmentation")] = 0,
    name: Annotated[str | None, typer.Option(help="registered model name (default FILE-image-resnet)")] = None,
    tta: Annotated[bool, typer.Option(help="average each prediction with that of the mirrored image")] = False,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for intervals")] = 1000,
    calibrate: Annotated[
        bool,
        typer.Option(help="Platt scaling fitted on the validation split (only if it matches the population of use)"),
    ] = False,
    ensemble: Annotated[int, typer.Option(help="networks to train (seeds SEED, SEED+1, ...) and average")] = 1,
    label_smoothing: Annotated[float, typer.Option(help="label smoothing of the loss, e.g. 0.1 (0: none)")] = 0.0,
    labels: Annotated[
        Path | None, typer.Option(help="labels CSV of a DICOM folder (default FOLDER/labels.csv)")
    ] = None,
    size: Annotated[int | None, typer.Option(help="resize every image to SIZE x SIZE (bilinear)")] = None,
    channels: Annotated[int | None, typer.Option(help="convert PNG/JPEG images to 1 (grayscale) or 3 (RGB)")] = None,
    window: Annotated[str | None, typer.Option(help="DICOM window CENTER,WIDTH (default: the file's own)")] = None,
    frame: Annotated[int | None, typer.Option(help="the frame to take from multi-frame DICOM files")] = None,
    class_names: Annotated[str | None, typer.Option(help="class names of a MedMNIST file, comma-separated")] = None,
) -> None:
    """Train, evaluate on the held-out test split, register and report an image classifier: binary, multiclass
    or multilabel, as the data says."""
    check_options(
        epochs=epochs,
        ensemble=ensemble,
        n_boot=n_boot,
        seed=seed,
        budget_minutes=budget_minutes,
        size=size,
        frame=frame,
    )
    if not 0 <= label_smoothing < 1:  # also refuses nan
        raise ConfigError(f"--label-smoothing must be from 0 to below 1, got {label_smoothing:g}", "e.g. 0.1, or 0")
    if not Path(data).exists():
        raise InputFileError(f"no file or folder at {data}", "give a MedMNIST .npz or a folder of images")
    from medml.config import get_settings
    from medml.pipelines.imaging import ImageInput, ImageWorkflowConfig, train_images

    if channels not in (None, 1, 3):
        raise MedmlError(f"--channels must be 1 or 3, got {channels}")
    inputs = ImageInput(
        labels_csv=str(labels) if labels else None,
        size=size,
        channels=channels,  # type: ignore[arg-type]
        window=_window(window),
        frame=frame,
        class_names=tuple(c.strip() for c in class_names.split(",")) if class_names else None,
    )
    settings = get_settings()
    config = ImageWorkflowConfig(
        seed=seed,
        tta=tta,
        n_boot=n_boot,
        name=name,
        calibrate=calibrate,
        ensemble=ensemble,
        label_smoothing=label_smoothing,
    )
    with progress_bar(f"image model on {Path(data).name}") as step:
        result = train_images(
            data, config, settings, epochs=epochs, budget_minutes=budget_minutes, progress=step, inputs=inputs
        )
    md = result.bundle.metadata
    m = md.metrics
    if result.classes is None:
        print_metrics(f"{md.name}@{md.version} on the held-out test split ({md.task})", m)
        out.print(
            f"AUROC {m['auroc']:.3f} (95% CI {m['auroc_low']:.3f}-{m['auroc_high']:.3f}); accuracy "
            f"{m['accuracy_at_0_5']:.3f} at 0.5, {m['accuracy_at_reference']:.3f} at the prevalence "
            f"{m['reference_threshold']:.3f}",
            highlight=False,
        )
    else:
        print_classes(f"{md.name}@{md.version} on the held-out test split ({md.task})", result.classes)
    out.print(
        f"training: {len(result.history)} epoch(s), best {md.params['best_epoch']} (validation AUROC "
        f"{md.params['val_auroc']:.3f}), stopped by {result.stopped_by}; total {result.seconds:.0f} s",
        highlight=False,
    )
    out.print(f"model:  {md.name}@{md.version} in {settings.models_dir / md.name / str(md.version)}")
    out.print(f"report: {result.report_path}")
    out.print(
        "Decision support for image triage, not a diagnosis. Intended use and evaluation population: the "
        f"report's model card, or `medml models show {md.name}@{md.version}`."
    )


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise MedmlError(f"--window must be CENTER,WIDTH, e.g. 40,400; got {quote(text)}") from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise MedmlError(f"--window must be a finite CENTER and a positive WIDTH, got {quote(text)}", "e.g. 40,400")
    return center, width


def print_classes(title: str, c: dict[str, Any]) -> None:
    """Per-class one-vs-rest AUROC with intervals, then the macro mean and the accuracy (MedMNIST's AUC and ACC)."""

    t = Table(title=title, header_style="bold")
    for col in ("class", "events", "AUROC (95% CI)", "AUPRC"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for r in c["per_class"]:
        a = r.get("auroc")
        t.add_row(
            r["name"],
            f"{r['n_events']:,} ({r['prevalence']:.1%})",
            _estimate(a) if a else "-",
            f"{r['auprc']:.3f}" if r.get("auprc") is not None else "-",
        )
    out.print(t)
    out.print(
        f"AUROC {_estimate(c['macro_auroc'])} (macro mean over {c['macro_over']}); accuracy "
        f"{_estimate(c['accuracy'])} ({c['accuracy_definition']})",
        highlight=False,
    )


def _estimate(e: dict[str, Any]) -> str:
    if e.get("low") is None or e.get("high") is None:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} (95% CI {e['low']:.3f}-{e['high']:.3f})"


@image_app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION of an image model")],
    files: Annotated[list[Path], typer.Argument(help="PNG/JPEG, DICOM or MedMNIST .npz files")],
    fhir: Annotated[
        Path | None, typer.Option(help="also write a FHIR R4 Bundle of DiagnosticReports (JSON) here")
    ] = None,
    heatmaps: Annotated[bool, typer.Option(help="attach each image's Grad-CAM heat map to its FHIR report")] = True,
) -> None:
    """Probability of the positive class per image, with the model's evaluation and intended use."""
    from medml.cli.pgx import check_output, write_atomically
    from medml.config import get_settings
    from medml.models.imaging import ImagePredictor, require_imaging
    from medml.registry import load_bundle

    require_imaging()
    if fhir is not None:
        check_output(fhir, "--fhir", "reports.json")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputFileError(f"no file at {', '.join(missing[:3])}", "check the paths")
    bundle = load_bundle(model, get_settings())
    md = bundle.metadata
    predictor = ImagePredictor.from_bundle(bundle)  # refuses a tabular model
    with progress_bar(f"scoring {len(files)} file(s)") as step:
        step("reading images", 0.1)
        images, sources = predictor.read_files(files)
        step("predicting", 0.5)
        probs = predictor.predict(images)
        if fhir is not None:
            from medml.pipelines.imaging import heatmap_overlays

            step("writing FHIR DiagnosticReports", 0.8)
            pngs = heatmap_overlays(predictor, images, probs) if heatmaps else None
            write_atomically(fhir, json.dumps(predictor.fhir_bundle(sources, probs, heatmap_pngs=pngs), indent=1))
    out.print(f"{md.name}@{md.version}: {md.task}. {md.intended_use}", highlight=False)
    macro = " (macro mean over classes)" if probs.ndim == 2 else ""
    out.print(
        f"Evaluated on {md.metrics['n']:,} held-out images of {md.dataset}: AUROC {interval(md.metrics)}{macro}.",
        highlight=False,
    )
    t = Table(header_style="bold")
    t.add_column("image")
    names = [str(c) for c in md.extra.get("class_names", [])]
    if probs.ndim == 1:
        t.add_column(f"P({md.target})", justify="right")
        for source, p in zip(sources, probs, strict=True):
            t.add_row(source.label, f"{p:.3f}")
    else:
        t.add_column("most probable" if md.extra.get("image_task") == "multiclass" else "findings at 0.5")
        for name in names:
            t.add_column(f"P({name})", justify="right")
        for source, row in zip(sources, probs, strict=True):
            call = (
                names[int(row.argmax())]
                if md.extra.get("image_task") == "multiclass"
                else ", ".join(n for n, q in zip(names, row, strict=True) if q >= 0.5) or "none"
            )
            t.add_row(source.label, call, *[f"{q:.3f}" for q in row])
    out.print(t)
    if fhir is not None:
        out.print(f"FHIR: {fhir} ({len(sources)} DiagnosticReport(s), preliminary: decision support, not a diagnosis)")


@image_app.command("report")
def report_cmd(model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION of an image model")]) -> None:
    """Write the HTML report of a registered image model again, from its bundle."""
    from medml.config import get_settings
    from medml.models.imaging import net_config_of, require_imaging
    from medml.pipelines.imaging import write_image_report
    from medml.registry import load_bundle

    require_imaging()
    settings = get_settings()
    bundle = load_bundle(model, settings)
    net_config_of(bundle)  # refuses a tabular model
    out.print(f"report: {write_image_report(bundle, settings)}")
