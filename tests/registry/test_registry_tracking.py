"""register(): bundle store and MLflow agree on every version; failures leave neither half-written.

One MEDML_HOME is shared by the module (MLflow's sqlite set-up takes seconds); each test uses its own model
name so the tests do not depend on their order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from medml.config import Settings
from medml.errors import IntegrityError
from medml.registry import ModelBundle, list_models, load_bundle, register, resolve, save_bundle, show_model

Bundle = Callable[..., ModelBundle]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """Settings for a fresh MEDML_HOME, with the working directory elsewhere (to catch a stray ./mlruns)."""
    root = tmp_path_factory.mktemp("registry")
    cwd = root / "cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        yield Settings(home=root / "home", data_root=root / "data"), cwd


@pytest.fixture(scope="module")
def registered(
    home: tuple[Settings, Path], make_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Three versions of one model: logistic, LightGBM, logistic with an HTML report attached."""
    settings, _ = home
    report = tmp_path_factory.mktemp("report") / "report.html"
    report.write_text("<html>evaluation</html>")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        bundles = [
            register(make_bundle("sepsis"), settings),
            register(make_bundle("sepsis", kind="lgbm", version=0, params={"n_estimators": 25}), settings),
            register(make_bundle("sepsis"), settings, attachments={"report.html": report}),
        ]
    return {"bundles": bundles, "stdout": out.getvalue(), "stderr": err.getvalue()}


@pytest.fixture(scope="module")
def client(home: tuple[Settings, Path], registered: dict[str, Any]) -> MlflowClient:
    uri = home[0].mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _active_versions(client: MlflowClient, name: str) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))


def _store_versions(settings: Settings, name: str) -> list[int]:
    folder = settings.models_dir / name
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def _leftovers(settings: Settings) -> list[str]:
    return [p.name for p in settings.models_dir.glob(".tmp-*")]


def test_versions_increment_and_match_mlflow(
    home: tuple[Settings, Path], registered: dict[str, Any], client: MlflowClient
) -> None:
    settings, _ = home
    assert [b.version for b in registered["bundles"]] == [1, 2, 3]
    assert _active_versions(client, "sepsis") == [1, 2, 3]
    assert _store_versions(settings, "sepsis") == [1, 2, 3]
    assert resolve("sepsis@latest", settings)[:2] == ("sepsis", 3)
    for b in registered["bundles"]:
        mv = client.get_model_version("sepsis", str(b.version))
        assert mv.run_id == b.metadata.extra["mlflow"]["run_id"]
        assert mv.tags["bundle_hash"] == show_model(b.ref, settings)["bundle_hash"]


def test_round_trip_predictions(
    home: tuple[Settings, Path], registered: dict[str, Any], cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    for b in registered["bundles"]:
        loaded = load_bundle(b.ref, home[0])
        np.testing.assert_array_equal(loaded.predict_proba(X), b.model.predict_proba(X))
        assert loaded.metadata == b.metadata
    assert load_bundle("sepsis", home[0]).metadata.model_kind == "logistic"
    assert load_bundle("sepsis@2", home[0]).metadata.model_kind == "lgbm"


def test_run_has_params_metrics_tags_and_bundle_files(
    home: tuple[Settings, Path], registered: dict[str, Any], client: MlflowClient
) -> None:
    settings, _ = home
    b = registered["bundles"][2]
    run = client.get_run(b.metadata.extra["mlflow"]["run_id"])
    assert run.info.run_name == "sepsis" and run.info.status == "FINISHED"
    p = run.data.params
    assert (p["C"], p["max_iter"], p["scaler.with_mean"], p["split_size.train"], p["seed"]) == (
        "0.5",
        "500",
        "True",
        "400",
        "7",
    )
    assert run.data.metrics == {"auroc": 0.99, "auroc_low": 0.98, "auroc_high": 1.0, "brier": 0.03}
    meta = b.metadata
    for key in ("dataset", "task", "model_kind", "data_hash", "code_version", "intended_use"):
        assert run.data.tags[key] == getattr(meta, key)
    bundle_files = sorted(Path(f.path).name for f in client.list_artifacts(run.info.run_id, "bundle"))
    assert bundle_files == ["features.json", "manifest.json", "metadata.json", "model.joblib", "report.html"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "medml"
    assert experiment.artifact_location == settings.mlflow_artifacts.resolve().as_uri()


def test_mlflow_copy_serves_probabilities(
    registered: dict[str, Any], client: MlflowClient, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    b = registered["bundles"][1]  # LightGBM: skops needs its types trusted
    model = mlflow.pyfunc.load_model(client.get_model_version_download_uri("sepsis", "2"))
    np.testing.assert_allclose(np.asarray(model.predict(X.head(20))), b.model.predict_proba(X.head(20)))
    assert [c.name for c in model.metadata.get_input_schema().inputs] == b.feature_names


def test_register_is_quiet_and_leaves_the_environment_alone(
    home: tuple[Settings, Path], registered: dict[str, Any]
) -> None:
    settings, cwd = home
    assert registered["stdout"] == ""
    assert registered["stderr"] == ""
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert sorted(p.name for p in cwd.iterdir()) == []  # no ./mlruns, no ./mlflow.db
    assert sorted(p.name for p in settings.home.iterdir()) == ["mlartifacts", "mlflow.db", "models"]


def test_list_and_show_after_register(home: tuple[Settings, Path], registered: dict[str, Any]) -> None:
    row = next(r for r in list_models(home[0]) if r["name"] == "sepsis")
    assert (row["latest_version"], row["model_kind"], row["dataset"], row["auroc"]) == (
        3,
        "logistic",
        "breast-cancer",
        0.99,
    )
    shown = show_model("sepsis", home[0])
    assert "report.html" in [f["name"] for f in shown["files"]]
    assert shown["metadata"]["extra"]["mlflow"]["model_uri"] == "models:/sepsis/3"
    json.dumps(shown)


def test_failure_after_mlflow_registration_leaves_nothing(
    home: tuple[Settings, Path],
    registered: dict[str, Any],
    client: MlflowClient,
    make_bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, _ = home
    register(make_bundle("aki"), settings)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("artifact store unreachable")

    with monkeypatch.context() as mp:
        mp.setattr(mlflow, "log_artifacts", broken)
        with pytest.raises(OSError, match="artifact store unreachable"):
            register(make_bundle("aki"), settings)
    assert _store_versions(settings, "aki") == [1]
    assert _active_versions(client, "aki") == [1]
    assert _leftovers(settings) == []
    failed = [
        r
        for r in client.search_runs(
            [client.get_experiment_by_name("medml").experiment_id], run_view_type=2
        )  # DELETED_ONLY
        if r.info.run_name == "aki"
    ]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    # MLflow does not reuse the deleted number: the next version is 3 in both stores
    again = register(make_bundle("aki"), settings)
    assert again.version == 3
    assert _store_versions(settings, "aki") == _active_versions(client, "aki") == [1, 3]


def test_failure_on_a_new_model_removes_the_registered_model(
    home: tuple[Settings, Path],
    registered: dict[str, Any],
    client: MlflowClient,
    make_bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, _ = home

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(mlflow, "log_artifacts", broken)
    with pytest.raises(RuntimeError, match="boom"):
        register(make_bundle("brand-new"), settings)
    with pytest.raises(MlflowException, match="brand-new"):
        client.get_registered_model("brand-new")
    assert not (settings.models_dir / "brand-new").exists()
    assert _leftovers(settings) == []


def test_failure_before_registration(
    home: tuple[Settings, Path],
    registered: dict[str, Any],
    client: MlflowClient,
    make_bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, _ = home

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("cannot serialise")

    monkeypatch.setattr(mlflow.sklearn, "log_model", broken)
    with pytest.raises(RuntimeError, match="cannot serialise"):
        register(make_bundle("never"), settings)
    assert not (settings.models_dir / "never").exists() and _leftovers(settings) == []
    assert client.search_registered_models("name='never'") == []


def test_store_and_mlflow_disagreeing_is_refused(
    home: tuple[Settings, Path], registered: dict[str, Any], client: MlflowClient, make_bundle: Bundle
) -> None:
    settings, _ = home
    save_bundle(make_bundle("mixed"), settings)  # store-only: MLflow has never seen "mixed"
    with pytest.raises(IntegrityError, match="MLflow gave mixed version 1, but the bundle store already"):
        register(make_bundle("mixed"), settings)
    assert _store_versions(settings, "mixed") == [1]
    assert client.search_registered_models("name='mixed'") == []
