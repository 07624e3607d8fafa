"""Train the learned early-warning model on the hourly PhysioNet 2012 replay through the tabular pipeline, with the
classic scores (NEWS2, qSOFA, SOFA, SAPS-I) measured on the same test stays and written into its bundle, so that its
report and model card show them beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medml.config import Settings
from medml.data import Split, TaskDataset, patient_split
from medml.data.cohort import Cohort
from medml.data.datasets import physionet2012
from medml.evaluate import auroc
from medml.evaluate.bootstrap import bootstrap_ci
from medml.pipelines.tabular import Step, TrainConfig, TrainResult, train
from medml.vitals.ews import early_warning_task
from medml.vitals.physionet import replay_physionet2012

__all__ = ["COMPARATORS_KEY", "classic_scores", "train_early_warning"]

#: the key of the comparators in a bundle's ``metadata.extra`` (rendered by ``medml.report.comparators``)
COMPARATORS_KEY = "comparators"


def _row(name: str, unit: str, y: np.ndarray, score: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    ok = ~np.isnan(score)
    return {
        "name": name,
        "unit": unit,
        "n": int(ok.sum()),
        "n_events": int(y[ok].sum()),
        "auroc": bootstrap_ci(auroc, y[ok], score[ok], n_boot=n_boot, seed=seed, strata=y[ok]).to_dict(),
    }


def classic_scores(
    cohort: Cohort, ds: TaskDataset, split: Split, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """AUROC for in-hospital death of the classic scores on ``split``'s test part: the hourly NEWS2 (measured
    parameters) on the same test stay-hours as the model's evaluation, and per test stay the worst NEWS2 and qSOFA
    of the first 24 h (the replay) and the organisers' SOFA and SAPS-I (Outcomes-a)."""
    test = ds.subset(split.test)
    y_rows = test.binary_target.values.astype(float)
    rows = [_row("NEWS2 at the same hour", "stay-hour", y_rows, test.X["news2_partial"].to_numpy(float), n_boot, seed)]
    stays = pd.Index(np.unique(test.groups).astype(np.int64))
    replay = replay_physionet2012(cohort, hours=24).stays.set_index("stay_id").reindex(stays)
    y = replay["died"].to_numpy(dtype=float)
    for name, column in (
        ("worst NEWS2, first 24 h", "worst_news2"),
        ("worst qSOFA, first 24 h", "worst_qsofa"),
        ("SOFA (Outcomes-a)", "SOFA"),
        ("SAPS-I (Outcomes-a)", "SAPS-I"),
    ):
        rows.append(_row(name, "stay", y, replay[column].to_numpy(dtype=float), n_boot, seed))
    return {
        "title": "Beside the classic scores, on the same test patients",
        "rows": rows,
        "note": (
            "NEWS2 from set A's charting (partial where a parameter is missing or older than 4 h: SaO2 for SpO2, "
            "GCS < 15 as not alert, MechVent or FiO2 > 0.21 as oxygen; see medml.vitals.physionet.MAPPING). The "
            "model's own AUROC above is per stay-hour with a row bootstrap, which understates its uncertainty "
            "(48 correlated rows per stay); the per-stay rows here resample stays."
        ),
    }


def train_early_warning(
    config: TrainConfig,
    settings: Settings,
    *,
    data_root: str | Path | None = None,
    hours: int = 48,
    every: int = 1,
    progress: Step | None = None,
    cohort: Cohort | None = None,
) -> TrainResult:
    """Build the stay-hour task from set A, split it by stay, train and register it with the classic scores on the
    same test stays in ``metadata.extra["comparators"]``."""
    cohort = cohort if cohort is not None else physionet2012.load_cohort(data_root)
    ds = early_warning_task(cohort, hours=hours, every=every)
    split = patient_split(ds.groups, ds.binary_target.values, fractions=config.fractions, seed=config.seed)
    extra = {COMPARATORS_KEY: classic_scores(cohort, ds, split, n_boot=config.n_boot, seed=config.seed)}
    return train(ds, config, settings, progress=progress, split=split, extra=extra)
