"""End to end: the in-hospital death model trained from FHIR through ViewDefinitions matches the tabular path.

Converts all 3,996 stays of set A to FHIR, ingests them, builds the features with the views and trains the same
model with the same seed and search as from the tabular adapter. The test AUROC must agree within bootstrap
noise (the features are equal, so in practice the two models are the same) and meet the literature's 0.84-0.92.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medml.config import Settings, get_settings
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, train


@pytest.mark.slow
def test_auroc_from_fhir_equals_the_tabular_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    settings = Settings(home=tmp_path / "home", data_root=get_settings().data_root)
    config = TrainConfig(model="lgbm", budget_seconds=600, max_trials=4, n_boot=500)
    fhir = train(load_dataset("physionet-2012-fhir"), config, settings)
    tabular = train(load_dataset("physionet-2012"), config, settings)
    a, b = fhir.evaluation.discrimination["auroc"], tabular.evaluation.discrimination["auroc"]
    assert fhir.evaluation.n == tabular.evaluation.n  # the same held-out stays
    half_width = (b.high - b.low) / 2
    assert abs(a.value - b.value) < half_width / 4, (a, b)
    assert 0.84 <= a.value <= 0.92, a
