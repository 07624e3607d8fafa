"""Redeploying over a service id (issue 13, item 10): a deployment that would alert differently (other thresholds,
another model, another RiskAssessment mode) is refused, saying the old and new values and --replace; with
--replace it replaces it and says what it replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cds_requests import needs_physionet

from medml.config import Settings
from medml.errors import ConfigError
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy, deployments

pytestmark = needs_physionet
MEDML = [sys.executable, "-m", "medml.cli"]
MODEL = "physionet-2012-lgbm"


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture()
def home(model_home: Settings) -> Path:
    """The trained model's home, with no deployment left by another test (shared: copying the registry is slow)."""
    (model_home.home / "service" / "deployments.json").unlink(missing_ok=True)
    return model_home.home


def test_other_thresholds_over_an_existing_id_are_refused_then_replaced_with_replace(home: Path) -> None:
    assert run(home, "deploy", MODEL, "--id", "icu", "--thresholds", "0.2,0.5").returncode == 0
    stored = home / "service" / "deployments.json"
    before = stored.read_bytes()

    refused = run(home, "deploy", MODEL, "--id", "icu", "--thresholds", "0.1,0.3")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: service 'icu' is deployed already"), line
    assert "its thresholds (warning,critical) from 0.2,0.5 to 0.1,0.3" in line and "--replace" in line, line
    assert stored.read_bytes() == before

    replaced = run(home, "deploy", MODEL, "--id", "icu", "--thresholds", "0.1,0.3", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced the deployment 'icu': its thresholds (warning,critical) from 0.2,0.5 to 0.1,0.3" in (
        " ".join(replaced.stdout.split())
    )
    assert orjson.loads(stored.read_bytes())["icu"]["thresholds"] == [0.1, 0.3]


def test_the_same_deployment_again_is_no_change(home: Path) -> None:
    first = run(home, "deploy", MODEL, "--thresholds", "0.2,0.5")
    again = run(home, "deploy", MODEL, "--thresholds", "0.2,0.5")
    assert first.returncode == again.returncode == 0, again.stderr
    assert "replaced" not in again.stdout


def test_default_thresholds_that_differ_and_another_mode_are_refused(model_home: Settings, tmp_path: Path) -> None:
    config = ServiceConfig(home=tmp_path)
    deploy(model_home, config, MODEL, thresholds=(0.11, 0.33))
    with pytest.raises(ConfigError, match=r"from 0\.11,0\.33 to .*the model's test set"):
        deploy(model_home, config, MODEL)  # the default thresholds, from the event rate
    with pytest.raises(ConfigError, match="RiskAssessment mode from suggestion to system-action"):
        deploy(model_home, config, MODEL, thresholds=(0.11, 0.33), risk_assessment="system-action")
    assert deployments(config)[MODEL].thresholds == (0.11, 0.33)
    dep = deploy(model_home, config, MODEL, replace_existing=True)
    assert deployments(config)[MODEL].thresholds == dep.thresholds != (0.11, 0.33)
