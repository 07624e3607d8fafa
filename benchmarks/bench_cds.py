"""CDS Hooks patient-view under load: medml serve, its HTTP floor and a naive FastAPI service, in one run.

All serve the same registered PhysioNet 2012 model with uvicorn (``--workers``, default 2) on loopback. Each request
is a real ICU stay as FHIR with a realistic prefetch (its Patient, Encounter and 163-300 Observations of the codes
the model reads). medml verifies a fresh ES384 JWT per call (signed before each run, so the load generator does not
pay for it), checks the prefetch, builds the features with the compiled feature path, explains the score, writes the
card, the audit record (durable) and the PredictionRecord. The HTTP floor is medml's own app (same uvicorn,
middleware and routing) answering a fixed card without reading the request: what the server stack costs before any
work. The naive baseline (benchmarks/naive_cds.py) validates every prefetch resource with fhir.resources, builds the
features in a fresh in-memory DuckDB store and calls predict_proba.

In one run: a per-step profile of one answer in this process (the steps issue 15 changed timed before and after);
closed loops (C clients each send their next request when the last returns) at 1, 10 and 100 clients for the three
servers; open loops (Poisson arrivals at 50, 100, 200, 400 requests/s, latency from the scheduled arrival) for medml
and the floor; the PGx order-select/order-sign hooks and the image endpoint on the medml service; resident memory.

Usage: ``.venv/bin/python benchmarks/bench_cds.py [--out benchmarks/results-cds.md] [--home DIR]`` (``--home``
keeps the trained models for the next run; ``--help`` lists the sizes of each run).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

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
            if httpx.post(url, content=b"{}", timeout=2).status_code in (200, 400, 401, 422, 412):
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not start")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), MiB: the sum of their RSS, which counts
    pages they share (libraries, the pages a fork shares) once per process."""
    return _memory(pid, "/proc/{}/status", "VmRSS:")


def pss_mib(pid: int) -> float:
    """The same as proportional set size (each shared page split among the processes that share it): what the
    service takes from the machine."""
    return _memory(pid, "/proc/{}/smaps_rollup", "Pss:")


def _memory(pid: int, path: str, field: str) -> float:
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        for line in Path(path.format(p)).read_text().splitlines():
            if line.startswith(field):
                total += int(line.split()[1])
                break
    return total / 1024


def tokens(key: Any, aud: str, n: int) -> list[str]:
    """``n`` fresh ES384 JWTs for ``aud``, signed before a run (signing costs the load generator a millisecond)."""
    import jwt

    now = int(time.time())
    claims = {"iss": "https://ehr.bench.example/", "aud": aud, "iat": now, "exp": now + 290}
    return [
        jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, algorithm="ES384", headers={"kid": "bench"})
        for _ in range(n)
    ]


def summary(latencies: list[float], failures: dict[str, int], total: int, wall: float) -> dict[str, Any]:
    ms = np.array(latencies) * 1000
    return {
        "n": total,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "rps": (total - sum(failures.values())) / wall,
        "failed": sum(failures.values()),
        "failures": failures,
    }


async def _send(
    client: httpx.AsyncClient, url: str, body: bytes, token: str | None, content_type: str = "application/json"
) -> str:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = await client.post(url, content=body, headers=headers)
        return str(r.status_code)
    except httpx.HTTPError as e:
        return type(e).__name__


async def load(
    url: str,
    bodies: list[bytes],
    clients: int,
    total: int,
    toks: list[str] | None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """Closed loop: ``clients`` each send their next request when the last returns."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                status = await _send(client, url, bodies[i % len(bodies)], toks[i] if toks else None, content_type)
                latencies.append(time.perf_counter() - t)
                if status != "200":
                    failures[status] = failures.get(status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    return summary(latencies, failures, total, wall)


async def open_loop(
    url: str, bodies: list[bytes], rate: float, seconds: float, toks: list[str] | None, seed: int = 0
) -> dict[str, Any]:
    """Open loop: requests arrive as a Poisson process of ``rate`` per second, whatever the answers do; each
    latency runs from the request's scheduled arrival (a generator that falls behind counts against the server,
    not for it: no coordinated omission). A request not answered in 10 s is a failure."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, size=int(rate * seconds * 1.2) + 10))
    arrivals = arrivals[arrivals < seconds]
    latencies: list[float] = []
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=400)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def one(i: int, due: float) -> None:
            status = await _send(client, url, bodies[i % len(bodies)], toks[i] if toks else None)
            latencies.append(time.perf_counter() - due)
            if status != "200":
                failures[status] = failures.get(status, 0) + 1

        start = time.perf_counter()
        tasks = []
        for i, at in enumerate(arrivals):
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, start + at)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return summary(latencies, failures, len(arrivals), wall)


def profile_steps(home: Path, stays: list[tuple[str, list[dict[str, Any]]]], key: Any, n: int) -> list[Any]:
    """Each step of one patient-view answer, in this process, one request at a time: (step, before p50 ms, after
    p50 ms, after p99 ms); before is None where the step did not change.

    The steps the hook router runs, called directly. The steps issue 15 changed are timed both ways in the same run:
    the body parsed and serialised twice (depth check, then the audit digest) or once (``read_body``); the features
    from the DuckDB reference (``build_features`` on the thread's in-memory store, as served before) or the compiled
    program; the model's frame cut from the reference's frame or built from the feature row.
    """
    from medml.config import Settings, get_settings
    from medml.explain.contributions import top_factors
    from medml.fhir.features import build_features
    from medml.registry import load_bundle
    from medml.service import audit, cards
    from medml.service.auth import JwtVerifier
    from medml.service.config import load_config
    from medml.service.core import HookRequest, read_body
    from medml.service.deploy import deployments
    from medml.service.scoring import Job, Scorer, _scratch, collect

    settings = Settings(home=home, data_root=get_settings().data_root)
    config = load_config(settings)
    dep = deployments(config)[SERVICE]
    scorer = Scorer(dep, load_bundle(dep.model, settings))
    verifier = JwtVerifier(config)
    aud = config.service_url(SERVICE)
    sink = audit.JsonlAuditLog(home / "profile-audit.jsonl")
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}

    def timed(into: dict[str, list[float]], step: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kw)
        into.setdefault(step, []).append((time.perf_counter() - t) * 1000)
        return out

    def both(step: str, fn: Any, *args: Any, **kw: Any) -> Any:
        out = timed(after, step, fn, *args, **kw)
        before.setdefault(step, []).append(after[step][-1])
        return out

    def reference(resources: list[dict[str, Any]], index: pd.Series) -> Any:
        store = _scratch()
        try:
            store.replace_all(resources)
            return build_features(store, scorer.spec.definition, index)
        finally:
            store.replace_all(())

    def parse_twice(raw: bytes) -> Any:
        body = orjson.loads(raw)
        orjson.dumps(body)
        return body

    bodies = [request_body(pid, res) for pid, res in stays]
    for i in range(n):
        pid, _ = stays[i % len(stays)]
        raw = bodies[i % len(bodies)]
        (token,) = tokens(key, aud, 1)
        timed(before, "parse the body", parse_twice, raw)
        body, digest = timed(after, "parse the body", read_body, raw)
        both("verify the JWT (ES384 signature, keys cached, replay cache)", verifier.verify, f"Bearer {token}", aud)
        req = both("check the hook request", HookRequest.parse, body, dep.hook, dep.service_id)
        resources = both("collect the prefetch", collect, {k: req.prefetch.get(k) for k in scorer.templates}, pid)
        job = Job(pid, resources, None, datetime.now(UTC))
        _, at = scorer._index_time(job)  # type: ignore[misc]
        built = timed(before, "features", reference, resources, pd.Series({pid: at}, dtype=object))
        row = timed(after, "features", scorer.program.row, resources, pid, at)
        timed(before, "features as the model's frame", built.X.__getitem__, scorer.columns)
        X = timed(after, "features as the model's frame", scorer.program.frame, [row], scorer.columns)
        both("model: predict_proba", scorer.bundle.predict_proba, X)
        both("explanation: top factors (TreeSHAP)", top_factors, scorer.bundle.model, X, k=5)
        result = scorer.score_many([job])[0]
        card = both(
            "card",
            cards.card,
            dep,
            result,
            pid,
            model_kind=scorer.bundle.metadata.model_kind,
            model_card_url="http://x/models",
            authenticated=True,
        )
        response = {"cards": [card]}
        entry_of = audit.hook_entry
        common = {"service": SERVICE, "request": body, "response": response, "status": 200, "duration_ms": 1.0}
        timed(before, "audit entry (digests of request and response)", entry_of, **common)
        entry = timed(
            after,
            "audit entry (digests of request and response)",
            entry_of,
            **common,
            details=audit.EntryDetails(input_sha256=digest),
        )
        both("audit append (durable: fdatasync)", sink.append, entry)
        both("response JSON", orjson.dumps, response)
        timed(after, "(scoring as served: Scorer.score_many)", scorer.score_many, [job])
    sink.close()
    return [
        (
            step,
            float(np.percentile(before[step], 50)) if step in before else None,
            float(np.percentile(v, 50)),
            float(np.percentile(v, 99)),
        )
        for step, v in after.items()
    ]


def start_server(kind: str, home: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str]:
    """A server on a free loopback port: ``medml`` (medml serve), ``floor`` (its HTTP floor) or ``naive``; its URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    naive = [sys.executable, str(ROOT / "benchmarks" / "naive_cds.py"), "--home", str(home), "--port", str(port)]
    cmd = {
        "medml": [sys.executable, "-m", "medml.cli", "serve", "--port", str(port), "--workers", str(workers)],
        "floor": [*naive, "--floor", "--workers", str(workers)],
        "naive": [*naive, "--model", f"{SERVICE}@1", "--workers", str(workers)],
    }[kind]
    if kind == "floor":  # the floor is medml's app: its JWT audience is the URL it was started with
        env = {**env, "MEDML_SERVICE_BASE_URL": base}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, base


def settle(base: str, seconds: float = 300) -> None:
    """Wait until the server has worked off what an overloaded run left queued (its health check answers fast)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            httpx.get(f"{base}/healthz", timeout=60)
        except httpx.HTTPError:
            continue
        if time.perf_counter() - t < 0.2:
            return
        time.sleep(1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def prepare(home: Path, env: dict[str, str]) -> Any:
    """Three models trained and deployed in ``home`` (once: a marker file says it is done) and the EHR's key."""
    from cryptography.hazmat.primitives import serialization

    marker = home / "bench-cds-ready"
    pem = home / "service" / "bench-ehr-key.pem"
    if marker.is_file():
        return serialization.load_pem_private_key(pem.read_bytes(), password=None)
    print(f"training 3 models in {home} ...", file=sys.stderr)
    train_models(home)
    key, _ = ehr_keys(home)
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    medml = [sys.executable, "-m", "medml.cli"]
    for model, sid in (
        (SERVICE, SERVICE),
        ("physionet-2012-logistic", "icu-logistic"),
        ("physionet-2012-lgbm-b", "icu-lgbm-b"),
    ):
        subprocess.run([*medml, "deploy", model, "--id", sid], env=env, check=True, capture_output=True)
    prepare_extras(home, env)
    marker.write_text("trained and deployed\n")
    return key


PGX_PATIENT = "pgx-bench-1"
IMAGE_SERVICE = "squares-dx"


def prepare_extras(home: Path, env: dict[str, str]) -> None:
    """The PGx results of PharmCAT's example patient, and a small image model (the test suite's squares) deployed."""
    from medml.config import Settings, get_settings
    from medml.pgx.pipeline import analyse_vcf
    from medml.pgx.store import save_results

    examples = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
    result = analyse_vcf(
        examples / "pharmcat.example.vcf", outside_calls=[examples / "pharmcat.example.outsideCall.tsv"]
    )
    save_results(home / "service" / "pgx", PGX_PATIENT, json.loads(str(result.to_json())))
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from imaging_squares import write_squares_npz
        from medml.pipelines.imaging import ImageWorkflowConfig, train_images
    except ImportError as e:  # no torch/MONAI here: the image endpoint is not timed
        print(f"no image model ({e})", file=sys.stderr)
        return
    settings = Settings(home=home, data_root=get_settings().data_root)
    config = ImageWorkflowConfig(batch_size=32, n_boot=50, name="squares", widths=(8, 16, 32, 64), explain_images=4)
    data = write_squares_npz(home / "squares.npz", sizes=(80, 30, 30))
    train_images(data, config, settings, epochs=2, budget_minutes=None)
    subprocess.run(
        [sys.executable, "-m", "medml.cli", "deploy", "squares", "--id", IMAGE_SERVICE],
        env=env,
        check=True,
        capture_output=True,
    )


def order_body(hook: str, selections: bool) -> bytes:
    """An order-sign (or order-select) request for the PGx patient: clopidogrel, which CYP2C19 changes."""
    order = {
        "resourceType": "MedicationRequest",
        "id": "mr-clopidogrel",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "text": "clopidogrel 75 MG Oral Tablet",
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "32968", "display": "clopidogrel"}
            ],
        },
        "subject": {"reference": f"Patient/{PGX_PATIENT}"},
    }
    context: dict[str, Any] = {
        "userId": "Practitioner/bench",
        "patientId": PGX_PATIENT,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]},
    }
    if selections:
        context["selections"] = ["MedicationRequest/mr-clopidogrel"]
    return orjson.dumps({"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context})


def time_extras(base: str, key: Any, n: int) -> dict[str, dict[str, Any]]:
    """The PGx order hooks and the image endpoint on the running medml service, one client, ``n`` calls each."""
    from pydicom.data import get_testdata_file

    out: dict[str, dict[str, Any]] = {}
    for sid, hook in (("pgx-order-select", "order-select"), ("pgx-order-sign", "order-sign")):
        url = f"{base}/cds-services/{sid}"
        body = order_body(hook, hook == "order-select")
        out[f"PGx {hook}"] = asyncio.run(load(url, [body], 1, n, tokens(key, url, n)))
    url = f"{base}/imaging/{IMAGE_SERVICE}"
    dicom = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    if httpx.post(url, content=dicom, headers={"Content-Type": "application/dicom"}, timeout=120).status_code != 404:
        toks = tokens(key, url, n + 3)
        for t in toks[:3]:  # the first call loads torch and the network
            headers = {"Content-Type": "application/dicom", "Authorization": f"Bearer {t}"}
            httpx.post(url, content=dicom, headers=headers, timeout=300)
        out["image (CT_small.dcm, 128x128)"] = asyncio.run(
            load(url, [dicom], 1, n, toks[3:], content_type="application/dicom")
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--home", type=Path, help="MEDML_HOME to use (and reuse: its models are trained once)")
    ap.add_argument("--requests", default="300,2000,10000", help="requests at 1, 10 and 100 clients")
    ap.add_argument("--naive-requests", default="300,1000,2000", help="the same for the (slower) naive service")
    ap.add_argument("--rates", default="50,100,200,400", help="open-loop arrival rates, requests/s")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each open-loop run")
    ap.add_argument("--profile", type=int, default=300, help="requests of the per-step profile (0: none)")
    ap.add_argument("--extras", type=int, default=200, help="calls of each PGx hook and the image endpoint (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stays", type=int, default=60)
    ap.add_argument("--servers", default="medml,floor,naive", help="which servers to load, in this order")
    args = ap.parse_args()
    args.load_at_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    totals = {
        "medml": dict(zip(CONCURRENCY, (int(x) for x in args.requests.split(",")), strict=True)),
        "floor": dict(zip(CONCURRENCY, (int(x) for x in args.requests.split(",")), strict=True)),
        "naive": dict(zip(CONCURRENCY, (int(x) for x in args.naive_requests.split(",")), strict=True)),
    }
    rates = [float(r) for r in args.rates.split(",") if r]
    home = args.home or Path(tempfile.mkdtemp(prefix="medml-bench-cds-"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(MEDML_HOME=str(home))
    key = prepare(home, env)
    stays = realistic_stays(args.stays)
    bodies = [request_body(pid, res) for pid, res in stays]
    n_obs = [sum(r["resourceType"] == "Observation" for r in res) for _, res in stays]
    print(
        f"{len(stays)} stays, {min(n_obs)}-{max(n_obs)} Observations each (median {int(np.median(n_obs))}), "
        f"request bodies {min(map(len, bodies)) // 1024}-{max(map(len, bodies)) // 1024} KiB",
        file=sys.stderr,
    )
    profile = profile_steps(home, stays, key, args.profile) if args.profile else []

    names = {"medml": "medml serve", "floor": "HTTP floor", "naive": "naive"}
    extras: dict[str, dict[str, Any]] = {}
    closed: dict[str, dict[int, dict[str, Any]]] = {}
    opened: dict[str, dict[float, dict[str, Any]]] = {}
    memory: dict[str, float] = {}
    for kind in [k for k in args.servers.split(",") if k]:
        name = names[kind]
        proc, base = start_server(kind, home, env, args.workers)
        path = "floor" if kind == "floor" else "cds-services"
        url = f"{base}/{path}/{SERVICE}"
        aud = f"{base}/cds-services/{SERVICE}"
        signed = kind == "medml"
        try:
            wait_ready(url, proc)
            asyncio.run(load(url, bodies, 4, 40, tokens(key, aud, 40) if signed else None))  # warm up
            closed[name] = {}
            for c in CONCURRENCY:
                n = totals[kind][c]
                print(f"{name}: {n} requests at {c} clients ...", file=sys.stderr)
                closed[name][c] = asyncio.run(load(url, bodies, c, n, tokens(key, aud, n) if signed else None))
                print(f"  {closed[name][c]}", file=sys.stderr)
            if kind != "naive":  # the naive service serves a few requests a second: an open loop would only queue
                opened[name] = {}
                for rate in rates:
                    n = int(rate * args.seconds * 1.3) + 20
                    print(f"{name}: open loop at {rate:g}/s for {args.seconds:g} s ...", file=sys.stderr)
                    toks = tokens(key, aud, n) if signed else None
                    opened[name][rate] = asyncio.run(open_loop(url, bodies, rate, args.seconds, toks))
                    print(f"  {opened[name][rate]}", file=sys.stderr)
                    settle(base)
            memory[name] = rss_mib(proc.pid)
            memory[f"{name} (PSS)"] = pss_mib(proc.pid)
            if kind == "medml" and args.extras:
                print("PGx order hooks and the image endpoint ...", file=sys.stderr)
                settle(base)
                extras = time_extras(base, key, args.extras)
                print(f"  {extras}", file=sys.stderr)
        finally:
            stop(proc)
    text = report(args, stays, n_obs, profile, closed, opened, memory, extras)
    print(text)
    if args.out:
        args.out.write_text(text)


def report(
    args: Any,
    stays: list[Any],
    n_obs: list[int],
    profile: list[Any],
    closed: dict[str, dict[int, dict[str, Any]]],
    opened: dict[str, dict[float, dict[str, Any]]],
    memory: dict[str, float],
    extras: dict[str, dict[str, Any]],
) -> str:
    lines = [
        f"# CDS Hooks patient-view under load ({platform.node()}, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()})",
        "",
        f"uvicorn workers: {args.workers}; {len(stays)} PhysioNet stays, {min(n_obs)}-{max(n_obs)} "
        f"Observations per prefetch (median {int(np.median(n_obs))}); load generator on the same machine. "
        "medml verifies a fresh ES384 JWT per call; the HTTP floor is medml's app (same uvicorn, middleware and "
        "routing) answering a fixed card without reading the request; the naive service is benchmarks/naive_cds.py.",
        "",
        f"Load average when the run started: {args.load_at_start} (1, 5, 15 min) on {os.cpu_count()} cores; above "
        "the core count, other work shared the machine and the numbers are slower than the service is.",
    ]
    if profile:
        lines += [
            "",
            f"## Per step, one request at a time, in one process ({args.profile} requests, the realistic stays)",
            "",
            "Before: the steps as served before issue 15 (the body serialised twice, the features from DuckDB, the "
            "model's frame cut from the reference's); after: as served now. Steps not changed are timed once.",
            "",
            "| step | before p50 ms | after p50 ms | after p99 ms |",
            "|---|---:|---:|---:|",
            *(
                f"| {step} | {'' if b is None else f'{b:.3f}'} | {p50:.3f} | {p99:.3f} |"
                for step, b, p50, p99 in profile
            ),
        ]
        answer = [r for r in profile if not r[0].startswith("(")]
        lines.append(
            f"| **sum of the steps** | **{sum(r[1] or 0 for r in answer):.3f}** | **{sum(r[2] for r in answer):.3f}** "
            "| |"
        )
    lines += [
        "",
        "## Closed loop (each client sends its next request when the last returns)",
        "",
        "| service | clients | requests | p50 ms | p95 ms | p99 ms | requests/s | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_c in closed.items():
        for c, r in by_c.items():
            lines.append(
                f"| {name} | {c} | {r['n']:,} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
                f"{r['rps']:.1f} | {r['failed']} |"
            )
    if opened:
        lines += [
            "",
            f"## Open loop (Poisson arrivals at a fixed rate for {args.seconds:g} s; latency from the scheduled "
            "arrival)",
            "",
            "| service | rate /s | requests | p50 ms | p95 ms | p99 ms | answered/s | failed |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, by_rate in opened.items():
            for rate, r in by_rate.items():
                lines.append(
                    f"| {name} | {rate:g} | {r['n']:,} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
                    f"{r['rps']:.1f} | {r['failed']} |"
                )
    if "medml serve" in closed and "HTTP floor" in closed:
        lines += ["", "| clients | medml / floor throughput | medml / naive throughput |", "|---:|---:|---:|"]
        for c in CONCURRENCY:
            m, f = closed["medml serve"][c], closed["HTTP floor"][c]
            naive = closed.get("naive", {}).get(c)
            vs_naive = f"{m['rps'] / naive['rps']:.2f}" if naive else "-"
            lines.append(f"| {c} | {m['rps'] / f['rps']:.2f} | {vs_naive} |")
    if extras:
        lines += [
            "",
            "## The other endpoints of the same service (one client, closed loop)",
            "",
            "| endpoint | requests | p50 ms | p95 ms | p99 ms | requests/s | failed |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {name} | {r['n']:,} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['rps']:.1f} | "
                f"{r['failed']} |"
                for name, r in extras.items()
            ),
        ]
    lines += [
        "",
        "Memory after the patient-view runs, before the extras (master + workers; 3 models deployed): RSS summed "
        "over the processes (shared pages counted in each), and PSS (shared pages split among them):",
        *(f"- {name}: {mib:.0f} MiB" for name, mib in memory.items()),
    ]
    lines += goals(closed, opened, memory)
    return "\n".join(lines) + "\n"


def goals(
    closed: dict[str, dict[int, dict[str, Any]]],
    opened: dict[str, dict[float, dict[str, Any]]],
    memory: dict[str, float],
) -> list[str]:
    """The goals of issue 15, each with the measurement it rests on (on this machine, this run)."""
    m = closed.get("medml serve", {})
    floor = closed.get("HTTP floor", {})
    out = ["", "## The goals of issue 15 in this run", "", "| goal | measured | met |", "|---|---|---|"]

    def row(goal: str, measured: str, ok: bool) -> None:
        out.append(f"| {goal} | {measured} | {'yes' if ok else 'no'} |")

    if 1 in m:
        r = m[1]
        row(
            "one client: p50 <= 5 ms, p99 <= 15 ms",
            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms",
            r["p50"] <= 5 and r["p99"] <= 15,
        )
    r200 = opened.get("medml serve", {}).get(200.0)
    if r200:
        row(
            "open loop 200/s: p99 < 50 ms, no failure",
            f"p99 {r200['p99']:.1f} ms, {r200['failed']} failed",
            r200["p99"] < 50 and not r200["failed"],
        )
    if 100 in m:
        r = m[100]
        ratio = f", floor {floor[100]['rps']:.0f}/s (x{floor[100]['rps'] / r['rps']:.2f})" if 100 in floor else ""
        ok = r["rps"] >= 600 and not r["failed"] and (100 not in floor or floor[100]["rps"] <= 2 * r["rps"])
        row(
            "closed loop 100 clients: >= 600/s, no failure, within x2 of the floor",
            f"{r['rps']:.0f}/s, {r['failed']} failed of {r['n']:,}{ratio}",
            ok,
        )
    if "medml serve" in memory:
        row(
            "resident memory, 3 models deployed: <= 600 MiB",
            f"{memory['medml serve']:.0f} MiB",
            memory["medml serve"] <= 600,
        )
    return out


if __name__ == "__main__":
    main()
