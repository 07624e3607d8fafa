"""``medml predict`` on a survival bundle: per row the risk by each horizon and the survival curve S(t) on a grid,
equal to the bundle's own predictions, and bad input as one clear line with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import get_settings
from medml.pipelines.survival import SurvivalConfig, load_survival_dataset, survival_grid, train_survival
from medml.registry import load_bundle

pytestmark = pytest.mark.slow
HORIZONS = (30.0, 90.0, 180.0)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding a random survival forest of the veterans' lung cancer trial (about 30 s)."""
    path = tmp_path_factory.mktemp("medml-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDML_HOME", str(path))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        config = SurvivalConfig(model="rsf", horizons=HORIZONS, n_boot=20, params={"n_estimators": 40})
        train_survival(load_survival_dataset("veterans"), config, get_settings())
    finally:
        mp.undo()
    return path


def run(
    args: list[str], home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``medml ARGS`` in this process: exit code, stdout, stderr."""
    from medml.cli.main import main

    monkeypatch.setenv("MEDML_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["medml", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_gives_the_risk_by_each_horizon_and_the_survival_curve(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = load_survival_dataset("veterans")
    table = ds.X.assign(patient=[f"v{i}" for i in ds.ids]).iloc[:40]
    table.to_csv(tmp_path / "rows.csv", index=False)
    out_csv = tmp_path / "scores.csv"
    args = ["predict", "veterans-rsf", str(tmp_path / "rows.csv"), "--id", "patient", "--out", str(out_csv)]
    code, out, err = run(args, home, monkeypatch, capsys)
    assert code == 0, out + err
    assert "Decision support, not a diagnosis" in out and "Harrell's C" in out and "Censoring" in out
    assert "veterans-rsf@1" in out and "recorded 40 score(s)" in out
    scores = pd.read_csv(out_csv)
    assert scores["id"].tolist() == table["patient"].tolist()
    bundle = load_bundle("veterans-rsf", get_settings())  # MEDML_HOME is the home, set by run()
    X = pd.read_csv(tmp_path / "rows.csv")[bundle.feature_names]
    X = X.astype({f.name: "category" for f in bundle.features if f.kind == "categorical"})
    risk = bundle.model.predict_risk(X)
    for j, h in enumerate(HORIZONS):
        np.testing.assert_allclose(scores[f"risk_by_{h:g}_days"], risk[:, j], rtol=1e-12, atol=0)
    np.testing.assert_allclose(scores["risk"], risk[:, 0], rtol=1e-12, atol=0)
    grid = survival_grid(HORIZONS)
    assert set(HORIZONS) <= set(grid.tolist()) and grid.max() == max(HORIZONS)
    curve = scores[[f"survival_at_{t:g}_days" for t in grid]].to_numpy()
    np.testing.assert_allclose(curve, bundle.model.predict_survival(X, grid), rtol=1e-12, atol=0)
    assert (np.diff(curve, axis=1) <= 0).all()  # S(t) never rises
    at_horizons = scores[[f"survival_at_{h:g}_days" for h in HORIZONS]].to_numpy()
    np.testing.assert_allclose(at_horizons, 1 - risk, rtol=1e-12, atol=1e-15)
    assert scores["factor_1"].str.endswith("absolute risk by the first horizon)").all()
    assert (scores["model"] == "veterans-rsf@1").all()


def test_predict_on_a_table_without_the_models_columns_is_one_clear_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = load_survival_dataset("veterans")
    ds.X.drop(columns=[ds.X.columns[0]]).to_csv(tmp_path / "rows.csv", index=False)
    code, out, err = run(["predict", "veterans-rsf", str(tmp_path / "rows.csv")], home, monkeypatch, capsys)
    assert code == 2, out + err
    assert "Traceback" not in out + err
    message = " ".join(err.split())
    assert message.startswith("error:") and "lacks 1 feature columns" in message and ds.X.columns[0] in message


def test_a_survival_model_of_a_table_is_not_deployed(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """veterans is a table with no FHIR reading: `medml deploy` says so in one line and stores no deployment."""
    code, out, err = run(["deploy", "veterans-rsf"], home, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in out + err
    message = " ".join(err.split())
    assert message.startswith("error: veterans-rsf@1 carries no FHIR reading") and "physionet-2012" in message
    assert not list(home.rglob("deployments.json"))
