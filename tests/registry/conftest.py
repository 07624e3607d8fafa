"""Shared fixtures: small real models fitted on scikit-learn's breast-cancer data, and a bundle factory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medml.config import Settings
from medml.data.task import FeatureSpec, infer_features
from medml.registry import BundleMetadata, ModelBundle


@pytest.fixture(scope="session", autouse=True)
def _no_outside_mlflow() -> Iterator[None]:
    """An MLFLOW_TRACKING_URI from the shell would send the tests' runs to someone's real server."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        yield


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]  # LightGBM warns on spaces in feature names
    return X, y


@pytest.fixture(scope="session")
def features(cancer: tuple[pd.DataFrame, pd.Series]) -> list[FeatureSpec]:
    return list(infer_features(cancer[0], units={"mean_radius": "mm"}))


@pytest.fixture(scope="session")
def logistic(cancer: tuple[pd.DataFrame, pd.Series]) -> Any:
    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)).fit(X, y)


@pytest.fixture(scope="session")
def lgbm(cancer: tuple[pd.DataFrame, pd.Series]) -> Any:
    X, y = cancer
    return LGBMClassifier(n_estimators=25, num_leaves=7, random_state=0, verbose=-1).fit(X, y)


def _metadata(name: str = "sepsis-lr", **changes: Any) -> BundleMetadata:
    values: dict[str, Any] = {
        "name": name,
        "model_kind": "logistic",
        "dataset": "breast-cancer",
        "task": "malignant tumour from fine-needle aspirate",
        "target": "malignant",
        "intended_use": "Tests only: not for clinical use.",
        "population": "569 Wisconsin FNA samples",
        "data_hash": hashlib.sha256(b"training data").hexdigest(),
        "params": {"C": 0.5, "max_iter": 500, "scaler": {"with_mean": True}},
        "calibration": "none",
        "seed": 7,
        "split_sizes": {"train": 400, "test": 169},
        "excluded_columns": {"patient_id": "identifier"},
        "metrics": {"auroc": {"value": 0.99, "low": 0.98, "high": 1.0}, "brier": 0.03},
        "evaluation": {"discrimination": {"auroc": {"value": 0.99, "low": 0.98, "high": 1.0}}},
        "extra": {"note": "fixture"},
    }
    values.update(changes)
    return BundleMetadata(**values)


@pytest.fixture(scope="session")
def make_bundle(features: list[FeatureSpec], logistic: Any, lgbm: Any) -> Callable[..., ModelBundle]:
    def make(name: str = "sepsis-lr", kind: str = "logistic", **changes: Any) -> ModelBundle:
        model = logistic if kind == "logistic" else lgbm
        return ModelBundle(model, features, _metadata(name, model_kind=kind, **changes))

    return make


@pytest.fixture(scope="session")
def make_metadata() -> Callable[..., BundleMetadata]:
    return _metadata


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh MEDML_HOME for tests that need an empty store (store-only tests: no MLflow, cheap)."""
    return Settings(home=tmp_path / "home", data_root=tmp_path / "data")
