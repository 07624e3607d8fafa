"""`medml deploy|undeploy|deployments|serve` as a user runs them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cds_requests import needs_physionet

from medml.config import Settings

pytestmark = needs_physionet
MEDML = [sys.executable, "-m", "medml.cli"]
SERVICE = "physionet-2012-lgbm"


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture()
def home(model_home: Settings, tmp_path: Path) -> Path:
    """The trained model's home, with no deployment left by another test (shared: copying the registry is slow)."""
    (model_home.home / "service" / "deployments.json").unlink(missing_ok=True)
    return model_home.home


def test_deploy_list_and_undeploy(home: Path) -> None:
    r = run(home, "deploy", SERVICE, "--id", "icu-mortality", "--thresholds", "0.2,0.5")
    assert r.returncode == 0, r.stderr
    assert "/cds-services/icu-mortality" in r.stdout and "warning from 20%, critical from 50%" in r.stdout
    listed = run(home, "deployments")
    assert "icu-mortality" in listed.stdout and f"{SERVICE}@1" in listed.stdout
    assert run(home, "undeploy", "icu-mortality").returncode == 0
    assert "no CDS services deployed" in run(home, "deployments").stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("deploy", "no-such-model"), "no-such-model"),
        (("deploy", SERVICE, "--thresholds", "0.5,0.2"), "0 < warning < critical < 1"),
        (("deploy", SERVICE, "--thresholds", "high"), "two numbers"),
        (("deploy", SERVICE, "--id", "a b"), "service id"),
        (("deploy", SERVICE, "--risk-assessment", "always"), "suggestion"),
        (("undeploy", "nothing-here"), "no deployed service"),
        (("serve", "--insecure-no-auth", "--host", "0.0.0.0"), "loopback"),
        (("serve", "--host", "0.0.0.0"), "HTTPS"),
        (("serve", "--ssl-certfile", "cert.pem"), "both --ssl-certfile and --ssl-keyfile"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(home: Path, args: tuple[str, ...], words: str) -> None:
    deployments = home / "service" / "deployments.json"
    before = deployments.read_bytes() if deployments.exists() else None
    r = run(home, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert (deployments.read_bytes() if deployments.exists() else None) == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serve_runs_over_https_and_picks_up_a_new_deployment_without_restart(home: Path, tmp_path: Path) -> None:
    assert run(home, "deploy", SERVICE).returncode == 0
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {**os.environ, "MEDML_HOME": str(home)}
    log = home / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                *MEDML,
                "serve",
                "--port",
                str(port),
                "--insecure-no-auth",
                "--ssl-certfile",
                str(cert),
                "--ssl-keyfile",
                str(key),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert [s["id"] for s in client.get("/cds-services").json()["services"]] == [SERVICE]
            assert run(home, "deploy", SERVICE, "--id", "second").returncode == 0
            ids = sorted(s["id"] for s in client.get("/cds-services").json()["services"])
            assert ids == sorted([SERVICE, "second"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        run(home, "undeploy", "second")
