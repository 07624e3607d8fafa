"""Issue 13, item 2: every input a model reads has a plausible range; a value outside it is left out and named, at
training (refused) and at prediction (scored as missing), never fed to the model. References: the datasets' own
recorded values (every one lies inside its range) and the model's own answer for the same row with the value missing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medml.config import Settings, get_settings
from medml.errors import DataError
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, score_table, train


@pytest.fixture(scope="module")
def pima_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    settings = Settings(home=tmp_path_factory.mktemp("home"), data_root=get_settings().data_root)
    config = TrainConfig(model="logistic", budget_seconds=5, max_trials=2, n_boot=20)
    return train(load_dataset("pima"), config, settings).bundle


@pytest.mark.parametrize("key", ["pima", "heart-cleveland", "heart-va", "physionet-2012", "support2", "diabetes-130"])
def test_every_numeric_input_of_a_served_dataset_has_a_range_that_holds_its_recorded_values(key: str) -> None:
    ds = load_dataset(key)
    numeric = [f for f in ds.features if f.kind == "numeric" and not f.name.endswith("_count")]
    assert all(f.plausible is not None for f in numeric), [f.name for f in numeric if f.plausible is None]
    for f in numeric:
        assert f.is_plausible(ds.X[f.name].to_numpy(dtype=float)).all(), f.name


def test_an_impossible_age_or_glucose_is_left_out_named_and_scored_as_missing(pima_model: object) -> None:
    ds = load_dataset("pima")
    rows = ds.X.iloc[:3].copy()
    bad = rows.copy()
    bad.loc[bad.index[0], "age"] = -5
    bad.loc[bad.index[1], "glucose"] = 1e308
    bad.loc[bad.index[2], "bmi"] = np.inf
    missing = rows.copy()
    missing.loc[missing.index[0], "age"] = np.nan
    missing.loc[missing.index[1], "glucose"] = np.nan
    missing.loc[missing.index[2], "bmi"] = np.nan
    got = score_table(pima_model, bad)  # type: ignore[arg-type]
    want = score_table(pima_model, missing)  # type: ignore[arg-type]
    np.testing.assert_allclose(got["risk"], want["risk"], rtol=1e-12)
    assert got["left_out"].tolist()[0].startswith("Age -5") and "outside 10-120 years" in got["left_out"][0]
    assert "glucose" in got["left_out"][1].lower() and "outside 20-700 mg/dL" in got["left_out"][1]
    assert "Body mass index inf" in got["left_out"][2]
    assert want["left_out"].tolist() == ["", "", ""]


def test_training_refuses_values_outside_their_plausible_range() -> None:
    ds = load_dataset("pima")
    X = ds.X.copy()
    X.loc[X.index[4], "blood_pressure"] = 400
    with pytest.raises(DataError, match=r"blood_pressure: 1 value\(s\) outside 20-180 \(first at row 5\)"):
        train(
            replace(ds, X=X),
            TrainConfig(model="logistic", budget_seconds=1, max_trials=1, n_boot=10),
            Settings(home=get_settings().home / "never", data_root=get_settings().data_root),
        )
