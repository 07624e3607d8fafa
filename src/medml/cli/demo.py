"""`medml demo`: every model kind on every bundled dataset with external validation in one summary table, the FHIR
walk-through, then ICU stays in the store and the PhysioNet model deployed as a CDS service.

A demo, not a library: it lives with the command that runs it (STYLE.md: demos in the CLI or examples/).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medml.cli._console import err, out, progress_bar, split_list

DEMO_DATASETS = ("heart-cleveland", "pima", "support2", "physionet-2012", "diabetes-130")


def run_demo(
    out: Console,
    err: Console,
    *,
    budget_seconds: float,
    keys: Sequence[str] | None,
    n_boot: int,
    progress: Callable[[str], Any],
) -> list[dict[str, Any]]:
    """Train, evaluate, register and report each (dataset, model); returns the summary rows."""
    from medml.config import get_settings
    from medml.evaluate import headline
    from medml.models.factory import MODEL_KINDS
    from medml.pipelines.catalogue import list_datasets, load_dataset
    from medml.pipelines.tabular import TrainConfig, train

    settings = get_settings()
    infos = {d.key: d for d in list_datasets()}
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for key in keys or DEMO_DATASETS:
        t = time.perf_counter()
        ds = load_dataset(key)
        external = {k: load_dataset(k) for k in infos[key].external}
        load_s = time.perf_counter() - t
        for kind, model in MODEL_KINDS.items():  # every kind, each with the share of the budget it declares
            budget = budget_seconds * model.search_budget_share
            config = TrainConfig(model=kind, budget_seconds=budget, n_boot=n_boot)
            with progress(f"{key} {kind}") as step:
                result = train(ds, config, settings, progress=step, external=external)
            md = result.bundle.metadata
            row = {
                "dataset": key,
                "model": f"{md.name}@{md.version}",
                "split": "test",
                **md.metrics,
                "calibration": md.calibration,
                "seconds": result.seconds + load_s,
                "report": result.report_path,
            }
            rows.append(row)
            err.print(f"  {key} {kind}: AUROC {md.metrics['auroc']:.3f} in {row['seconds']:.0f} s")
            for site, rep in result.external.items():
                rows.append(
                    {
                        "dataset": site,
                        "model": row["model"],
                        "split": "external",
                        **headline(rep),
                        "calibration": md.calibration,
                        "seconds": 0.0,
                        "report": result.report_path,
                    }
                )
            load_s = 0.0
    out.print(summary_table(rows, time.perf_counter() - start))
    out.print(f"reports: {settings.reports_dir.resolve()}")
    out.print(f"models:  {settings.models_dir.resolve()}  (`medml models list`)")
    out.print(f"MLflow:  {settings.mlflow_uri}")
    return rows


def summary_table(rows: list[dict[str, Any]], seconds: float) -> Table:
    t = Table(title=f"medml demo: held-out test and external validation ({seconds:.0f} s)", header_style="bold")
    for col in (
        "dataset",
        "model",
        "split",
        "n",
        "AUROC (95% CI)",
        "AUPRC",
        "Brier",
        "cal. slope",
        "calibration",
        "time",
    ):
        t.add_column(col, justify="right" if col not in ("dataset", "model", "split", "calibration") else "left")
    for r in rows:
        t.add_row(
            r["dataset"],
            r["model"],
            r["split"],
            str(r["n"]),
            f"{r['auroc']:.3f} ({r['auroc_low']:.3f}-{r['auroc_high']:.3f})",
            f"{r['auprc']:.3f}",
            f"{r['brier']:.3f}",
            f"{r['calibration_slope']:.2f}",
            r["calibration"],
            f"{r['seconds']:.0f} s" if r["seconds"] else "",
        )
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
    out.print(
        f"FHIR store: {settings.fhir_store.resolve()}  (`medml fhir stats`, `medml fhir view run NAME`); "
        "train from FHIR: `medml train physionet-2012-fhir`"
    )
    return rows


DEMO_SERVICE_MODEL = "physionet-2012-lgbm"
DEMO_EHR_ISS = "https://ehr.demo.medml.invalid/"


def run_service_demo(out: Console, err: Console, *, stays: int = 40) -> str | None:
    """The CDS service: test-split ICU stays of PhysioNet 2012 into the FHIR store, the LightGBM model deployed.

    Returns the service id, or None when the demo trained no PhysioNet model. ``make demo`` then runs
    ``medml serve``: the patient list at http://127.0.0.1:8800/ shows each stay's card as the EHR receives it.
    """
    from medml.config import get_settings
    from medml.data import patient_split
    from medml.fhir.convert.physionet2012 import iter_stays
    from medml.fhir.store import FhirStore
    from medml.pipelines.catalogue import load_dataset
    from medml.registry import list_models
    from medml.service.config import load_config
    from medml.service.deploy import deploy

    settings = get_settings()
    if DEMO_SERVICE_MODEL not in {m["name"] for m in list_models(settings)}:
        err.print(f"  CDS service: no {DEMO_SERVICE_MODEL} model (train physionet-2012 first); nothing deployed")
        return None
    ds = load_dataset("physionet-2012")
    split = patient_split(ds.groups, ds.binary_target.values, fractions=(0.6, 0.2, 0.2), seed=0)
    picked = [int(i) for i in ds.ids[split.test][:stays]]
    archive = settings.data_root / "icu" / "physionet-2012-set-a"
    resources = [r for stay in iter_stays(archive, record_ids=picked) for r in stay]
    with FhirStore(settings.fhir_store) as store:
        store.add(resources)
    _demo_ehr(settings.home / "service")
    config = load_config(settings)
    dep = deploy(settings, config, DEMO_SERVICE_MODEL)
    err.print(f"  CDS service: {len(picked)} test-split ICU stays added to the FHIR store; {dep.model} deployed")
    out.print(
        f"CDS Hooks service '{dep.service_id}' ({dep.model}): `medml serve`, then open "
        f"{config.base_url}/ (patients and their cards) or {config.base_url}/cds-services (discovery)"
    )
    return dep.service_id


def _demo_ehr(home: Any) -> None:
    """A demo EHR's signing key, trusted by the service (service.yaml), unless a service.yaml exists already."""
    import json

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    config = home / "service.yaml"
    if config.exists():
        return
    folder = home / "demo-ehr"
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "private-key.pem").write_bytes(pem)
    (folder / "private-key.pem").chmod(0o600)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (folder / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "demo-ehr", "alg": "ES384", "use": "sig"}]}, indent=2)
    )
    config.write_text(
        "# written by `medml demo`: the service trusts one EHR, the demo's (keys in demo-ehr/)\n"
        f"issuers:\n  - iss: {DEMO_EHR_ISS}\n    jwks: demo-ehr/jwks.json\n"
    )


def demo(
    budget_seconds: Annotated[float, typer.Option(help="search budget per model (less for a simple kind)")] = 20.0,
    datasets_: Annotated[str | None, typer.Option("--datasets", help="comma-separated keys (default: all)")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples")] = 500,
) -> None:
    """Train, evaluate and report every model kind on every bundled dataset; FHIR: ingest, views, conformance; then
    ICU stays into the store and the PhysioNet model deployed as a CDS service (`medml serve` runs it)."""
    run_demo(
        out,
        err,
        budget_seconds=budget_seconds,
        keys=split_list(datasets_) or None,
        n_boot=n_boot,
        progress=progress_bar,
    )
    run_fhir_demo(out, err)
    run_service_demo(out, err)


__all__ = [
    "DEMO_DATASETS",
    "DEMO_EHR_ISS",
    "DEMO_SERVICE_MODEL",
    "demo",
    "run_demo",
    "run_fhir_demo",
    "run_service_demo",
]
