"""The service part of `medml demo`: ICU stays in the store, the model deployed, the demo EHR trusted."""

from __future__ import annotations

import io
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cds_requests import hook_request, needs_physionet
from rich.console import Console

from medml.cli.demo import DEMO_EHR_ISS, DEMO_SERVICE_MODEL, run_service_demo
from medml.config import Settings
from medml.service.app import create_app
from medml.service.config import load_config

pytestmark = needs_physionet


def test_the_demo_deploys_the_model_fills_the_store_and_trusts_its_ehr(
    model_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Callable[[Any], str]
) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_home.home, home, ignore=shutil.ignore_patterns("service", "fhir.duckdb"))
    monkeypatch.setenv("MEDML_HOME", str(home))
    settings = Settings(home=home, data_root=model_home.data_root)
    out = Console(file=io.StringIO(), width=200)
    assert run_service_demo(out, out, stays=5) == DEMO_SERVICE_MODEL
    config = load_config(settings)
    assert config.pages_on and [i.iss for i in config.issuers] == [DEMO_EHR_ISS]
    with httpx.Client(base_url=serve(create_app(settings, config)), timeout=60) as client:
        page = client.get("/").text
        stays = [p for p in page.split('href="/patients/')[1:] if p.startswith("pn2012-")]
        assert len(stays) == 5
        pid = stays[0].split('"')[0]
        assert "Risk of death in hospital" in client.get(f"/patients/{pid}").text
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        private = load_pem_private_key((home / "service" / "demo-ehr" / "private-key.pem").read_bytes(), None)
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": DEMO_EHR_ISS,
                "aud": config.service_url(DEMO_SERVICE_MODEL),
                "iat": now,
                "exp": now + 60,
                "jti": str(uuid.uuid4()),
            },
            private,
            algorithm="ES384",
            headers={"kid": "demo-ehr"},
        )
        r = client.post(
            f"/cds-services/{DEMO_SERVICE_MODEL}", json=hook_request(pid), headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 412  # authenticated; no prefetch and no fhirServer in this request
        assert client.post(f"/cds-services/{DEMO_SERVICE_MODEL}", json=hook_request(pid)).status_code == 401
