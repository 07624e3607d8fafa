"""The typed parts of a bundle: its serving contract and its headline evaluation, written at training time, read
back typed and checked on load; bundles saved before them still load."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from medml.config import Settings
from medml.errors import ConfigError, IntegrityError
from medml.evaluate import Estimate, Headline
from medml.evaluate.schema import CalibrationCurve
from medml.fhir.features import FeatureDefinition, Measurement, ServingSpec
from medml.registry import BundleMetadata, ModelBundle, load_bundle, save_bundle
from medml.registry.manifest import write_manifest
from medml.registry.serving import ImageServing

Bundle = Callable[..., ModelBundle]

SPEC = ServingSpec(
    definition=FeatureDefinition(
        "lactate-24h",
        (Measurement("lactate", "Lactate", ("2524-7",), "mmol/L", plausible=(0.1, 30.0)),),
        window_hours=24,
    ),
    outcome="sepsis",
    anchor="encounter-start",
    hours=24,
    encounter_classes=("IMP",),
)
HEADLINE = Headline(
    split="test",
    population="169 Wisconsin FNA samples",
    n=169,
    n_events=63,
    auroc=Estimate(0.99, 0.98, 1.0),
    auprc=Estimate(0.98, 0.96, 0.995),
    brier=Estimate(0.03, 0.02, 0.04),
    calibration_slope=Estimate(1.1, 0.8, 1.4),
    calibration_intercept=Estimate(0.05),
    ici=0.012,
    curve=CalibrationCurve((0.1, 0.9), (0.12, 0.88), (85, 84)),
)


def _rewrite_metadata(settings: Settings, ref: tuple[str, int], change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a saved bundle's metadata.json as an older medml or a bad copy would have left it, manifest included."""
    folder = settings.models_dir / ref[0] / str(ref[1])
    meta = json.loads((folder / "metadata.json").read_text())
    change(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))
    write_manifest(folder)


def test_serving_contract_and_headline_come_back_typed(settings: Settings, make_bundle: Bundle) -> None:
    save_bundle(make_bundle(serving=SPEC, headline=HEADLINE), settings)
    md = load_bundle("sepsis-lr", settings).metadata
    assert md.serving == SPEC and isinstance(md.serving, ServingSpec)
    assert md.serving.definition.codes() == ["2524-7", "30525-0"]
    assert isinstance(md.headline, Headline)
    assert md.headline.auroc == Estimate(0.99, 0.98, 1.0) and md.headline.curve.count == (85, 84)
    assert math.isnan(md.headline.calibration_intercept.low) and md.headline.event_rate == pytest.approx(63 / 169)


def test_a_bundle_saved_before_typed_parts_still_loads(settings: Settings, make_bundle: Bundle) -> None:
    saved = save_bundle(make_bundle(), settings)

    def older(meta: dict[str, Any]) -> None:
        del meta["serving"], meta["headline"]
        meta["metrics"] = {"auroc": 0.9, "auroc_low": 0.85, "auroc_high": 0.95, "n": 100, "n_events": 20}
        meta["evaluation"] = {"split": "test", "calibration": {"slope": {"value": 0.9, "low": 0.7, "high": 1.1}}}

    _rewrite_metadata(settings, ("sepsis-lr", saved.version or 0), older)
    md = load_bundle("sepsis-lr", settings).metadata
    assert md.serving is None  # a table model: served from FHIR by no one
    assert md.headline is not None and md.headline.auroc == Estimate(0.9, 0.85, 0.95)
    assert md.headline.calibration_slope == Estimate(0.9, 0.7, 1.1)
    assert (md.headline.n, md.headline.n_events) == (100, 20)
    assert md.headline.population == md.population


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"kind": "fhir", "outcome": "x"}, "serving contract is not valid: stored serving spec is not valid"),
        ({"kind": "genome"}, "its kind 'genome' is none of fhir, image"),
        ("fhir", "it is a str, not a JSON object"),
    ],
)
def test_a_bad_stored_serving_contract_is_an_integrity_error(
    settings: Settings, make_bundle: Bundle, stored: Any, message: str
) -> None:
    saved = save_bundle(make_bundle(serving=SPEC), settings)
    _rewrite_metadata(settings, ("sepsis-lr", saved.version or 0), lambda m: m.update(serving=stored))
    with pytest.raises(IntegrityError, match=message) as e:
        load_bundle("sepsis-lr", settings)
    assert "sepsis-lr@1 metadata.json" in str(e.value) and "retrain" in str(e.value)


def test_a_bad_stored_headline_is_an_integrity_error(settings: Settings, make_bundle: Bundle) -> None:
    saved = save_bundle(make_bundle(headline=HEADLINE), settings)

    def broken(meta: dict[str, Any]) -> None:
        meta["headline"]["auroc"] = [0.99, 0.98, 1.0]

    _rewrite_metadata(settings, ("sepsis-lr", saved.version or 0), broken)
    with pytest.raises(IntegrityError, match="the headline metrics are not valid"):
        load_bundle("sepsis-lr", settings)


def test_what_is_not_a_contract_is_refused_when_built(make_metadata: Callable[..., BundleMetadata]) -> None:
    with pytest.raises(ConfigError, match="serving must be a serving contract"):
        make_metadata(serving={"kind": "fhir"})
    with pytest.raises(ConfigError, match=r"headline must be a Headline \(Headline.of\(report\)\)"):
        make_metadata(headline={"auroc": 0.9})


def test_an_image_model_stored_with_only_its_input_preparation_gets_an_image_contract(
    make_metadata: Callable[..., BundleMetadata],
) -> None:
    params = {"net": {"task": "binary"}, "input": {"size": [28, 28], "channels": 1, "window": [40, 400], "frame": 0}}
    md = make_metadata(model_kind="image-resnet18", params=params)
    assert isinstance(md.serving, ImageServing)
    assert md.serving.preparation.window == (40.0, 400.0) and md.serving.preparation.size == (28, 28)
    again = BundleMetadata.from_dict(json.loads(json.dumps(md.to_dict())))
    assert again.serving == md.serving and again.to_dict()["serving"]["kind"] == "image"
