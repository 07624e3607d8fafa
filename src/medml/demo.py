"""`medml demo`: both models on every bundled dataset, with external validation, in one summary table."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

DEMO_DATASETS = ("heart-cleveland", "pima", "support2", "physionet-2012", "diabetes-130")
DEMO_MODELS = ("logistic", "lgbm")


def run_demo(out: Console, err: Console, *, budget_seconds: float, keys: Sequence[str] | None, n_boot: int,
             progress: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Train, evaluate, register and report each (dataset, model); returns the summary rows."""
    from medml.config import get_settings
    from medml.data.datasets import list_datasets, load_dataset
    from medml.evaluate import headline
    from medml.workflow import TrainConfig, train

    settings = get_settings()
    infos = {d.key: d for d in list_datasets()}
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for key in keys or DEMO_DATASETS:
        t = time.perf_counter()
        ds = load_dataset(key)
        external = {k: load_dataset(k) for k in infos[key].external}
        load_s = time.perf_counter() - t
        for kind in DEMO_MODELS:
            # Logistic regression has one hyperparameter: a third of the budget is plenty.
            budget = budget_seconds if kind == "lgbm" else budget_seconds / 3
            config = TrainConfig(model=kind, budget_seconds=budget, n_boot=n_boot)
            with progress(f"{key} {kind}") as step:
                result = train(ds, config, settings, progress=step, external=external)
            md = result.bundle.metadata
            row = {"dataset": key, "model": f"{md.name}@{md.version}", "split": "test", **md.metrics,
                   "calibration": md.calibration, "seconds": result.seconds + load_s, "report": result.report_path}
            rows.append(row)
            err.print(f"  {key} {kind}: AUROC {md.metrics['auroc']:.3f} in {row['seconds']:.0f} s")
            for site, rep in result.external.items():
                rows.append({"dataset": site, "model": row["model"], "split": "external", **headline(rep),
                             "calibration": md.calibration, "seconds": 0.0, "report": result.report_path})
            load_s = 0.0
    out.print(summary_table(rows, time.perf_counter() - start))
    out.print(f"reports: {settings.reports_dir.resolve()}")
    out.print(f"models:  {settings.models_dir.resolve()}  (`medml models list`)")
    out.print(f"MLflow:  {settings.mlflow_uri}")
    return rows


def summary_table(rows: list[dict[str, Any]], seconds: float) -> Table:
    t = Table(title=f"medml demo: held-out test and external validation ({seconds:.0f} s)", header_style="bold")
    for col in ("dataset", "model", "split", "n", "AUROC (95% CI)", "AUPRC", "Brier", "cal. slope", "calibration",
                "time"):
        t.add_column(col, justify="right" if col not in ("dataset", "model", "split", "calibration") else "left")
    for r in rows:
        t.add_row(r["dataset"], r["model"], r["split"], str(r["n"]),
                  f"{r['auroc']:.3f} ({r['auroc_low']:.3f}-{r['auroc_high']:.3f})", f"{r['auprc']:.3f}",
                  f"{r['brier']:.3f}", f"{r['calibration_slope']:.2f}", r["calibration"],
                  f"{r['seconds']:.0f} s" if r["seconds"] else "")
    return t


def run_fhir_demo(out: Console, err: Console) -> dict[str, int]:
    """FHIR: ingest the Synthea bundles into the store, run the conformance suite and the built-in views."""
    from medml.config import get_settings
    from medml.fhir.conformance import run_conformance
    from medml.fhir.ingest import ingest
    from medml.fhir.store import FhirStore
    from medml.fhir.view import run_view
    from medml.fhir.views import get_view, view_names

    settings = get_settings()
    synthea = settings.data_root / "fhir" / "synthea-r4"
    with FhirStore(settings.fhir_store) as store:
        report = ingest(store, [synthea])
        err.print(f"  FHIR: ingested {report.resources:,} Synthea resources in {report.seconds:.1f} s")
        rows = {name: run_view(store.con, get_view(name)).num_rows for name in view_names()}
    suite = run_conformance([settings.data_root / "fhir" / "sql-on-fhir-v2" / "tests"])
    t = Table(title="FHIR: Synthea R4 through the built-in views", header_style="bold")
    t.add_column("view")
    t.add_column("rows", justify="right")
    for name, n in rows.items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    out.print(f"SQL-on-FHIR v2 conformance: {suite.summary()}")
    out.print(f"FHIR store: {settings.fhir_store.resolve()}  (`medml fhir stats`, `medml fhir view run NAME`); "
              "train from FHIR: `medml train physionet-2012-fhir`")
    return rows
