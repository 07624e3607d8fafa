"""The reference profile: JSON round trip, no raw rows, written by training, and a clear error without one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import Settings, get_settings
from medml.data.task import FeatureSpec
from medml.errors import MonitorError
from medml.monitor.profile import PROFILE_KEY, ReferenceProfile, build_profile, profile_of

FEATURES = [FeatureSpec("age", "numeric"), FeatureSpec("lactate", "numeric"), FeatureSpec("ward", "categorical")]


def _data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"age": rng.normal(60, 15, n), "lactate": rng.gamma(2.0, 1.0, n), "ward": rng.choice(["a", "b", "c"], n)}
    )
    frame.loc[rng.random(n) < 0.2, "lactate"] = np.nan
    p = 1 / (1 + np.exp(-(frame["age"] - 60) / 15))
    return frame, p.to_numpy(), (rng.random(n) < p).astype(float)


def test_the_profile_round_trips_through_json() -> None:
    frame, p, y = _data(500)
    profile = build_profile(frame, FEATURES, p, y, threshold=0.3)
    again = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict(), allow_nan=False)))
    assert again == profile
    assert again.numeric["lactate"].missing_rate == pytest.approx(frame["lactate"].isna().mean())
    assert again.categorical["ward"].frequencies() == pytest.approx(
        frame["ward"].value_counts(normalize=True).to_dict()
    )
    assert again.prevalence == pytest.approx(y.mean()) and again.threshold == 0.3


def test_the_profile_keeps_no_raw_rows() -> None:
    small, large = _data(1_000, seed=1), _data(20_000, seed=2)
    text_small = json.dumps(build_profile(small[0], FEATURES, small[1], None, threshold=None).to_dict())
    text_large = json.dumps(build_profile(large[0], FEATURES, large[1], None, threshold=None).to_dict())
    assert len(text_large) < 1.5 * len(text_small)  # aggregates: its size does not grow with the rows
    ages = large[0]["age"].to_numpy()
    stored = [float(v) for v in json.loads(text_large)["numeric"]["age"]["edges"]]
    assert len(stored) == 9 and not np.isin(stored, ages).all()


def test_a_bundle_without_a_profile_gives_a_clear_error() -> None:
    with pytest.raises(MonitorError, match="model sepsis@3 has no reference profile .* retrain it"):
        profile_of({"name": "sepsis@3", "extra": {"importance": []}})
    with pytest.raises(MonitorError, match="reference profile is damaged"):
        profile_of({"name": "sepsis@3", "extra": {PROFILE_KEY: {"features": ["age"]}}})


def test_training_writes_the_profile_into_the_bundle(tmp_path: Path) -> None:
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train
    from medml.registry import load_bundle

    settings = Settings(home=tmp_path, data_root=get_settings().data_root)
    ds = load_dataset("heart-cleveland")
    result = train(ds, TrainConfig(model="logistic", budget_seconds=1, max_trials=2, n_boot=20), settings)
    profile = profile_of(load_bundle(result.bundle.metadata.ref, settings).metadata)
    sizes = result.bundle.metadata.split_sizes
    assert profile.n == sizes["calibration"] + sizes["test"]
    assert profile.features == tuple(f.name for f in ds.features)
    assert profile.calibration_x and profile.pca is not None
    older = dataclasses.replace(
        result.bundle.metadata, extra={k: v for k, v in result.bundle.metadata.extra.items() if k != PROFILE_KEY}
    )
    with pytest.raises(MonitorError, match=f"model {older.ref} has no reference profile"):
        profile_of(older)


def test_the_principal_components_are_scikit_learns_at_65_percent_of_the_variance() -> None:
    """NannyML's multivariate drift keeps the components of sklearn's PCA(n_components=0.65)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    numbers = rng.standard_normal((800, 6)) @ rng.standard_normal((6, 6))
    frame = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(6)])
    features = [FeatureSpec(c, "numeric") for c in frame.columns]
    pca = build_profile(frame, features, np.full(800, 0.5), None, threshold=None).pca
    assert pca is not None
    z = (numbers - numbers.mean(axis=0)) / numbers.std(axis=0)
    peer = PCA(n_components=0.65).fit(z)
    ours = np.asarray(pca.components)
    assert ours.shape == peer.components_.shape
    assert np.allclose(np.abs(ours), np.abs(peer.components_), atol=1e-8)  # axes up to their sign
    assert pca.explained == pytest.approx(peer.explained_variance_ratio_.sum())
