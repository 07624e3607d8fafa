"""A deployed survival model answers patient-view: real uvicorn on loopback, a random survival forest trained on
PhysioNet 2012 (death within a year of ICU admission), real stays as FHIR.

References from outside: the CDS Hooks 2.0 JSON Schemas (../shared/data/cds-hooks), FHIR R4 through fhir.resources,
and the bundle's own predictions on the task's features built by the training path for the same stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from cds_requests import CDS, SET_A, data_root, hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.errors import ConfigError
from medml.service.app import create_app
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy

pytestmark = [needs_physionet, pytest.mark.slow]
SERVICE = "physionet-2012-rsf"
HORIZONS = (30.0, 90.0, 180.0)


@pytest.fixture(scope="module")
def survival_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose registry holds a small random survival forest of PhysioNet 2012 (about 50 s)."""
    from medml.pipelines.survival import SurvivalConfig, load_survival_dataset, train_survival

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet data at {SET_A}")
    home = tmp_path_factory.mktemp("medml-survival-home")
    settings = Settings(home=home, data_root=data_root())
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDML_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        config = SurvivalConfig(
            model="rsf", horizons=HORIZONS, n_boot=20, params={"n_estimators": 30, "min_samples_leaf": 30}
        )
        train_survival(load_survival_dataset("physionet-2012"), config, settings)
    finally:
        mp.undo()
    return settings


@pytest.fixture()
def config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off", max_body_bytes=2_000_000)


@pytest.fixture()
def service(survival_home: Settings, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    deploy(survival_home, config, SERVICE)
    base = serve(create_app(survival_home, config))
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


def check(instance: Any, name: str) -> None:
    schema = json.loads((CDS / "schemas" / f"cds-hooks-2.0.{name}.schema.json").read_text())
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())


def codes(client: httpx.Client) -> list[str]:
    tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
    return [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]


def bundle_risks(settings: Settings, stay_store: Path) -> dict[str, np.ndarray]:
    """The bundle's own risk by each horizon for the stays, on the features the training path builds from FHIR."""
    from medml.fhir.store import FhirStore
    from medml.fhir.tasks import physionet_in_hospital_death
    from medml.registry import load_bundle

    bundle = load_bundle(SERVICE, settings)
    with FhirStore(stay_store, read_only=True) as store:
        ds = physionet_in_hospital_death(store, 48)
    risks = bundle.model.predict_risk(ds.X[bundle.feature_names])
    return {f"pn2012-{sid}": r for sid, r in zip(ds.ids, risks, strict=True)}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_patient_view_gives_one_risk_assessment_prediction_per_horizon(
    service: httpx.Client,
    stays: dict[str, list[dict[str, Any]]],
    stay_store: Path,
    survival_home: Settings,
    config: ServiceConfig,
) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    expected = bundle_risks(survival_home, stay_store)
    wanted = codes(service)
    for pid in ("pn2012-132539", "pn2012-132548", "pn2012-132551"):
        r = service.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], wanted)))
        assert r.status_code == 200, r.text
        body = r.json()
        check(body, "service-response")
        (card,) = body["cards"]
        record = json.loads(config.predictions_path.read_text().splitlines()[-1])
        assert record["patient"] == pid and record["model"] == f"{SERVICE}@1"
        # the served risk by the first horizon is the bundle's own, unrounded
        assert record["score"] == pytest.approx(expected[pid][0], rel=1e-12, abs=1e-15)

        (action,) = card["suggestions"][0]["actions"]
        ra = RiskAssessment.model_validate(action["resource"])
        assert len(ra.prediction) == len(HORIZONS)
        served = [float(p.probabilityDecimal) for p in ra.prediction]
        assert served == [round(float(v), 4) for v in expected[pid]]  # the resource's 4 decimals, exactly
        assert served == sorted(served)  # the risk never falls with a longer horizon
        encounter = next(x for x in stays[pid] if x["resourceType"] == "Encounter")
        admitted = instant(encounter["period"]["start"])
        for p, h in zip(ra.prediction, HORIZONS, strict=True):
            start = instant(action["resource"]["prediction"][ra.prediction.index(p)]["whenPeriod"]["start"])
            end = instant(action["resource"]["prediction"][ra.prediction.index(p)]["whenPeriod"]["end"])
            assert start == admitted  # time zero of the survival days: ICU admission
            assert end - start == timedelta(days=h)
            assert f"within {h:g} days" in p.outcome.text
        note = ra.note[0].text
        assert "fraction between 0 and 1" in note and "Censoring" in note and f"{SERVICE}@1" in note
        assert "intended use" in note

        assert len(card["summary"]) <= 140
        for h, v in zip(HORIZONS, expected[pid], strict=True):
            assert f"{float(v):.0%} by {h:g} days" in card["summary"]
        detail = card["detail"]
        for needed in (
            f"{SERVICE}@1",
            "intended use",
            "Censoring",
            "Harrell's C",
            "| 30 days |",
            "| 180 days |",
            "occlusion",
            "not a diagnosis",
            "counted from the encounter's start",
        ):
            assert needed in detail, needed
        assert "AUROC" not in detail and "calibration slope" not in detail  # no binary evaluation line


def test_discovery_and_deploy_say_what_the_survival_service_is(
    service: httpx.Client, survival_home: Settings, config: ServiceConfig
) -> None:
    doc = service.get("/cds-services").json()
    check(doc, "discovery-response")
    (svc,) = doc["services"]
    assert svc["id"] == SERVICE
    assert "30 days, 90 days, 180 days" in svc["description"] and "survival model" in svc["description"]


def test_a_survival_model_in_an_unservable_unit_is_refused(survival_home: Settings, config: ServiceConfig) -> None:
    from medml.registry import load_bundle
    from medml.service.survival import survival_serving

    bundle = load_bundle(SERVICE, survival_home)
    extra = {**bundle.metadata.extra, "survival": {**bundle.metadata.extra["survival"], "time_unit": "months"}}
    odd = bundle.with_metadata(replace(bundle.metadata, extra=extra))
    with pytest.raises(ConfigError, match="serves horizons in days or weeks"):
        survival_serving(odd)
