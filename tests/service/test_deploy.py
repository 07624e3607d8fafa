"""Deployments hold typed objects parsed once: the bundle's serving contract and headline evaluation for a hook; a
deployments file written before they were typed still loads with the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
from cds_requests import needs_physionet

from medml.config import Settings
from medml.errors import ConfigError
from medml.evaluate import Estimate, Headline
from medml.fhir.tasks import physionet_serving
from medml.registry import load_bundle
from medml.registry.manifest import write_manifest
from medml.registry.store import bundle_dir
from medml.service.config import ServiceConfig
from medml.service.deploy import Deployment, HookService, deploy, deployments

pytestmark = needs_physionet
MODEL = "physionet-2012-lgbm"


def test_a_hook_carries_the_bundles_contract_and_headline_typed(model_home: Settings, tmp_path: Path) -> None:
    config = ServiceConfig(home=tmp_path)
    dep = deploy(model_home, config, MODEL)
    md = load_bundle(MODEL, model_home).metadata
    assert isinstance(dep.served, HookService) and dep.kind == "cds-hook"
    assert dep.serving == md.serving == physionet_serving(48)
    assert isinstance(dep.headline, Headline) and dep.headline == md.headline
    assert dep.headline.auroc.value == md.metrics["auroc"] and dep.headline.auroc.high == md.metrics["auroc_high"]
    (again,) = deployments(config).values()
    assert again.serving == dep.serving and again.headline == dep.headline and again.thresholds == dep.thresholds
    stored = orjson.loads(config.deployments_path.read_bytes())[MODEL]
    assert stored["serving"]["kind"] == "fhir" and set(stored["evaluation"]["auroc"]) == {"value", "low", "high"}
    with pytest.raises(ConfigError, match="is a CDS hook, not an image service"):
        _ = dep.spec


def test_a_deployment_stored_before_it_was_typed_loads_with_the_same_numbers(
    model_home: Settings, tmp_path: Path
) -> None:
    config = ServiceConfig(home=tmp_path)
    dep = deploy(model_home, config, MODEL)
    h = dep.headline
    assert h is not None
    old = {k: v for k, v in dep.to_dict().items() if k not in ("serving", "evaluation", "kind")}
    old["spec"] = {k: v for k, v in dep.serving.to_dict().items() if k != "kind"}
    old["evaluation"] = {
        "auroc": [h.auroc.value, h.auroc.low, h.auroc.high],
        "calibration_slope": [h.calibration_slope.value, h.calibration_slope.low, h.calibration_slope.high],
        "calibration_intercept": [h.calibration_intercept.value, None, None],
        "ici": [h.ici, None, None],
        "calibration_curve": h.curve.to_dict(),
        "n": h.n,
        "n_events": h.n_events,
        "split": "test",
        "population": h.population,
        "dataset": "physionet-2012",
        "calibration_method": "sigmoid",
    }
    loaded = Deployment.from_dict(json.loads(json.dumps(old)))
    assert loaded.serving == dep.serving
    assert loaded.headline is not None
    assert (loaded.headline.auroc, loaded.headline.curve, loaded.headline.n) == (h.auroc, h.curve, h.n)
    assert loaded.headline.calibration_intercept == Estimate(h.calibration_intercept.value)


def test_a_model_without_a_fhir_reading_is_not_deployed_as_a_hook(model_home: Settings, tmp_path: Path) -> None:
    """A bundle saved before bundles carried their serving contract: it loads, but the service cannot score it."""
    home = Settings(home=tmp_path / "home", data_root=model_home.data_root)
    folder = bundle_dir(home, MODEL, 1)
    shutil.copytree(bundle_dir(model_home, MODEL, 1), folder)
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["serving"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    write_manifest(folder)
    assert load_bundle(MODEL, home).metadata.serving is None
    with pytest.raises(ConfigError, match="carries no FHIR reading") as e:
        deploy(home, ServiceConfig(home=tmp_path / "service"), MODEL)
    assert "physionet-2012" in str(e.value) and "with this medml version" in str(e.value)
