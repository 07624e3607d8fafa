"""The service records what the model saw in the monitoring store (real uvicorn on loopback, real PhysioNet stays as
FHIR), and scores a shadow challenger silently beside the champion.

References from outside the service: the task's own feature builder over the stays (the path that built the training
data) for the features and scores, and the stays' own Encounter for the index time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from cds_requests import hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.errors import ConfigError, NotFoundError
from medml.monitor.store import MonitorStore
from medml.service.app import create_app
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy, deploy_shadow, deployments, undeploy_shadow

pytestmark = needs_physionet
SERVICE = "physionet-2012-lgbm"
CHALLENGER = "physionet-2012-challenger"


@pytest.fixture(scope="module")
def challenger(model_home: Settings) -> str:
    """A logistic regression of the same task registered beside the champion (a few seconds)."""
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train

    mp = pytest.MonkeyPatch()
    mp.setenv("MEDML_HOME", str(model_home.home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        train(
            load_dataset("physionet-2012"),
            TrainConfig(model="logistic", budget_seconds=60, max_trials=1, n_boot=20, name=CHALLENGER),
            model_home,
        )
    finally:
        mp.undo()
    return f"{CHALLENGER}@1"


def training_features(model_home: Settings, stay_store: Path, ref: str) -> tuple[dict[str, dict[Any, Any]], Any]:
    """The task's own features of the stays (as training built them), by patient, and the bundle."""
    from medml.fhir.store import FhirStore
    from medml.fhir.tasks import physionet_in_hospital_death
    from medml.registry import load_bundle

    bundle = load_bundle(ref, model_home)
    with FhirStore(stay_store, read_only=True) as store:
        ds = physionet_in_hospital_death(store, 48)
    X = ds.X[bundle.feature_names]
    return {f"pn2012-{i}": X.iloc[k].to_dict() for k, i in enumerate(ds.ids)}, bundle


def same(a: Any, b: Any) -> bool:
    if isinstance(b, str) or b is None:
        return a == b
    if isinstance(a, float) and math.isnan(a) and math.isnan(float(b)):
        return True
    return bool(a == pytest.approx(b, rel=1e-12, abs=1e-15))


def codes(client: httpx.Client) -> list[str]:
    tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
    return [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]


def test_a_hook_call_leaves_a_prediction_row_with_the_features_the_model_saw(
    model_home: Settings,
    stays: dict[str, list[dict[str, Any]]],
    stay_store: Path,
    tmp_path: Path,
    serve: Callable[[Any], str],
) -> None:
    monitor = tmp_path / "monitor.duckdb"
    config = ServiceConfig(home=tmp_path / "service", auth="off", monitor_store=monitor)
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    app = create_app(model_home, config)
    base = serve(app)
    pid = "pn2012-132539"
    with httpx.Client(base_url=base, timeout=30) as client:
        body = hook_request(pid, prefetch_for(stays[pid], codes(client)))
        r = client.post(f"/cds-services/{SERVICE}", json=body)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert app.state.medml.recorder.flush(30)
    (row,) = MonitorStore(monitor).predictions(SERVICE).to_dict("records")
    logged = json.loads(config.predictions_path.read_text().splitlines()[-1])  # the JSONL record is still written
    assert row["hook_instance"] == body["hookInstance"] == logged["hook_instance"]
    assert (row["patient"], row["encounter"], row["version"], row["shadow"]) == (pid, pid, 1, False)
    assert row["score"] == logged["score"] and row["risk"] == card["indicator"] and row["threshold"] == 0.15
    encounter = next(r for r in stays[pid] if r["resourceType"] == "Encounter")
    admitted = datetime.fromisoformat(encounter["period"]["start"].replace("Z", "+00:00"))
    assert row["index_time"] == admitted + timedelta(hours=48)
    features, bundle = training_features(model_home, stay_store, SERVICE)
    assert len(bundle.feature_names) > 20
    for name in bundle.feature_names:
        assert same(row[name], features[pid][name]), name
    assert stat_mode(monitor) == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_shadow_challenger_is_scored_and_recorded_but_shows_no_card(
    model_home: Settings,
    challenger: str,
    stays: dict[str, list[dict[str, Any]]],
    stay_store: Path,
    tmp_path: Path,
    serve: Callable[[Any], str],
) -> None:
    monitor = tmp_path / "monitor.duckdb"
    config = ServiceConfig(home=tmp_path / "service", auth="off", monitor_store=monitor)
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    dep = deploy_shadow(model_home, config, challenger, service_id=SERVICE)
    assert dep.model == f"{SERVICE}@1" and dep.shadow is not None and dep.shadow.model == challenger
    assert deployments(config)[SERVICE] == dep  # stored and read back
    app = create_app(model_home, config)
    base = serve(app)
    patients = ["pn2012-132539", "pn2012-132548", "pn2012-132551"]
    with httpx.Client(base_url=base, timeout=30) as client:
        wanted = codes(client)
        answers = [
            client.post(f"/cds-services/{SERVICE}", json=hook_request(p, prefetch_for(stays[p], wanted)))
            for p in patients
        ]
    for r in answers:
        assert r.status_code == 200
        (card,) = r.json()["cards"]  # the champion's card only
        assert CHALLENGER not in json.dumps(card)
    store = MonitorStore(monitor)
    deadline = time.monotonic() + 60
    while len(store.predictions(CHALLENGER, shadow=True)) < len(patients) and time.monotonic() < deadline:
        app.state.medml.recorder.flush(5)
        time.sleep(0.1)
    shadow = store.predictions(CHALLENGER, shadow=True).set_index("patient")
    champion = store.predictions(SERVICE).set_index("patient")
    assert sorted(shadow.index) == sorted(champion.index) == sorted(patients)
    assert store.predictions(CHALLENGER, shadow=False).empty
    features, bundle = training_features(model_home, stay_store, challenger)
    for p in patients:
        expected = bundle.predict_proba(pd.DataFrame([features[p]])[bundle.feature_names])[0, 1]
        assert shadow.loc[p, "score"] == pytest.approx(expected, rel=1e-9)
        assert str(shadow.loc[p, "hook_instance"]) == str(champion.loc[p, "hook_instance"])
    # undeploying the shadow keeps the champion
    gone = undeploy_shadow(config, SERVICE)
    assert gone.model == challenger and deployments(config)[SERVICE].shadow is None


def test_shadow_deployments_that_make_no_sense_are_refused_and_change_nothing(
    model_home: Settings, challenger: str, tmp_path: Path
) -> None:
    config = ServiceConfig(home=tmp_path / "service", auth="off")
    with pytest.raises(NotFoundError, match="no deployed service 'physionet-2012-challenger' to shadow"):
        deploy_shadow(model_home, config, challenger)
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    before = config.deployments_path.read_bytes()
    with pytest.raises(ConfigError, match="cannot shadow itself"):
        deploy_shadow(model_home, config, f"{SERVICE}@1", service_id=SERVICE)
    with pytest.raises(NotFoundError, match="has no shadow"):
        undeploy_shadow(config, SERVICE)
    assert config.deployments_path.read_bytes() == before
    # a new version of the champion keeps its challenger beside it; promoting the challenger drops the shadow
    deploy_shadow(model_home, config, challenger, service_id=SERVICE)
    redeployed = deploy(model_home, config, f"{SERVICE}@1", thresholds=(0.15, 0.40))
    assert redeployed.shadow is not None and redeployed.shadow.model == challenger
    promoted = deploy(
        model_home, config, challenger, service_id=SERVICE, thresholds=(0.15, 0.40), replace_existing=True
    )
    assert promoted.shadow is None


def test_the_cli_refuses_a_shadow_without_its_champion_in_one_line(model_home: Settings, challenger: str) -> None:
    env = {**os.environ, "MEDML_HOME": str(model_home.home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    deployed = model_home.home / "service" / "deployments.json"
    before = deployed.read_bytes() if deployed.exists() else None
    proc = subprocess.run(
        [sys.executable, "-m", "medml.cli", "deploy", challenger, "--shadow", "--id", "no-such-service"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.startswith("error: no deployed service 'no-such-service' to shadow")
        and "Traceback" not in proc.stderr
    )
    assert (deployed.read_bytes() if deployed.exists() else None) == before


def test_with_monitoring_off_nothing_is_recorded(
    model_home: Settings, stays: dict[str, list[dict[str, Any]]], tmp_path: Path, serve: Callable[[Any], str]
) -> None:
    monitor = tmp_path / "m.duckdb"
    config = ServiceConfig(home=tmp_path / "service", auth="off", monitor=False, monitor_store=monitor)
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    app = create_app(model_home, config)
    assert app.state.medml.recorder is None
    with httpx.Client(base_url=serve(app), timeout=30) as client:
        pid = "pn2012-132539"
        r = client.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], codes(client))))
    assert r.status_code == 200 and not monitor.exists()
