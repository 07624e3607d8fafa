"""CDS Hooks patient-view under load: medml serve against a naive FastAPI service, in the same run.

Both serve the same registered PhysioNet 2012 model with uvicorn (``--workers``, default 2) on loopback. Each request
is a real ICU stay as FHIR with a realistic prefetch (its Patient, Encounter and 100-300 Observations of the codes
the model reads). medml verifies a fresh ES384 JWT per call, checks the prefetch, builds the features with the
training code, explains the score, writes the card, the audit record and the PredictionRecord. The naive baseline
(benchmarks/naive_cds.py) validates every prefetch resource with fhir.resources, builds the features in a fresh
in-memory store and calls predict_proba. Closed loop: C clients each send their next request when the last returns.

Usage: ``.venv/bin/python benchmarks/bench_cds.py [--out benchmarks/results-cds.md] [--requests 300,2000,10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "physionet-2012-lgbm"
CONCURRENCY = (1, 10, 100)


def train_models(home: Path) -> None:
    from medml.config import Settings, get_settings
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train

    settings = Settings(home=home, data_root=get_settings().data_root)
    ds = load_dataset("physionet-2012")
    for cfg in (
        TrainConfig(model="lgbm", budget_seconds=20, n_boot=200),
        TrainConfig(model="logistic", budget_seconds=5, n_boot=200),
        TrainConfig(model="lgbm", budget_seconds=10, n_boot=200, seed=1, name="physionet-2012-lgbm-b"),
    ):
        train(ds, cfg, settings)


def realistic_stays(limit: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Stays of set A whose prefetch holds 100-300 Observations of the model's codes."""
    from medml.config import get_settings
    from medml.fhir.convert.physionet2012 import iter_stays
    from medml.fhir.tasks import physionet_definition

    codes = {c if "|" in c else f"http://loinc.org|{c}" for c in physionet_definition(48).codes()}
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for res in iter_stays(get_settings().data_root / "icu" / "physionet-2012-set-a"):
        obs = [
            r
            for r in res
            if r["resourceType"] == "Observation"
            and any(f"{c['system']}|{c['code']}" in codes for c in r["code"]["coding"])
        ]
        if 100 <= len(obs) <= 300:
            out.append((res[0]["id"], [r for r in res if r["resourceType"] != "Observation"] + obs))
        if len(out) >= limit:
            break
    return out


def request_body(pid: str, resources: list[dict[str, Any]]) -> bytes:
    def bundle(rtype: str) -> dict[str, Any]:
        entries = [
            {"fullUrl": f"http://ehr.example/fhir/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
            if r["resourceType"] == rtype
        ]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/bench", "patientId": pid},
            "prefetch": {"patient": patient, "encounters": bundle("Encounter"), "observations": bundle("Observation")},
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ehr_keys(home: Path) -> tuple[Any, Path]:
    """An EC P-384 key for the benchmark's EHR, its public JWK Set, and a service.yaml that trusts it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = home / "service" / "bench-ehr-jwks.json"
    jwks.parent.mkdir(parents=True, exist_ok=True)
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "bench", "alg": "ES384", "use": "sig"}]}))
    (home / "service" / "service.yaml").write_text(
        f"issuers:\n  - iss: https://ehr.bench.example/\n    jwks: {jwks}\nrate_per_minute: 1000000\n"
    )
    return key, jwks


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.post(url, content=b"{}", timeout=2).status_code in (400, 401, 422, 412):
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not start")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), MiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def load(url: str, bodies: list[bytes], clients: int, total: int, token: Any) -> dict[str, Any]:
    latencies: list[float] = []
    failures: dict[str, int] = {}
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in counter:
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token()}"}
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                    status = str(r.status_code)
                except httpx.HTTPError as e:
                    status = type(e).__name__
                latencies.append(time.perf_counter() - t)
                if status != "200":
                    failures[status] = failures.get(status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "n": total,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "rps": total / wall,
        "failed": sum(failures.values()),
        "failures": failures,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--requests", default="300,2000,10000", help="requests at 1, 10 and 100 clients")
    ap.add_argument("--naive-requests", default="300,1000,2000", help="the same for the (slower) naive service")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stays", type=int, default=60)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    totals = {
        "medml serve": dict(zip(CONCURRENCY, (int(x) for x in args.requests.split(",")), strict=True)),
        "naive": dict(zip(CONCURRENCY, (int(x) for x in args.naive_requests.split(",")), strict=True)),
    }

    import jwt

    home = Path(tempfile.mkdtemp(prefix="medml-bench-cds-"))
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(MEDML_HOME=str(home))
    print(f"training 3 models in {home} ...", file=sys.stderr)
    train_models(home)
    key, _ = ehr_keys(home)
    medml = [sys.executable, "-m", "medml.cli"]
    for model, sid in (
        (SERVICE, SERVICE),
        ("physionet-2012-logistic", "icu-logistic"),
        ("physionet-2012-lgbm-b", "icu-lgbm-b"),
    ):
        subprocess.run([*medml, "deploy", model, "--id", sid], env=env, check=True, capture_output=True)
    stays = realistic_stays(args.stays)
    bodies = [request_body(pid, res) for pid, res in stays]
    n_obs = [sum(r["resourceType"] == "Observation" for r in res) for _, res in stays]
    print(
        f"{len(stays)} stays, {min(n_obs)}-{max(n_obs)} Observations each (median {int(np.median(n_obs))}), "
        f"request bodies {min(map(len, bodies)) // 1024}-{max(map(len, bodies)) // 1024} KiB",
        file=sys.stderr,
    )

    results: dict[str, dict[int, dict[str, Any]]] = {}
    memory: dict[str, float] = {}
    servers = {"medml serve": None, "naive": None} if not args.skip_naive else {"medml serve": None}
    for name in servers:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        aud = f"{base}/cds-services/{SERVICE}"
        if name == "medml serve":
            cmd = [*medml, "serve", "--port", str(port), "--workers", str(args.workers)]
        else:
            cmd = [
                sys.executable,
                str(ROOT / "benchmarks" / "naive_cds.py"),
                "--home",
                str(home),
                "--model",
                f"{SERVICE}@1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_ready(aud, proc)

            def token(aud: str = aud) -> str:
                now = int(time.time())
                claims = {
                    "iss": "https://ehr.bench.example/",
                    "aud": aud,
                    "iat": now,
                    "exp": now + 300,
                    "jti": str(uuid.uuid4()),
                }
                return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "bench"})

            asyncio.run(load(aud, bodies, 4, 40, token))  # warm up: models loaded, caches filled
            results[name] = {}
            for c in CONCURRENCY:
                print(f"{name}: {totals[name][c]} requests at {c} clients ...", file=sys.stderr)
                results[name][c] = asyncio.run(load(aud, bodies, c, totals[name][c], token))
                print(f"  {results[name][c]}", file=sys.stderr)
            memory[name] = rss_mib(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)

    lines = [
        f"# CDS Hooks patient-view under load ({platform.node()}, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()})",
        "",
        f"uvicorn workers: {args.workers}; {len(stays)} PhysioNet stays, {min(n_obs)}-{max(n_obs)} "
        f"Observations per prefetch (median {int(np.median(n_obs))}); closed loop; load generator on the "
        "same machine.",
        "",
        "| service | clients | requests | p50 ms | p95 ms | p99 ms | requests/s | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_c in results.items():
        for c, r in by_c.items():
            lines.append(
                f"| {name} | {c} | {r['n']:,} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
                f"{r['rps']:.1f} | {r['failed']} |"
            )
    if "naive" in results:
        lines += ["", "| clients | p99 naive / medml | throughput medml / naive |", "|---:|---:|---:|"]
        for c in CONCURRENCY:
            m, n = results["medml serve"][c], results["naive"][c]
            lines.append(f"| {c} | {n['p99'] / m['p99']:.2f} | {m['rps'] / n['rps']:.2f} |")
    lines += [
        "",
        "Resident memory after the runs (master + workers), 3 models deployed:",
        *(f"- {name}: {mib:.0f} MiB" for name, mib in memory.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
