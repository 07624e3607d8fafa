"""Internal validation on all the data: cross-validation and Harrell's bootstrap see through the optimism that the
apparent performance hides; the bundle and its report carry the validation and the sample size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import Settings, get_settings
from medml.data.datasets import TableSpec, load_table
from medml.errors import DataError
from medml.evaluate.sample_size import conservative_r2, riley_binary
from medml.pipelines.tabular import TrainConfig, evaluate_registered, train
from medml.pipelines.validation import InternalValidation, Recipe, develop, validate
from medml.report import ReportInputs, model_card

FAST = Recipe(model="logistic", budget_seconds=0.5, max_trials=2)
#: uncalibrated, so that the tests see the validation, not the calibration map flattening a model of noise
RAW = Recipe(model="logistic", budget_seconds=0.5, max_trials=2, calibration="none")


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory):
    """160 patients, 30 inputs of pure noise, an outcome independent of them: the true AUROC is 0.5."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(160, 30)), columns=[f"x{i}" for i in range(30)])
    frame["pid"] = [f"p{i // 2}" for i in range(160)]  # two rows per patient
    frame["y"] = (rng.random(160) < 0.4).astype(int)
    path = tmp_path_factory.mktemp("noise") / "noise.csv"
    frame.to_csv(path, index=False)
    return load_table(path, TableSpec(target="y", id="pid", name="noise"))


def test_cross_validation_finds_no_signal_in_noise(noise) -> None:
    v = validate(noise, InternalValidation("cv", folds=4, repeats=2), RAW, seed=0, name="noise", n_boot=50)
    s = v.summary
    assert len(s["per_fold"]) == 8 and len(s["pooled_by_repeat"]) == 2
    for r in (1, 2):  # each repeat's folds cover every row once
        assert sum(f["n"] for f in s["per_fold"] if f["repeat"] == r) == 160
    assert abs(s["pooled"]["auroc"]["mean"] - 0.5) < 0.12
    assert s["apparent"]["auroc"] > s["pooled"]["auroc"]["mean"] + 0.1  # the optimism CV exposes
    assert s["optimism"]["auroc"] == pytest.approx(s["apparent"]["auroc"] - s["pooled"]["auroc"]["mean"])
    assert v.evaluation.n == 160 and v.evaluation.split.startswith("cross-validated")


def test_bootstrap_optimism_corrects_the_apparent_auroc_down(noise) -> None:
    v = validate(noise, InternalValidation("bootstrap", n_bootstrap=6), RAW, seed=0, name="noise", n_boot=50)
    s = v.summary
    assert len(s["per_sample"]) == 6
    assert s["optimism"]["auroc"] > 0.05
    assert s["corrected"]["auroc"] == pytest.approx(s["apparent"]["auroc"] - s["optimism"]["auroc"])
    assert s["corrected"]["auroc"] < s["apparent"]["auroc"] - 0.05


def test_final_model_is_calibrated_on_cross_fitted_scores(noise) -> None:
    dev = develop(noise, FAST, seed=0)
    p = dev.model.predict_proba(noise.X)[:, 1]
    assert dev.model.method_ in ("none", "sigmoid", "isotonic")
    # the map was learned on out-of-fold scores of a model with no signal: it pulls risks towards the prevalence
    assert abs(p.mean() - noise.binary_target.values.mean()) < 0.05


@pytest.mark.slow  # about a minute on 2 busy cores
def test_train_with_cv_registers_the_validation_and_the_sample_size(tmp_path: Path) -> None:
    from medml.pipelines.catalogue import load_dataset

    ds = load_dataset("heart-cleveland")
    settings = Settings(home=tmp_path, data_root=get_settings().data_root)
    config = TrainConfig(model="logistic", budget_seconds=1, max_trials=3, n_boot=50, validation=InternalValidation())
    result = train(ds, config, settings)
    extra = result.bundle.metadata.extra
    assert extra["internal_validation"]["method"] == "cv" and len(extra["internal_validation"]["per_fold"]) == 5
    size = extra["sample_size"]
    prevalence = float(ds.binary_target.values.mean())
    expected = riley_binary(prevalence, size["parameters"], conservative_r2(prevalence))
    assert size["criteria"][0]["required"] == expected.required and size["short"] == (len(ds.X) < expected.required)
    html = result.report_path.read_text()
    assert "Internal validation and sample size" in html and "pooled out-of-fold" in html
    from medml.pipelines.tabular import report_inputs

    card = {e["item"]: e for e in model_card(report_inputs(result.bundle))}
    assert f"{expected.required:,}" in card["10"]["answer"]
    assert "cross-validation" in card["12a"]["answer"] and "optimism" in card["23a"]["answer"]
    assert isinstance(report_inputs(result.bundle), ReportInputs)
    with pytest.raises(DataError, match="none of its patients are held out"):
        evaluate_registered(f"{result.bundle.metadata.name}@1", ds, settings)
