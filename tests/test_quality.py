"""End to end on the real data: the spine's test-split AUROC meets the published reference points.

References (README, issue 2): PhysioNet 2012 in-hospital death, boosted trees on 48-hour aggregates, about
0.85-0.87; diabetes-130 readmission within 30 days with a patient-level split, 0.64-0.70; UCI Cleveland
about 0.90. Short search budgets keep these to about a minute; the lower bounds allow for that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medml.config import Settings, get_settings
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, train
from medml.registry import load_bundle


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), data_root=get_settings().data_root)


@pytest.mark.parametrize(
    ("key", "kind", "low", "high"),
    [
        ("physionet-2012", "lgbm", 0.84, 0.92),
        ("diabetes-130", "lgbm", 0.64, 0.72),
        ("heart-cleveland", "logistic", 0.85, 1.0),
    ],
)
def test_test_split_auroc_meets_the_literature(
    key: str, kind: str, low: float, high: float, settings: Settings
) -> None:
    ds = load_dataset(key)
    result = train(ds, TrainConfig(model=kind, budget_seconds=8, max_trials=15, n_boot=200), settings)
    auroc = result.evaluation.discrimination["auroc"]
    assert low <= auroc.value <= high, auroc
    assert auroc.low < auroc.value < auroc.high
    # Calibrated on its own split: the test-split calibration slope is near 1.
    assert 0.7 < result.evaluation.calibration["slope"].value < 1.4
    # The registered bundle reproduces the evaluated predictions exactly.
    bundle = load_bundle(result.bundle.metadata.name, settings)
    assert bundle.metadata.metrics["auroc"] == pytest.approx(auroc.value)
    assert Path(result.report_path).is_file()
