"""BundleMetadata validation and ModelBundle construction."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from medml.data.task import FeatureSpec
from medml.errors import ConfigError, IntegrityError
from medml.registry import BundleMetadata, ModelBundle, code_version


def test_metadata_round_trips_through_dict(make_metadata: Callable[..., BundleMetadata]) -> None:
    meta = make_metadata(version=3)
    assert BundleMetadata.from_dict(meta.to_dict()) == meta
    assert meta.ref == "sepsis-lr@3"
    assert meta.created.endswith("+00:00")
    assert make_metadata(version=0).ref == make_metadata().ref == "sepsis-lr"  # not yet registered


def test_missing_key_names_the_key(make_metadata: Callable[..., BundleMetadata]) -> None:
    d = make_metadata().to_dict()
    del d["intended_use"]
    with pytest.raises(IntegrityError, match="missing key 'intended_use'"):
        BundleMetadata.from_dict(d)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("version", "3", "version must be an integer"),
        ("version", -1, "version must be 1 or more"),
        ("seed", True, "seed must be an integer"),
        ("metrics", [0.9], "metrics must be a dict"),
        ("created", "yesterday", "created must be an ISO time"),
        ("created", "2025-01-01T00:00:00", "created must be an ISO time with a UTC offset"),
        ("split_sizes", {"train": "400"}, "split_sizes values must be integers"),
        ("name", "a/b", "not a valid model name"),
    ],
)
def test_stored_metadata_with_wrong_types_is_an_integrity_error(
    make_metadata: Callable[..., BundleMetadata], key: str, value: Any, message: str
) -> None:
    d = make_metadata().to_dict() | {key: value}
    with pytest.raises(IntegrityError, match=message):
        BundleMetadata.from_dict(d)


def test_unknown_key_is_refused(make_metadata: Callable[..., BundleMetadata]) -> None:
    with pytest.raises(IntegrityError, match="unknown key 'colour'"):
        BundleMetadata.from_dict(make_metadata().to_dict() | {"colour": "red"})


def test_bad_values_from_the_caller_are_config_errors(make_metadata: Callable[..., BundleMetadata]) -> None:
    with pytest.raises(ConfigError, match="dataset must be text"):
        make_metadata(dataset=None)
    with pytest.raises(ConfigError, match=r"params\.model holds a StandardScaler"):
        make_metadata(params={"model": StandardScaler()})


def test_numpy_values_become_plain_json(make_metadata: Callable[..., BundleMetadata]) -> None:
    meta = make_metadata(
        seed=np.int64(3),
        split_sizes={"train": np.int64(400)},
        metrics={"auroc": np.float64(0.9)},
        evaluation={"curve": np.array([0.1, 0.2])},
    )
    assert type(meta.seed) is int
    assert type(meta.split_sizes["train"]) is int
    assert meta.evaluation["curve"] == [0.1, 0.2]


def test_metadata_keeps_its_own_copy(make_metadata: Callable[..., BundleMetadata]) -> None:
    params = {"C": 1.0}
    meta = make_metadata(params=params)
    params["C"] = 99.0
    assert meta.params == {"C": 1.0}


def test_code_version_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    import medml

    def no_git(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version() == medml.__version__


def test_code_version_names_the_commit_in_a_checkout() -> None:
    import medml

    here = Path(medml.__file__).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("medml is not running from a git checkout here")
    assert re.fullmatch(rf"{re.escape(medml.__version__)}\+git\.{commit}(\.dirty)?", code_version())


def test_bundle_needs_predict_proba_and_matching_features(
    make_metadata: Callable[..., BundleMetadata], features: list[FeatureSpec], logistic: Any
) -> None:
    with pytest.raises(ConfigError, match="without predict_proba"):
        ModelBundle(StandardScaler(), features, make_metadata())
    with pytest.raises(ConfigError, match="fitted on 30 columns but 2 features"):
        ModelBundle(logistic, features[:2], make_metadata())
    with pytest.raises(ConfigError, match="repeat a column"):
        ModelBundle(logistic, features[:29] + features[:1], make_metadata())
