"""`medml vitals train-ews`: the learned early-warning model on the hourly PhysioNet 2012 replay, registered with
NEWS2, qSOFA, SOFA and SAPS-I beside it."""

from __future__ import annotations

from typing import Annotated

import typer

from medml.cli._console import out, print_metrics, progress_bar
from medml.cli.models import check_options
from medml.errors import ConfigError

TRAIN_EWS_HELP = (
    "Train the learned early-warning model: each ICU stay of PhysioNet 2012 set A scored every --every hours over "
    "its first --hours hours from the vital signs charted up to then (latest value, hours since, 6-h lowest, "
    "highest and change, counts, NEWS2 sub-scores, age); outcome in-hospital death; split by stay. It is "
    "registered like any model, and its report shows NEWS2, qSOFA, SOFA and SAPS-I on the same test stays."
)


def train_ews_cmd(
    model: Annotated[str, typer.Option(help="model kind")] = "lgbm",
    hours: Annotated[int, typer.Option(help="the window after ICU admission, 1-48 hours")] = 48,
    every: Annotated[int, typer.Option(help="score each stay every this many hours")] = 1,
    budget_seconds: Annotated[float, typer.Option(help="time for the hyperparameter search")] = 60.0,
    max_trials: Annotated[int, typer.Option(help="most search trials")] = 60,
    seed: Annotated[int, typer.Option(help="seed for the split, search and model")] = 0,
    name: Annotated[str, typer.Option(help="registered model name")] = "physionet-2012-ews",
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples for intervals")] = 1000,
) -> None:
    from medml.config import get_settings
    from medml.models import check_model_kind
    from medml.pipelines.ews import COMPARATORS_KEY, train_early_warning
    from medml.pipelines.tabular import TrainConfig

    check_model_kind(model)
    check_options(budget_seconds=budget_seconds, max_trials=max_trials, n_boot=n_boot, seed=seed)
    if not 1 <= hours <= 48:
        raise ConfigError(f"--hours must be 1-48, got {hours}", "set A holds the first 48 hours of each stay")
    if not 1 <= every <= hours:
        raise ConfigError(f"--every must be 1-{hours}, got {every}", "e.g. --every 1 (every hour)")
    config = TrainConfig(
        model=model, budget_seconds=budget_seconds, max_trials=max_trials, seed=seed, name=name, n_boot=n_boot
    )
    settings = get_settings()
    with progress_bar(f"early warning {model}") as step:
        result = train_early_warning(config, settings, hours=hours, every=every, progress=step)
    md = result.bundle.metadata
    print_metrics(f"{md.name}@{md.version} on the held-out test stay-hours", md.metrics)
    for row in md.extra[COMPARATORS_KEY]["rows"]:
        a = row["auroc"]
        out.print(
            f"  beside it: {row['name']} (per {row['unit']}, n={row['n']:,}): AUROC {a['value']:.3f} "
            f"({a['low']:.3f}-{a['high']:.3f})",
            highlight=False,
        )
    out.print(f"model:  {md.name}@{md.version} in {settings.models_dir / md.name / str(md.version)}")
    out.print(f"report: {result.report_path}")
    out.print("Decision support, not a diagnosis: its intended use and population are in the report's model card.")
