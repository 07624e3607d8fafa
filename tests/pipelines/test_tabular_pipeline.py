"""The spine as functions: a registered model can be re-evaluated exactly, and wide cohorts stay readable."""

from __future__ import annotations

import pytest

from medml.config import Settings, get_settings
from medml.errors import DataError
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, cohort_table, evaluate_registered, train


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), data_root=get_settings().data_root)


def test_re_evaluating_on_the_own_dataset_reproduces_the_test_metrics(settings: Settings) -> None:
    ds = load_dataset("pima")
    result = train(ds, TrainConfig(model="logistic", budget_seconds=2, max_trials=5, n_boot=200, seed=3), settings)
    bundle, again, path = evaluate_registered(result.bundle.metadata.name, ds, settings, n_boot=200, seed=3)
    assert again.split == "test" and again.n == result.evaluation.n
    assert again.discrimination["auroc"] == result.evaluation.discrimination["auroc"]
    assert again.calibration["brier"] == result.evaluation.calibration["brier"]
    assert path.is_file() and bundle.metadata.version == result.bundle.metadata.version


def test_evaluating_on_changed_data_under_the_same_name_is_refused(settings: Settings) -> None:
    from dataclasses import replace

    ds = load_dataset("pima")
    train(ds, TrainConfig(model="logistic", budget_seconds=1, max_trials=2, n_boot=50), settings)
    altered = replace(ds, X=ds.X.fillna(0))  # Pima's recoded zeros turned back into zeros
    with pytest.raises(DataError, match="differs from the data"):
        evaluate_registered("pima-logistic", altered, settings)


def test_table_one_of_a_wide_cohort_shows_the_most_important_inputs() -> None:
    ds = load_dataset("physionet-2012")
    assert len(ds.features) == 225
    importance = [{"feature": f.name} for f in reversed(ds.features)]
    t1 = cohort_table(ds, importance, top=30)
    names = [v["name"] for v in t1["variables"]]
    assert len(names) == 30 and set(names) == {f.name for f in ds.features[-30:]}
    assert "30 most important of the model's 225 inputs" in t1["note"]
    small = load_dataset("heart-cleveland")
    assert len(cohort_table(small, [])["variables"]) == len(small.features) and "note" not in cohort_table(small, [])
