"""Bundles whose model is a torch state_dict: stored as tensors only, read back with ``weights_only``."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from medml.config import Settings
from medml.errors import ConfigError, IntegrityError
from medml.registry import BundleMetadata, ModelBundle, load_bundle, save_bundle, show_model

torch = pytest.importorskip("torch")


def _state() -> dict[str, Any]:
    return {"conv.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "fc.bias": torch.ones(2)}


def test_state_dict_round_trips_as_tensors_only(
    settings: Settings, make_metadata: Callable[..., BundleMetadata]
) -> None:
    saved = save_bundle(ModelBundle(_state(), [], make_metadata(name="img"), artifact="torch-state-dict"), settings)
    files = {f["name"] for f in show_model("img@1", settings)["files"]}
    assert files == {"model.pt", "features.json", "metadata.json"}  # no model.joblib
    loaded = load_bundle("img", settings)
    assert loaded.artifact == "torch-state-dict" and loaded.features == [] and saved.version == 1
    for k, v in _state().items():
        assert torch.equal(loaded.model[k], v)
    with pytest.raises(ConfigError, match="not a classifier with predict_proba"):
        loaded.predict_proba([[0.0]])


def test_a_pickled_object_in_model_pt_is_refused(
    settings: Settings, make_metadata: Callable[..., BundleMetadata]
) -> None:
    """weights_only: a file that would run code when unpickled is an integrity error, not executed."""
    from medml.registry.manifest import write_manifest

    save_bundle(ModelBundle(_state(), [], make_metadata(name="img"), artifact="torch-state-dict"), settings)
    folder = settings.models_dir / "img" / "1"
    (folder / "model.pt").write_bytes(pickle.dumps(Exploit(), protocol=2))
    write_manifest(folder)  # a forger who rewrites the manifest too
    with pytest.raises(IntegrityError, match="not a readable state_dict"):
        load_bundle("img@1", settings)


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


@pytest.mark.parametrize("model", [{}, {"w": [1.0, 2.0]}, object()])
def test_state_dict_bundle_needs_tensors(model: Any, make_metadata: Callable[..., BundleMetadata]) -> None:
    with pytest.raises(ConfigError, match="not a state_dict of tensors"):
        ModelBundle(model, [], make_metadata(), artifact="torch-state-dict")


def test_joblib_bundle_still_needs_features(logistic: Any, make_metadata: Callable[..., BundleMetadata]) -> None:
    with pytest.raises(ConfigError, match="non-empty list of FeatureSpec"):
        ModelBundle(logistic, [], make_metadata())
    with pytest.raises(ConfigError, match="unknown artifact kind"):
        ModelBundle(logistic, [], make_metadata(), artifact="onnx")  # type: ignore[arg-type]
