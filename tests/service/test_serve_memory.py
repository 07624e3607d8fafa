"""What keeps the service's memory down (issue 15) without changing an answer: a worker reads and answers at most
``max_in_flight`` hook calls at once, and `medml serve` leaves a bare uvicorn supervising its workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_requests import STAYS, hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.errors import ConfigError
from medml.service.app import create_app
from medml.service.config import ServiceConfig, load_config
from medml.service.deploy import deploy

SERVICE = "physionet-2012-lgbm"


def test_max_in_flight_not_a_number_or_below_one_is_refused_with_what_to_do(tmp_path: Path) -> None:
    for bad in ("0", "lots"):
        (tmp_path / "service.yaml").write_text(f"max_in_flight: {bad}\n")
        with pytest.raises(ConfigError, match="max_in_flight must be a number at least 1"):
            load_config(Settings(home=tmp_path, data_root=tmp_path), tmp_path / "service.yaml")
    env = {**os.environ, "MEDML_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "medml.cli", "serve", "--config", str(tmp_path / "service.yaml")]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "max_in_flight must be a number at least 1, got 'lots'" in refused.stderr
    (tmp_path / "service.yaml").write_text("max_in_flight: 3\n")
    assert load_config(Settings(home=tmp_path, data_root=tmp_path), tmp_path / "service.yaml").max_in_flight == 3


@needs_physionet
def test_a_burst_over_max_in_flight_gets_the_scores_each_call_gets_alone(
    model_home: Settings,
    tmp_path: Path,
    stays: dict[str, list[dict[str, Any]]],
    serve: Callable[[Any], str],
) -> None:
    """16 concurrent calls through 2 places: every one answered, each with the risk its stay gets when sent alone
    (the calls that wait are queued, not refused or mixed up)."""
    config = ServiceConfig(home=tmp_path / "service", auth="off", max_body_bytes=2_000_000, max_in_flight=2)
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    base = serve(create_app(model_home, config))
    url = f"/cds-services/{SERVICE}"
    with httpx.Client(base_url=base, timeout=120) as client:
        tpl = client.get("/cds-services").json()["services"][0]["prefetch"]["observations"]
        codes = [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]
        pids = [f"pn2012-{s}" for s in STAYS[:8]]
        bodies = {pid: hook_request(pid, prefetch_for(stays[pid], codes)) for pid in pids}

        def risk(pid: str) -> float:
            r = client.post(url, json=bodies[pid])
            assert r.status_code == 200, r.text
            (action,) = r.json()["cards"][0]["suggestions"][0]["actions"]
            return float(action["resource"]["prediction"][0]["probabilityDecimal"])

        alone = {pid: risk(pid) for pid in pids}
        with ThreadPoolExecutor(16) as pool:
            burst = list(pool.map(risk, pids * 2))
    assert burst == [alone[pid] for pid in pids * 2]
    assert len(set(alone.values())) > 1  # different stays, different risks: a mix-up would show


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the processes' memory maps in /proc")
def test_serve_with_workers_leaves_a_bare_uvicorn_supervising_them(tmp_path: Path) -> None:
    """`medml serve --workers 2` becomes uvicorn (same pid): the supervisor has neither the CLI nor the app loaded
    (no DuckDB, pandas or LightGBM mapped: the models are in the workers only), and the service answers."""
    port = _free_port()
    env = {**os.environ, "MEDML_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medml.cli", "serve", "--port", str(port), "--workers", "2", "--insecure-no-auth"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_text()
        assert "uvicorn.run(" in cmdline and "medml.service.app:app_from_env" in cmdline and "medml.cli" not in cmdline
        supervisor = _maps(proc.pid)
        for library in ("_duckdb", "lib_lightgbm", "pandas"):
            assert library not in supervisor, library
        workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2
        assert all("_duckdb" in _maps(p) for p in workers)  # the app is built in each worker
        assert "medml CDS Hooks service on" in log.read_text()  # the CLI's own line, printed before it became uvicorn
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
